//! Encryption of secrets at rest (AES-256-GCM), so that a database dump does not reveal webhook
//! secrets, OAuth client secrets or account signing keys.
//!
//! The associated data binds each ciphertext to where it belongs (the caller's `context`): the
//! account, the row and the column, and for an OAuth client secret the token endpoint's origin.
//! A ciphertext copied into another row, another account or beside another token endpoint does
//! not decrypt. Stored values are `v2:` + base64(nonce || ciphertext). The `v1:` values of
//! earlier versions (bound to the row and column only) are read by [`Cipher::decrypt_legacy`],
//! only to re-encrypt them as `v2:` at start.
//!
//! Reading tries `database.encryption_key` first, then each of `database.decryption_keys`
//! (a rotation's other key); [`Cipher::open_noting`] says when another key opened a value, so
//! the store can encrypt it again with the current one.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use rand::RngCore;

use crate::secret::Secret;

const VERSION: &str = "v2:";
/// Earlier versions' format: bound to the webhook id and column only.
const LEGACY_VERSION: &str = "v1:";

#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
    /// Keys that only read (`database.decryption_keys`), tried in order after `aead`.
    others: Vec<Aes256Gcm>,
}

/// A value read, and whether it must be encrypted again (another key or format opened it).
pub struct Opened {
    pub secret: Secret,
    pub stale: bool,
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
        Self::with_decryption_keys(key, &[])
    }

    /// Encrypts with `key`; reads with it, then with each of `others`.
    pub fn with_decryption_keys(key: [u8; 32], others: &[[u8; 32]]) -> Self {
        Self {
            aead: Aes256Gcm::new(&key.into()),
            others: others
                .iter()
                .map(|k| Aes256Gcm::new(&(*k).into()))
                .collect(),
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
        self.open(stored, VERSION, context)
            .map(|opened| opened.secret)
    }

    /// A value in either format (`legacy_context` for `v1:`), noting whether it is stale.
    pub fn open_noting(
        &self,
        stored: &str,
        context: &str,
        legacy_context: &str,
    ) -> Result<Opened, DecryptError> {
        if Self::is_legacy(stored) {
            let opened = self.open(stored, LEGACY_VERSION, legacy_context)?;
            return Ok(Opened {
                stale: true,
                ..opened
            });
        }
        self.open(stored, VERSION, context)
    }

    /// Whether keys that only read are configured (a rotation of the key): only then can a
    /// value in the current format be stale, which no one can tell without opening it.
    pub fn reads_with_other_keys(&self) -> bool {
        !self.others.is_empty()
    }

    /// Whether `stored` is in the earlier versions' format, to be upgraded.
    pub fn is_legacy(stored: &str) -> bool {
        stored.starts_with(LEGACY_VERSION)
    }

    /// Reads a `v1:` value with its earlier context (`<webhook id>/<column>`).
    pub fn decrypt_legacy(&self, stored: &str, context: &str) -> Result<Secret, DecryptError> {
        self.open(stored, LEGACY_VERSION, context)
            .map(|opened| opened.secret)
    }

    fn open(&self, stored: &str, version: &str, context: &str) -> Result<Opened, DecryptError> {
        let blob = stored
            .strip_prefix(version)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or(DecryptError)?;
        let (nonce, ciphertext) = blob.split_at(12);
        let payload = || Payload {
            msg: ciphertext,
            aad: context.as_bytes(),
        };
        let nonce = Nonce::from_slice(nonce);
        let (plain, stale) = match self.aead.decrypt(nonce, payload()) {
            Ok(plain) => (plain, false),
            Err(_) => {
                let plain = self
                    .others
                    .iter()
                    .find_map(|other| other.decrypt(nonce, payload()).ok())
                    .ok_or(DecryptError)?;
                (plain, true)
            }
        };
        let secret = String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| DecryptError)?;
        Ok(Opened { secret, stale })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decryption_key_reads_what_it_encrypted_and_says_it_is_stale() {
        let (old, new) = ([1; 32], [2; 32]);
        let stored = Cipher::new(old).encrypt(&Secret::new("whsec_rotated"), "ctx");
        let rotating = Cipher::with_decryption_keys(new, &[[3; 32], old]);
        let opened = rotating.open_noting(&stored, "ctx", "").unwrap();
        assert_eq!(opened.secret.expose(), "whsec_rotated");
        assert!(opened.stale, "opened by another key");
        let again = rotating.encrypt(&opened.secret, "ctx");
        assert!(!rotating.open_noting(&again, "ctx", "").unwrap().stale);
        assert!(Cipher::new(new).decrypt(&again, "ctx").is_ok());
        assert!(
            Cipher::new(new).decrypt(&stored, "ctx").is_err(),
            "not without it"
        );
        assert!(
            rotating.open_noting(&stored, "other", "").is_err(),
            "context still binds"
        );
    }

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
    fn a_ciphertext_moved_to_another_accounts_row_does_not_decrypt() {
        let cipher = Cipher::new([7; 32]);
        let id = "0b6f5a4e-0000-4000-8000-000000000001";
        let origin = "https://idp.example";
        let stored = cipher.encrypt(
            &Secret::new("client-secret"),
            &super::super::secrets::webhook_context("acct-a", id, "oidc_client_secret_enc", origin),
        );
        let in_b =
            super::super::secrets::webhook_context("acct-b", id, "oidc_client_secret_enc", origin);
        assert!(cipher.decrypt(&stored, &in_b).is_err(), "another account");
        let elsewhere = super::super::secrets::webhook_context(
            "acct-a",
            id,
            "oidc_client_secret_enc",
            "https://attacker.example",
        );
        assert!(
            cipher.decrypt(&stored, &elsewhere).is_err(),
            "another token endpoint"
        );
        let other_row = super::super::secrets::webhook_context(
            "acct-a",
            "0b6f5a4e-0000-4000-8000-000000000002",
            "oidc_client_secret_enc",
            origin,
        );
        assert!(cipher.decrypt(&stored, &other_row).is_err(), "another row");
        let home =
            super::super::secrets::webhook_context("acct-a", id, "oidc_client_secret_enc", origin);
        assert_eq!(
            cipher.decrypt(&stored, &home).unwrap().expose(),
            "client-secret"
        );
    }

    #[test]
    fn legacy_values_are_read_only_as_legacy() {
        let cipher = Cipher::new([7; 32]);
        let stored = cipher.encrypt(&Secret::new("s"), "a/secret");
        let legacy = format!("v1:{}", stored.trim_start_matches("v2:"));
        assert!(Cipher::is_legacy(&legacy));
        assert!(cipher.decrypt(&legacy, "a/secret").is_err());
        assert_eq!(
            cipher.decrypt_legacy(&legacy, "a/secret").unwrap().expose(),
            "s"
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
