//! The scenarios that stop, restart or alarm a service the other tests share: RabbitMQ restarted
//! under a running worker ([`broker_restart`]), a memory alarm ([`alarm`]), PostgreSQL restarted
//! under a replica running on it ([`postgres_restart`]). They are their own test binary, run
//! alone after every other test (see scripts/test.sh), one at a time, and each restores the
//! service in a guard's `Drop`, even when it fails. The first and the last belong to the fault
//! suite (`tests/it/faults/`): 10,000 events in flight, their duplicates printed. Issue 17's:
//! a 30 s memory alarm while retries are published ([`outcome_alarm`]), and the broker's
//! `max_message_size` ([`message_size`]).
//!
//! `TEST_AMQP_URL` and `TEST_RABBITMQ_NODE` point them at another RabbitMQ node (a private one
//! for development: the machine's broker is shared); by default, the machine's.

#[path = "../support/mod.rs"]
mod support;

mod alarm;
mod broker_restart;
mod message_size;
mod outcome_alarm;
mod postgres_restart;
