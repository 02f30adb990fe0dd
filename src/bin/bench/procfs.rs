//! What the bench reads from `/proc`: CPU time of a process (ours, the broker's, the sink's) and
//! our peak resident memory. Linux only, like the machines the figures are for.

use std::time::Instant;

/// Linux reports `utime` and `stime` in USER_HZ ticks, 100 a second on every architecture it
/// exposes to user space (`sysconf(_SC_CLK_TCK)`), so no libc call is needed for it.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The RabbitMQ nodes' processes (`beam.smp`) on this machine that we can see, as one
/// comma-separated list: the machine's broker and, when one runs, the local cluster's three
/// nodes (`scripts/rabbitmq-cluster.sh`), whose CPU counts together ([`broker_cpu_seconds`]).
pub fn broker_pid() -> Option<String> {
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (name.bytes().all(|b| b.is_ascii_digit()) && comm.trim() == "beam.smp").then_some(name)
        })
        .collect();
    (!pids.is_empty()).then(|| pids.join(","))
}

/// CPU seconds used so far by the broker processes [`broker_pid`] listed.
pub fn broker_cpu_seconds(pids: &str) -> Option<f64> {
    pids.split(',').map(cpu_seconds).sum()
}

/// CPU seconds used so far by every PostgreSQL server process on this machine (`postgres`):
/// the bench's database's backends and the server's own writers.
pub fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "postgres").then_some(())?;
            cpu_seconds(&name)
        })
        .sum()
}

fn status_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak resident memory of this process since start or since [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// Current resident memory of this process, in MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:").unwrap_or(0) as f64 / 1024.0
}

/// Resets the peak (`VmHWM`) to the current RSS, so that the peak measured afterwards is the
/// worker's and not the publisher's before it (`clear_refs`, Linux 4.0 on).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU used so far by this process and by the broker, at one instant.
#[derive(Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub own: f64,
    pub broker: Option<f64>,
    pub postgres: f64,
}

impl Sample {
    pub fn now(broker: Option<&str>) -> Self {
        Sample {
            at: Instant::now(),
            own: cpu_seconds("self").unwrap_or(0.0),
            broker: broker.and_then(broker_cpu_seconds),
            postgres: postgres_cpu_seconds(),
        }
    }

    /// Wall seconds, own CPU seconds and broker CPU seconds from `self` to `later`.
    pub fn until(&self, later: &Sample) -> (f64, f64, Option<f64>) {
        let broker = match (self.broker, later.broker) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        (
            later.at.duration_since(self.at).as_secs_f64(),
            later.own - self.own,
            broker,
        )
    }
}
