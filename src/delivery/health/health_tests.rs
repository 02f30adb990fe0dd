use std::time::Duration;

use super::*;
use crate::delivery::outcome::Signal;

const ACCOUNT: &str = "acct_test";

fn health(initial: u32, timeout: &str) -> Health {
    let config = crate::config::Config::from_toml(&format!(
        "[delivery]\nconcurrency_initial = {initial}\ntimeout = \"{timeout}\"\npark_delay = \"1s\""
    ))
    .expect("a valid configuration");
    Health::new(&config, Metrics::new())
}

async fn send(health: &Health, webhook: Uuid, account: &str) -> Permit {
    match health.admit(webhook, account).await {
        Admission::Send(permit) => permit,
        Admission::Park(reason) => panic!("parked: {reason:?}"),
    }
}

#[tokio::test]
async fn a_delivery_waits_for_a_slot_while_the_endpoint_answers() {
    let health = health(1, "30s");
    let webhook = Uuid::new_v4();
    let held = send(&health, webhook, ACCOUNT).await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.finish(Signal::Success);
    };
    let (_, second) = tokio::join!(release, health.admit(webhook, ACCOUNT));
    assert!(matches!(second, Admission::Send(_)));
}

#[tokio::test]
async fn a_stalled_endpoint_parks_its_waiting_deliveries_and_leaves_others_alone() {
    let health = health(2, "30s");
    let (stuck, other) = (Uuid::new_v4(), Uuid::new_v4());
    let _held = (
        send(&health, stuck, ACCOUNT).await,
        send(&health, stuck, ACCOUNT).await,
    );
    let started = Instant::now();
    let waited = health.admit(stuck, ACCOUNT).await;
    assert!(matches!(waited, Admission::Park(ParkReason::Stalled)));
    let waited_for = started.elapsed();
    assert!(
        waited_for < Duration::from_secs(5),
        "parked after its patience, {waited_for:?}"
    );
    assert!(matches!(
        health.admit(other, ACCOUNT).await,
        Admission::Send(_)
    ));
}

#[tokio::test]
async fn a_dropped_permit_frees_its_slot() {
    let health = health(1, "30s");
    let webhook = Uuid::new_v4();
    drop(send(&health, webhook, ACCOUNT).await);
    let again = tokio::time::timeout(Duration::from_secs(1), health.admit(webhook, ACCOUNT)).await;
    assert!(matches!(again, Ok(Admission::Send(_))));
}

#[tokio::test]
async fn circuit_changes_move_the_open_circuits_gauge() {
    let health = health(5, "30s");
    let webhook = Uuid::new_v4();
    for _ in 0..5 {
        send(&health, webhook, ACCOUNT)
            .await
            .finish(Signal::Unreachable);
    }
    assert_eq!(health.metrics.circuits_open.get(), 1);
    assert!(matches!(
        health.admit(webhook, ACCOUNT).await,
        Admission::Park(ParkReason::CircuitOpen)
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&health, webhook, ACCOUNT)
        .await
        .finish(Signal::Answered);
    assert_eq!(health.metrics.circuits_open.get(), 0);
}

fn health_with_share(share: usize) -> Health {
    let config = crate::config::Config::from_toml(&format!(
        "[delivery]\nmax_in_flight_per_account = {share}\nconcurrency_initial = 4"
    ))
    .expect("a valid configuration");
    Health::new(&config, Metrics::new())
}

#[tokio::test]
async fn an_account_at_its_share_whose_requests_hang_is_parked_and_others_go_on() {
    let health = health_with_share(2);
    let (a1, a2, a3, b) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let _held = (
        send(&health, a1, "noisy").await,
        send(&health, a2, "noisy").await,
    );
    // Another account is not held up by the noisy one's share.
    let quiet = tokio::time::timeout(Duration::from_millis(100), health.admit(b, "quiet")).await;
    assert!(matches!(quiet, Ok(Admission::Send(_))));
    // A third webhook of the full account: its requests never complete, so it is parked.
    let started = Instant::now();
    let third = health.admit(a3, "noisy").await;
    assert!(matches!(third, Admission::Park(ParkReason::AccountBusy)));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The parked delivery gave its endpoint slot back.
    assert_eq!(health.endpoint(a3).state().in_flight(), 0);
}

#[tokio::test]
async fn a_delivery_waiting_for_its_accounts_turn_gets_it_when_a_request_completes() {
    let health = health_with_share(1);
    let (a1, a2) = (Uuid::new_v4(), Uuid::new_v4());
    let held = send(&health, a1, "acct").await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.finish(Signal::Success);
    };
    let (_, second) = tokio::join!(release, health.admit(a2, "acct"));
    assert!(matches!(second, Admission::Send(_)));
}
