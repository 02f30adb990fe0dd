//! The Webhooks API over real HTTP, each test on SQLite and on PostgreSQL.

mod auth;
mod bodies;
mod connections;
mod crud;
mod key_rotation;
mod keys;
mod metrics_listen;
mod openapi;
mod ops;
mod pagination;
mod rate_limits;
mod secrets;
mod signature_format;
mod slow_readers;
mod validation;
