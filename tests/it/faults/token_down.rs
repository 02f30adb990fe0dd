//! The OAuth token endpoint (a real oidc-provider) is stopped for 30 s with 10,000 events in
//! flight to a webhook that needs a fresh token every half second; then a provider starts again
//! on the same port, and the retries deliver what failed, each with a token.

use std::time::Duration;

use serde_json::json;

use crate::support::fault_scenario::{assert_settled, paced_config, slow_receiver, Stream};
use crate::{
    oidc::{POST_CLIENT, POST_SECRET},
    oidc_provider::OidcProvider,
    support::InProcessWorker,
};

fn client() -> Vec<serde_json::Value> {
    vec![json!({
        "client_id": POST_CLIENT,
        "client_secret": POST_SECRET,
        "token_endpoint_auth_method": "client_secret_post",
    })]
}

#[tokio::test]
async fn a_token_endpoint_down_for_30_s_delays_deliveries_and_loses_none_of_10000() {
    let provider = OidcProvider::start_on(client(), 0).await;
    let port = provider.port;
    let worker = InProcessWorker::start(&paced_config(
        "[delivery]\nretry_schedule = [\"10s\", \"30s\", \"1m\"]",
    ))
    .await;
    let receiver = slow_receiver().await;
    // A one-second token is cached for half a second: the outage is felt at once.
    worker
        .add_webhook(
            "acct",
            json!({
                "url": receiver.url(), "enabled_events": ["*"],
                "oidc_auth_method": "client_secret", "oidc_token_endpoint": provider.token_endpoint,
                "oidc_client_id": POST_CLIENT, "oidc_client_secret": POST_SECRET,
                "oidc_access_token_ttl_seconds": 1,
            }),
        )
        .await;
    let stream = Stream::publish(&worker, &receiver).await;
    stream.until_a_fifth_delivered().await;
    provider.stop().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = stream.tally();
    let provider = OidcProvider::start_on(client(), port).await;
    assert!(!during.all_delivered(), "the outage came mid-stream");
    let token_failures = worker.metric("deliveries_total{outcome=\"retry_scheduled\"}");
    assert!(token_failures > 0, "deliveries failed without a token");

    let after = stream.until_all_delivered().await;
    assert_settled(&worker, Duration::from_secs(30)).await;
    assert!(
        worker.app().readiness().broker_ok(),
        "the worker still runs"
    );
    assert!(
        provider.tokens_issued(POST_CLIENT).await > 0,
        "the provider started again issued tokens"
    );
    let arrivals = receiver.arrivals();
    assert!(
        arrivals.iter().all(|a| a.bearer),
        "every delivery carried a token"
    );
    after.report(&format!(
        "token endpoint down for 30 s after {} delivered ({token_failures} retries scheduled)",
        during.delivered
    ));
    worker.stop().await;
}
