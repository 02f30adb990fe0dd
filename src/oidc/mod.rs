//! OAuth 2.0 access tokens for webhooks with OIDC settings (DESIGN.md, "OAuth 2.0 / OIDC token
//! acquisition"): the client-credentials grant with `client_secret_post` or `private_key_jwt`,
//! a per-configuration token cache, and the worker's signing keys and public JWKS.
//!
//! - [`account_keys`]: each account's own signing keys (made on first need, rotated, published
//!   per account): the tenant boundary of `private_key_jwt`.
//! - [`key_set`]: an account's key set decoded for signing, and which key signs when.
//! - [`keys`]: RSA signing keys from PEM (and certificates); `kid` = RFC 7638 thumbprint.
//! - [`jwks`]: the public JWK of a key, and the JWKS of configured keys.
//! - [`published`]: each account's public JWKS as served: cached, with its `ETag`, built
//!   without decrypting a private key.
//! - [`rotation`]: what a rotation does to an account's keys (replace the pending key, cap).
//! - [`keygen`]: new keys and self-signed certificates (`webhook-worker keygen`).
//! - [`assertion`]: the `private_key_jwt` client assertion.
//! - [`token`]: one token request and the parsing of its answer; [`TokenError`].
//! - [`cache`]: [`TokenProvider`], the cache the delivery pipeline asks for tokens.
//!
//! Secrets, tokens and assertions travel as [`crate::secret::Secret`] and appear in no error,
//! log line or metric.

pub mod account_keys;
pub use account_keys::{key_set, published};
pub mod assertion;
pub mod cache;
pub mod jwks;
pub mod keygen;
pub mod keys;
pub mod rotation;
pub mod token;

pub use account_keys::{AccountKeys, KeySet, KeysError, Rotation};
pub use cache::TokenProvider;
pub use jwks::jwks_json;
pub use keygen::{generate_key, self_signed_certificate};
pub use keys::{KeyError, SigningKey, SigningKeys};
pub use published::PublishedJwks;
pub use token::{TokenClient, TokenError};
