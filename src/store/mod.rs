//! The webhook registry's storage: SQLite (embedded default, one replica) or PostgreSQL (several
//! replicas), through one portable SQL dialect on sqlx's `Any` driver. Secrets are encrypted here
//! on the way in and decrypted on the way out; nothing above this module sees ciphertext, and
//! nothing below it sees plain text.
//!
//! This file owns the pool: connecting, migrations, the store's errors and change notices. The
//! tables each have their own file: `webhooks` (webhook rows), `secrets` and `reencrypt` (the
//! secrets in them), `keys` and `public_keys` (accounts' signing keys), `attempts`,
//! `dead_letters`, `redrive_jobs` and `failing`.

pub mod attempts;
mod changes;
mod cipher;
mod dead_letter_upkeep;
pub mod dead_letters;
mod failing;
pub mod keys;
mod page;
pub mod public_keys;
pub mod redrive_jobs;
mod reencrypt;
mod registry_rows;
mod secrets;
mod unreadable;
mod webhooks;

use sqlx::AnyPool;
use uuid::Uuid;

pub use changes::{Changes, CHANGES_PER_READ};
pub use cipher::{Cipher, DecryptError};
pub use registry_rows::{Fingerprint, Loaded, LoadedRow};
pub use secrets::origin_of;
pub use unreadable::UnreadableWebhook;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    #[error("the database holds encrypted secrets, but database.encryption_key is not set")]
    MissingKey,
    #[error("cannot store a secret: database.encryption_key is not set")]
    NoKeyForSecret,
    #[error("a stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the database (database.url)")]
    Open(#[source] Box<StoreError>),
}

/// A stored webhook row that could not be decoded. The error names the column, never a value.
#[derive(Debug, thiserror::Error)]
#[error("webhook {id}: {error}")]
pub struct BadRow {
    pub id: String,
    pub error: StoreError,
    /// What can still be read of it to match events, when that much can (boxed: rare, and
    /// it keeps the `Result` of every decodable row small).
    pub routing: Option<Box<UnreadableWebhook>>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    cipher: Option<Cipher>,
    /// PostgreSQL only: where a listener connects for change notifications.
    postgres_url: Option<Secret>,
}

/// The PostgreSQL notification channel on which a replica announces a changed webhook's id.
pub const CHANGES_CHANNEL: &str = "webhook_worker_changes";

impl Store {
    /// [`Store::connect`] with `database.url`, `database.max_connections` and
    /// `database.encryption_key`.
    pub async fn from_config(config: &crate::config::Config) -> Result<Self, StoreError> {
        let key = config.encryption_key();
        let others = config.decryption_keys();
        Store::connect_with(
            config.database.url.expose(),
            config.database.max_connections,
            key.map(|key| Cipher::with_decryption_keys(key, others)),
        )
        .await
        .map_err(|error| StoreError::Open(Box::new(error)))
    }

    /// Connects, runs migrations, and checks that the key can read the stored secrets.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        key: Option<[u8; 32]>,
    ) -> Result<Self, StoreError> {
        Self::connect_with(url, max_connections, key.map(Cipher::new)).await
    }

    /// [`Store::connect`] with a cipher that may also read with other keys; what they open is
    /// encrypted again with the cipher's own key before this returns.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        cipher: Option<Cipher>,
    ) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url = prepare_sqlite(url)?;
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await?;
        if url.starts_with("sqlite:") {
            // WAL lets the API write while the registry reloads.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await?;
        }
        sqlx::migrate!("./migrations").run(&pool).await?;
        let postgres_url = url
            .starts_with("postgres")
            .then(|| Secret::new(url.as_str()));
        let store = Store {
            pool,
            cipher,
            postgres_url,
        };
        store.check_key().await?;
        store.reencrypt_stale_secrets().await?;
        Ok(store)
    }

    /// Whether secrets can be stored (an encryption key is configured).
    pub fn can_store_secrets(&self) -> bool {
        self.cipher.is_some()
    }

    /// The database URL to LISTEN on, when the database is PostgreSQL.
    pub fn postgres_url(&self) -> Option<&Secret> {
        self.postgres_url.as_ref()
    }

    /// PostgreSQL: tells every listening replica that webhook `id` changed. Elsewhere, nothing.
    pub async fn announce_change(&self, id: Uuid) -> Result<(), StoreError> {
        if self.postgres_url.is_none() {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the database answers; for `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// SQLite: create the file (and its folder) when missing.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_string());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if !path.is_empty() && path != ":memory:" {
        if let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Corrupt(format!(
                    "cannot create the folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
    }
    Ok(if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    })
}
