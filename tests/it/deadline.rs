//! One deadline per attempt (`delivery.attempt_deadline`): however many requests an attempt
//! makes (token, POST, fresh token and second POST after a 401), it ends by the deadline, fails
//! as a timeout, and the delivery is retried.
//!
//! The attempt's duration is read from the worker's own `delivery_duration_seconds` histogram,
//! which times exactly `Deliverer::deliver`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{routing::post, Json, Router};
use serde_json::{json, Value};

use crate::support::{eventually, InProcessWorker, TestReceiver};

/// Per request and per attempt: equal, so that only the deadline can end an attempt of several
/// requests sooner than their timeouts add up to.
const TIMEOUT: Duration = Duration::from_secs(4);
const WAIT: Duration = Duration::from_secs(30);
const RETRIED: &str = "deliveries_total{outcome=\"retry_scheduled\"}";

fn config() -> String {
    format!(
        "[delivery]\ntimeout = \"{t}s\"\nattempt_deadline = \"{t}s\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\"]",
        t = TIMEOUT.as_secs()
    )
}

/// A token endpoint that answers every request with a fresh token after `delay`.
struct SlowTokenEndpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowTokenEndpoint {
    async fn start(delay: Duration) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app = Router::new().route(
            "/token",
            post(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    tokio::time::sleep(delay).await;
                    Json(json!({
                        "access_token": format!("token-{n}"),
                        "token_type": "Bearer",
                        "expires_in": 3600,
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            requests,
            task,
        }
    }
}

impl Drop for SlowTokenEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn oidc_hook(url: &str, token_endpoint: &str) -> Value {
    json!({
        "url": url, "enabled_events": ["*"],
        "oidc_auth_method": "client_secret", "oidc_client_id": "c",
        "oidc_client_secret": "s", "oidc_access_token_ttl_seconds": 3600,
        "oidc_token_endpoint": token_endpoint,
    })
}

/// (sum, count) of the attempt-duration histogram.
fn attempt_seconds(worker: &InProcessWorker) -> (f64, u64) {
    let text = worker.app().metrics().render();
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("webhook_worker_delivery_duration_seconds_sum"),
        value("webhook_worker_delivery_duration_seconds_count") as u64,
    )
}

/// Waits for the first attempt to end; returns how long it took.
async fn first_attempt(worker: &InProcessWorker) -> Duration {
    let (sum, count) = eventually(WAIT, "an attempt to end", || async {
        let (sum, count) = attempt_seconds(worker);
        (count >= 1).then_some((sum, count))
    })
    .await;
    assert_eq!(
        count, 1,
        "a second attempt ended too: cannot time the first"
    );
    Duration::from_secs_f64(sum)
}

/// A single hanging request is ended by `delivery.timeout` too (the deadline is never shorter):
/// what this shows is that a token endpoint that never answers costs one attempt, not a stuck
/// delivery. The next test is the one only the deadline can pass.
#[tokio::test]
async fn an_attempt_whose_token_endpoint_hangs_ends_in_time_and_is_retried() {
    // The hanging attempt opens the endpoint's circuit (no progress for `delivery.timeout`): a
    // short park delay lets the retry, and its token request, go out soon.
    let worker = InProcessWorker::start(&format!("{}\npark_delay = \"200ms\"", config())).await;
    let token_endpoint = TestReceiver::gated().await;
    let receiver = TestReceiver::start().await;
    let endpoint = format!("http://{}/token", token_endpoint.addr);
    worker
        .add_webhook("acct", oidc_hook(&receiver.url(), &endpoint))
        .await;
    worker.publish_event().await;
    let took = first_attempt(&worker).await;
    assert!(
        took < TIMEOUT + Duration::from_secs(2),
        "the attempt took {took:?}"
    );
    // Retried: the next attempt asks for a token again.
    token_endpoint.wait_for(2, WAIT).await;
    assert_eq!(receiver.count(), 0, "nothing was sent without a token");
    worker.wait_for_metric(RETRIED, 1, WAIT).await;
    token_endpoint.release(100);
    worker.stop().await;
}

#[tokio::test]
async fn an_attempt_whose_webhook_hangs_after_a_401_ends_by_its_deadline_and_is_retried() {
    // An attempt that lasts `delivery.timeout` opens the endpoint's circuit (it made no progress
    // for that long): a short park delay lets the probe, the next attempt's POST, go out soon.
    let worker = InProcessWorker::start(&format!(
        "{}\npark_delay = \"200ms\"\nretry_schedule = [\"200ms\", \"1s\", \"1s\", \"1s\", \"1s\"]",
        config().replace("\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\"]", "")
    ))
    .await;
    // Each token takes 1.5 s: token, 401, fresh token, hanging POST would take 1.5 + 1.5 + 4 s
    // without the deadline; with it the attempt ends at 4 s, while the second POST hangs.
    let tokens = SlowTokenEndpoint::start(Duration::from_millis(1500)).await;
    let receiver = TestReceiver::gated().await;
    receiver.plan(&[401]);
    receiver.release(1);
    worker
        .add_webhook("acct", oidc_hook(&receiver.url(), &tokens.url))
        .await;
    worker.publish_event().await;
    let took = first_attempt(&worker).await;
    let received = receiver.received();
    assert!(
        received.len() >= 2,
        "the 401 and the hanging retry: {}",
        received.len()
    );
    assert_ne!(
        received[0].header("authorization"),
        received[1].header("authorization"),
        "the second POST carries a fresh token"
    );
    assert!(tokens.requests.load(Ordering::SeqCst) >= 2);
    assert!(
        took < TIMEOUT + Duration::from_secs(2),
        "the attempt took {took:?}"
    );
    // Retried: a third POST (the next attempt) arrives.
    worker.wait_for_metric(RETRIED, 1, WAIT).await;
    receiver.wait_for(3, WAIT).await;
    receiver.release(100);
    worker.stop().await;
}
