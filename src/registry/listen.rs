//! Other replicas' changes at once, on PostgreSQL: each replica announces the id of a webhook it
//! changed (`NOTIFY`), and every replica listening reads that one row again and applies it at
//! once (tens of milliseconds), without waiting for the next check of the change log. The change
//! log stays the guarantee (a missed notification, a listener reconnecting): what NOTIFY missed
//! arrives within `registry.refresh`.

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
    /// announcement is caught by their next check of the change log.
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

    /// One listening connection. What was missed before it listened is in the change log.
    async fn listen(&self, url: &str) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANGES_CHANNEL).await?;
        loop {
            let notification = listener.recv().await?;
            let Ok(id) = notification.payload().parse::<Uuid>() else {
                continue;
            };
            // The change is committed before it is announced: a ticket taken now is older than
            // this read and newer than the change.
            let ticket = self.ticket();
            if let Err(error) = self.read_again(ticket, &[id]).await {
                // The change log brings it later.
                warn!(%error, webhook_id = %id, "cannot read a changed webhook");
            }
        }
    }
}
