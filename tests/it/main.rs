//! The integration tests: one binary, against the machine's RabbitMQ and PostgreSQL and real
//! HTTP servers on 127.0.0.1.

mod crash;
mod harness;
mod pipeline;
mod receiver;
