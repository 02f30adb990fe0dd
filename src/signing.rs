//! Delivery signatures, in the two formats a webhook may ask for.
//!
//! - The platform's (the seed's contract, every webhook's): lowercase hex of HMAC-SHA256 over the
//!   exact body bytes, keyed with the secret's bytes as given.
//! - Standard Webhooks' (`signature_format: "standard_webhooks"`): `v1,` and the base64
//!   HMAC-SHA256 of `<id>.<timestamp>.<body>`, keyed with the secret's bytes after its `whsec_`
//!   prefix, base64-decoded; what the `standardwebhooks` libraries verify out of the box. The
//!   signed id and timestamp are what makes a captured delivery useless once it is old.
//!
//! Receivers recompute either over the raw body they received.

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The prefix of a Standard Webhooks secret; the rest is its key, in base64.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// Which signature a webhook's deliveries carry (beside the platform's header, always).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureFormat {
    /// The platform's hex header only.
    #[default]
    Platform,
    /// The platform's header and the three Standard Webhooks headers.
    StandardWebhooks,
}

impl SignatureFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::Platform => "platform",
            SignatureFormat::StandardWebhooks => "standard_webhooks",
        }
    }

    /// The stored form back; `None` for a value this version does not know.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "platform" => Some(SignatureFormat::Platform),
            "standard_webhooks" => Some(SignatureFormat::StandardWebhooks),
            _ => None,
        }
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The platform's signature of `body`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    // Into a buffer at once: `hex::encode` pushes the text a character at a time.
    let mut text = [0u8; 64];
    // Cannot fail: a SHA-256 digest's 32 bytes fill exactly 64 digits, all ASCII.
    let _ = hex::encode_to_slice(mac.finalize().into_bytes(), &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// A secret that is not a Standard Webhooks key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Standard Webhooks secret is \"whsec_\" followed by base64 (of 24 to 64 bytes)")]
pub struct NotAStandardSecret;

/// The HMAC key of a Standard Webhooks secret: its base64 after the optional `whsec_` prefix,
/// decoded (the libraries accept both forms). Between 24 and 64 bytes, as the specification
/// asks.
pub fn standard_key(secret: &str) -> Result<Vec<u8>, NotAStandardSecret> {
    let encoded = secret
        .strip_prefix(STANDARD_SECRET_PREFIX)
        .unwrap_or(secret);
    let key = STANDARD.decode(encoded).map_err(|_| NotAStandardSecret)?;
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err(NotAStandardSecret)
    }
}

/// A Standard Webhooks key, decoded once when its webhook is read (not at every delivery), and
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StandardKey(Vec<u8>);

impl StandardKey {
    /// The key of `secret` ([`standard_key`]).
    pub fn parse(secret: &str) -> Result<Self, NotAStandardSecret> {
        standard_key(secret).map(StandardKey)
    }

    /// Appends this key's `v1,<base64>` signature of a delivery to `out`. `timestamp` is the
    /// attempt's Unix seconds as the `webhook-timestamp` header carries them, so the text is
    /// formatted once per attempt and no buffer but `out` is needed.
    pub fn sign_into(&self, out: &mut String, id: &str, timestamp: &str, body: &[u8]) {
        let mut mac = mac(&self.0);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), out);
    }
}

impl StandardKey {
    /// Whether any of the space-separated `v1,<base64>` signatures of a `webhook-signature`
    /// header is this key's for the delivery (compared in constant time). Other versions are
    /// skipped, as the specification asks.
    pub fn verifies(&self, header: &str, id: &str, timestamp: &str, body: &[u8]) -> bool {
        let mut expected = String::with_capacity(48);
        self.sign_into(&mut expected, id, timestamp, body);
        header
            .split(' ')
            .filter(|signature| signature.starts_with("v1,"))
            .any(|signature| bool::from(signature.as_bytes().ct_eq(expected.as_bytes())))
    }
}

impl std::fmt::Debug for StandardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The `webhook-signature` header of a delivery: each key's signature, space-separated (the
/// current key's first, then the previous one's during a rotation's overlap).
pub fn standard_signatures<'a>(
    keys: impl IntoIterator<Item = &'a StandardKey>,
    id: &str,
    timestamp: &str,
    body: &[u8],
) -> String {
    // "v1," and 44 characters of base64 per signature, and a space between two.
    let mut out = String::with_capacity(96);
    for key in keys {
        if !out.is_empty() {
            out.push(' ');
        }
        key.sign_into(&mut out, id, timestamp, body);
    }
    out
}

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn new_standard_secret() -> String {
    let key: [u8; 32] = rand::random();
    format!("{STANDARD_SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// One `v1,<base64>` signature of a delivery: `key` from [`standard_key`], `id` the event id,
/// `timestamp` the attempt's Unix seconds.
pub fn standard_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::new();
    StandardKey(key.to_vec()).sign_into(&mut out, id, &timestamp.to_string(), body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector() {
        // RFC 4231, test case 2.
        let signature = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            signature,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn matches_the_standard_webhooks_example() {
        // The specification's example, also what the npm `standardwebhooks` 1.3.0 signs.
        let key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = standard_signature(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        // Without the prefix, the same key.
        assert_eq!(
            standard_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            key
        );
    }

    #[test]
    fn two_keys_sign_space_separated_the_current_first() {
        let current = StandardKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let previous = StandardKey::parse(&new_standard_secret()).unwrap();
        let (id, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", br#"{"test": 2432232314}"#);
        let one = standard_signatures([&current], id, "1614265330", body);
        assert_eq!(one, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let two = standard_signatures([&current, &previous], id, "1614265330", body);
        let (first, second) = two.split_once(' ').unwrap();
        assert_eq!(first, one);
        assert_eq!(
            second,
            standard_signatures([&previous], id, "1614265330", body)
        );
        assert_eq!(format!("{current:?}"), "[redacted]");
        for (key, ok) in [(&current, true), (&previous, true)] {
            assert_eq!(key.verifies(&two, id, "1614265330", body), ok);
        }
        assert!(previous.verifies(&format!("v2,x {two}"), id, "1614265330", body));
        assert!(!current.verifies(&two, id, "1614265331", body));
        assert!(!current.verifies(&two, id, "1614265330", b"{}"));
        assert!(!current.verifies("", id, "1614265330", body));
    }

    #[test]
    fn a_secret_that_is_not_base64_or_too_short_is_no_standard_key() {
        for secret in ["whsec_not base64!", "whsec_c2hvcnQ=", "", "whsec_"] {
            assert_eq!(standard_key(secret), Err(NotAStandardSecret), "{secret}");
        }
    }

    #[test]
    fn a_new_standard_secret_is_a_32_byte_key_and_never_the_same() {
        let (one, two) = (new_standard_secret(), new_standard_secret());
        assert!(one.starts_with(STANDARD_SECRET_PREFIX));
        assert_eq!(standard_key(&one).unwrap().len(), 32);
        assert_ne!(one, two);
    }

    #[test]
    fn the_format_reads_back_what_it_writes() {
        for format in [SignatureFormat::Platform, SignatureFormat::StandardWebhooks] {
            assert_eq!(SignatureFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(SignatureFormat::parse("svix"), None);
    }
}
