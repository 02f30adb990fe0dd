//! Each endpoint treated by its health: bounded concurrency at two levels (all requests in
//! flight, `delivery.max_in_flight`, and each webhook's adaptive limit), waiting bounded by the
//! endpoint's progress rather than by a clock, and a circuit breaker per webhook. The rules live
//! in [`endpoint`]; this module keeps one state per webhook, lets deliveries wait their turn,
//! and turns every change of state into a log line and a metric. Metrics never carry a webhook
//! id: circuits open is one gauge, limits are counted in power-of-two buckets.

pub mod endpoint;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tracing::{info, warn};
use uuid::Uuid;

pub use endpoint::ParkReason;
use endpoint::{Admission as Decision, Change, EndpointState, Settings};

use crate::{config::DeliveryConfig, delivery::outcome::Signal, telemetry::Metrics};

/// What a delivery may do now.
pub enum Admission {
    Send(Permit),
    Park(ParkReason),
}

struct Endpoint {
    id: Uuid,
    state: Mutex<EndpointState>,
    /// Wakes deliveries waiting for a slot of this endpoint.
    slots: Notify,
}

impl Endpoint {
    fn state(&self) -> MutexGuard<'_, EndpointState> {
        // The state is consistent after every method returns: a panic elsewhere cannot leave
        // it half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes as many waiting deliveries as there are free slots.
    fn wake(&self, state: &EndpointState) {
        for _ in 0..state
            .free()
            .min(state.waiting)
            .max(u32::from(state.waiting > 0))
        {
            self.slots.notify_one();
        }
    }
}

/// Cheap to clone: one shared state.
#[derive(Clone)]
pub struct Health(Arc<Inner>);

impl std::ops::Deref for Health {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub struct Inner {
    /// Idle states are dropped after much longer than any request or park lasts.
    endpoints: moka::sync::Cache<Uuid, Arc<Endpoint>>,
    global: Arc<Semaphore>,
    settings: Settings,
    metrics: Metrics,
}

impl Health {
    pub fn new(config: &DeliveryConfig, metrics: Metrics) -> Self {
        let settings = Settings {
            initial: config.concurrency_initial,
            min: config.concurrency_min,
            max: config.concurrency_max,
            circuit_failures: config.circuit_failures,
            timeout: config.timeout.0,
            cooldown: config.park_delay.0,
        };
        let evicted = metrics.clone();
        Self(Arc::new(Inner {
            endpoints: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(3600))
                .eviction_listener(move |_, endpoint: Arc<Endpoint>, _| {
                    let state = endpoint.state();
                    evicted.endpoint_limit(Some(state.limit()), None);
                    if state.is_open() {
                        evicted.circuits_open.dec();
                    }
                })
                .build(),
            global: Arc::new(Semaphore::new(config.max_in_flight)),
            settings,
            metrics,
        }))
    }

    fn endpoint(&self, webhook: Uuid) -> Arc<Endpoint> {
        self.endpoints.get_with(webhook, || {
            let state = EndpointState::new(self.settings, Instant::now().into_std());
            self.metrics.endpoint_limit(None, Some(state.limit()));
            Arc::new(Endpoint {
                id: webhook,
                state: Mutex::new(state),
                slots: Notify::new(),
            })
        })
    }

    /// A permit to send to `webhook` now, after waiting for a slot while the endpoint makes
    /// progress; or the reason to park the delivery instead.
    pub async fn admit(&self, webhook: Uuid) -> Admission {
        let endpoint = self.endpoint(webhook);
        let mut waiting: Option<Waiting> = None;
        let probe = loop {
            let wake = endpoint.slots.notified();
            tokio::pin!(wake);
            // Registered before asking, so a slot freed in between still wakes this one.
            wake.as_mut().enable();
            match self.ask(&endpoint, &mut waiting) {
                Decision::Admit { probe } => break probe,
                Decision::Park(reason) => {
                    if waiting.is_some() {
                        // It may have taken a wake-up meant for a slot: pass it on.
                        endpoint.slots.notify_one();
                    }
                    return Admission::Park(reason);
                }
                Decision::Wait { until } => {
                    tokio::select! {
                        _ = wake => {}
                        _ = tokio::time::sleep_until(until.into()) => {}
                    }
                }
            }
        };
        drop(waiting);
        // The endpoint's slot is taken; the request is not sent until the global limit lets it.
        // Time spent waiting for that is not the endpoint's silence, so its clock moves on by it
        // (a full worker must not make healthy endpoints look stalled).
        let global = match self.global.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let queued = Instant::now();
                // Closed only if the runtime shuts down; then the delivery goes ahead unlimited.
                let permit = self.global.clone().acquire_owned().await.ok();
                let waited = queued.elapsed();
                endpoint
                    .state()
                    .waited_elsewhere(waited, Instant::now().into_std());
                permit
            }
        };
        Admission::Send(Permit {
            endpoint,
            health: self.clone(),
            started: Instant::now().into_std(),
            probe,
            finished: false,
            _global: global,
        })
    }

    /// One look at the endpoint's state; a delivery told to wait is counted among the waiting.
    fn ask(&self, endpoint: &Arc<Endpoint>, waiting: &mut Option<Waiting>) -> Decision {
        let mut changes = Vec::new();
        let decision = {
            let mut state = endpoint.state();
            let before = state.limit();
            let decision = state.admit(Instant::now().into_std(), waiting.is_some(), &mut changes);
            if let (Decision::Wait { .. }, None) = (decision, &waiting) {
                state.waiting += 1;
                *waiting = Some(Waiting(endpoint.clone()));
            }
            self.metrics
                .endpoint_limit(Some(before), Some(state.limit()));
            decision
        };
        self.report(endpoint.id, &changes);
        decision
    }

    fn report(&self, webhook: Uuid, changes: &[Change]) {
        for change in changes {
            match *change {
                Change::Opened { why } => {
                    self.metrics.circuits_open.inc();
                    warn!(webhook_id = %webhook, why, "circuit opened: deliveries to this webhook are parked");
                }
                Change::HalfOpen => {
                    info!(webhook_id = %webhook, "circuit half-open: one probe request goes out")
                }
                Change::Closed => {
                    self.metrics.circuits_open.dec();
                    info!(webhook_id = %webhook, "circuit closed: the endpoint answers again");
                }
                Change::Shrunk { from, to } => {
                    info!(webhook_id = %webhook, from, to, "concurrency limit shrunk")
                }
            }
        }
    }
}

/// Counts a delivery among the endpoint's waiting ones until it stops waiting, even if its
/// task is cancelled.
struct Waiting(Arc<Endpoint>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.waiting = state.waiting.saturating_sub(1);
    }
}

/// One request's slot with its endpoint and the global one; say how it ended with
/// [`Permit::finish`]. Dropped unfinished, it frees the slot and teaches nothing.
pub struct Permit {
    endpoint: Arc<Endpoint>,
    health: Health,
    started: std::time::Instant,
    probe: bool,
    finished: bool,
    _global: Option<OwnedSemaphorePermit>,
}

impl Permit {
    pub fn finish(mut self, signal: Signal) {
        self.finished = true;
        let mut changes = Vec::new();
        {
            let mut state = self.endpoint.state();
            let before = state.limit();
            state.finish(
                Instant::now().into_std(),
                self.started,
                self.probe,
                signal,
                &mut changes,
            );
            self.health
                .metrics
                .endpoint_limit(Some(before), Some(state.limit()));
            self.endpoint.wake(&state);
        }
        self.health.report(self.endpoint.id, &changes);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.endpoint.state();
            state.dropped(self.probe);
            self.endpoint.wake(&state);
        }
    }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
