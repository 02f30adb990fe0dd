//! A memory alarm: RabbitMQ blocks the connections that publish. A worker started under it is
//! not ready and SIGTERM still ends it within the grace period; a worker already running when
//! it comes turns not ready, and ready again by itself once it clears; either way every event
//! published before it is delivered or dead-lettered.

use std::{collections::HashSet, process::Command, time::Duration};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};
use serde_json::json;

use crate::support::{
    event, eventually, free_port, random_key, seed_webhooks, unique_prefix, Behaviour,
    InProcessWorker, PacedReceiver, TestReceiver, WorkerProcess, WorkerProcessBuilder,
};

const GRACE: Duration = Duration::from_secs(6);

/// Raises a memory alarm; restores the watermark that was set before when dropped, whatever
/// happened.
pub struct MemoryAlarmGuard {
    previous: Vec<String>,
}

impl MemoryAlarmGuard {
    pub fn raise() -> Self {
        let output = crate::support::rabbitmqctl()
            .args(["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
            .output()
            .expect("rabbitmqctl");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        // "0.4", or "{absolute,1073741824}".
        let previous = match text.strip_prefix("{absolute,") {
            Some(rest) => vec!["absolute".into(), rest.trim_end_matches('}').to_string()],
            None if text.parse::<f64>().is_ok() => vec![text],
            None => panic!("cannot read the memory watermark: {text:?}"),
        };
        let guard = MemoryAlarmGuard { previous };
        let status = crate::support::rabbitmqctl()
            .args(["set_vm_memory_high_watermark", "0.0001"])
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "could not lower the watermark");
        guard
    }
}

impl Drop for MemoryAlarmGuard {
    fn drop(&mut self) {
        let _ = crate::support::rabbitmqctl()
            .arg("set_vm_memory_high_watermark")
            .args(&self.previous)
            .status();
    }
}

fn spawn_worker(prefix: &str, database_url: &str, key: &str, port: u16) -> WorkerProcess {
    WorkerProcessBuilder::new(prefix, database_url, key)
        .env("AMQP__CONFIRM_TIMEOUT", "1s")
        .env("DELIVERY__TIMEOUT", "3s")
        .env("SHUTDOWN__GRACE", "6s")
        .on_port(port)
        .show_stderr()
        .spawn()
}

/// Waits until `/readyz` names the broker `state` (`"blocked"`, `"ok"`); panics after 30 s.
async fn wait_for_broker_check(worker: &WorkerProcess, state: &str) {
    let what = format!("/readyz to say the broker is {state}");
    eventually(Duration::from_secs(30), what, || async {
        let checks = worker.readiness_checks().await;
        if checks["broker"] == state {
            Ok(())
        } else {
            Err(checks)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_memory_alarm_readiness_fails_sigterm_exits_and_no_event_is_lost() {
    const EVENTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/alarm.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    // Every first attempt fails, so each event needs a retry job published: what the alarm blocks.
    let receiver = TestReceiver::start().await;
    receiver.always(503);
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"]});
    seed_webhooks(&database_url, &key, "acct", &[hook]).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut ids = HashSet::new();
    for _ in 0..EVENTS {
        let (id, body) = event("business.updated");
        broker
            .publish(Some("acct"), "business.updated", &body)
            .await;
        ids.insert(id);
    }

    let port = free_port();
    {
        let _alarm = MemoryAlarmGuard::raise();
        let mut first = spawn_worker(&prefix, &database_url, &key, port);
        receiver.wait_for(1, Duration::from_secs(30)).await;
        first.wait_for_readyz(503, Duration::from_secs(30)).await;
        // Not ready because the broker blocks it, said as such, and in the metric.
        wait_for_broker_check(&first, "blocked").await;
        assert_eq!(first.metric("amqp_blocked").await, 1);
        let pid = first.child.id().expect("running").to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let asked = tokio::time::Instant::now();
        let status = tokio::time::timeout(GRACE * 2, first.child.wait())
            .await
            .expect("SIGTERM ends a blocked worker")
            .unwrap();
        let took = asked.elapsed();
        eprintln!("a blocked worker exited {took:?} after SIGTERM (grace {GRACE:?})");
        assert!(took <= GRACE + Duration::from_secs(1), "took {took:?}");
        assert!(status.success(), "{status}");
    } // the guard restores the watermark: the alarm clears

    let before = receiver.count();
    receiver.always(200);
    let mut second = spawn_worker(&prefix, &database_url, &key, port);
    second.wait_for_readyz(200, Duration::from_secs(30)).await;
    let dead = std::cell::RefCell::new(HashSet::new());
    let what = "every event delivered or dead-lettered";
    eventually(Duration::from_secs(60), what, || async {
        while let Some(message) = broker
            .channel
            .basic_get(&broker.names.dead, BasicGetOptions::default())
            .await
            .unwrap()
        {
            message.ack(BasicAckOptions::default()).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
            let id = body["id"].as_str().unwrap_or_default().to_string();
            dead.borrow_mut().insert(id);
        }
        let delivered: HashSet<String> = receiver.received()[before..]
            .iter()
            .filter_map(|r| r.header("x-webhook-event-id"))
            .collect();
        let settled: HashSet<String> = delivered.union(&dead.borrow()).cloned().collect();
        if settled.is_superset(&ids) {
            Ok(())
        } else {
            Err(format!(
                "{} of {EVENTS} were",
                settled.intersection(&ids).count()
            ))
        }
    })
    .await;
    second.kill().await;
    broker.delete_topology().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_under_a_running_worker_makes_it_not_ready_until_it_clears_and_loses_nothing() {
    const EVENTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/alarm-running.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    // Each first attempt takes 2 s and fails: the retries it needs are published while the
    // alarm holds, so the worker's publishing connection is blocked under it.
    let receiver = PacedReceiver::start(Behaviour {
        latency: Duration::from_secs(2),
        status: 503,
        ..Behaviour::default()
    })
    .await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"]});
    seed_webhooks(&database_url, &key, "acct", &[hook]).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    // Retries 5 s apart, four of them: a first attempt failed before the alarm came is still
    // owed a retry after it clears.
    let mut worker = WorkerProcessBuilder::new(&prefix, &database_url, &key)
        .env("AMQP__CONFIRM_TIMEOUT", "1s")
        .env("DELIVERY__TIMEOUT", "3s")
        .env(
            "DELIVERY__RETRY_SCHEDULE",
            "[\"5s\", \"5s\", \"5s\", \"5s\"]",
        )
        .show_stderr()
        .spawn();
    worker.wait_for_readyz(200, Duration::from_secs(30)).await;
    let types = vec!["business.updated"; EVENTS];
    let ids: HashSet<String> = broker
        .publish_burst("acct", &types)
        .await
        .into_iter()
        .collect();

    eventually(Duration::from_secs(30), "a first arrival", || async {
        !receiver.arrivals().is_empty()
    })
    .await;
    {
        let _alarm = MemoryAlarmGuard::raise();
        worker.wait_for_readyz(503, Duration::from_secs(30)).await;
        wait_for_broker_check(&worker, "blocked").await;
        assert_eq!(worker.metric("amqp_blocked").await, 1);
        receiver.change(|b| {
            b.status = 200;
            b.latency = Duration::ZERO;
        });
    } // the guard restores the watermark: the alarm clears

    worker.wait_for_readyz(200, Duration::from_secs(30)).await;
    wait_for_broker_check(&worker, "ok").await;
    assert_eq!(worker.metric("amqp_blocked").await, 0);
    let what = "every event delivered after the alarm cleared";
    eventually(Duration::from_secs(60), what, || async {
        let delivered = receiver.delivered();
        if delivered.is_superset(&ids) {
            Ok(())
        } else {
            Err(format!(
                "{} of {EVENTS} were",
                delivered.intersection(&ids).count()
            ))
        }
    })
    .await;
    assert!(worker.is_running(), "the same worker delivered them");
    worker.kill().await;
    broker.delete_topology().await;
    // The worker's schedule declared a delay queue the publisher's topology does not name.
    broker
        .channel
        .queue_delete(&format!("{prefix}.retry.5s"), QueueDeleteOptions::default())
        .await
        .expect("the 5 s delay queue is deleted");
}
