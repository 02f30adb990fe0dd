//! The developer and operator commands, apart from the daemon: they use the daemon's parts
//! (configuration, queue, signing) but nothing in the daemon uses them.
//!
//! - [`listen`]: the development receiver that checks signatures.
//! - [`publish`]: publishes an event as a producer would.
//! - [`healthcheck`]: the container probe.
//! - [`dead_letters`]: listing and replaying the dead-letter queue; [`progress`]: how the replay
//!   command shows its progress (a bar on a terminal, plain lines otherwise).

pub mod dead_letters;
pub mod healthcheck;
pub mod listen;
pub mod progress;
pub mod publish;
