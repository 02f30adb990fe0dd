//! Other replicas' changes at once, on PostgreSQL: each replica announces the id of a webhook it
//! changed (`NOTIFY`), and every replica listening re-reads that one row. The periodic full
//! reload stays as the safety net (a missed notification, a listener reconnecting), so
//! `registry.refresh` can be raised to cut the database load of full reloads.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uuid::Uuid;

use super::Registry;
use crate::store::CHANGES_CHANNEL;

/// Wait before connecting again after the listener's connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl Registry {
    /// Tells the other replicas that `id` changed (PostgreSQL only), without waiting: a lost
    /// announcement is caught by the next full reload.
    pub(super) fn announce(&self, id: Uuid) {
        if self.store.postgres_url().is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Err(error) = store.announce_change(id).await {
                debug!(%error, "could not announce a webhook change");
            }
        });
    }

    /// Applies other replicas' announced changes until cancelled. Returns at once when the
    /// database is not PostgreSQL.
    pub async fn listen_until_cancelled(self: Arc<Self>, cancel: CancellationToken) {
        let Some(url) = self.store.postgres_url().cloned() else {
            return;
        };
        loop {
            let listened = tokio::select! {
                _ = cancel.cancelled() => return,
                result = self.listen(url.expose()) => result,
            };
            if let Err(error) = listened {
                warn!(%error, "listening for webhook changes failed; listening again");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(RECONNECT_AFTER) => {}
            }
        }
    }

    /// One listening connection. A full reload once it listens covers what was missed before.
    async fn listen(&self, url: &str) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        if let Err(error) = self.reload().await {
            warn!(%error, "registry reload failed; keeping the last snapshot");
        }
        loop {
            let notification = listener.recv().await?;
            let Ok(id) = notification.payload().parse::<Uuid>() else {
                continue;
            };
            match self.store.get_by_id(id).await {
                Ok(Some(webhook)) => self.apply(id, Some(Arc::new(webhook))),
                Ok(None) => self.apply(id, None),
                // The periodic reload brings it later.
                Err(error) => warn!(%error, webhook_id = %id, "cannot read a changed webhook"),
            }
        }
    }
}
