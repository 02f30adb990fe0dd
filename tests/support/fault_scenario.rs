//! What every fault scenario does around its fault: publish the events, wait until each was
//! delivered, count the duplicates, and check that the worker's queues are settled. Shared with
//! the `shared_services` test binary.

use std::{collections::HashSet, time::Duration};

use serde_json::{json, Value};

use super::{
    broker::Broker,
    paced_receiver::{Behaviour, PacedReceiver},
    wait::eventually,
};

/// Events in flight in every scenario.
pub const EVENTS: usize = 10_000;
/// How long a scenario may take to deliver everything once its fault is over.
const RECOVERY: Duration = Duration::from_secs(180);

/// A signed webhook for every event, to `receiver`.
pub fn hook(receiver: &PacedReceiver) -> Value {
    json!({"url": receiver.url(), "enabled_events": ["*"], "secret": "s"})
}

/// The prefetch the paced scenarios give the worker, per consumed queue.
pub const PREFETCH: usize = 64;

/// The worker's settings for a paced scenario, before `extra`.
pub fn paced_config(extra: &str) -> String {
    format!("[amqp]\nprefetch = {PREFETCH}\n{extra}")
}

/// A receiver that takes 100 ms an answer: with [`PREFETCH`] in flight the stream lasts about
/// 16 s (640 events a second), so a fault that comes after a fifth of the events lands in the
/// middle of it however fast the worker is, and the endpoint stays healthy throughout, so what
/// the scenario sees is its fault alone.
pub async fn slow_receiver() -> PacedReceiver {
    PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(100),
        ..Behaviour::default()
    })
    .await
}

/// The scenario's events, as one receiver gets them.
pub struct Stream<'a> {
    pub published: HashSet<String>,
    receiver: &'a PacedReceiver,
}

impl<'a> Stream<'a> {
    /// Publishes [`EVENTS`] fresh `business.updated` events for account `acct`, confirmed.
    pub async fn publish(broker: &Broker, receiver: &'a PacedReceiver) -> Self {
        let types = vec!["business.updated"; EVENTS];
        let ids = broker.publish_burst("acct", &types).await;
        Self {
            published: ids.into_iter().collect(),
            receiver,
        }
    }

    /// The same events, as another receiver gets them.
    pub fn at<'b>(&self, receiver: &'b PacedReceiver) -> Stream<'b> {
        Stream {
            published: self.published.clone(),
            receiver,
        }
    }

    pub fn tally(&self) -> Tally {
        let answers = self.receiver.answers();
        Tally::of(
            answers.iter().map(|(id, s)| (id.as_str(), *s)),
            &self.published,
        )
    }

    /// Waits until a fifth of the events were delivered: the moment for the fault.
    pub async fn until_a_fifth_delivered(&self) {
        self.receiver
            .wait_for_delivered(EVENTS / 5, Duration::from_secs(120))
            .await;
    }

    /// Waits until every event was delivered at least once; panics after a while, saying how
    /// many were.
    pub async fn until_all_delivered(&self) -> Tally {
        eventually(RECOVERY, "every event delivered", || async {
            let now = self.tally();
            if now.all_delivered() {
                Ok(now)
            } else {
                Err(format!("{} of {} were", now.delivered, now.published))
            }
        })
        .await
    }
}

/// What a receiver got of the events a scenario published.
#[derive(Debug)]
pub struct Tally {
    pub published: usize,
    /// Distinct published events answered 2xx.
    pub delivered: usize,
    /// 2xx answers beyond the first for the same event.
    pub duplicates: usize,
}

impl Tally {
    /// From the (event id, status) of every answer the receiver gave.
    pub fn of<'a>(
        answers: impl IntoIterator<Item = (&'a str, u16)>,
        published: &HashSet<String>,
    ) -> Self {
        let mut seen = HashSet::new();
        let mut duplicates = 0;
        for (event_id, status) in answers {
            let counted = (200..300).contains(&status) && published.contains(event_id);
            if counted && !seen.insert(event_id) {
                duplicates += 1;
            }
        }
        Self {
            published: published.len(),
            delivered: seen.len(),
            duplicates,
        }
    }

    pub fn all_delivered(&self) -> bool {
        self.delivered == self.published
    }

    /// Only what the worker held unacked when the fault came may arrive again: at most
    /// `prefetch` messages of each of the two queues it consumes.
    pub fn assert_duplicates_within(&self, prefetch: usize) {
        assert!(
            self.duplicates <= 2 * prefetch,
            "{} duplicates, more than two prefetches of {prefetch}",
            self.duplicates
        );
    }

    /// Prints the scenario's result line (kept in the test output, quoted in docs/reliability.md).
    pub fn report(&self, scenario: &str) {
        eprintln!(
            "fault suite: {scenario}: {} of {} events delivered, {} duplicates",
            self.delivered, self.published, self.duplicates
        );
    }
}

/// Waits until the worker's own queues (`incoming`, `deliveries`) hold no ready message and the
/// dead letters none at all: whatever is left is in the delay queues, which the schedule still
/// holds. Panics after `limit`; returns how many messages the delay queues hold.
pub async fn assert_settled(broker: &Broker, limit: Duration) -> u32 {
    let names = &broker.names;
    let what = "no message ready in incoming and deliveries, and no dead letter";
    eventually(limit, what, || async {
        let incoming = broker.queue_counts(&names.incoming).await.0;
        let deliveries = broker.queue_counts(&names.deliveries).await.0;
        let dead = broker.queue_counts(&names.dead).await.0;
        if incoming == 0 && deliveries == 0 && dead == 0 {
            Ok(())
        } else {
            Err(format!(
                "{incoming} in incoming, {deliveries} in deliveries, {dead} dead"
            ))
        }
    })
    .await;
    let mut delayed = 0;
    for queue in broker.topology.queues().iter().skip(3) {
        delayed += broker.queue_counts(queue).await.0;
    }
    delayed
}
