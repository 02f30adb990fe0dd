//! The scenarios that stop, restart or alarm a service the other tests share: RabbitMQ restarted
//! under a running worker ([`broker_restart`]), a memory alarm ([`alarm`]), PostgreSQL restarted
//! under a replica running on it ([`postgres_restart`]). They are their own test binary, run
//! alone after every other test (see scripts/test.sh), one at a time, and each restores the
//! service in a guard's `Drop`, even when it fails. The first and the last belong to the fault
//! suite (`tests/it/faults/`): 10,000 events in flight, their duplicates printed.

// Shared with the main integration tests; this binary uses only part of them.
#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;
#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../it/helpers.rs"]
mod helpers;
#[path = "../it/health"]
mod health {
    #[allow(dead_code)]
    pub mod receiver;
}
#[allow(dead_code)]
#[path = "../it/process.rs"]
mod process;
#[allow(dead_code)]
#[path = "../it/receiver.rs"]
mod receiver;
#[allow(dead_code)]
#[path = "../it/faults/scenario.rs"]
mod scenario;

mod alarm;
mod broker_restart;
mod postgres_restart;
