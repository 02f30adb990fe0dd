//! The receiving end, run as a child process of the bench (`bench --sink`) so that its CPU is
//! not counted as the worker's: verifies every signature, records when each event (by its
//! sequence number, carried in the event id) first arrived, and answers `GET /stats` and
//! `GET /receipts` for the bench, which reads the sink's CPU from `/proc/<pid>/stat`.
//!
//! Beside the healthy endpoint (`/hook`) it serves the misbehaving ones: `/hang` accepts a
//! request and never answers; `/slow` answers `--slow-status` after `--slow-latency-ms` (the
//! two-account mode's noisy account). `GET /noisy` counts what those two saw.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Router,
};
use webhook_worker::signing::{sign, StandardKey};

/// The healthy webhooks' secret: a Standard Webhooks one, so `--standard-webhooks` can use it
/// too (the platform's header signs its bytes as given).
pub const SECRET: &str = "whsec_YmVuY2htYXJrLWJlbmNobWFyay1iZW5jaG1hcmst";

/// The secret `--rotating-secret` creates the webhooks with before giving them [`SECRET`].
pub const PREVIOUS_SECRET: &str = "whsec_cHJldmlvdXMtcHJldmlvdXMtcHJldmlvdXMtcHJl";

/// Event ids the bench publishes: a valid UUID whose last group is the sequence number.
pub fn event_id(seq: usize) -> String {
    format!("00000000-0000-4000-8000-{seq:012x}")
}

fn sequence(id: &str) -> Option<usize> {
    usize::from_str_radix(id.get(24..)?, 16).ok()
}

/// Nanoseconds since the epoch: comparable between the bench and its sink process.
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Sink {
    /// First receipt of each sequence number (0: not yet): the bench's only per-event state,
    /// 8 bytes an event, in this process rather than the worker's.
    receipts: Vec<AtomicU64>,
    count: AtomicUsize,
    duplicates: AtomicUsize,
    bad_signatures: AtomicUsize,
    refused: AtomicUsize,
    in_flight: AtomicUsize,
    first_ns: AtomicU64,
    last_ns: AtomicU64,
    latency: Duration,
    capacity: usize,
    slow_status: StatusCode,
    slow_latency: Duration,
    slow: Misbehaving,
    hanging: Misbehaving,
    /// [`SECRET`]'s key, decoded once, to check `webhook-signature` when a delivery has one.
    standard_key: StandardKey,
}

/// Requests seen by a misbehaving endpoint: received, answered, in flight now and at most.
#[derive(Default)]
struct Misbehaving {
    received: AtomicUsize,
    answered: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Misbehaving {
    fn enter(&self) -> Held<'_> {
        self.received.fetch_add(1, Relaxed);
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Relaxed);
        Held(&self.in_flight)
    }

    fn text(&self) -> String {
        format!(
            "{} {} {} {}",
            self.received.load(Relaxed),
            self.answered.load(Relaxed),
            self.in_flight.load(Relaxed),
            self.max_in_flight.load(Relaxed),
        )
    }
}

/// Counts a request in flight until it is answered or dropped.
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let _held = Held(&sink.in_flight);
    if sink.in_flight.fetch_add(1, Relaxed) >= sink.capacity {
        sink.refused.fetch_add(1, Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if !sink.latency.is_zero() {
        tokio::time::sleep(sink.latency).await;
    }
    let now = wall_ns();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let valid = header("x-middesk-signature-256")
        .is_some_and(|s| s.as_bytes() == sign(SECRET.as_bytes(), &body).as_bytes())
        && match (
            header("webhook-signature"),
            header("webhook-id"),
            header("webhook-timestamp"),
        ) {
            (Some(signature), Some(id), Some(at)) => {
                sink.standard_key.verifies(signature, id, at, &body)
            }
            _ => true,
        };
    if !valid {
        sink.bad_signatures.fetch_add(1, Relaxed);
    }
    let seq = headers
        .get("x-webhook-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(sequence);
    if let Some(slot) = seq.and_then(|s| sink.receipts.get(s)) {
        if slot.compare_exchange(0, now, Relaxed, Relaxed).is_err() {
            sink.duplicates.fetch_add(1, Relaxed);
        }
    }
    let _ = sink.first_ns.compare_exchange(0, now, Relaxed, Relaxed);
    sink.last_ns.fetch_max(now, Relaxed);
    sink.count.fetch_add(1, Relaxed);
    StatusCode::OK
}

/// The hanging endpoint: accepts the request and never answers (until the worker gives up and
/// drops the connection, which ends this future).
async fn hang(State(sink): State<Arc<Sink>>) {
    let _held = sink.hanging.enter();
    std::future::pending::<()>().await
}

/// The slowly misbehaving endpoint: `--slow-status` after `--slow-latency-ms`.
async fn slow(State(sink): State<Arc<Sink>>) -> StatusCode {
    let _held = sink.slow.enter();
    tokio::time::sleep(sink.slow_latency).await;
    sink.slow.answered.fetch_add(1, Relaxed);
    sink.slow_status
}

/// `received answered in_flight max_in_flight` of `/slow`, then the same of `/hang`.
async fn noisy(State(sink): State<Arc<Sink>>) -> String {
    format!("{} {}", sink.slow.text(), sink.hanging.text())
}

async fn stats(State(sink): State<Arc<Sink>>) -> String {
    format!(
        "{} {} {} {} {} {}",
        sink.count.load(Relaxed),
        sink.duplicates.load(Relaxed),
        sink.bad_signatures.load(Relaxed),
        sink.refused.load(Relaxed),
        sink.first_ns.load(Relaxed),
        sink.last_ns.load(Relaxed),
    )
}

async fn receipts(State(sink): State<Arc<Sink>>) -> Vec<u8> {
    sink.receipts
        .iter()
        .flat_map(|r| r.load(Relaxed).to_le_bytes())
        .collect()
}

/// How the sink's endpoints behave, and how many sequence numbers it records.
#[derive(Clone)]
pub struct Settings {
    pub events: usize,
    pub latency_ms: u64,
    pub capacity: Option<usize>,
    pub slow_status: u16,
    pub slow_latency_ms: u64,
}

impl Settings {
    pub fn new(args: &crate::Args, events: usize) -> Self {
        Settings {
            events,
            latency_ms: args.latency_ms,
            capacity: args.capacity,
            slow_status: args.two.slow_status,
            slow_latency_ms: args.two.slow_latency_ms,
        }
    }
}

/// Runs the sink until killed; prints its address on the first line of stdout.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let Settings {
        events,
        latency_ms,
        capacity,
        ..
    } = settings;
    let sink = Arc::new(Sink {
        receipts: (0..events).map(|_| AtomicU64::new(0)).collect(),
        count: AtomicUsize::new(0),
        duplicates: AtomicUsize::new(0),
        bad_signatures: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        first_ns: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        latency: Duration::from_millis(latency_ms),
        capacity: capacity.unwrap_or(usize::MAX),
        slow_status: StatusCode::from_u16(settings.slow_status)?,
        slow_latency: Duration::from_millis(settings.slow_latency_ms),
        slow: Misbehaving::default(),
        standard_key: StandardKey::parse(SECRET)
            .map_err(|_| anyhow::anyhow!("the bench's secret is a Standard Webhooks key"))?,
        hanging: Misbehaving::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", listener.local_addr()?)?;
    out.flush()?;
    let app = Router::new()
        .route("/hook", post(receive))
        .route("/hang", post(hang))
        .route("/slow", post(slow))
        .route("/noisy", get(noisy))
        .route("/stats", get(stats))
        .route("/receipts", get(receipts))
        .with_state(sink);
    axum::serve(listener, app).await?;
    Ok(())
}

/// What a misbehaving endpoint saw (`GET /noisy`).
#[derive(Clone, Copy, Default, Debug)]
pub struct NoisyStats {
    pub received: usize,
    pub answered: usize,
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// What `GET /stats` says.
#[derive(Clone, Copy, Default)]
pub struct Stats {
    pub count: usize,
    pub duplicates: usize,
    pub bad_signatures: usize,
    pub refused: usize,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Stats {
    pub fn parse(text: &str) -> Option<Self> {
        let mut f = text.split(' ');
        Some(Stats {
            count: f.next()?.parse().ok()?,
            duplicates: f.next()?.parse().ok()?,
            bad_signatures: f.next()?.parse().ok()?,
            refused: f.next()?.parse().ok()?,
            first_ns: f.next()?.parse().ok()?,
            last_ns: f.next()?.parse().ok()?,
        })
    }
}

/// The sink as seen from the bench: a child process and an HTTP client to ask it.
pub struct SinkProcess {
    child: tokio::process::Child,
    pub addr: std::net::SocketAddr,
    pid: String,
    client: reqwest::Client,
}

impl SinkProcess {
    pub async fn spawn(settings: Settings) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.args(["--sink", "--events", &settings.events.to_string()]);
        command.args(["--latency-ms", &settings.latency_ms.to_string()]);
        if let Some(capacity) = settings.capacity {
            command.args(["--capacity", &capacity.to_string()]);
        }
        command.args(["--slow-status", &settings.slow_status.to_string()]);
        command.args(["--slow-latency-ms", &settings.slow_latency_ms.to_string()]);
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("sink stdout"))?;
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("sink exited"))?;
        Ok(SinkProcess {
            child,
            addr: line.trim().parse()?,
            pid: pid.to_string(),
            client: reqwest::Client::new(),
        })
    }

    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let url = format!("http://{}/stats", self.addr);
        let text = self.client.get(url).send().await?.text().await?;
        Stats::parse(&text).ok_or_else(|| anyhow::anyhow!("sink stats: {text}"))
    }

    /// First receipt (ns since the epoch, 0: none) of each sequence number.
    pub async fn receipts(&self) -> anyhow::Result<Vec<u64>> {
        let url = format!("http://{}/receipts", self.addr);
        let bytes = self.client.get(url).send().await?.bytes().await?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect())
    }

    /// What the misbehaving endpoints saw: `(slow, hanging)`.
    pub async fn noisy(&self) -> anyhow::Result<(NoisyStats, NoisyStats)> {
        let url = format!("http://{}/noisy", self.addr);
        let text = self.client.get(url).send().await?.text().await?;
        let n: Vec<usize> = text.split(' ').filter_map(|f| f.parse().ok()).collect();
        anyhow::ensure!(n.len() == 8, "sink noisy stats: {text}");
        let at = |i: usize| NoisyStats {
            received: n[i],
            answered: n[i + 1],
            in_flight: n[i + 2],
            max_in_flight: n[i + 3],
        };
        Ok((at(0), at(4)))
    }

    /// The sink's CPU seconds so far.
    pub fn cpu(&self) -> f64 {
        crate::procfs::cpu_seconds(&self.pid).unwrap_or(0.0)
    }

    /// Kills the sink and waits until it is gone, so that every connection the worker holds to
    /// it (a hanging endpoint's above all) is closed and its requests end now, not at their
    /// timeout.
    pub async fn kill_and_wait(&mut self) {
        let _ = self.child.kill().await;
    }
}
