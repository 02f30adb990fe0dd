//! The worker's RSA signing keys for `private_key_jwt`: loading them from PEM files, and what
//! may be shown of them.
//!
//! Each file holds one RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) and,
//! optionally, its X.509 certificate (`CERTIFICATE`, followed by any chain), which Microsoft
//! Entra needs. A key's `kid` is its RFC 7638 thumbprint, so it is stable and needs no
//! bookkeeping. The first key signs; all are published (rotation: add the new key second,
//! publish, then move it first).
//!
//! Invariants: private key material never leaves this module except as the signing key handed
//! to `jsonwebtoken`; errors name the file and the problem, never the contents; `Debug` prints
//! only kids.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::EncodingKey;
use rsa::{
    pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey},
    pkcs8::{DecodePrivateKey, EncodePublicKey},
    traits::PublicKeyParts,
    RsaPrivateKey, RsaPublicKey,
};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

/// RSA key sizes `ring` (which signs the assertions) accepts; Entra requires at least 2048.
pub const MIN_KEY_BITS: usize = 2048;
pub const MAX_KEY_BITS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("signing key file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{0}")]
    Generate(String),
}

/// An X.509 certificate for a signing key, as the JWKS and the assertion header show it.
#[derive(Clone)]
pub struct KeyCertificate {
    /// DER of the key's certificate and then any chain, in file order (JWK `x5c`).
    pub chain_der: Vec<Vec<u8>>,
    /// base64url SHA-1 of the first certificate's DER (JWK and JWS `x5t`).
    pub x5t: String,
}

/// One RSA signing key.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    public: RsaPublicKey,
    encoding: EncodingKey,
    certificate: Option<KeyCertificate>,
}

impl SigningKey {
    /// Parses one PEM document. `origin` names it in errors (a file path).
    pub fn from_pem(origin: &Path, text: &str) -> Result<Self, KeyError> {
        let invalid = |message: &str| KeyError::Invalid {
            path: origin.to_path_buf(),
            message: message.to_string(),
        };
        // The PEM parser's own messages are about framing, but keep them out anyway: the text is
        // a private key.
        let blocks = pem::parse_many(text).map_err(|_| invalid("is not valid PEM"))?;
        let mut private: Option<RsaPrivateKey> = None;
        let mut chain_der = Vec::new();
        for block in &blocks {
            let key = match block.tag() {
                "PRIVATE KEY" => Some(RsaPrivateKey::from_pkcs8_der(block.contents()).map_err(
                    |_| invalid("the PRIVATE KEY block is not a PKCS#8 RSA private key"),
                )?),
                "RSA PRIVATE KEY" => Some(
                    RsaPrivateKey::from_pkcs1_der(block.contents()).map_err(|_| {
                        invalid("the RSA PRIVATE KEY block is not a PKCS#1 RSA private key")
                    })?,
                ),
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(invalid("encrypted private keys are not supported"))
                }
                "CERTIFICATE" => {
                    chain_der.push(block.contents().to_vec());
                    None
                }
                _ => None,
            };
            if let Some(key) = key {
                if private.replace(key).is_some() {
                    return Err(invalid(
                        "holds more than one private key; use one file per key",
                    ));
                }
            }
        }
        let private = private.ok_or_else(|| invalid("holds no RSA private key"))?;
        let certificate = match chain_der.is_empty() {
            true => None,
            false => Some(certificate_for(&private, chain_der).map_err(|m| invalid(&m.0))?),
        };
        Self::new(private, certificate).map_err(|m| invalid(&m.0))
    }

    /// A signing key from a private key and, optionally, its certificate.
    pub fn new(
        private: RsaPrivateKey,
        certificate: Option<KeyCertificate>,
    ) -> Result<Self, KeyProblem> {
        let bits = private.size() * 8;
        if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
            return Err(KeyProblem(format!(
                "the key has {bits} bits; {MIN_KEY_BITS} to {MAX_KEY_BITS} are supported"
            )));
        }
        private
            .validate()
            .map_err(|_| KeyProblem("the RSA private key is inconsistent".into()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|_| KeyProblem("the RSA private key cannot be encoded".into()))?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        // Sign once now, so a key the signer cannot use fails at start, not at the first delivery.
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &serde_json::json!({}),
            &encoding,
        )
        .map_err(|_| KeyProblem("the RSA private key cannot sign RS256".into()))?;
        let public = private.to_public_key();
        Ok(SigningKey {
            kid: thumbprint(&public),
            public,
            encoding,
            certificate,
        })
    }

    /// The RFC 7638 JWK thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    pub fn certificate(&self) -> Option<&KeyCertificate> {
        self.certificate.as_ref()
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("certificate", &self.certificate.is_some())
            .finish_non_exhaustive()
    }
}

/// The configured keys: the first signs, all are published.
#[derive(Clone, Default)]
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl SigningKeys {
    /// Loads every file in order. No files is valid: `private_key_jwt` then fails per delivery
    /// with [`crate::oidc::TokenError::NoSigningKey`].
    pub fn load(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut keys: Vec<SigningKey> = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
                path: path.clone(),
                message: e.kind().to_string(),
            })?;
            let key = SigningKey::from_pem(path, &text)?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(KeyError::Invalid {
                    path: path.clone(),
                    message: format!("holds the same key as another file (kid {})", key.kid),
                });
            }
            keys.push(key);
        }
        Ok(SigningKeys { keys })
    }

    pub fn new(keys: Vec<SigningKey>) -> Self {
        SigningKeys { keys }
    }

    /// The key that signs client assertions.
    pub fn signing(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    pub fn all(&self) -> &[SigningKey] {
        &self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.kid))
            .finish()
    }
}

/// Logs a warning for each key file that its group or others can read: a private key should be
/// readable by its owner only (`chmod 600`). Start-up goes on: the file may sit on a volume that
/// cannot carry modes, and the operator decides.
pub fn warn_if_readable_by_others(paths: &[PathBuf]) {
    for path in paths {
        if let Some(mode) = readable_by_others(path) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "signing key file can be read by group or others; make it readable by its owner only (chmod 600)"
            );
        }
    }
}

/// The file's permission bits when group or others may read it.
#[cfg(unix)]
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
pub fn readable_by_others(_path: &Path) -> Option<u32> {
    None
}

/// RFC 7638: base64url(SHA-256 of `{"e":"..","kty":"RSA","n":".."}`), members in that order,
/// no whitespace.
pub fn thumbprint(public: &RsaPublicKey) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        b64_uint(public.e()),
        b64_uint(public.n())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// base64url of a big-endian unsigned integer without leading zero bytes (RFC 7518 §6.3.1).
pub(crate) fn b64_uint(value: &rsa::BigUint) -> String {
    URL_SAFE_NO_PAD.encode(value.to_bytes_be())
}

/// Checks that the first certificate carries `private`'s public key and computes its `x5t`.
pub fn certificate_for(
    private: &RsaPrivateKey,
    chain_der: Vec<Vec<u8>>,
) -> Result<KeyCertificate, KeyProblem> {
    let first = chain_der
        .first()
        .ok_or_else(|| KeyProblem("no certificate".into()))?;
    let certificate = x509_cert::Certificate::from_der(first).map_err(|_| {
        KeyProblem("the first CERTIFICATE block is not an X.509 certificate".into())
    })?;
    let in_cert = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|_| KeyProblem("the certificate's public key cannot be read".into()))?;
    let of_key = private
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| KeyProblem("the public key cannot be encoded".into()))?;
    if in_cert != of_key.as_bytes() {
        return Err(KeyProblem(
            "the first certificate is not for this file's private key".into(),
        ));
    }
    let x5t = URL_SAFE_NO_PAD.encode(Sha1::digest(first));
    Ok(KeyCertificate { chain_der, x5t })
}

/// What is wrong with a key or its certificate; never holds key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyProblem(String);

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key and its thumbprint.
    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const RFC7638_KID: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    #[test]
    fn the_thumbprint_of_rfc_7638s_example_key_is_its_published_kid() {
        let n = URL_SAFE_NO_PAD.decode(RFC7638_N).unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        let public = RsaPublicKey::new(
            rsa::BigUint::from_bytes_be(&n),
            rsa::BigUint::from_bytes_be(&e),
        )
        .unwrap();
        assert_eq!(thumbprint(&public), RFC7638_KID);
    }

    #[test]
    fn a_file_without_a_private_key_is_refused_by_name() {
        let err = SigningKey::from_pem(Path::new("/etc/keys/a.pem"), "nothing here").unwrap_err();
        assert!(err.to_string().contains("/etc/keys/a.pem"), "{err}");
    }

    #[test]
    fn a_broken_private_key_is_refused_without_printing_it() {
        let body = URL_SAFE_NO_PAD.encode(b"0123456789abcdefSECRETSECRET");
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
        let err = SigningKey::from_pem(Path::new("k.pem"), &pem).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.contains("k.pem"), "{text}");
        assert!(!text.contains(&body) && !text.contains("SECRET"), "{text}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = SigningKeys::load(&[PathBuf::from("/nonexistent/key.pem")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/key.pem"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_group_or_others_is_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "x").unwrap();
        for (mode, flagged) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(readable_by_others(&path).is_some(), flagged, "{mode:o}");
        }
    }

    #[test]
    fn no_files_is_an_empty_key_set() {
        let keys = SigningKeys::load(&[]).unwrap();
        assert!(keys.is_empty() && keys.signing().is_none());
    }
}
