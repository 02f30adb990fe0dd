use std::time::Duration;

use super::*;

fn health(initial: u32, timeout: &str) -> Health {
    let config = crate::config::Config::from_toml(&format!(
        "[delivery]\nconcurrency_initial = {initial}\ntimeout = \"{timeout}\"\npark_delay = \"1s\""
    ))
    .expect("a valid configuration");
    Health::new(&config.delivery, Metrics::new())
}

async fn send(health: &Health, webhook: Uuid) -> Permit {
    match health.admit(webhook).await {
        Admission::Send(permit) => permit,
        Admission::Park(reason) => panic!("parked: {reason:?}"),
    }
}

#[tokio::test]
async fn a_delivery_waits_for_a_slot_while_the_endpoint_answers() {
    let health = health(1, "30s");
    let webhook = Uuid::new_v4();
    let held = send(&health, webhook).await;
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.finish(Signal::Success);
    };
    let (_, second) = tokio::join!(release, health.admit(webhook));
    assert!(matches!(second, Admission::Send(_)));
}

#[tokio::test]
async fn a_stalled_endpoint_parks_its_waiting_deliveries_and_leaves_others_alone() {
    let health = health(2, "30s");
    let (stuck, other) = (Uuid::new_v4(), Uuid::new_v4());
    let _held = (send(&health, stuck).await, send(&health, stuck).await);
    let started = Instant::now();
    let waited = health.admit(stuck).await;
    assert!(matches!(waited, Admission::Park(ParkReason::Stalled)));
    let waited_for = started.elapsed();
    assert!(
        waited_for < Duration::from_secs(5),
        "parked after its patience, {waited_for:?}"
    );
    assert!(matches!(health.admit(other).await, Admission::Send(_)));
}

#[tokio::test]
async fn a_dropped_permit_frees_its_slot() {
    let health = health(1, "30s");
    let webhook = Uuid::new_v4();
    drop(send(&health, webhook).await);
    let again = tokio::time::timeout(Duration::from_secs(1), health.admit(webhook)).await;
    assert!(matches!(again, Ok(Admission::Send(_))));
}

#[tokio::test]
async fn circuit_changes_move_the_open_circuits_gauge() {
    let health = health(5, "30s");
    let webhook = Uuid::new_v4();
    for _ in 0..5 {
        send(&health, webhook).await.finish(Signal::Unreachable);
    }
    assert_eq!(health.metrics.circuits_open.get(), 1);
    assert!(matches!(
        health.admit(webhook).await,
        Admission::Park(ParkReason::CircuitOpen)
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send(&health, webhook).await.finish(Signal::Answered);
    assert_eq!(health.metrics.circuits_open.get(), 0);
}
