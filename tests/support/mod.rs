//! The test support kit, one for every test binary (`tests/it`, `tests/throughput`,
//! `tests/shared_services`, `tests/cluster`), each of which includes it once as `mod support`:
//!
//! - [`app`]: the Webhooks API in-process (`spawn_app`, `TestApp`) on a [`database`] of its own
//!   (`TestDb`, SQLite or PostgreSQL, and `both_backends!`);
//! - [`worker`]: a whole worker in-process (`InProcessWorker`) on its own queue prefix;
//! - [`worker_process`]: the worker binary as a child process (`WorkerProcessBuilder`,
//!   `WorkerProcess`), configured by environment variables as a container would be;
//! - [`receiver`] and [`paced_receiver`]: real HTTP receivers, one whose answers a test plans
//!   and one with a latency, a capacity and a record of every answer's time;
//! - [`broker`]: the test's own RabbitMQ connection: publishing, queue depths, dead letters,
//!   `rabbitmqctl`; [`burst`] publishes a timed burst;
//! - [`wait`]: `eventually` (poll a check until a deadline, naming what was awaited) and
//!   `until_quiet` (queues empty and counts stable, observed), in place of sleeps, and
//!   `until_stable` for a count that must hold still while requests are held open;
//! - [`fault_scenario`]: what every fault scenario does around its fault.
//!
//! Every binary uses only part of the kit, hence the one `allow` of unused items here, in place
//! of one per shared file in each binary.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod app;
pub mod broker;
pub mod burst;
pub mod database;
pub mod fault_scenario;
pub mod paced_receiver;
pub mod receiver;
pub mod wait;
pub mod worker;
pub mod worker_process;

pub use app::{
    minimal, spawn_app, spawn_app_with, with, Reply, Settings, TestApp, ACCOUNT_A, ACCOUNT_B,
};
pub use broker::{amqp_url, event, rabbitmqctl, unique_prefix, Broker, AMQP_URL, FIXTURE};
pub use burst::{publish_burst, PARKED};
pub(crate) use database::both_backends;
pub use database::{postgres_admin_url, Backend, TestDb};
pub use paced_receiver::{Arrival, Behaviour, PacedReceiver, RetryAfter};
pub use receiver::{Received, TestReceiver};
pub use wait::{eventually, until_quiet, until_stable, QUIET_WINDOW};
pub use worker::{metric, random_key, test_config, validated, InProcessWorker};
pub use worker_process::{
    decode_key, free_port, seed_webhooks, terminate_and_expect_clean_exit, WorkerProcess,
    WorkerProcessBuilder,
};
