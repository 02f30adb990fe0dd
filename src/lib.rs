//! webhook-worker: delivers platform events from RabbitMQ to the customer webhooks that
//! subscribed to them, filtered, signed, OAuth-authenticated, retried, and never lost.
//!
//! # Layout
//!
//! In the order an event travels:
//!
//! - [`queue`]: the broker connections (to which node of a cluster: `nodes`), RabbitMQ
//!   topology, the confirmed publisher, job, fan-out batch and dead-letter headers: where an
//!   event arrives and where retries, fan-out batches and dead letters go.
//! - [`worker`]: the consumers, reconnection and draining, on delivery threads of their own
//!   (`thread`); acks batched per channel with `multiple` (`acks`).
//! - [`event`]: parsing the event message in one pass, without a tree of values (the poison
//!   check), and building delivery bodies from its text.
//! - [`pipeline`]: what happens to one message (an event, a retry job, a fan-out batch), up to
//!   the ack decision.
//! - [`registry`]: the in-memory snapshot of webhooks that deliveries read, kept current by
//!   the change log and NOTIFY; [`webhook`]: the webhook model and the seed's validation rules.
//! - [`filter`]: `enabled_events` matching and the `include` projection.
//! - [`signing`]: the HMAC-SHA256 body signature.
//! - [`oidc`]: OAuth 2.0 access tokens for webhooks (token client, cache), signing keys, JWKS.
//! - [`delivery`]: one HTTP attempt through the shared client; what each answer means
//!   (`outcome`); each endpoint's health: adaptive concurrency, waiting bounded by progress, the
//!   circuit breaker (`health`); disabling webhooks that are gone or failing (`failing`).
//! - [`net`]: which network addresses may be connected to, and the resolver that enforces it
//!   for the delivery client and the token client alike.
//! - [`retry`]: the retry schedule, and how parks back off and count as attempts.
//! - [`delivery_log`]: the record of every attempt, written in batches off the hot path, and
//!   of every dead letter owed to a webhook (retried, never silently dropped).
//! - [`store`]: SQLite/PostgreSQL storage, secrets encrypted at rest, the webhook change log.
//! - [`redrive`]: a webhook's recorded dead letters published again, as a job.
//!
//! Around it:
//!
//! - [`api`]: the Webhooks API (axum) and the operational routes.
//! - [`config`]: the layered, validated configuration; [`secret`]: the redacting wrapper every
//!   secret travels in.
//! - [`health`] and [`telemetry`]: readiness, logs and metrics.
//! - [`app`]: start-up by [`role`] and shutdown on the [`shutdown`] signal; [`cli`]: the command
//!   line.
//! - [`dead_reason`]: why something became a dead letter, one enum for headers, rows and
//!   metric labels.
//! - [`tools`]: the developer and operator commands apart from the daemon (`listen`, `publish`,
//!   `healthcheck`, the dead-letter commands).

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dead_reason;
pub mod delivery;
pub mod delivery_log;
pub mod event;
pub mod filter;
pub mod health;
pub mod net;
pub mod oidc;
pub mod pipeline;
pub mod queue;
pub mod redrive;
pub mod registry;
pub mod retry;
pub mod role;
pub mod secret;
pub mod shutdown;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod tools;
pub mod webhook;
pub mod worker;

#[cfg(test)]
mod fuzz_tests;
