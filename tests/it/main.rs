//! The integration tests: one binary, so the crate and its dependencies link once.
//!
//! - [`helpers`]: `spawn_app` (the real router on port 0 with its own database) and the
//!   `both_backends!` macro that runs a test on SQLite and on PostgreSQL.
//! - [`api`]: the Webhooks API over real HTTP.
//! - [`store`]: secrets at rest and the start-up key check.
//! - [`cli`]: the built binary.

mod helpers;

mod api;
mod cli;
mod store;
