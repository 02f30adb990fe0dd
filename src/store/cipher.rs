//! Encryption of secrets at rest (AES-256-GCM), so that a database dump does not reveal webhook
//! secrets or OAuth client secrets. The webhook id and the column name are the associated data:
//! a ciphertext copied into another row or column does not decrypt.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;

use crate::secret::Secret;

const VERSION: &str = "v1:";

#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a stored secret does not decrypt with database.encryption_key (wrong key, or the row was altered)")]
pub struct DecryptError;

impl Cipher {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            aead: Aes256Gcm::new(&key.into()),
        }
    }

    pub fn encrypt(&self, secret: &Secret, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: secret.expose().as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption with a valid key and a 12-byte nonce does not fail.
        let ciphertext = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ciphertext);
        format!("{VERSION}{}", STANDARD.encode(blob))
    }

    pub fn decrypt(&self, stored: &str, context: &str) -> Result<Secret, DecryptError> {
        let blob = stored
            .strip_prefix(VERSION)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or(DecryptError)?;
        let (nonce, ciphertext) = blob.split_at(12);
        let payload = Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let plain = self
            .aead
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| DecryptError)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_plain_text() {
        let cipher = Cipher::new([7; 32]);
        let stored = cipher.encrypt(&Secret::new("whsec_plain"), "id/secret");
        assert!(!stored.contains("whsec_plain"));
        assert_eq!(
            cipher.decrypt(&stored, "id/secret").unwrap().expose(),
            "whsec_plain"
        );
    }

    #[test]
    fn another_key_or_row_does_not_decrypt() {
        let stored = Cipher::new([7; 32]).encrypt(&Secret::new("s"), "a/secret");
        assert!(Cipher::new([8; 32]).decrypt(&stored, "a/secret").is_err());
        assert!(Cipher::new([7; 32]).decrypt(&stored, "b/secret").is_err());
        assert!(Cipher::new([7; 32]).decrypt("garbage", "a/secret").is_err());
    }
}
