//! Waiting for the worker's deliveries at the sink, and what was measured while it delivered.

use std::time::{Duration, Instant};

use crate::{procfs, sink::SinkProcess};

/// One stretch of delivering, timed from the first delivery the sink saw to the last.
pub struct Drain {
    pub per_second: f64,
    /// This process's CPU per delivery: the worker's, plus the publisher's if it ran meanwhile.
    pub own_us: f64,
    pub broker_us: Option<f64>,
    /// PostgreSQL's CPU per delivery (every `postgres` process on the machine).
    pub postgres_us: f64,
    pub sink_us: f64,
    pub sink_cores: f64,
    /// Peak RSS of this process, and the highest RSS sampled while delivering.
    pub peak_rss_mib: f64,
    pub max_sampled_rss_mib: f64,
    pub stats: crate::sink::Stats,
}

/// Polls the sink until it has `expected` deliveries in all (counting from the start).
pub async fn drain(
    sink: &SinkProcess,
    expected: usize,
    broker: Option<&str>,
) -> anyhow::Result<Drain> {
    let deadline = Instant::now() + Duration::from_secs(600 + expected as u64 / 500);
    let before = sink.stats().await?.count;
    let mut first = None;
    let mut max_rss: f64 = 0.0;
    loop {
        let stats = sink.stats().await?;
        max_rss = max_rss.max(procfs::rss_mib());
        if first.is_none() && stats.count > before {
            first = Some((procfs::Sample::now(broker), sink.cpu(), stats.count));
        }
        if stats.count >= expected {
            let last = procfs::Sample::now(broker);
            let sink_cpu = sink.cpu();
            let (start, start_sink, start_count) = first.unwrap_or((last, sink_cpu, stats.count));
            let (wall, own, broker) = start.until(&last);
            let timed = (stats.count - start_count).max(1) as f64;
            return Ok(Drain {
                // The sink's own clock: from its first receipt to its last.
                per_second: (stats.count - before).saturating_sub(1).max(1) as f64
                    / ((stats.last_ns.saturating_sub(stats.first_ns).max(1)) as f64 / 1e9),
                own_us: own * 1e6 / timed,
                broker_us: broker.map(|b| b * 1e6 / timed),
                postgres_us: (last.postgres - start.postgres) * 1e6 / timed,
                sink_us: (sink_cpu - start_sink) * 1e6 / timed,
                sink_cores: (sink_cpu - start_sink) / wall.max(1e-9),
                peak_rss_mib: procfs::peak_rss_mib(),
                max_sampled_rss_mib: max_rss,
                stats,
            });
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {expected} deliveries arrived",
            stats.count
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50, p99 and max publish-to-receipt latency in ms of the events published at `sent`
/// (ns since the epoch) from sequence number `from`.
pub fn latencies(sent: &[u64], receipts: &[u64], from: usize) -> Option<(f64, f64, f64)> {
    let mut ms: Vec<f64> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, at)| {
            let got = *receipts.get(from + i)?;
            (got != 0).then(|| got.saturating_sub(*at) as f64 / 1e6)
        })
        .collect();
    ms.sort_unstable_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
    (!ms.is_empty()).then(|| (at(0.5), at(0.99), ms[ms.len() - 1]))
}
