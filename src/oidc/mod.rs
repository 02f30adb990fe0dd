//! OAuth 2.0 access tokens for webhooks with OIDC settings (DESIGN.md, "OAuth 2.0 / OIDC token
//! acquisition"): the client-credentials grant with `client_secret_post` or `private_key_jwt`,
//! a per-configuration token cache, and the worker's signing keys and public JWKS.
//!
//! - [`keys`]: loading the RSA signing keys (and certificates); `kid` = RFC 7638 thumbprint.
//! - [`jwks`]: the public JWKS the worker publishes.
//! - [`keygen`]: new keys and self-signed certificates (`webhook-worker keygen`).
//!
//! Secrets, tokens and assertions travel as [`crate::secret::Secret`] and appear in no error,
//! log line or metric.

pub mod jwks;
pub mod keygen;
pub mod keys;

pub use jwks::jwks_json;
pub use keygen::{generate_key, self_signed_certificate};
pub use keys::{KeyError, SigningKey, SigningKeys};
