//! Making keys: a new RSA private key as PKCS#8 PEM (`webhook-worker keygen`), and a
//! self-signed X.509 certificate for a key, which Microsoft Entra asks for instead of a JWKS.
//!
//! The certificate is built with `x509-cert`'s builder and signed by the `rsa` crate's PKCS#1 v1.5
//! SHA-256 signer: both RustCrypto, already in the dependency tree, and able to sign with an
//! existing key (`rcgen` would need `ring` or `aws-lc-rs` key pairs instead).

use std::{str::FromStr, time::Duration};

use rsa::{
    pkcs1v15,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding},
    RsaPrivateKey,
};
use sha2::Sha256;
use x509_cert::{
    builder::{Builder, CertificateBuilder, Profile},
    der::{pem::LineEnding as DerLineEnding, EncodePem},
    name::Name,
    serial_number::SerialNumber,
    spki::SubjectPublicKeyInfoOwned,
    time::Validity,
};

use super::keys::{KeyError, MAX_KEY_BITS, MIN_KEY_BITS};

/// How long `keygen --cert` certificates are valid.
pub const CERTIFICATE_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 60 * 60);

/// A new RSA private key of `bits` bits (2048 to 8192), as PKCS#8 PEM.
pub fn generate_key(bits: usize) -> Result<String, KeyError> {
    if !(MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) || bits % 8 != 0 {
        return Err(KeyError::Generate(format!(
            "--bits must be a multiple of 8 from {MIN_KEY_BITS} to {MAX_KEY_BITS}, not {bits}"
        )));
    }
    let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
        .map_err(|e| KeyError::Generate(format!("cannot generate an RSA key: {e}")))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(format!("cannot encode the key: {e}")))?;
    Ok(pem.as_str().to_string())
}

/// A self-signed end-entity certificate (PEM) for the PKCS#8 key `private_key_pem`, with
/// subject `CN=<common_name>`, valid from now for `validity`.
pub fn self_signed_certificate(
    private_key_pem: &str,
    common_name: &str,
    validity: Duration,
) -> Result<String, KeyError> {
    let fail = |what: &str| KeyError::Generate(format!("cannot make the certificate: {what}"));
    let key = RsaPrivateKey::from_pkcs8_pem(private_key_pem)
        .map_err(|_| fail("the key is not a PKCS#8 RSA private key"))?;
    let spki_der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| fail("the public key cannot be encoded"))?;
    let spki = SubjectPublicKeyInfoOwned::try_from(spki_der.as_bytes())
        .map_err(|_| fail("the public key cannot be encoded"))?;
    if common_name.is_empty() || common_name.contains([',', '+', '=', '\\', '"']) {
        return Err(fail("the common name must be plain text"));
    }
    let subject =
        Name::from_str(&format!("CN={common_name}")).map_err(|_| fail("invalid common name"))?;
    // A positive 16-byte random serial (RFC 5280 §4.1.2.2 allows up to 20 octets).
    let mut serial = rand::random::<[u8; 16]>();
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|_| fail("invalid serial number"))?;
    let validity = Validity::from_now(validity).map_err(|_| fail("invalid validity"))?;
    let signer = pkcs1v15::SigningKey::<Sha256>::new(key);
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, subject, spki, &signer)
        .map_err(|e| fail(&e.to_string()))?;
    let certificate = builder
        .build::<pkcs1v15::Signature>()
        .map_err(|e| fail(&e.to_string()))?;
    certificate
        .to_pem(DerLineEnding::LF)
        .map_err(|e| fail(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::oidc::keys::SigningKey;

    #[test]
    fn a_key_smaller_than_2048_bits_is_refused() {
        let err = generate_key(1024).unwrap_err();
        assert!(err.to_string().contains("2048"), "{err}");
    }

    #[test]
    fn a_generated_key_and_its_certificate_load_as_one_signing_key() {
        let key = generate_key(2048).unwrap();
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let cert = self_signed_certificate(&key, "webhook-worker", CERTIFICATE_VALIDITY).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let loaded = SigningKey::from_pem(Path::new("k.pem"), &format!("{key}{cert}")).unwrap();
        let certificate = loaded.certificate().unwrap();
        assert_eq!(certificate.chain_der.len(), 1);
        assert_eq!(certificate.x5t.len(), 27, "base64url of 20 bytes");

        // The certificate of another key is refused.
        let other = generate_key(2048).unwrap();
        let err = SigningKey::from_pem(Path::new("k.pem"), &format!("{other}{cert}")).unwrap_err();
        assert!(
            err.to_string().contains("not for this file's private key"),
            "{err}"
        );
    }
}
