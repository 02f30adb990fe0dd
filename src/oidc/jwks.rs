//! The public JWKS: what the worker publishes at `/v1/webhooks/oidc_keys` and
//! `/.well-known/jwks.json` and prints with `webhook-worker jwks`, so customers' identity
//! providers can verify its client assertions.
//!
//! Only public members are ever written: `kty`, `use`, `alg`, `kid`, `n`, `e`, and `x5c`/`x5t`
//! when a certificate is configured.

use base64::{engine::general_purpose::STANDARD, Engine};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

use super::keys::{b64_uint, SigningKey, SigningKeys};

impl SigningKey {
    /// The public JWK of this key.
    pub fn jwk(&self) -> Value {
        let public = self.public_key();
        let mut jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid(),
            "n": b64_uint(public.n()),
            "e": b64_uint(public.e()),
        });
        if let (Some(certificate), Some(members)) = (self.certificate(), jwk.as_object_mut()) {
            // x5c is standard base64 (RFC 7517 §4.7), x5t base64url (§4.8).
            let chain: Vec<String> = certificate
                .chain_der
                .iter()
                .map(|der| STANDARD.encode(der))
                .collect();
            members.insert("x5c".into(), json!(chain));
            members.insert("x5t".into(), json!(certificate.x5t));
        }
        jwk
    }
}

impl SigningKeys {
    /// `{"keys": [...]}` with every configured key, the signing key first.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.all().iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }
}

/// The JWKS as pretty-printed JSON text.
pub fn jwks_json(keys: &SigningKeys) -> String {
    // A Value made of strings and arrays always serializes.
    serde_json::to_string_pretty(&keys.jwks()).unwrap_or_else(|_| r#"{"keys":[]}"#.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::oidc::keygen::{generate_key, self_signed_certificate, CERTIFICATE_VALIDITY};

    #[test]
    fn the_jwks_lists_every_key_first_the_signer_with_public_members_only() {
        let first = generate_key(2048).unwrap();
        let cert = self_signed_certificate(&first, "w", CERTIFICATE_VALIDITY).unwrap();
        let second = generate_key(2048).unwrap();
        let keys = SigningKeys::new(vec![
            SigningKey::from_pem(Path::new("a.pem"), &format!("{first}{cert}")).unwrap(),
            SigningKey::from_pem(Path::new("b.pem"), &second).unwrap(),
        ]);
        let jwks = keys.jwks();
        let list = jwks["keys"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["kid"], keys.all()[0].kid());
        assert_eq!(list[1]["kid"], keys.all()[1].kid());
        for jwk in list {
            assert_eq!(jwk["kty"], "RSA");
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], "RS256");
            assert_eq!(jwk["e"], "AQAB");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{private} published");
            }
        }
        let x5c = list[0]["x5c"][0].as_str().unwrap();
        assert!(cert.contains(&x5c[..60]), "x5c is the certificate's DER");
        assert!(list[0]["x5t"].is_string());
        assert!(list[1].get("x5c").is_none() && list[1].get("x5t").is_none());
        let debug = format!("{keys:?}");
        assert!(debug.contains(keys.all()[0].kid()) && !debug.contains("BEGIN"));
        assert!(jwks_json(&keys).contains(keys.all()[1].kid()));
    }
}
