//! The rules for how a webhook's deliveries are signed: its `signature_format`, the secret a
//! `standard_webhooks` webhook must have (generated when none is given), and the rotation that
//! keeps a replaced secret signing beside the new one for `signature.rotation_overlap`, so a
//! receiver that has not yet deployed the new secret loses no delivery.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::{
    draft::{Draft, FieldError},
    PreviousSecret, StandardKeys, Webhook,
};
use crate::{
    secret::Secret,
    signing::{new_standard_secret, SignatureFormat, StandardKey},
};

/// When a change of secret happens and how long the replaced one keeps signing.
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub now: DateTime<Utc>,
    /// `signature.rotation_overlap`; zero: the replaced secret stops signing at once.
    pub overlap: Duration,
}

impl Rotation {
    /// The end of the overlap, at the millisecond precision the store keeps (so the registry's
    /// copy equals the stored one).
    fn until(self) -> DateTime<Utc> {
        let until = TimeDelta::from_std(self.overlap)
            .ok()
            .and_then(|overlap| self.now.checked_add_signed(overlap))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        until
            .duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(until)
    }
}

/// The decoded keys a webhook's Standard Webhooks signatures need: none for `platform`. A
/// `standard_webhooks` webhook must have a secret that is a Standard Webhooks key (the error
/// names `secret` and never shows it); a previous secret that is not one (set before the format
/// was chosen) just does not sign those headers.
pub(super) fn standard_keys(
    format: SignatureFormat,
    secret: Option<&Secret>,
    previous: Option<&PreviousSecret>,
) -> Result<StandardKeys, FieldError> {
    if format == SignatureFormat::Platform {
        return Ok(StandardKeys::default());
    }
    let Some(secret) = secret else {
        return Err(FieldError::new(
            "secret",
            "is required when signature_format is \"standard_webhooks\" (omit it to have one \
             generated)",
        ));
    };
    let current = StandardKey::parse(secret.expose()).map_err(|_| {
        FieldError::new(
            "secret",
            "must be a Standard Webhooks secret when signature_format is \"standard_webhooks\": \
             \"whsec_\" followed by the base64 of 24 to 64 bytes (or that base64 alone)",
        )
    })?;
    Ok(StandardKeys {
        current: Some(current),
        previous: previous.and_then(|p| StandardKey::parse(p.secret.expose()).ok()),
    })
}

impl Draft {
    /// The format asked for (`platform` when none is), and the rules of its secret; every
    /// broken rule goes to `errors`.
    pub(super) fn check_signing(&self, errors: &mut Vec<FieldError>) -> SignatureFormat {
        if matches!(&self.secret, Some(s) if s.expose().is_empty() || s.expose().len() > 1024) {
            errors.push(FieldError::new(
                "secret",
                "must be 1 to 1024 characters (use null to remove it)",
            ));
            return self.format().unwrap_or_default();
        }
        let Some(format) = self.format() else {
            errors.push(FieldError::new(
                "signature_format",
                "must be \"platform\" or \"standard_webhooks\"",
            ));
            return SignatureFormat::Platform;
        };
        if let Err(error) = standard_keys(format, self.secret.as_ref(), None) {
            errors.push(error);
        }
        format
    }

    /// The format, `None` for a value that is not one.
    fn format(&self) -> Option<SignatureFormat> {
        match self.signature_format.as_deref() {
            None => Some(SignatureFormat::Platform),
            Some(text) => SignatureFormat::parse(text),
        }
    }

    /// Gives a `standard_webhooks` draft left without a secret a new one, and returns it for the
    /// one answer that shows it. Not when this request cleared the secret (`cleared`): that is
    /// refused rather than silently replaced.
    pub fn generate_missing_secret(&mut self, cleared: bool) -> Option<Secret> {
        let wanted = self.format() == Some(SignatureFormat::StandardWebhooks);
        if !wanted || cleared || self.secret.is_some() {
            return None;
        }
        let secret = Secret::new(new_standard_secret());
        self.secret = Some(secret.clone());
        Some(secret)
    }

    /// After an update of `existing`: a secret replaced by another keeps signing as the
    /// previous one until the overlap ends (a second change during the overlap makes the one
    /// it replaces the previous one); removing the secret ends any overlap; an unchanged secret
    /// keeps the overlap that runs, dropping one that ended.
    pub fn rotate_from(&mut self, existing: &Webhook, rotation: Rotation) {
        self.previous_secret = match (&existing.secret, &self.secret) {
            (_, None) | (None, Some(_)) => None,
            (Some(old), Some(new)) if old != new => {
                (!rotation.overlap.is_zero()).then(|| PreviousSecret {
                    secret: old.clone(),
                    until: rotation.until(),
                })
            }
            (Some(_), Some(_)) => self
                .previous_secret
                .take()
                .filter(|previous| rotation.now < previous.until),
        };
    }
}
