//! A real HTTP receiver on 127.0.0.1 for tests: records every request (headers and raw body) and
//! answers with a status the test plans: a queue of statuses, then a default. It can also hold
//! requests until the test releases them, to play a hanging endpoint.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::IntoResponse,
    routing::any,
    Router,
};
use tokio::sync::Semaphore;

use super::wait::eventually;

#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path (a test can give each webhook a path of its own).
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct Plan {
    statuses: VecDeque<u16>,
    default_status: u16,
    location: Option<String>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<Plan>>,
    /// When set, each request waits for a permit before answering.
    gate: Option<Arc<Semaphore>>,
}

pub struct TestReceiver {
    pub addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl TestReceiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0", None).await
    }

    /// A receiver whose requests hang until [`TestReceiver::release`].
    pub async fn gated() -> Self {
        Self::start_on("127.0.0.1:0", Some(Arc::new(Semaphore::new(0)))).await
    }

    pub async fn start_on(bind: &str, gate: Option<Arc<Semaphore>>) -> Self {
        let shared = Shared {
            received: Arc::default(),
            plan: Arc::new(Mutex::new(Plan {
                default_status: 200,
                ..Plan::default()
            })),
            gate,
        };
        let app = Router::new()
            .fallback(any(record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests get these statuses, in order; then the default.
    pub fn plan(&self, statuses: &[u16]) {
        self.shared.plan.lock().unwrap().statuses.extend(statuses);
    }

    pub fn always(&self, status: u16) {
        self.shared.plan.lock().unwrap().default_status = status;
    }

    pub fn redirect_to(&self, location: &str) {
        let mut plan = self.shared.plan.lock().unwrap();
        plan.default_status = 302;
        plan.location = Some(location.to_string());
    }

    pub fn release(&self, requests: usize) {
        if let Some(gate) = &self.shared.gate {
            gate.add_permits(requests);
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    /// Waits until at least `n` requests arrived; panics after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let what = format!("{n} requests at {}", self.addr);
        eventually(limit, what, || async {
            let received = self.received();
            if received.len() >= n {
                Ok(received)
            } else {
                Err(format!("got {}", received.len()))
            }
        })
        .await
    }
}

impl TestReceiver {
    /// Waits until every one of `ids` arrived at least once (duplicates allowed: delivery is
    /// at-least-once); panics after `limit`, saying how many did.
    pub async fn wait_for_event_ids(
        &self,
        ids: &std::collections::HashSet<String>,
        limit: Duration,
    ) {
        let what = format!("each of {} events delivered", ids.len());
        eventually(limit, what, || async {
            let seen: std::collections::HashSet<String> = self
                .received()
                .iter()
                .filter_map(|r| r.header("x-webhook-event-id"))
                .collect();
            if seen.is_superset(ids) {
                Ok(())
            } else {
                Err(format!("{} delivered", seen.intersection(ids).count()))
            }
        })
        .await
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    shared.received.lock().unwrap().push(Received {
        path,
        headers,
        body,
    });
    if let Some(gate) = &shared.gate {
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
    }
    let (status, location) = {
        let mut plan = shared.plan.lock().unwrap();
        let status = plan.statuses.pop_front().unwrap_or(plan.default_status);
        (status, plan.location.clone())
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response_headers = HeaderMap::new();
    if let Some(location) = location.filter(|_| status.is_redirection()) {
        response_headers.insert("location", location.parse().unwrap());
    }
    (status, response_headers, "ok")
}
