//! The `private_key_jwt` client assertion (RFC 7523 §2.2, OpenID Connect Core §9): an RS256 JWT
//! the worker signs with its first key to authenticate to a customer's token endpoint.
//!
//! Every assertion carries a fresh random `jti` (UUID v4), so one is never accepted twice;
//! providers (oidc-provider, Entra) reject replays. It lives `assertion_lifetime` and is only
//! ever held as a [`Secret`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use crate::secret::Secret;

/// The assertion's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    /// The client id.
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// The token endpoint URL, exactly as configured.
    pub aud: String,
    /// Unique per assertion.
    pub jti: String,
    pub iat: u64,
    /// Some providers (Entra among them) want `nbf`; it equals `iat`.
    pub nbf: u64,
    pub exp: u64,
}

impl AssertionClaims {
    pub fn new(client_id: &str, token_endpoint: &str, now: SystemTime, lifetime: Duration) -> Self {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        AssertionClaims {
            iss: client_id.to_string(),
            sub: client_id.to_string(),
            aud: token_endpoint.to_string(),
            jti: uuid::Uuid::new_v4().to_string(),
            iat,
            nbf: iat,
            // At least one second, so a sub-second lifetime does not make an expired assertion.
            exp: iat + lifetime.as_secs().max(1),
        }
    }
}

/// The JWS header: RS256, `typ` JWT, `kid`, and `x5t` when the key has a certificate.
pub fn header(key: &SigningKey) -> Header {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid().to_string());
    header.x5t = key.certificate().map(|c| c.x5t.clone());
    header
}

/// Signs `claims` with `key`. The error says nothing of the key.
pub fn sign(key: &SigningKey, claims: &AssertionClaims) -> Result<Secret, SignError> {
    jsonwebtoken::encode(&header(key), claims, key.encoding_key())
        .map(Secret::new)
        .map_err(|e| SignError(e.kind_name()))
}

/// Signing failed; carries only the kind of failure, never the key or the claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the client assertion: {0}")]
pub struct SignError(&'static str);

/// A short, fixed description of a `jsonwebtoken` error.
trait KindName {
    fn kind_name(&self) -> &'static str;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> &'static str {
        use jsonwebtoken::errors::ErrorKind;
        match self.kind() {
            ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => "the key is not usable",
            ErrorKind::Crypto(_) => "the signer failed",
            ErrorKind::Json(_) => "the claims do not serialize",
            _ => "unexpected signing error",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::OnceLock};

    use jsonwebtoken::{DecodingKey, Validation};
    use rsa::traits::PublicKeyParts;

    use super::*;
    use crate::oidc::keygen::generate_key;

    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let pem = generate_key(2048).unwrap();
            SigningKey::from_pem(Path::new("test.pem"), &pem).unwrap()
        })
    }

    #[test]
    fn claims_name_the_client_and_the_token_endpoint_and_expire_after_the_lifetime() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let claims = AssertionClaims::new(
            "client-1",
            "https://idp.example/token",
            now,
            Duration::from_secs(60),
        );
        assert_eq!(claims.iss, "client-1");
        assert_eq!(claims.sub, "client-1");
        assert_eq!(claims.aud, "https://idp.example/token");
        assert_eq!(claims.iat, 1_700_000_000);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.exp, 1_700_000_060);
        assert!(uuid::Uuid::parse_str(&claims.jti).is_ok());
    }

    #[test]
    fn every_assertion_has_a_fresh_jti() {
        let now = SystemTime::now();
        let a = AssertionClaims::new("c", "https://t", now, Duration::from_secs(60));
        let b = AssertionClaims::new("c", "https://t", now, Duration::from_secs(60));
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn a_signed_assertion_verifies_with_the_public_key_and_names_the_kid() {
        let key = key();
        let claims = AssertionClaims::new(
            "c",
            "https://t/token",
            SystemTime::now(),
            Duration::from_secs(60),
        );
        let jwt = sign(key, &claims).unwrap();
        assert_eq!(format!("{jwt:?}"), "[redacted]");

        let header = jsonwebtoken::decode_header(jwt.expose()).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(key.kid()));
        assert_eq!(header.x5t, None, "no certificate, no x5t");

        let public = key.public_key();
        let decoding = DecodingKey::from_rsa_raw_components(
            &public.n().to_bytes_be(),
            &public.e().to_bytes_be(),
        );
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["https://t/token"]);
        validation.set_issuer(&["c"]);
        let decoded =
            jsonwebtoken::decode::<AssertionClaims>(jwt.expose(), &decoding, &validation).unwrap();
        assert_eq!(decoded.claims, claims);
    }
}
