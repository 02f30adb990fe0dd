//! The two connections a session opens, each to the next node of its own ring: consuming and
//! publishing fail over apart (see [`crate::queue::nodes`]).

use lapin::Connection;
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::queue;

/// The two connections of one session, as connected.
pub(super) struct Connections {
    pub consuming: Connection,
    pub publishing: Connection,
}

impl Worker {
    /// Both connections, or `None` when `cancel` fired first.
    pub(super) async fn connect(
        &self,
        cancel: &CancellationToken,
    ) -> lapin::Result<Option<Connections>> {
        let (consuming_name, publishing_name) = (
            self.connection_name("consuming"),
            self.connection_name("publishing"),
        );
        let both = async {
            let consuming =
                queue::connect_next(&self.consuming_nodes, Some(&consuming_name)).await?;
            let publishing =
                queue::connect_next(&self.publishing_nodes, Some(&publishing_name)).await?;
            Ok(Connections {
                consuming,
                publishing,
            })
        };
        tokio::select! {
            _ = cancel.cancelled() => Ok(None),
            connections = both => connections.map(Some),
        }
    }

    /// The name a connection shows at the broker: `webhook-worker <prefix> <role>`, followed
    /// by the delivery thread's number when there are several (`delivery.threads`).
    pub(super) fn connection_name(&self, role: &str) -> String {
        let prefix = &self.config.amqp.prefix;
        if self.config.delivery.threads > 1 {
            format!("webhook-worker {prefix} {role} {}", self.thread)
        } else {
            format!("webhook-worker {prefix} {role}")
        }
    }
}
