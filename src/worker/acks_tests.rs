use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const LIMITS: Limits = Limits {
    batch: 1_000,
    hold: 1_000,
    max_delay: Duration::from_millis(5),
    gap_delay: Duration::from_millis(20),
};

fn ack(tag: u64, multiple: bool) -> Frame {
    Frame::Ack { tag, multiple }
}

#[test]
fn consecutive_acks_go_out_as_one_multiple_ack_once_everything_delivered_is_settled() {
    let now = Instant::now();
    let mut window = Window::default();
    for tag in [3, 1, 2] {
        window.settle(tag, Settlement::Ack, now);
    }
    assert_eq!(
        window.due(now, 4, LIMITS),
        vec![],
        "tag 4 is still in flight"
    );
    assert_eq!(window.due(now, 3, LIMITS), vec![ack(3, true)]);
    assert_eq!(window.tracked(), 0);
    window.settle(4, Settlement::Ack, now);
    assert_eq!(window.due(now, 4, LIMITS), vec![ack(4, false)]);
}

#[test]
fn a_full_batch_goes_out_without_waiting() {
    let now = Instant::now();
    let limits = Limits { batch: 3, ..LIMITS };
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(2, Settlement::Ack, now);
    assert_eq!(window.due(now, 100, limits), vec![]);
    window.settle(3, Settlement::Ack, now);
    assert_eq!(window.due(now, 100, limits), vec![ack(3, true)]);
}

#[test]
fn a_ready_batch_waits_at_most_the_delay() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(2, Settlement::Ack, now);
    assert_eq!(window.next_due(LIMITS), Some(now + LIMITS.max_delay));
    let later = now + LIMITS.max_delay;
    assert_eq!(window.due(later, 100, LIMITS), vec![ack(2, true)]);
    assert_eq!(window.next_due(LIMITS), None);
}

#[test]
fn an_ack_never_passes_a_delivery_in_flight_and_those_behind_it_go_alone_after_the_gap_delay() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(3, Settlement::Ack, now);
    window.settle(4, Settlement::Ack, now);
    // 2 is in flight (a slow endpoint): 1 goes as the run after the batch delay, and 3 and 4
    // wait longer, for 2 to finish and join them into one ack.
    let soon = now + LIMITS.max_delay;
    assert_eq!(window.due(soon, 4, LIMITS), vec![ack(1, false)]);
    assert_eq!(window.next_due(LIMITS), Some(now + LIMITS.gap_delay));
    let later = now + LIMITS.gap_delay;
    assert_eq!(
        window.due(later, 4, LIMITS),
        vec![ack(3, false), ack(4, false)]
    );
    window.settle(2, Settlement::Ack, later);
    assert_eq!(window.due(later, 4, LIMITS), vec![ack(2, false)]);
    assert_eq!(window.tracked(), 0);
}

#[test]
fn a_gap_closing_in_time_joins_those_behind_it_into_one_ack() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(3, Settlement::Ack, now);
    assert_eq!(window.due(now, 10, LIMITS), vec![]);
    window.settle(2, Settlement::Ack, now + LIMITS.max_delay / 2);
    assert_eq!(
        window.due(now + LIMITS.max_delay, 10, LIMITS),
        vec![ack(3, true)]
    );
}

#[test]
fn behind_a_delivery_in_flight_for_long_what_settles_is_acked_at_once() {
    let now = Instant::now();
    let mut window = Window::default();
    // 1 and 3 are a hanging endpoint's: in flight from the start.
    window.settle(2, Settlement::Ack, now);
    window.settle(4, Settlement::Ack, now);
    let later = now + LIMITS.gap_delay;
    assert_eq!(
        window.due(later, 10, LIMITS),
        vec![ack(2, false), ack(4, false)]
    );
    // Settled after that: no wait, and when 1 ends, 3 has held things back as long.
    window.settle(5, Settlement::Ack, later);
    assert_eq!(window.due(later, 10, LIMITS), vec![ack(5, false)]);
    window.settle(1, Settlement::Ack, later);
    window.settle(6, Settlement::Ack, later);
    assert_eq!(
        window.due(later, 10, LIMITS),
        vec![ack(1, false), ack(6, false)]
    );
}

#[test]
fn behind_a_delivery_in_flight_for_long_the_window_keeps_nothing_of_what_was_acked() {
    let now = Instant::now();
    let mut window = Window::default();
    // 1 hangs for the whole time; 10,000 deliveries after it are settled and acked alone.
    window.settle(2, Settlement::Ack, now);
    let later = now + LIMITS.gap_delay;
    assert_eq!(window.due(later, 2, LIMITS), vec![ack(2, false)]);
    for tag in 3..=10_001 {
        window.settle(tag, Settlement::Ack, later);
        assert_eq!(window.due(later, tag, LIMITS).len(), 1);
    }
    assert_eq!(window.tracked(), 1, "only the one in flight");
}

#[test]
fn no_more_than_the_hold_limit_waits_even_behind_a_gap() {
    let now = Instant::now();
    let limits = Limits { hold: 3, ..LIMITS };
    let mut window = Window::default();
    for tag in [2, 3] {
        window.settle(tag, Settlement::Ack, now);
    }
    assert_eq!(window.due(now, 10, limits), vec![]);
    window.settle(4, Settlement::Ack, now);
    // 1 is in flight; the broker must not be kept waiting for credit.
    assert_eq!(
        window.due(now, 10, limits),
        vec![ack(2, false), ack(3, false), ack(4, false)]
    );
}

#[test]
fn a_nack_goes_out_at_once_and_before_the_multiple_ack_that_passes_it() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(2, Settlement::Nack { requeue: false }, now);
    window.settle(3, Settlement::Ack, now);
    assert_eq!(
        window.due(now, 3, LIMITS),
        vec![
            Frame::Nack {
                tag: 2,
                requeue: false
            },
            ack(3, true)
        ]
    );
}

#[test]
fn a_nack_is_sent_even_while_acks_wait_for_their_batch() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(5, Settlement::Nack { requeue: true }, now);
    assert_eq!(
        window.due(now, 10, LIMITS),
        vec![Frame::Nack {
            tag: 5,
            requeue: true
        }]
    );
}

#[test]
fn the_multiple_ack_names_a_delivery_still_unacked_not_one_already_nacked() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(2, Settlement::Ack, now);
    window.settle(3, Settlement::Nack { requeue: true }, now);
    assert_eq!(
        window.due(now, 3, LIMITS),
        vec![
            Frame::Nack {
                tag: 3,
                requeue: true
            },
            ack(2, true)
        ]
    );
    assert_eq!(
        window.tracked(),
        0,
        "3 was settled too: the window moved past it"
    );
}

#[test]
fn a_delivery_left_unsettled_is_never_passed_even_when_finishing() {
    let now = Instant::now();
    let mut window = Window::default();
    // 1 is left for the connection to hand back (shutdown before its outcomes were durable).
    window.settle(2, Settlement::Ack, now);
    window.settle(3, Settlement::Ack, now);
    assert_eq!(window.finish(), vec![ack(2, false), ack(3, false)]);
}

#[test]
fn finishing_sends_the_run_and_everything_behind_a_gap() {
    let now = Instant::now();
    let mut window = Window::default();
    for tag in [1, 2, 4] {
        window.settle(tag, Settlement::Ack, now);
    }
    assert_eq!(window.finish(), vec![ack(2, true), ack(4, false)]);
}

#[test]
fn a_tag_settled_twice_keeps_its_first_settlement() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(1, Settlement::Ack, now);
    window.settle(1, Settlement::Nack { requeue: true }, now);
    assert_eq!(window.due(now, 1, LIMITS), vec![ack(1, false)]);
    window.settle(1, Settlement::Ack, now);
    assert_eq!(window.due(now, 1, LIMITS), vec![], "already acked");
}

#[test]
fn a_tag_far_beyond_the_window_is_acked_alone_and_not_tracked() {
    let now = Instant::now();
    let mut window = Window::default();
    window.settle(u64::MAX, Settlement::Ack, now);
    assert_eq!(window.tracked(), 0);
    assert_eq!(
        window.due(now, u64::MAX, LIMITS),
        vec![ack(u64::MAX, false)]
    );
}

/// What the pipeline decides for one delivery in the model below.
#[derive(Debug, Clone, Copy)]
enum Decision {
    Ack,
    Nack(bool),
    /// Never settled (shutdown with its outcomes not durable).
    Leave,
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        6 => Just(Decision::Ack),
        1 => any::<bool>().prop_map(Decision::Nack),
        1 => Just(Decision::Leave),
    ]
}

/// The broker's side of a channel: which deliveries are unacked, and what became of the others.
/// Panics where RabbitMQ would close the channel (an unknown or already settled tag).
#[derive(Default)]
struct Broker {
    unacked: BTreeMap<u64, ()>,
    acked: Vec<u64>,
    nacked: Vec<(u64, bool)>,
}

impl Broker {
    fn apply(&mut self, frame: Frame) {
        match frame {
            Frame::Ack { tag, multiple } => {
                assert!(
                    self.unacked.contains_key(&tag),
                    "unknown delivery tag {tag}"
                );
                if multiple {
                    let passed: Vec<u64> = self.unacked.range(..=tag).map(|(t, _)| *t).collect();
                    for t in passed {
                        self.unacked.remove(&t);
                        self.acked.push(t);
                    }
                } else {
                    self.unacked.remove(&tag);
                    self.acked.push(tag);
                }
            }
            Frame::Nack { tag, requeue } => {
                assert!(
                    self.unacked.remove(&tag).is_some(),
                    "unknown delivery tag {tag}"
                );
                self.nacked.push((tag, requeue));
            }
        }
    }
}

proptest! {
    /// Whatever the order the pipeline finishes in, and whenever the batcher looks: the broker
    /// acks exactly the deliveries the pipeline acked, nacks exactly those it nacked (with their
    /// requeue flag), leaves the rest unacked, and is never sent a tag it does not know.
    #[test]
    fn the_broker_settles_exactly_what_the_pipeline_decided(
        decisions in prop::collection::vec(decision(), 1..120),
        order_seed in prop::collection::vec(any::<u16>(), 120),
        looks in prop::collection::vec((any::<bool>(), 0u64..15), 120),
        batch in 1usize..40,
        hold in 1usize..80,
    ) {
        let limits = Limits {
            batch,
            hold,
            max_delay: Duration::from_millis(5),
            gap_delay: Duration::from_millis(10),
        };
        let n = decisions.len() as u64;
        // Finish in a shuffled order (by sorting on the seeds).
        let mut order: Vec<u64> = (1..=n).collect();
        order.sort_by_key(|tag| order_seed[(*tag as usize - 1) % order_seed.len()]);
        let mut broker = Broker::default();
        for tag in 1..=n {
            broker.unacked.insert(tag, ());
        }
        let mut window = Window::default();
        let mut now = Instant::now();
        for (i, tag) in order.iter().enumerate() {
            let how = match decisions[*tag as usize - 1] {
                Decision::Ack => Some(Settlement::Ack),
                Decision::Nack(requeue) => Some(Settlement::Nack { requeue }),
                Decision::Leave => None,
            };
            if let Some(how) = how {
                window.settle(*tag, how, now);
            }
            let (look, advance) = looks[i % looks.len()];
            now += Duration::from_millis(advance);
            if look {
                for frame in window.due(now, n, limits) {
                    broker.apply(frame);
                }
            }
        }
        for frame in window.finish() {
            broker.apply(frame);
        }
        let mut acked = broker.acked.clone();
        acked.sort_unstable();
        let wanted: Vec<u64> = (1..=n)
            .filter(|t| matches!(decisions[*t as usize - 1], Decision::Ack))
            .collect();
        prop_assert_eq!(acked, wanted);
        let mut nacked = broker.nacked.clone();
        nacked.sort_unstable();
        let wanted: Vec<(u64, bool)> = (1..=n)
            .filter_map(|t| match decisions[t as usize - 1] {
                Decision::Nack(requeue) => Some((t, requeue)),
                _ => None,
            })
            .collect();
        prop_assert_eq!(nacked, wanted);
        let left: Vec<u64> = broker.unacked.keys().copied().collect();
        let wanted: Vec<u64> = (1..=n)
            .filter(|t| matches!(decisions[*t as usize - 1], Decision::Leave))
            .collect();
        prop_assert_eq!(left, wanted);
    }
}
