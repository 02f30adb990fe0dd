//! A receiver with a character, for endpoint-health tests: it takes a given time per request,
//! serves at most a given number at once (refusing the rest at once with a status), answers a
//! status the test can change, and keeps the highest number of requests it held at once (a
//! request dropped by the client stops counting), also per event id. Every answer is recorded
//! with its time.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::IntoResponse,
    routing::any,
    Router,
};

use super::wait::eventually;

#[derive(Debug, Clone)]
pub struct Behaviour {
    /// How long each served request takes.
    pub latency: Duration,
    /// Requests beyond this many in flight are answered at once with `refuse_status`.
    pub capacity: usize,
    pub refuse_status: u16,
    /// The status of served requests.
    pub status: u16,
    /// A `Retry-After` on every non-2xx answer.
    pub retry_after: Option<RetryAfter>,
}

#[derive(Debug, Clone, Copy)]
pub enum RetryAfter {
    Seconds(u64),
    /// An HTTP date this many seconds from the answer, rounded up to a whole second.
    DateIn(u64),
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            capacity: usize::MAX,
            refuse_status: 503,
            status: 200,
            retry_after: None,
        }
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub at: Instant,
    pub event_id: String,
    pub attempt: String,
    pub status: u16,
    /// It carried `Authorization: Bearer …`.
    pub bearer: bool,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Requests in flight per event id (`X-Webhook-Event-Id`), and the most ever for one event.
    per_event: Mutex<HashMap<String, usize>>,
    max_per_event: AtomicUsize,
    arrivals: Mutex<Vec<Arrival>>,
}

pub struct PacedReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Counts a request in flight (in all and for its event) until its handler ends or is dropped.
struct InFlight(Arc<Shared>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(n) = self.0.per_event.lock().unwrap().get_mut(&self.1) {
            *n -= 1;
        }
    }
}

impl PacedReceiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(behaviour),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            per_event: Mutex::default(),
            max_per_event: AtomicUsize::new(0),
            arrivals: Mutex::default(),
        });
        let app = Router::new()
            .fallback(any(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// A receiver that accepts every request and never answers.
    pub async fn hanging() -> Self {
        Self::start(Behaviour {
            latency: Duration::from_secs(3600),
            ..Behaviour::default()
        })
        .await
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn change(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.behaviour.lock().unwrap());
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().unwrap().clone()
    }

    /// Distinct events answered 2xx.
    pub fn delivered(&self) -> HashSet<String> {
        self.arrivals()
            .into_iter()
            .filter(|a| (200..300).contains(&a.status))
            .map(|a| a.event_id)
            .collect()
    }

    /// (event id, status) of every answer, in order.
    pub fn answers(&self) -> Vec<(String, u16)> {
        let arrivals = self.shared.arrivals.lock().unwrap();
        arrivals
            .iter()
            .map(|a| (a.event_id.clone(), a.status))
            .collect()
    }

    /// The most requests held at once since the start or the last reset.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The most requests for one event id held at once.
    pub fn max_in_flight_per_event(&self) -> usize {
        self.shared.max_per_event.load(Ordering::SeqCst)
    }

    pub fn reset_max_in_flight(&self) {
        let now = self.shared.in_flight.load(Ordering::SeqCst);
        self.shared.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// Waits until `n` distinct events were answered 2xx; returns when the last one was.
    pub async fn wait_for_delivered(&self, n: usize, limit: Duration) -> Instant {
        let what = format!("{n} events answered 2xx");
        eventually(limit, what, || async {
            let delivered = self.delivered().len();
            if delivered >= n {
                Ok(self.arrivals().iter().map(|a| a.at).max().unwrap())
            } else {
                Err(format!("{delivered} were"))
            }
        })
        .await
    }
}

impl Drop for PacedReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let event_id = headers
        .get("x-webhook-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let for_event = {
        let mut per_event = shared.per_event.lock().unwrap();
        let n = per_event.entry(event_id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    shared.max_per_event.fetch_max(for_event, Ordering::SeqCst);
    let guard = InFlight(shared.clone(), event_id);
    shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let behaviour = shared.behaviour.lock().unwrap().clone();
    let status = if now > behaviour.capacity {
        behaviour.refuse_status
    } else {
        tokio::time::sleep(behaviour.latency).await;
        behaviour.status
    };
    drop(guard);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    shared.arrivals.lock().unwrap().push(Arrival {
        at: Instant::now(),
        event_id: header("x-webhook-event-id"),
        attempt: header("x-webhook-attempt"),
        status,
        bearer: header("authorization").starts_with("Bearer "),
    });
    let mut response_headers = HeaderMap::new();
    if let (Some(retry_after), false) = (behaviour.retry_after, (200..300).contains(&status)) {
        let value = match retry_after {
            RetryAfter::Seconds(seconds) => seconds.to_string(),
            RetryAfter::DateIn(seconds) => {
                let at = chrono::Utc::now() + chrono::TimeDelta::seconds(seconds as i64 + 1);
                at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
            }
        };
        response_headers.insert("retry-after", HeaderValue::from_str(&value).unwrap());
    }
    let status = StatusCode::from_u16(status).unwrap();
    (status, response_headers, "ok")
}
