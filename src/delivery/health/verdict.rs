//! What an endpoint's health says of one delivery (send now, wait, or park, and why) and the
//! changes of state worth a log line: the vocabulary between the state machine in
//! [`super::endpoint`] and those who act on it.

use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it now (`probe`: the one request of a half-open circuit).
    Admit {
        probe: bool,
    },
    /// Wait for a wake-up, or until then, and ask again.
    Wait {
        until: Instant,
    },
    Park(ParkReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkReason {
    /// The circuit is open (or half-open with its probe out).
    CircuitOpen,
    /// Every slot is taken and nothing in flight has been answered for the endpoint's patience.
    Stalled,
    /// The endpoint answers, but its turn would come later than `delivery.max_wait`.
    Busy,
    /// The account has its share of requests in flight, and its turn would come too late.
    AccountBusy,
}

impl ParkReason {
    pub fn code(self) -> &'static str {
        match self {
            ParkReason::CircuitOpen => "circuit_open",
            ParkReason::Stalled => "stalled",
            ParkReason::Busy => "endpoint_busy",
            ParkReason::AccountBusy => "account_busy",
        }
    }

    /// The endpoint or the account answers but is busy: nothing failed, so the park does not
    /// count towards the delivery's attempts (see [`crate::retry::RetrySchedule::park_busy`]).
    pub fn is_busy(self) -> bool {
        matches!(self, ParkReason::Busy | ParkReason::AccountBusy)
    }

    /// What the delivery log says of a park for this reason.
    pub fn detail(self) -> &'static str {
        match self {
            ParkReason::CircuitOpen => "parked: the webhook's circuit is open",
            ParkReason::Stalled => "parked: the endpoint answers nothing in flight",
            ParkReason::Busy => "parked: the endpoint is busy; its turn would come too late",
            ParkReason::AccountBusy => "parked: the account has its share of requests in flight",
        }
    }
}

/// A change of state worth a log line and a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened { why: &'static str },
    HalfOpen,
    Closed,
    Shrunk { from: u32, to: u32 },
}
