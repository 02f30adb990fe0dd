//! The integration tests: one binary, so the crate and its dependencies link once. They run
//! against the machine's RabbitMQ and PostgreSQL and real HTTP servers on 127.0.0.1.
//!
//! - [`helpers`]: `spawn_app` (the real router on port 0 with its own database) and the
//!   `both_backends!` macro that runs a test on SQLite and on PostgreSQL.
//! - [`harness`] and [`receiver`]: a worker in-process with its own queue prefix, and a real
//!   HTTP receiver whose answers a test plans.
//! - [`api`]: the Webhooks API over real HTTP.
//! - [`store`]: secrets at rest and the start-up key check.
//! - [`cli`]: the built binary.
//! - [`pipeline`] and [`crash`]: delivery end to end, crash and shutdown safety.
//! - [`dead_letters`]: listing and replaying the dead-letter queue.
//! - [`health`]: endpoint health: adaptive concurrency, parking, the circuit breaker, and what
//!   each answer (429, 503 + Retry-After, 410) means; auto-disable.
//! - [`oidc_provider`], [`oidc`], [`oidc_errors`]: token acquisition against a real
//!   OAuth server (panva's `oidc-provider`, run by node).

mod harness;
mod helpers;
mod oidc_provider;
mod receiver;

mod api;
mod cli;
mod crash;
mod dead_letters;
mod health;
mod oidc;
mod oidc_delivery;
mod oidc_errors;
mod pipeline;
mod store;
