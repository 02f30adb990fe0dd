//! The integration tests: one binary, so the crate and its dependencies link once. They run
//! against the machine's RabbitMQ and PostgreSQL and real HTTP servers on 127.0.0.1.
//!
//! - [`support`]: the test support kit shared with the other test binaries: the API and a
//!   worker in-process, the worker binary as a process, HTTP receivers, the broker, the
//!   database, `eventually` and the quiet check (see `tests/support/mod.rs`).
//! - [`api`]: the Webhooks API over real HTTP.
//! - [`store`]: secrets at rest and the start-up key check.
//! - [`cli`]: the built binary.
//! - [`pipeline`] and [`crash`]: delivery end to end, crash and shutdown safety.
//! - [`bad_account`]: an unreadable `account_id` header is poison, delivered to nobody.
//! - [`faults`]: the fault suite, 10,000 events in flight through each fault (those that stop
//!   a shared service are in the `shared_services` binary).
//! - [`addresses`]: IPv6 spellings of non-public IPv4 addresses, at the API and at delivery.
//! - [`deadline`]: one deadline per delivery attempt, token requests included.
//! - [`postgres_tls`]: the store over TLS (`sslmode=require`, `verify-full`).
//! - [`dead_letters`]: listing and replaying the dead-letter queue, and the replay command's
//!   progress lines.
//! - [`delivery_log`]: the attempt log through the API.
//! - [`redrive`]: dead letters by webhook and redrive as a job, behind another tenant's 10,000
//!   letters, after a webhook was disabled for failing, and for an undecodable webhook row.
//! - [`devtools`]: `listen` and `publish`, the development tools, as built binaries.
//! - [`oidc_provider`], [`oidc`], [`oidc_errors`], [`oidc_tenants`]: token acquisition against
//!   a real OAuth server (panva's `oidc-provider`, run by node), and the tenant boundary.
//! - [`sessions`]: a publisher-only failure, a reconnect mid-stream, a panic in handling, an
//!   oversized message.
//! - [`settling`]: bounded redelivery, partial publish failures, re-declared queues.
//! - [`registry`]: undecodable rows, a stale registry, two replicas on PostgreSQL.
//! - [`topology`]: starting against queues declared with older arguments.
//! - [`fan_out`]: one event for 1,000 webhooks beside another account's events.
//! - [`fan_out_batches`]: fan-out in batch jobs: each webhook once, a failing one's retries, a
//!   kill mid-batch, a batch over the delivery limit, headers kept within a frame, and the
//!   per-webhook jobs of older versions.
//! - [`standard_webhooks`]: Standard Webhooks signatures checked by the published npm library,
//!   a secret's rotation with an overlap, a PATCH of the secret under a stream of deliveries.
//! - [`health`]: endpoint health: adaptive concurrency, parking, the circuit breaker, and what
//!   each answer (429, 503 + Retry-After, 410) means; auto-disable.

#[path = "../support/mod.rs"]
mod support;

mod oidc_provider;

mod addresses;
mod api;
mod bad_account;
mod cli;
mod crash;
mod dead_letters;
mod deadline;
mod delivery_limit;
mod delivery_log;
mod delivery_threads;
mod devtools;
mod fan_out;
mod fan_out_batches;
mod faults;
mod health;
mod oidc;
mod oidc_delivery;
mod oidc_errors;
mod oidc_tenants;
mod pipeline;
mod postgres_tls;
mod redrive;
mod registry;
mod registry_changes;
mod sessions;
mod settling;
mod standard_webhooks;
mod store;
mod topology;
