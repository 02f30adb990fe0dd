//! Sessions that end cleanly, and messages that cannot take a prefetch slot for ever (issue 17):
//! a publishing connection closed alone is opened again without touching the consumer; a
//! consuming connection closed mid-stream never leaves two requests for one event in flight at
//! once; a panic in a message's handling dead-letters it (reason `panic`) and frees its slot;
//! an oversized message is dead-lettered without its body.
//!
//! Connections are closed with `rabbitmqctl close_connection`, found by the `connection_name`
//! the worker gives them (`webhook-worker <prefix> consuming|publishing`): only the test's own
//! worker is touched. `TEST_RABBITMQ_NODE` names another node for rabbitmqctl.

use std::{
    collections::{HashMap, HashSet},
    process::Command,
    time::Duration,
};

use lapin::{
    options::BasicPublishOptions,
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use serde_json::json;

use crate::{
    pipeline::text,
    support::{event, eventually, Behaviour, InProcessWorker, PacedReceiver},
};

const WAIT: Duration = Duration::from_secs(60);

fn rabbitmqctl(args: &[&str]) -> String {
    let mut command = Command::new("rabbitmqctl");
    if let Ok(node) = std::env::var("TEST_RABBITMQ_NODE") {
        command.args(["-n", &node]);
    }
    let output = command.args(args).output().expect("rabbitmqctl");
    assert!(output.status.success(), "rabbitmqctl {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The broker's ids of the connections named `name`.
fn connections_named(name: &str) -> Vec<String> {
    let listing = rabbitmqctl(&[
        "-q",
        "--no-table-headers",
        "list_connections",
        "pid",
        "client_properties",
    ]);
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split('\t').next())
        .map(str::to_string)
        .collect()
}

/// Waits until exactly one connection is named `name`, other than `not`; returns its id.
async fn one_connection_named(name: &str, not: Option<&str>) -> String {
    let what = format!("one connection named {name:?} other than {not:?}");
    eventually(WAIT, what, || async {
        match connections_named(name).as_slice() {
            [one] if Some(one.as_str()) != not => Ok(one.clone()),
            found => Err(format!("found {found:?}")),
        }
    })
    .await
}

fn close_connection(id: &str) {
    rabbitmqctl(&["close_connection", id, "closed by a test"]);
}

fn names(worker: &InProcessWorker) -> (String, String) {
    let prefix = &worker.config.amqp.prefix;
    (
        format!("webhook-worker {prefix} consuming"),
        format!("webhook-worker {prefix} publishing"),
    )
}

/// Waits until `n` arrivals at `receiver`.
async fn wait_for_arrivals(receiver: &PacedReceiver, n: usize) {
    eventually(WAIT, format_args!("{n} arrivals"), || async {
        let arrivals = receiver.arrivals().len();
        if arrivals >= n {
            Ok(())
        } else {
            Err(format!("{arrivals} came"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishing_connection_closed_alone_redelivers_none_of_the_consumers_messages() {
    const EVENTS: usize = 300;
    let worker = InProcessWorker::start("[delivery]\nretry_schedule = [\"1s\"]").await;
    // Every first attempt fails: each event needs its retry job published. (500, not 503: a 503
    // shrinks the endpoint's concurrency until deliveries are parked instead of attempted.)
    let receiver = PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(300),
        status: 500,
        ..Behaviour::default()
    })
    .await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"]});
    worker.add_webhook("acct", hook).await;
    let (consuming, publishing) = names(&worker);
    let consumer = one_connection_named(&consuming, None).await;
    let publisher = one_connection_named(&publishing, None).await;
    let ids = worker
        .publish_burst("acct", &vec!["business.updated"; EVENTS])
        .await;

    wait_for_arrivals(&receiver, 60).await;
    close_connection(&publisher);
    let first_attempts_before = receiver.arrivals().len();
    assert!(first_attempts_before < EVENTS, "the fault came mid-stream");
    let reopened = one_connection_named(&publishing, Some(&publisher)).await;

    // Every event had its retry: the retry jobs were published, on one channel or the other.
    eventually(WAIT, "every event retried", || async {
        let retried: HashSet<String> = receiver
            .arrivals()
            .into_iter()
            .filter(|a| a.attempt == "2")
            .map(|a| a.event_id)
            .collect();
        if ids.iter().all(|id| retried.contains(id)) {
            Ok(())
        } else {
            Err(format!("{} of {EVENTS} were", retried.len()))
        }
    })
    .await;
    // A first attempt repeated late would come after the last retry: wait until nothing moves.
    worker.until_quiet(|| receiver.arrivals().len()).await;
    let mut first_attempts: HashMap<String, usize> = HashMap::new();
    for arrival in receiver.arrivals().into_iter().filter(|a| a.attempt == "1") {
        *first_attempts.entry(arrival.event_id).or_default() += 1;
    }
    let repeated = first_attempts.values().filter(|n| **n > 1).count();
    eprintln!(
        "publishing connection closed after {first_attempts_before} arrivals, reopened as \
         {reopened}; first attempts repeated: {repeated}"
    );
    assert_eq!(repeated, 0, "no message of the consumer was redelivered");
    assert_eq!(first_attempts.len(), EVENTS);
    assert_eq!(
        connections_named(&consuming),
        vec![consumer],
        "the consumer kept its connection"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_mid_stream_never_has_two_requests_for_one_event_in_flight() {
    const EVENTS: usize = 300;
    let worker = InProcessWorker::start("").await;
    // Slow answers: the prefetch window's requests are all in flight when the connection goes.
    let receiver = PacedReceiver::start(Behaviour {
        latency: Duration::from_secs(1),
        ..Behaviour::default()
    })
    .await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"]});
    worker.add_webhook("acct", hook).await;
    let (consuming, _) = names(&worker);
    let consumer = one_connection_named(&consuming, None).await;
    let ids: HashSet<String> = worker
        .publish_burst("acct", &vec!["business.updated"; EVENTS])
        .await
        .into_iter()
        .collect();

    wait_for_arrivals(&receiver, 20).await;
    close_connection(&consumer);
    let delivered_before = receiver.delivered().len();
    assert!(delivered_before < EVENTS, "the fault came mid-stream");
    one_connection_named(&consuming, Some(&consumer)).await;
    eventually(WAIT, "every event delivered", || async {
        let delivered = receiver.delivered();
        if delivered.is_superset(&ids) {
            Ok(())
        } else {
            Err(format!("{} of {EVENTS} were", delivered.len()))
        }
    })
    .await;
    let arrivals = receiver.arrivals().len();
    eprintln!(
        "consuming connection closed after {delivered_before} delivered: {arrivals} answers for \
         {EVENTS} events, at most {} requests for one event at once",
        receiver.max_in_flight_per_event()
    );
    if receiver.max_in_flight_per_event() > 1 {
        // Which answers the events with more than one had, for the failure's message.
        let mut answers: HashMap<String, Vec<String>> = HashMap::new();
        for arrival in receiver.arrivals() {
            let answer = format!("attempt {} at {:?}", arrival.attempt, arrival.at);
            answers.entry(arrival.event_id).or_default().push(answer);
        }
        answers.retain(|_, answers| answers.len() > 1);
        eprintln!("events answered more than once: {answers:?}");
    }
    assert_eq!(receiver.max_in_flight_per_event(), 1);
    worker.stop().await;
}

/// Publishes `body` to the events exchange with `headers` besides the account.
async fn publish_with(worker: &InProcessWorker, body: &[u8], extra: &[(&str, &str)]) {
    let mut headers = FieldTable::default();
    headers.insert("account_id".into(), AMQPValue::LongString("acct".into()));
    for (name, value) in extra {
        headers.insert((*name).into(), AMQPValue::LongString((*value).into()));
    }
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    worker
        .channel
        .basic_publish(
            &worker.names.events_exchange,
            "business.updated",
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Needs the `test-hooks` feature, which the integration tests' dev-dependency on the crate
/// turns on: a message with `x-test-panic` makes its handling panic.
#[tokio::test]
async fn a_panic_in_handling_is_dead_lettered_with_a_reason_and_frees_its_slot() {
    // One slot: the next event is delivered only if the panicking one gave its slot back.
    let worker = InProcessWorker::start("[amqp]\nprefetch = 1").await;
    let receiver = crate::support::TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    let (panicking, body) = event("business.updated");
    publish_with(&worker, &body, &[("x-test-panic", "1")]).await;
    let (id, _) = worker.publish_event().await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], id.as_str());
    let dead = worker.dead_letters(1, WAIT).await;
    let (headers, dead_body) = &dead[0];
    assert_eq!(text(headers, "x-dead-reason"), "panic");
    assert!(text(headers, "x-dead-detail").contains("x-test-panic"));
    let letter: serde_json::Value = serde_json::from_slice(dead_body).unwrap();
    assert_eq!(letter["id"], panicking.as_str());
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(worker.metric("handler_panics_total"), 1);
    assert_eq!(receiver.count(), 1, "the panicking event was not delivered");
    worker.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_dead_lettered_without_its_body() {
    let worker = InProcessWorker::start("[amqp]\nmax_message_bytes = 1024").await;
    let receiver = crate::support::TestReceiver::start().await;
    worker.subscribe(&receiver).await;
    // The fixture is 3.2 KB as compact JSON.
    let (_, body) = event("business.updated");
    assert!(body.len() > 1024);
    worker
        .publish(Some("acct"), "business.updated", &body)
        .await;
    let dead = worker.dead_letters(1, WAIT).await;
    let (headers, dead_body) = &dead[0];
    assert_eq!(text(headers, "x-dead-reason"), "too_large");
    assert!(
        text(headers, "x-dead-detail").contains(&body.len().to_string()),
        "the detail names the size"
    );
    assert_eq!(text(headers, "account_id"), "acct");
    assert!(
        dead_body.is_empty(),
        "{} bytes republished",
        dead_body.len()
    );
    worker.until_quiet(|| receiver.count()).await;
    assert_eq!(receiver.count(), 0);
    worker.stop().await;
}
