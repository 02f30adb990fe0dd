//! webhook-worker: delivers platform events from RabbitMQ to the customer webhooks that
//! subscribed to them, filtered, signed, OAuth-authenticated, retried, and never lost.
//!
//! # Layout
//!
//! - [`cli`] and [`app`]: the command line, start-up by role, and shutdown.
//! - [`config`]: the layered, validated configuration.
//! - [`secret`]: the redacting wrapper every secret travels in.
//! - [`webhook`]: the webhook model and the seed's validation rules.
//! - [`store`]: SQLite/PostgreSQL storage, secrets encrypted at rest.
//! - [`registry`]: the in-memory snapshot of webhooks that deliveries read.
//! - [`event`]: parsing the event message in one pass, without a tree of values (the poison
//!   check), and building delivery bodies from its text.
//! - [`filter`]: `enabled_events` matching and the `include` projection.
//! - [`signing`]: the HMAC-SHA256 body signature.
//! - [`safety`]: which network addresses may be connected to.
//! - [`api`]: the Webhooks API (axum) and the operational routes.
//! - [`delivery`]: one HTTP attempt through the shared, address-checking client; what each
//!   answer means (`outcome`); each endpoint's health: adaptive concurrency, waiting bounded by
//!   progress, the circuit breaker (`health`); disabling webhooks that are gone or failing
//!   (`failing`).
//! - [`delivery_log`]: the record of every attempt, written in batches off the hot path, and
//!   of every dead letter owed to a webhook (retried, never silently dropped).
//! - [`redrive`]: a webhook's recorded dead letters published again, as a job.
//! - [`oidc`]: OAuth 2.0 access tokens for webhooks (token client, cache), signing keys, JWKS.
//! - [`queue`]: RabbitMQ topology, the confirmed publisher, job and dead-letter headers.
//! - [`retry`]: the retry schedule, and how parks back off and count as attempts.
//! - [`pipeline`]: what happens to one message, up to the ack decision.
//! - [`worker`]: the broker connections, consumers, reconnection and draining; acks batched
//!   per channel with `multiple` (`acks`).
//! - [`dead_reason`]: why something became a dead letter, one enum for headers, rows and
//!   metric labels.
//! - [`dead_letters`]: listing and replaying the dead-letter queue; [`progress`]: how the
//!   replay command shows its progress (a bar on a terminal, plain lines otherwise).
//! - [`listen`] and [`publish`]: the development receiver that checks signatures, and the
//!   command that publishes an event as a producer would.
//! - [`health`] and [`telemetry`]: readiness, logs and metrics; [`healthcheck`]: the
//!   container probe.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod dead_letters;
pub mod dead_reason;
pub mod delivery;
pub mod delivery_log;
pub mod event;
pub mod filter;
pub mod health;
pub mod healthcheck;
pub mod listen;
pub mod oidc;
pub mod pipeline;
pub mod progress;
pub mod publish;
pub mod queue;
pub mod redrive;
pub mod registry;
pub mod retry;
pub mod safety;
pub mod secret;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod worker;

#[cfg(test)]
mod fuzz_tests;
