//! Secrets in webhook rows: encrypting a webhook's signing secrets (current and previous) and
//! OAuth client secret on the way in, bound to their account, row, column and (for the client
//! secret) token endpoint, and checking at connect that the configured key reads what is stored.

use sqlx::{any::AnyRow, Row};

use super::{Store, StoreError};
use crate::secret::Secret;

/// A row's secrets, opened: the signing secret, the previous one (during a rotation's overlap),
/// the OAuth client secret, and whether any needs encrypting again (earlier format, or opened by
/// a key that only reads).
pub(super) struct OpenedSecrets {
    pub secret: Option<Secret>,
    pub previous_secret: Option<Secret>,
    pub client_secret: Option<Secret>,
    pub stale: bool,
}

/// The columns [`Store::read_secret_columns`] needs.
pub(super) const SECRET_COLUMNS: &str =
    "id, account_id, oidc_token_endpoint, secret_enc, oidc_client_secret_enc, previous_secret_enc";

/// Rows holding a secret in the earlier versions' format (`v1:`, see `cipher`).
pub(super) const HOLDS_LEGACY_SECRETS: &str = "secret_enc LIKE 'v1:%' \
    OR oidc_client_secret_enc LIKE 'v1:%' OR previous_secret_enc LIKE 'v1:%'";

/// Rows holding any secret.
pub(super) const HOLDS_SECRETS: &str = "secret_enc IS NOT NULL \
    OR oidc_client_secret_enc IS NOT NULL OR previous_secret_enc IS NOT NULL";

impl Store {
    pub(super) async fn check_key(&self) -> Result<(), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {SECRET_COLUMNS} FROM webhooks WHERE {HOLDS_SECRETS} LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return self.check_key_of_signing_keys().await;
        };
        if self.cipher.is_none() {
            return Err(StoreError::MissingKey);
        }
        self.read_secret_columns(&row)?;
        Ok(())
    }

    /// The secret columns of a row ([`SECRET_COLUMNS`]), in either format.
    pub(super) fn read_secret_columns(&self, row: &AnyRow) -> Result<OpenedSecrets, StoreError> {
        let cipher = self.cipher.as_ref().ok_or(StoreError::MissingKey)?;
        let id: String = row.try_get("id")?;
        let account: String = row.try_get("account_id")?;
        let endpoint: Option<String> = row.try_get("oidc_token_endpoint")?;
        let mut stale = false;
        let mut read = |column: &str, origin: &str| -> Result<Option<Secret>, StoreError> {
            let Some(stored) = row.try_get::<Option<String>, _>(column)? else {
                return Ok(None);
            };
            let opened = cipher.open_noting(
                &stored,
                &webhook_context(&account, &id, column, origin),
                &format!("{id}/{column}"),
            )?;
            stale |= opened.stale;
            Ok(Some(opened.secret))
        };
        let secret = read("secret_enc", "")?;
        let previous_secret = read("previous_secret_enc", "")?;
        let client_secret = read(
            "oidc_client_secret_enc",
            &origin_of(endpoint.as_deref().unwrap_or_default()),
        )?;
        Ok(OpenedSecrets {
            secret,
            previous_secret,
            client_secret,
            stale,
        })
    }

    /// The stored form of `secret` in `column` of webhook `id`; refused without a key.
    pub(super) fn encrypt(
        &self,
        secret: Option<&Secret>,
        account: &str,
        id: &str,
        column: &str,
        origin: &str,
    ) -> Result<Option<String>, StoreError> {
        match (secret, &self.cipher) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(StoreError::NoKeyForSecret),
            (Some(secret), Some(cipher)) => Ok(Some(
                cipher.encrypt(secret, &webhook_context(account, id, column, origin)),
            )),
        }
    }
}

/// The associated data of a webhook's secret: its account, row and column, and for the OAuth
/// client secret the token endpoint's origin (empty for the signing secret), so a ciphertext
/// moved to another account, row, column or token endpoint does not decrypt.
pub(crate) fn webhook_context(account: &str, id: &str, column: &str, origin: &str) -> String {
    // Lengths first: no choice of account or origin can make two contexts read alike.
    format!(
        "webhooks|{}:{account}|{id}|{column}|{}:{origin}",
        account.len(),
        origin.len()
    )
}

/// `scheme://host[:port]` of a URL; empty for text that is not one.
pub fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}
