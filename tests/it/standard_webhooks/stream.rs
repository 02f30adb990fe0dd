//! A PATCH of `secret` under a stream of deliveries loses none: the receiver checks every
//! delivery with one secret (both formats' signatures, with our own verifier: the published
//! library checked the same headers in `delivery`), answers 401 when a check fails, and switches
//! from the old secret to the new one at a random moment inside the overlap, as a customer
//! deploying the new secret would.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, Router};
use rand::Rng;
use serde_json::json;
use webhook_worker::{
    cli::Role,
    secret::Secret,
    signing::{new_standard_secret, StandardKey},
    tools::listen::{check_platform, SignatureCheck},
};

use super::{config, create, patch_secret};
use crate::support::{eventually, InProcessWorker};

const EVENTS: usize = 2_000;
const BATCH: usize = 50;
const WAIT: Duration = Duration::from_secs(120);

/// What the checking receiver knows and saw.
struct Checking {
    /// The one secret it checks with: the old one, then, once switched, the new one.
    secret: Mutex<String>,
    /// Event ids delivered with good signatures.
    good: Mutex<HashSet<String>>,
    refused: AtomicUsize,
    /// Deliveries that carried two Standard Webhooks signatures (inside the overlap).
    doubly_signed: AtomicUsize,
    /// Good deliveries checked with the new secret.
    after_switch: AtomicUsize,
    switched: std::sync::atomic::AtomicBool,
}

impl Checking {
    fn verdict(&self, headers: &HeaderMap, body: &[u8]) -> Option<String> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let secret = self.secret.lock().unwrap().clone();
        let key = StandardKey::parse(&secret).expect("the test's secrets are Standard keys");
        let (id, at, signature) = (
            header("webhook-id")?,
            header("webhook-timestamp")?,
            header("webhook-signature")?,
        );
        let age = chrono::Utc::now().timestamp() - at.parse::<i64>().ok()?;
        if age.abs() > 300 || !key.verifies(signature, id, at, body) {
            return None;
        }
        let platform = check_platform(
            Some(&Secret::new(secret)),
            header("x-middesk-signature-256"),
            header("x-middesk-signature-256-previous"),
            body,
        );
        if !matches!(platform, SignatureCheck::Ok | SignatureCheck::OkPrevious) {
            return None;
        }
        if signature.split(' ').count() == 2 {
            self.doubly_signed.fetch_add(1, Relaxed);
        }
        Some(id.to_string())
    }
}

async fn receive(
    State(state): State<Arc<Checking>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    match state.verdict(&headers, &body) {
        Some(id) => {
            if state.switched.load(Relaxed) {
                state.after_switch.fetch_add(1, Relaxed);
            }
            state.good.lock().unwrap().insert(id);
            StatusCode::OK
        }
        None => {
            state.refused.fetch_add(1, Relaxed);
            StatusCode::UNAUTHORIZED
        }
    }
}

async fn start_receiver(secret: &str) -> (Arc<Checking>, String) {
    let state = Arc::new(Checking {
        secret: Mutex::new(secret.to_string()),
        good: Mutex::default(),
        refused: AtomicUsize::new(0),
        doubly_signed: AtomicUsize::new(0),
        after_switch: AtomicUsize::new(0),
        switched: false.into(),
    });
    let app = Router::new().fallback(receive).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (state, url)
}

#[tokio::test]
async fn a_secret_patched_under_a_stream_of_deliveries_loses_none_at_a_receiver_that_switches_mid_overlap(
) {
    let worker = InProcessWorker::start_as(&config("6s"), Role::All).await;
    let (old, new) = (new_standard_secret(), new_standard_secret());
    let (receiver, url) = start_receiver(&old).await;
    let path = create(
        &worker,
        json!({"url": url, "enabled_events": ["*"],
        "signature_format": "standard_webhooks", "secret": old}),
    )
    .await;

    // A producer's pace: 50 events every 100 ms, so the stream lasts 4 s or more.
    let publishing = async {
        let mut ids = Vec::with_capacity(EVENTS);
        for _ in 0..EVENTS / BATCH {
            ids.extend(
                worker
                    .publish_burst("acct", &["business.updated"; BATCH])
                    .await,
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ids
    };
    let rotating = async {
        eventually(WAIT, "a fifth of the events delivered", || async {
            let good = receiver.good.lock().unwrap().len();
            (good >= EVENTS / 5).then_some(()).ok_or(good)
        })
        .await;
        patch_secret(&worker, &path, &new).await;
        // The customer deploys the new secret some time inside the 6 s overlap.
        let switch_after = rand::thread_rng().gen_range(1_000..3_000);
        tokio::time::sleep(Duration::from_millis(switch_after)).await;
        *receiver.secret.lock().unwrap() = new.clone();
        receiver.switched.store(true, Relaxed);
    };
    let (ids, ()) = tokio::join!(publishing, rotating);
    let ids: HashSet<String> = ids.into_iter().collect();
    eventually(
        WAIT,
        "every event delivered with a good signature",
        || async {
            let good = receiver.good.lock().unwrap();
            let missing = ids.difference(&good).count();
            (missing == 0)
                .then_some(())
                .ok_or(format!("{missing} missing"))
        },
    )
    .await;
    assert_eq!(receiver.refused.load(Relaxed), 0, "deliveries answered 401");
    assert!(
        receiver.doubly_signed.load(Relaxed) > 0,
        "none inside the overlap"
    );
    assert!(
        receiver.after_switch.load(Relaxed) > 0,
        "none after the switch"
    );
    worker.stop().await;
}
