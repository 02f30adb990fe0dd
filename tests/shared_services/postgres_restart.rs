//! PostgreSQL stopped for 10 s, then started again, under a replica running on it with 10,000
//! events in flight: deliveries go on from the registry in memory (the delivery log drops what
//! it cannot write, and counts it), readiness reports the database while it is away, and every
//! event is delivered.

use std::{process::Command, time::Duration};

use crate::support::{
    eventually,
    fault_scenario::{assert_settled, hook, paced_config, slow_receiver, Stream},
    Backend, InProcessWorker, TestDb,
};

const OUTAGE: Duration = Duration::from_secs(10);

/// The machine's cluster (`/etc/postgresql/<version>/main`).
fn cluster_version() -> String {
    let versions = std::fs::read_dir("/etc/postgresql").expect("/etc/postgresql");
    versions
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .max()
        .expect("a PostgreSQL cluster")
}

fn pg_ctlcluster(version: &str, action: &str) -> bool {
    let mut command = Command::new("pg_ctlcluster");
    command.args(["--skip-systemctl-redirect", version, "main", action]);
    if action == "stop" {
        command.args(["--", "-m", "fast"]);
    }
    command.status().map(|s| s.success()).unwrap_or(false)
}

fn postgres_accepts_connections() -> bool {
    Command::new("pg_isready")
        .args(["-h", "127.0.0.1", "-p", "5432", "-q"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Starts PostgreSQL again when dropped, whatever happened, and waits until it answers.
struct PostgresStopGuard {
    version: String,
}

impl PostgresStopGuard {
    fn stop() -> Self {
        let version = cluster_version();
        assert!(pg_ctlcluster(&version, "stop"), "pg_ctlcluster stop failed");
        PostgresStopGuard { version }
    }
}

impl Drop for PostgresStopGuard {
    fn drop(&mut self) {
        pg_ctlcluster(&self.version, "start");
        for _ in 0..60 {
            if postgres_accepts_connections() {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

async fn readyz(worker: &InProcessWorker) -> Option<u16> {
    let url = format!("http://{}/readyz", worker.app().api_addr());
    let answer = reqwest::get(url).await;
    answer.ok().map(|a| a.status().as_u16())
}

async fn wait_for_readyz(worker: &InProcessWorker, status: u16, limit: Duration) {
    eventually(
        limit,
        format_args!("/readyz to answer {status}"),
        || async {
            match readyz(worker).await {
                Some(answer) if answer == status => Ok(()),
                answer => Err(format!("it answered {answer:?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_postgresql_under_a_replica_with_10000_events_in_flight_loses_none() {
    let db = TestDb::new(Backend::Postgres).await;
    let worker = InProcessWorker::start(&paced_config(&format!(
        "[database]\nurl = \"{}\"",
        db.url()
    )))
    .await;
    let receiver = slow_receiver().await;
    worker.add_webhook("acct", hook(&receiver)).await;
    wait_for_readyz(&worker, 200, Duration::from_secs(30)).await;
    let stream = Stream::publish(&worker, &receiver).await;
    stream.until_a_fifth_delivered().await;

    let (before, during) = {
        let _guard = PostgresStopGuard::stop();
        let before = stream.tally();
        wait_for_readyz(&worker, 503, Duration::from_secs(30)).await;
        tokio::time::sleep(OUTAGE).await;
        (before, stream.tally())
    }; // the guard starts PostgreSQL again
    let while_down = during.delivered - before.delivered;
    assert!(
        while_down > 0,
        "deliveries went on while the database was down"
    );
    assert!(!during.all_delivered(), "the outage came mid-stream");

    let after = stream.until_all_delivered().await;
    assert_settled(&worker, Duration::from_secs(30)).await;
    wait_for_readyz(&worker, 200, Duration::from_secs(60)).await;
    // Every attempt is either in the log or counted as dropped from it (once the last batch is
    // written); some were dropped.
    let count = || {
        (
            worker.metric("deliveries_total{outcome=\"delivered\"}"),
            worker.metric("delivery_log_rows_total"),
            worker.metric("delivery_log_dropped_total"),
        )
    };
    let what = "every attempt logged or counted as dropped";
    let (attempts, dropped) = eventually(Duration::from_secs(15), what, || async {
        let (attempts, logged, dropped) = count();
        if logged + dropped == attempts {
            Ok((attempts, dropped))
        } else {
            Err(format!(
                "{attempts} attempts, {logged} logged and {dropped} dropped"
            ))
        }
    })
    .await;
    assert!(dropped > 0, "the log dropped what it could not write");
    after.report(&format!(
        "PostgreSQL stopped for {OUTAGE:?} after {} delivered ({while_down} delivered while it \
         was down; the delivery log dropped {dropped} of {attempts} rows)",
        before.delivered
    ));
    worker.stop().await;
}
