//! Each endpoint treated by its health, and each account held to its share: bounded
//! concurrency at three levels (each webhook's adaptive limit, each account's share
//! `delivery.max_in_flight_per_account`, and all requests in flight, `delivery.max_in_flight`),
//! waiting bounded by progress and by `delivery.max_wait`, and a circuit breaker per webhook.
//! The rules live in [`endpoint`] and [`account`]; this module keeps one state per webhook and
//! per account, lets deliveries wait their turn, and turns every change of state into a log line
//! and a metric. Metrics never carry a webhook or account id: circuits open is one gauge, limits
//! are counted in power-of-two buckets.
//!
//! A delivery takes its endpoint's slot, then its account's, then the global one. Only then is
//! its request *sent* in the endpoints' and accounts' eyes: time spent waiting for the later
//! levels never counts as an endpoint's silence. A delivery that would wait long at its
//! endpoint or its account is parked (see [`ParkReason`]) rather than held: what the worker has
//! taken from the broker is never held by one slow endpoint or account while others wait.

pub mod account;
pub mod endpoint;
mod permit;
pub mod verdict;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};
use tracing::{info, warn};
use uuid::Uuid;

use account::{AccountState, Turn};
pub use endpoint::ParkReason;
use endpoint::{Admission as Decision, Change, EndpointState, Settings};
pub use permit::Permit;
use permit::{AccountWaiting, Waiting};

use crate::{config::Config, telemetry::Metrics};

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

struct Account {
    state: Mutex<AccountState>,
    /// Wakes deliveries waiting for a slot of this account.
    slots: Notify,
}

impl Account {
    fn state(&self) -> MutexGuard<'_, AccountState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self, state: &AccountState) {
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
    accounts: moka::sync::Cache<String, Arc<Account>>,
    account_limit: u32,
    global: Arc<Semaphore>,
    settings: Settings,
    metrics: Metrics,
}

impl Health {
    pub fn new(config: &Config, metrics: Metrics) -> Self {
        let account_limit = config.account_share();
        let config = &config.delivery;
        let settings = Settings {
            initial: config.concurrency_initial,
            min: config.concurrency_min,
            max: config.concurrency_max,
            circuit_failures: config.circuit_failures,
            timeout: config.timeout.0,
            cooldown: config.park_delay.0,
            max_wait: config.max_wait.0,
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
            accounts: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs(3600))
                .build(),
            account_limit: u32::try_from(account_limit).unwrap_or(u32::MAX),
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

    fn account(&self, account: &str) -> Arc<Account> {
        // Looked up by reference first: the usual hit allocates no key.
        if let Some(found) = self.accounts.get(account) {
            return found;
        }
        self.accounts.get_with(account.to_owned(), || {
            let state = AccountState::new(
                self.account_limit,
                self.settings.max_wait,
                Instant::now().into_std(),
            );
            Arc::new(Account {
                state: Mutex::new(state),
                slots: Notify::new(),
            })
        })
    }

    /// A permit to send to `webhook` of `account` now, after waiting for a slot at the endpoint
    /// and at the account while they make progress and the wait stays short; or the reason to
    /// park the delivery instead.
    pub async fn admit(&self, webhook: Uuid, account: &str) -> Admission {
        let endpoint = self.endpoint(webhook);
        let probe = match self.endpoint_slot(&endpoint).await {
            Ok(probe) => probe,
            Err(reason) => return Admission::Park(reason),
        };
        // From here the permit gives the slots back if the delivery goes no further.
        let mut permit = Permit {
            endpoint,
            account: None,
            health: self.clone(),
            started: Instant::now().into_std(),
            probe,
            sent: false,
            finished: false,
            _global: None,
        };
        let account = self.account(account);
        if !self.account_slot(&account).await {
            return Admission::Park(ParkReason::AccountBusy);
        }
        permit.account = Some(account);
        // Closed only if the runtime shuts down; then the delivery goes ahead unlimited.
        permit._global = match self.global.clone().try_acquire_owned() {
            Ok(global) => Some(global),
            Err(_) => self.global.clone().acquire_owned().await.ok(),
        };
        permit.send();
        Admission::Send(permit)
    }

    /// How long a delivery that was let wait may wait in all before it is parked: the estimate
    /// that let it wait can be wrong (the endpoint slowed down since), and waiting deliveries
    /// are not woken strictly in order, so twice `delivery.max_wait`.
    fn longest_wait(&self) -> Duration {
        self.settings.max_wait * 2
    }

    /// The endpoint's slot (`Ok(probe)`), after waiting while it makes progress, for at most
    /// [`Health::longest_wait`].
    async fn endpoint_slot(&self, endpoint: &Arc<Endpoint>) -> Result<bool, ParkReason> {
        let mut waiting: Option<Waiting> = None;
        let since = Instant::now();
        // Registered before asking, so a slot freed in between still wakes this one; kept across
        // rechecks, so a delivery keeps its place among the waiting until it is woken.
        let wake = endpoint.slots.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        loop {
            let mut decision = self.ask(endpoint, &mut waiting);
            if let Decision::Wait { .. } = decision {
                if since.elapsed() >= self.longest_wait() {
                    decision = Decision::Park(ParkReason::Busy);
                }
            }
            match decision {
                Decision::Admit { probe } => return Ok(probe),
                Decision::Park(reason) => {
                    if waiting.is_some() {
                        // It may have taken a wake-up meant for a slot: pass it on.
                        endpoint.slots.notify_one();
                    }
                    return Err(reason);
                }
                Decision::Wait { until } => {
                    let woken = tokio::select! {
                        _ = wake.as_mut() => true,
                        _ = tokio::time::sleep_until(until.into()) => false,
                    };
                    if woken {
                        wake.set(endpoint.slots.notified());
                        wake.as_mut().enable();
                    }
                }
            }
        }
    }

    /// A slot of the account's share, after waiting while its requests complete, for at most
    /// [`Health::longest_wait`]; `false`: park instead.
    async fn account_slot(&self, account: &Arc<Account>) -> bool {
        let mut waiting: Option<AccountWaiting> = None;
        let since = Instant::now();
        let wake = account.slots.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        loop {
            let turn = {
                let mut state = account.state();
                let turn = state.turn(Instant::now().into_std(), waiting.is_some());
                if let (Turn::Wait { .. }, None) = (turn, &waiting) {
                    state.waiting += 1;
                    waiting = Some(AccountWaiting(account.clone()));
                }
                turn
            };
            let until = match turn {
                Turn::Take => return true,
                Turn::Wait { until } if since.elapsed() < self.longest_wait() => until,
                Turn::Wait { .. } | Turn::Park => {
                    if waiting.take().is_some() {
                        // It may have taken a wake-up meant for a slot: pass it on.
                        account.slots.notify_one();
                    }
                    return false;
                }
            };
            let woken = tokio::select! {
                _ = wake.as_mut() => true,
                _ = tokio::time::sleep_until(until.into()) => false,
            };
            if woken {
                wake.set(account.slots.notified());
                wake.as_mut().enable();
            }
        }
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

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
