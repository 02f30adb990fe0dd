//! Webhook rows as the registry loads them: each with a fingerprint of its stored form, so that
//! a row that did not change since the registry decoded it is not decoded (nor its secrets
//! decrypted) again. Rows are decoded one at a time as they stream in: a full load never holds
//! every raw row at once.

use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{any::AnyRow, Row};
use uuid::Uuid;

use super::{webhooks::COLUMNS, BadRow, Store, StoreError, UnreadableWebhook};
use crate::webhook::Webhook;

/// A digest of every stored column of a row (ciphertexts as stored): equal fingerprints, equal
/// rows. Secrets are only in it as ciphertext, and only 16 bytes of a SHA-256 are kept.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fingerprint({})", hex::encode(&self.0[..4]))
    }
}

/// A row read for the registry: the caller's copy when its fingerprint matched, else the row
/// decoded (or why it could not be).
pub enum Loaded<T> {
    Unchanged(T),
    /// Boxed: most rows of a full load are [`Loaded::Unchanged`].
    Read(Box<Result<Webhook, BadRow>>),
}

pub struct LoadedRow<T> {
    /// `None` when even the id is not a UUID.
    pub id: Option<Uuid>,
    pub fingerprint: Fingerprint,
    pub row: Loaded<T>,
}

/// Ids per statement when loading chosen rows.
const IDS_PER_QUERY: usize = 500;

impl Store {
    /// Every webhook row, or only those of `ids`; `unchanged(id, fingerprint)` gives the
    /// caller's copy of a row it already decoded from this very stored form, which is then
    /// neither decoded nor decrypted again.
    pub async fn load_rows<T>(
        &self,
        ids: Option<&[Uuid]>,
        mut unchanged: impl FnMut(Uuid, &Fingerprint) -> Option<T>,
    ) -> Result<Vec<LoadedRow<T>>, StoreError> {
        let mut loaded = Vec::new();
        let mut take = |row: AnyRow| {
            let fingerprint = fingerprint(&row);
            let id = row
                .try_get::<String, _>("id")
                .ok()
                .and_then(|id| id.parse::<Uuid>().ok());
            let row = match id.and_then(|id| unchanged(id, &fingerprint)) {
                Some(copy) => Loaded::Unchanged(copy),
                None => Loaded::Read(Box::new(self.decode(&row).map_err(|error| BadRow {
                    id: row.try_get("id").unwrap_or_default(),
                    error,
                    routing: UnreadableWebhook::read(&row).map(Box::new),
                }))),
            };
            loaded.push(LoadedRow {
                id,
                fingerprint,
                row,
            });
        };
        match ids {
            None => {
                let sql = format!("SELECT {COLUMNS} FROM webhooks");
                let mut rows = sqlx::query(&sql).fetch(&self.pool);
                while let Some(row) = rows.try_next().await? {
                    take(row);
                }
            }
            Some(ids) => {
                for chunk in ids.chunks(IDS_PER_QUERY) {
                    let binds: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
                    let sql = format!(
                        "SELECT {COLUMNS} FROM webhooks WHERE id IN ({})",
                        binds.join(", ")
                    );
                    let mut query = sqlx::query(&sql);
                    for id in chunk {
                        query = query.bind(id.to_string());
                    }
                    for row in query.fetch_all(&self.pool).await? {
                        take(row);
                    }
                }
            }
        }
        Ok(loaded)
    }
}

/// The fingerprint of every column of `row`, NULL told apart from any text.
fn fingerprint(row: &AnyRow) -> Fingerprint {
    let mut hash = Sha256::new();
    for column in COLUMNS.split(", ").map(str::trim) {
        match row.try_get::<Option<String>, _>(column) {
            Ok(Some(text)) => {
                hash.update([1]);
                hash.update((text.len() as u64).to_le_bytes());
                hash.update(text.as_bytes());
            }
            Ok(None) => hash.update([0]),
            // The one integer column (or a value of another type): its number, or a marker.
            Err(_) => match row.try_get::<Option<i64>, _>(column) {
                Ok(Some(n)) => {
                    hash.update([2]);
                    hash.update(n.to_le_bytes());
                }
                Ok(None) => hash.update([0]),
                Err(_) => hash.update([3]),
            },
        }
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Fingerprint(bytes)
}
