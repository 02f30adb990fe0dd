//! Auto-disable: a webhook whose deliveries all failed for `delivery.disable_after` is disabled,
//! and re-enabling it through the API (`"disabled_at": null`) resumes delivery.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use webhook_worker::{
    api::{self, ApiState},
    health::Readiness,
};

use crate::support::{Behaviour, InProcessWorker, PacedReceiver};

const TOKEN: &str = "whk_test_health_0123456789";
const DISABLED: &str = "webhooks_disabled_total{reason=\"failing\"}";

/// The Webhooks API over the worker's own registry, as in role `all`.
async fn serve_api(worker: &InProcessWorker, cancel: CancellationToken) -> String {
    let app = worker.app();
    let state = ApiState::new(
        &worker.config,
        app.registry().clone(),
        Readiness::new(false),
        app.metrics().clone(),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve(
        listener,
        state,
        api::ConnectionLimits::default(),
        cancel,
    ));
    base
}

#[tokio::test]
async fn a_webhook_failing_for_disable_after_is_disabled_and_re_enabling_resumes_delivery() {
    let hash = hex::encode(Sha256::digest(TOKEN.as_bytes()));
    let worker = InProcessWorker::start(&format!(
        "[delivery]\ndisable_after = \"3s\"\nretry_schedule = [{}]\n\
         [api]\ntokens = [{{ account_id = \"acct\", token_sha256 = \"{hash}\" }}]",
        vec!["\"500ms\""; 20].join(", ")
    ))
    .await;
    let cancel = CancellationToken::new();
    let base = serve_api(&worker, cancel.clone()).await;
    let receiver = PacedReceiver::start(Behaviour {
        status: 500,
        ..Behaviour::default()
    })
    .await;
    let webhook = worker
        .add_webhook(
            "acct",
            json!({"url": receiver.url(), "enabled_events": ["*"]}),
        )
        .await;
    let store = worker.app().registry().store().clone();
    worker.publish_event().await;
    worker
        .wait_for_metric(DISABLED, 1, Duration::from_secs(20))
        .await;
    let failed_for = {
        let arrivals = receiver.arrivals();
        arrivals[arrivals.len() - 1]
            .at
            .duration_since(arrivals[0].at)
    };
    assert!(
        failed_for >= Duration::from_secs(3),
        "disabled after {failed_for:?}"
    );
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/webhooks/{}", webhook.id);
    let shown: serde_json::Value = client
        .get(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(shown["disabled_at"].is_string(), "{shown}");
    assert!(store.failing_since(webhook.id).await.unwrap().is_some());

    receiver.change(|b| b.status = 200);
    let reply = client
        .patch(&url)
        .bearer_auth(TOKEN)
        .json(&json!({"disabled_at": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    assert!(
        store.failing_since(webhook.id).await.unwrap().is_none(),
        "re-enabling clears the failing record"
    );
    let (id, _) = worker.publish_event().await;
    receiver
        .wait_for_delivered(1, Duration::from_secs(20))
        .await;
    assert!(receiver.delivered().contains(&id));
    cancel.cancel();
    worker.stop().await;
}
