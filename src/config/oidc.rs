//! `[signature]` and `[oidc]`: how deliveries are signed and how access tokens are obtained.

use std::{path::PathBuf, str::FromStr};

use serde::Deserialize;

use super::{HumanDuration, Invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    pub header: String,
    /// How long a replaced secret keeps signing beside the new one; zero: not at all.
    pub rotation_overlap: HumanDuration,
}

impl SignatureConfig {
    /// The header of the previous secret's signature during a rotation's overlap.
    pub fn previous_header(&self) -> String {
        format!("{}-Previous", self.header)
    }

    /// Checks that the header name, and the `-Previous` one after it, are names HTTP allows.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if reqwest::header::HeaderName::from_str(&self.previous_header()).is_err() {
            return Err(("signature.header", "is not a valid HTTP header name".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Key files for the one account named by `signing_keys_account` (a single-account
    /// deployment); every other account has keys of its own in the database.
    pub signing_keys: Vec<PathBuf>,
    pub signing_keys_account: String,
    pub key_rotation_delay: HumanDuration,
    pub key_retirement_grace: HumanDuration,
    pub assertion_lifetime: HumanDuration,
    pub token_expiry_margin: HumanDuration,
    /// Key rotations per account per hour (and at once) through the API.
    pub rotation_rate_limit: u32,
}

impl OidcConfig {
    /// Checks what the types alone cannot; the error names the key.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.assertion_lifetime.0.is_zero() {
            return Err(("oidc.assertion_lifetime", "must be more than 0".into()));
        }
        if !self.signing_keys.is_empty() && self.signing_keys_account.is_empty() {
            return Err((
                "oidc.signing_keys_account",
                "must name the one account that oidc.signing_keys serve; every other account \
                 signs with keys of its own"
                    .into(),
            ));
        }
        for path in &self.signing_keys {
            if !path.is_file() {
                return Err((
                    "oidc.signing_keys",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        Ok(())
    }
}
