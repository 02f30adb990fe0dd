//! `api.metrics_listen`: `/metrics` (and `/healthz`) on an address of their own, and no longer
//! on `api.listen`, where the API keeps answering.

use std::net::SocketAddr;

use webhook_worker::cli::Role;

use crate::support::InProcessWorker;

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .expect("answered");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

#[tokio::test]
async fn metrics_move_to_metrics_listen_and_leave_the_api_port() {
    let worker =
        InProcessWorker::start_as("[api]\nmetrics_listen = \"127.0.0.1:0\"", Role::All).await;
    let api = worker.app().api_addr();
    let metrics = worker.app().metrics_addr().expect("a metrics address");
    assert_ne!(api, metrics);

    let (status, text) = get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("# EOF"), "{text}");
    assert_eq!(get(metrics, "/healthz").await.0, 200);
    // Nothing else is served there: not the API, not even readiness.
    assert_eq!(get(metrics, "/v1/webhooks").await.0, 404);
    assert_eq!(get(metrics, "/openapi.json").await.0, 404);
    assert_eq!(get(metrics, "/readyz").await.0, 404);

    let (status, text) = get(api, "/metrics").await;
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("errors"), "{text}");
    assert_eq!(get(api, "/readyz").await.0, 200);
    assert_eq!(get(api, "/v1/webhooks").await.0, 401);
    worker.stop().await;
}

#[tokio::test]
async fn a_worker_only_process_moves_its_metrics_too() {
    let worker =
        InProcessWorker::start_as("[api]\nmetrics_listen = \"127.0.0.1:0\"", Role::Worker).await;
    let api = worker.app().api_addr();
    let metrics = worker.app().metrics_addr().expect("a metrics address");
    assert_eq!(get(metrics, "/metrics").await.0, 200);
    assert_eq!(get(api, "/metrics").await.0, 404);
    assert_eq!(get(api, "/readyz").await.0, 200);
    worker.stop().await;
}

#[tokio::test]
async fn without_metrics_listen_metrics_stay_on_the_api_port() {
    let worker = InProcessWorker::start_as("", Role::All).await;
    assert!(worker.app().metrics_addr().is_none());
    assert_eq!(get(worker.app().api_addr(), "/metrics").await.0, 200);
    worker.stop().await;
}
