//! webhook-worker: delivers platform events from RabbitMQ to the customer webhooks that
//! subscribed to them, filtered, signed, OAuth-authenticated, retried, and never lost.
//!
//! # Layout
//!
//! - [`config`]: the layered, validated configuration.
//! - [`secret`]: the redacting wrapper every secret travels in.
//! - [`webhook`]: the webhook model and the seed's validation rules.
//! - [`filter`]: `enabled_events` matching and the `include` projection.
//! - [`event`]: parsing the event message (the poison check) and building delivery bodies.
//! - [`signing`]: the HMAC-SHA256 body signature.
//! - [`safety`]: which network addresses may be connected to.
//! - [`oidc`]: OAuth 2.0 access tokens for webhooks (token client, cache), signing keys, JWKS.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod filter;
pub mod health;
pub mod oidc;
pub mod registry;
pub mod safety;
pub mod secret;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod webhook;
