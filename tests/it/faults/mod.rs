//! The fault suite: 10,000 events in flight, a fault in the middle of them, and afterwards every
//! event delivered at least once, nothing left in the worker's queues but what the retry schedule
//! still holds, and the worker still running. Each scenario prints one line with its count of
//! duplicates (delivery is at-least-once: receivers dedupe on `X-Webhook-Event-Id`).
//!
//! - [`kill`]: the worker binary killed with SIGKILL mid-stream, then started again;
//! - [`receiver_down`]: the endpoint answering 503 for 30 s, then recovering;
//! - [`token_down`]: the OAuth token endpoint (a real oidc-provider) stopped for 30 s;
//! - [`replicas`]: two replicas on one PostgreSQL and one RabbitMQ sharing the load, one killed
//!   mid-stream.
//!
//! The scenarios that stop a shared service (RabbitMQ, PostgreSQL) are in the `shared_services`
//! test binary, run alone after every other test; what every scenario does around its fault is `support::fault_scenario`, shared with it.

mod kill;
mod receiver_down;
mod replicas;
mod token_down;
