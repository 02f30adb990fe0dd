//! Waiting on what a test can observe, never on the clock: [`eventually`] polls a check until
//! it holds or a deadline passes, and [`until_quiet`] waits until nothing is left to happen, the
//! only honest ground for asserting that nothing more arrived.

use std::{fmt::Debug, fmt::Display, future::Future, time::Duration};

use tokio::time::Instant;

use super::broker::{rabbitmqctl, Broker};

/// How often a check is polled: often enough that a wait ends close to the moment its condition
/// came true, rarely enough not to load the machine the worker under test shares.
const POLL: Duration = Duration::from_millis(20);

/// What a check of [`eventually`] can answer: `true`, `Some(value)` or `Ok(value)` when it holds;
/// `false`, `None` or `Err(observation)` when not yet (an `Err`'s observation is shown when the
/// deadline passes, e.g. "3 of 5 delivered").
pub trait Check {
    type Output;

    fn holds(self) -> Result<Self::Output, Option<String>>;
}

impl Check for bool {
    type Output = ();

    fn holds(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Check for Option<T> {
    type Output = T;

    fn holds(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Output = T;

    fn holds(self) -> Result<T, Option<String>> {
        self.map_err(|observed| Some(observed.to_string()))
    }
}

/// Polls `check` until it holds and returns what it gave; once `limit` has passed, panics with
/// `what` (what was awaited) and the last observation.
#[track_caller]
pub fn eventually<'a, C, F, Fut>(
    limit: Duration,
    what: impl Display + 'a,
    mut check: F,
) -> impl Future<Output = C::Output> + 'a
where
    C: Check,
    F: FnMut() -> Fut + 'a,
    Fut: Future<Output = C> + 'a,
{
    let caller = std::panic::Location::caller();
    async move {
        let deadline = Instant::now() + limit;
        loop {
            let observed = match check().await.holds() {
                Ok(value) => return value,
                Err(observed) => observed,
            };
            if Instant::now() >= deadline {
                let observed = observed.map(|o| format!(": {o}")).unwrap_or_default();
                panic!("{caller}: waited {limit:?} for {what}{observed}");
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// How long the counts must stay the same for the system to count as quiet: longer than the
/// shortest retry delay the tests configure (200 ms), so a retry on its way is seen to land.
pub const QUIET_WINDOW: Duration = Duration::from_millis(500);

/// Waits until the system is quiet: every queue of `broker`'s topology but the dead-letter queue
/// empty (no message ready, none unacknowledged: nothing in flight, nothing waiting to be
/// retried) and `counts` (e.g. requests received and messages settled) unchanged over
/// [`QUIET_WINDOW`] of observation. Panics after `limit`. Call it before asserting that nothing
/// more arrived: a sleep can end before a late duplicate lands, this cannot.
pub async fn until_quiet<T, F, Fut>(broker: &Broker, limit: Duration, mut counts: F) -> T
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    let mut stable_since = Instant::now();
    let mut last = counts().await;
    loop {
        let now = counts().await;
        let ready = broker.ready_in_work_queues().await;
        if now != last || ready > 0 {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= QUIET_WINDOW {
            // The broker's own count of unacknowledged messages is slow to ask for (a CLI
            // call), so it is asked once the cheap signs say quiet.
            let unacked = unacknowledged(broker).await;
            if unacked == 0 && counts().await == last {
                return last;
            }
            stable_since = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the system did not become quiet in {limit:?}: counts {last:?}, {ready} messages ready"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Messages delivered to a consumer and not yet acknowledged, over the work queues of
/// `broker`'s topology, as `rabbitmqctl` reports them.
async fn unacknowledged(broker: &Broker) -> u64 {
    let queues = broker.work_queues();
    let output = tokio::task::spawn_blocking(|| {
        rabbitmqctl()
            .args([
                "list_queues",
                "-q",
                "--no-table-headers",
                "name",
                "messages_unacknowledged",
            ])
            .output()
    })
    .await
    .expect("the rabbitmqctl task")
    .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl list_queues failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(name, _)| queues.iter().any(|queue| queue == name))
        .map(|(_, unacked)| unacked.trim().parse::<u64>().unwrap_or(0))
        .sum()
}

/// Waits until `count` stays the same over [`QUIET_WINDOW`] of observation and returns it; for a
/// system that cannot become quiet because the test holds requests open on purpose. Panics
/// after `limit`.
pub async fn until_stable<T, F, Fut>(limit: Duration, mut count: F) -> T
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    let mut stable_since = Instant::now();
    let mut last = count().await;
    while stable_since.elapsed() < QUIET_WINDOW {
        let now = count().await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the count did not settle in {limit:?}: {last:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    last
}
