//! What one process does (`run --role`): the roles share one binary and one configuration.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Consume events and deliver them, and serve the API.
    All,
    /// Consume events and deliver them (serves /healthz, /readyz, /metrics only).
    Worker,
    /// Serve the Webhooks API only.
    Api,
}
