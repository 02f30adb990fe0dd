use std::time::{Duration, Instant};

use super::*;

fn settings() -> Settings {
    Settings {
        initial: 4,
        min: 1,
        max: 64,
        circuit_failures: 3,
        timeout: Duration::from_secs(10),
        cooldown: Duration::from_secs(5),
        max_wait: Duration::from_secs(1),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Admits `n` requests at `now`, as newcomers, and sends them.
fn fill(state: &mut EndpointState, now: Instant, n: u32) {
    reserve(state, now, n);
    for _ in 0..n {
        state.sent(now);
    }
}

/// Admits `n` requests at `now` whose requests are not sent yet (they wait for their account's
/// or the worker's turn).
fn reserve(state: &mut EndpointState, now: Instant, n: u32) {
    for _ in 0..n {
        assert_eq!(
            state.admit(now, false, &mut Vec::new()),
            Admission::Admit { probe: false }
        );
    }
}

#[test]
fn the_limit_grows_fast_in_slow_start_and_stops_at_the_max() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    let mut now = t0;
    for _ in 0..10 {
        let limit = state.limit();
        fill(&mut state, now, limit);
        now += ms(50);
        for _ in 0..limit {
            state.finish(now, now - ms(50), false, Signal::Success, &mut Vec::new());
        }
    }
    assert_eq!(state.limit(), 64);
}

#[test]
fn overload_cuts_the_limit_once_per_round_trip_and_then_it_grows_slowly() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    let mut changes = Vec::new();
    let later = t0 + ms(20);
    state.finish(later, t0, false, Signal::Overloaded, &mut changes);
    // Sent before the cut: does not cut again.
    state.finish(later, t0, false, Signal::Overloaded, &mut changes);
    assert_eq!(state.limit(), 3);
    assert_eq!(changes, [Change::Shrunk { from: 4, to: 3 }]);
    // Additive now: +1 per limit's worth of good answers, not +1 each.
    let now = later + ms(1);
    fill(&mut state, now, 1);
    state.finish(now + ms(20), now, false, Signal::Success, &mut Vec::new());
    assert_eq!(state.limit(), 3);
}

#[test]
fn timeouts_halve_the_limit_but_never_below_the_minimum() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    let mut now = t0;
    for _ in 0..2 {
        fill(&mut state, now, 1);
        now += ms(10);
        state.finish(
            now,
            now - ms(10),
            false,
            Signal::Unreachable,
            &mut Vec::new(),
        );
    }
    assert_eq!(state.limit(), 1);
}

#[test]
fn slow_answers_do_not_grow_the_limit() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    state.finish(t0 + ms(10), t0, false, Signal::Success, &mut Vec::new());
    assert_eq!(state.limit(), 5, "slow start");
    let now = t0 + ms(11);
    state.finish(now + ms(500), t0, false, Signal::Success, &mut Vec::new());
    assert_eq!(state.limit(), 5, "fifty times the minimum latency");
}

#[test]
fn a_delivery_over_the_limit_waits_while_the_endpoint_answers_and_parks_once_it_stalls() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    assert!(matches!(
        state.admit(t0 + ms(100), false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    // An answer is progress: still waiting well after the patience would have run out.
    state.finish(t0 + ms(400), t0, false, Signal::Success, &mut Vec::new());
    assert_eq!(state.limit(), 5);
    fill(&mut state, t0 + ms(400), 2);
    assert!(matches!(
        state.admit(t0 + ms(800), true, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    // No answer for the patience (twice the slowest recent answer, here 400 ms): stalled.
    assert_eq!(
        state.admit(t0 + ms(1300), false, &mut Vec::new()),
        Admission::Park(ParkReason::Stalled)
    );
    // No answer for the whole timeout: the circuit opens.
    let mut changes = Vec::new();
    assert_eq!(
        state.admit(t0 + ms(10_400), false, &mut changes),
        Admission::Park(ParkReason::CircuitOpen)
    );
    assert!(matches!(changes[..], [Change::Opened { .. }]));
}

#[test]
fn newcomers_queue_behind_waiting_deliveries() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 3);
    state.waiting = 1;
    assert!(matches!(
        state.admit(t0, false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    assert_eq!(
        state.admit(t0, true, &mut Vec::new()),
        Admission::Admit { probe: false }
    );
}

#[test]
fn failures_in_a_row_open_the_circuit_then_one_probe_closes_it() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    let mut changes = Vec::new();
    fill(&mut state, t0, 3);
    for _ in 0..3 {
        state.finish(t0 + ms(5), t0, false, Signal::Unreachable, &mut changes);
    }
    assert!(state.is_open());
    assert!(matches!(
        changes[..],
        [Change::Shrunk { .. }, Change::Opened { .. }]
    ));
    assert_eq!(
        state.admit(t0 + ms(4000), false, &mut Vec::new()),
        Admission::Park(ParkReason::CircuitOpen),
        "still cooling down"
    );
    let probe_at = t0 + ms(5100);
    let mut changes = Vec::new();
    assert_eq!(
        state.admit(probe_at, false, &mut changes),
        Admission::Admit { probe: true }
    );
    assert_eq!(changes, [Change::HalfOpen]);
    assert_eq!(
        state.admit(probe_at, false, &mut Vec::new()),
        Admission::Park(ParkReason::CircuitOpen),
        "one probe at a time"
    );
    let mut changes = Vec::new();
    state.finish(
        probe_at + ms(30),
        probe_at,
        true,
        Signal::Answered,
        &mut changes,
    );
    assert_eq!(changes, [Change::Closed]);
    assert_eq!(
        state.admit(probe_at + ms(31), false, &mut Vec::new()),
        Admission::Admit { probe: false }
    );
}

#[test]
fn a_failed_probe_reopens_the_circuit_for_twice_as_long() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 3);
    for _ in 0..3 {
        state.finish(t0, t0, false, Signal::Unreachable, &mut Vec::new());
    }
    let probe_at = t0 + ms(5000);
    assert_eq!(
        state.admit(probe_at, false, &mut Vec::new()),
        Admission::Admit { probe: true }
    );
    state.finish(
        probe_at + ms(10),
        probe_at,
        true,
        Signal::Unreachable,
        &mut Vec::new(),
    );
    assert_eq!(
        state.admit(probe_at + ms(9_010), false, &mut Vec::new()),
        Admission::Park(ParkReason::CircuitOpen)
    );
    assert_eq!(
        state.admit(probe_at + ms(10_011), false, &mut Vec::new()),
        Admission::Admit { probe: true }
    );
}

#[test]
fn time_spent_waiting_for_the_account_or_the_global_limit_is_not_the_endpoints_silence() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    reserve(&mut state, t0, 4);
    // The four slots waited 12 s for their account's or the worker's turn: longer than the
    // timeout, but the endpoint has not been asked yet.
    let later = t0 + Duration::from_secs(12);
    assert!(matches!(
        state.admit(later, false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    for _ in 0..4 {
        state.sent(later);
    }
    assert!(matches!(
        state.admit(later + ms(100), false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    // Sent at t0 instead, the same moment would have opened the circuit.
    let mut other = EndpointState::new(settings(), t0);
    fill(&mut other, t0, 4);
    assert_eq!(
        other.admit(later + ms(100), false, &mut Vec::new()),
        Admission::Park(ParkReason::CircuitOpen)
    );
}

#[test]
fn a_newcomer_behind_more_than_max_wait_of_work_is_parked_as_busy() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    // Overloaded answers after 400 ms: the limit is cut to 3 (and slow start ends), so 5
    // waiting are 0.8 s of work, 8 are 1.2 s.
    let answered = t0 + ms(400);
    for _ in 0..4 {
        state.finish(answered, t0, false, Signal::Overloaded, &mut Vec::new());
    }
    assert_eq!(state.limit(), 3);
    fill(&mut state, answered, 3);
    state.waiting = 5;
    assert!(matches!(
        state.admit(answered, false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    state.waiting = 8;
    assert_eq!(
        state.admit(answered, false, &mut Vec::new()),
        Admission::Park(ParkReason::Busy)
    );
    // One already waiting keeps its place: the deadline, not the estimate, bounds it.
    assert!(matches!(
        state.admit(answered, true, &mut Vec::new()),
        Admission::Wait { .. }
    ));
}

#[test]
fn a_fast_endpoint_under_a_burst_keeps_its_queue_waiting() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    for _ in 0..4 {
        state.finish(t0 + ms(2), t0, false, Signal::Success, &mut Vec::new());
    }
    let now = t0 + ms(2);
    let limit = state.limit();
    fill(&mut state, now, limit);
    state.waiting = 500;
    assert!(matches!(
        state.admit(now, false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
}

#[test]
fn in_slow_start_a_queue_is_judged_by_the_doubling_limit() {
    let t0 = Instant::now();
    let mut state = EndpointState::new(settings(), t0);
    fill(&mut state, t0, 4);
    // 300 ms answers, still in slow start: a newcomer behind 34 waiting and 5 slots is seven
    // limits' worth, three doublings (0.9 s), not seven rounds (2.1 s); behind 60, 1.1 s.
    let answered = t0 + ms(300);
    state.finish(answered, t0, false, Signal::Success, &mut Vec::new());
    fill(&mut state, answered, 1);
    assert_eq!(state.limit(), 5);
    state.waiting = 34;
    assert!(matches!(
        state.admit(answered, false, &mut Vec::new()),
        Admission::Wait { .. }
    ));
    state.waiting = 60;
    assert_eq!(
        state.admit(answered, false, &mut Vec::new()),
        Admission::Park(ParkReason::Busy)
    );
}
