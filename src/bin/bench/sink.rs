//! The receiving end, run as a child process of the bench (`bench --sink`) so that its CPU is
//! not counted as the worker's: verifies every signature, records when each event (by its
//! sequence number, carried in the event id) first arrived, and answers `GET /stats` and
//! `GET /receipts` for the bench, which reads the sink's CPU from `/proc/<pid>/stat`.

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
use webhook_worker::signing::sign;

pub const SECRET: &str = "whsec_benchmark";

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
    let valid = headers
        .get("x-middesk-signature-256")
        .is_some_and(|s| s.as_bytes() == sign(SECRET.as_bytes(), &body).as_bytes());
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

/// The hanging endpoint: accepts the request and never answers.
async fn hang() {
    std::future::pending::<()>().await
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

/// Runs the sink until killed; prints its address on the first line of stdout.
pub async fn serve(events: usize, latency_ms: u64, capacity: Option<usize>) -> anyhow::Result<()> {
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
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", listener.local_addr()?)?;
    out.flush()?;
    let app = Router::new()
        .route("/hook", post(receive))
        .route("/hang", post(hang))
        .route("/stats", get(stats))
        .route("/receipts", get(receipts))
        .with_state(sink);
    axum::serve(listener, app).await?;
    Ok(())
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
    pub async fn spawn(
        events: usize,
        latency_ms: u64,
        capacity: Option<usize>,
    ) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.args(["--sink", "--events", &events.to_string()]);
        command.args(["--latency-ms", &latency_ms.to_string()]);
        if let Some(capacity) = capacity {
            command.args(["--capacity", &capacity.to_string()]);
        }
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

    /// The sink's CPU seconds so far.
    pub fn cpu(&self) -> f64 {
        crate::procfs::cpu_seconds(&self.pid).unwrap_or(0.0)
    }

    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}
