//! Re-encryption at connect: secrets stored in an earlier format, or readable only with one of
//! `database.decryption_keys`, are encrypted again with `database.encryption_key`, so that a
//! rotated-out key can leave the configuration.

use sqlx::Row;

use super::{
    secrets::{origin_of, HOLDS_LEGACY_SECRETS, HOLDS_SECRETS, SECRET_COLUMNS},
    Store, StoreError,
};

impl Store {
    /// Encrypts again, with `database.encryption_key`, the secrets that are stale: stored by
    /// earlier versions (bound to the row only, now bound to their account and token endpoint
    /// too), or opened by one of `database.decryption_keys` (a rotation of the key). After
    /// this, the old key can leave the configuration.
    ///
    /// Which rows can be stale is told from the stored form, without decrypting: without
    /// `database.decryption_keys` only earlier versions' `v1:` values can be, so only rows
    /// holding one are read (at start-up the registry's load is then the only decryption of
    /// every secret). With them, every row holding a secret is opened, as a rotation needs.
    pub(super) async fn reencrypt_stale_secrets(&self) -> Result<(), StoreError> {
        let Some(cipher) = &self.cipher else {
            return Ok(());
        };
        let candidates = if cipher.reads_with_other_keys() {
            HOLDS_SECRETS
        } else {
            HOLDS_LEGACY_SECRETS
        };
        let rows = sqlx::query(&format!(
            "SELECT {SECRET_COLUMNS} FROM webhooks WHERE {candidates}"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut webhooks = 0;
        for row in &rows {
            let opened = self.read_secret_columns(row)?;
            if !opened.stale {
                continue;
            }
            let id: String = row.try_get("id")?;
            let account: String = row.try_get("account_id")?;
            let endpoint: Option<String> = row.try_get("oidc_token_endpoint")?;
            let origin = origin_of(endpoint.as_deref().unwrap_or_default());
            // Only if unchanged since read: a replica's API write in between wins.
            sqlx::query(
                "UPDATE webhooks SET secret_enc = $3, oidc_client_secret_enc = $4, \
                 previous_secret_enc = $7 \
                 WHERE id = $1 AND account_id = $2 AND secret_enc IS NOT DISTINCT FROM $5 \
                 AND oidc_client_secret_enc IS NOT DISTINCT FROM $6 \
                 AND previous_secret_enc IS NOT DISTINCT FROM $8",
            )
            .bind(id.clone())
            .bind(account.clone())
            .bind(self.encrypt(opened.secret.as_ref(), &account, &id, "secret_enc", "")?)
            .bind(self.encrypt(
                opened.client_secret.as_ref(),
                &account,
                &id,
                "oidc_client_secret_enc",
                &origin,
            )?)
            .bind(row.try_get::<Option<String>, _>("secret_enc")?)
            .bind(row.try_get::<Option<String>, _>("oidc_client_secret_enc")?)
            .bind(self.encrypt(
                opened.previous_secret.as_ref(),
                &account,
                &id,
                "previous_secret_enc",
                "",
            )?)
            .bind(row.try_get::<Option<String>, _>("previous_secret_enc")?)
            .execute(&self.pool)
            .await?;
            webhooks += 1;
        }
        let signing_keys = self.reencrypt_stale_signing_keys().await?;
        if webhooks + signing_keys > 0 {
            tracing::info!(
                webhooks,
                signing_keys,
                "re-encrypted stored secrets with database.encryption_key"
            );
        }
        Ok(())
    }
}
