//! One outcome publish per outcome under a memory alarm (issue 17): 300 events to an endpoint
//! answering 500 (a 503 would also shrink its concurrency until deliveries are parked, which
//! only blurs the count of attempts), two retries 5 s apart, `amqp.confirm_timeout = "2s"`, and the broker's memory
//! alarm raised for 30 s while the first retries are being published. Before the fix, a confirm
//! that timed out was published again every timeout, and the queued copies all went out when the
//! alarm cleared: one event was attempted 8 times and the dead letters held 975 letters for 169
//! events. Here every (event, attempt number) reaches the receiver at most once, no event is
//! attempted more often than the schedule allows, and every event is dead-lettered exactly once.
//! The worker's peak RSS during the alarm is printed (`VmHWM` after a reset via `clear_refs`).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};
use serde_json::json;

use crate::{
    alarm::MemoryAlarmGuard,
    support::{
        eventually, random_key, seed_webhooks, unique_prefix, until_quiet, Behaviour, Broker,
        InProcessWorker, PacedReceiver, WorkerProcessBuilder,
    },
};

const EVENTS: usize = 300;
const ALARM: Duration = Duration::from_secs(30);

/// `VmHWM` or `VmRSS` of process `pid`, in MiB.
fn memory_mib(pid: u32, key: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Takes every dead letter off the queue; counts them by event id.
async fn take_dead_letters(broker: &Broker, letters: &mut HashMap<String, usize>) {
    while let Some(message) = broker
        .channel
        .basic_get(&broker.names.dead, BasicGetOptions::default())
        .await
        .unwrap()
    {
        message.ack(BasicAckOptions::default()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&message.data).unwrap_or_default();
        let id = body["id"].as_str().unwrap_or("unreadable").to_string();
        *letters.entry(id).or_default() += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_alarm_while_retries_are_published_repeats_no_attempt_and_no_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/outcome-alarm.db", dir.path().display());
    let key = random_key();
    let prefix = unique_prefix();
    let receiver = PacedReceiver::start(Behaviour {
        latency: Duration::from_millis(200),
        status: 500,
        ..Behaviour::default()
    })
    .await;
    let hook = json!({"url": receiver.url(), "enabled_events": ["*"]});
    seed_webhooks(&database_url, &key, "acct", &[hook]).await;
    let broker = InProcessWorker::publisher_for(&prefix).await;
    let mut worker = WorkerProcessBuilder::new(&prefix, &database_url, &key)
        .env("AMQP__CONFIRM_TIMEOUT", "2s")
        .env("DELIVERY__TIMEOUT", "3s")
        .env("DELIVERY__RETRY_SCHEDULE", "[\"5s\", \"5s\"]")
        .show_stderr()
        .spawn();
    worker.wait_for_readyz(200, Duration::from_secs(30)).await;
    let pid = worker.child.id().expect("running");
    let ids: HashSet<String> = broker
        .publish_burst("acct", &vec!["business.updated"; EVENTS])
        .await
        .into_iter()
        .collect();

    // The first answers are in: their retry jobs are being published.
    eventually(Duration::from_secs(30), "10 arrivals", || async {
        receiver.arrivals().len() >= 10
    })
    .await;
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let rss_before = memory_mib(pid, "VmRSS:");
    let (arrivals_at_alarm, peak) = {
        let _alarm = MemoryAlarmGuard::raise();
        let arrivals = receiver.arrivals().len();
        worker.wait_for_readyz(503, Duration::from_secs(20)).await;
        tokio::time::sleep(ALARM).await;
        (arrivals, memory_mib(pid, "VmHWM:"))
    }; // the guard restores the watermark: the alarm clears
    eprintln!(
        "outcome alarm: raised after {arrivals_at_alarm} answers, held {ALARM:?}; worker RSS \
         {rss_before:.1} MiB before it, peak during it {peak:.1} MiB (VmHWM reset: {reset})"
    );
    assert!(arrivals_at_alarm < EVENTS * 3, "the alarm came mid-stream");

    let letters = std::cell::RefCell::new(HashMap::new());
    eventually(
        Duration::from_secs(180),
        "every event dead-lettered",
        || async {
            let mut taken = letters.borrow().clone();
            take_dead_letters(&broker, &mut taken).await;
            let dead = ids.iter().filter(|id| taken.contains_key(*id)).count();
            *letters.borrow_mut() = taken;
            if dead == EVENTS {
                Ok(())
            } else {
                Err(format!("{dead} of {EVENTS} were"))
            }
        },
    )
    .await;
    // Anything queued twice comes before the worker is quiet.
    let counts = || async { (receiver.arrivals().len(), worker.settles().await) };
    until_quiet(&broker, Duration::from_secs(60), counts).await;
    let mut letters = letters.into_inner();
    take_dead_letters(&broker, &mut letters).await;
    let peak_after = memory_mib(pid, "VmHWM:");
    assert!(worker.is_running(), "the same worker did it all");
    worker.kill().await;

    let mut attempts: HashMap<(String, String), usize> = HashMap::new();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for arrival in receiver.arrivals() {
        *per_event.entry(arrival.event_id.clone()).or_default() += 1;
        *attempts
            .entry((arrival.event_id, arrival.attempt))
            .or_default() += 1;
    }
    let repeated = attempts.values().filter(|n| **n > 1).count();
    let most = per_event.values().copied().max().unwrap_or(0);
    let full = per_event.values().filter(|n| **n == 3).count();
    let letters_total: usize = letters.values().sum();
    let twice = letters.values().filter(|n| **n > 1).count();
    eprintln!(
        "outcome alarm: {} answers for {EVENTS} events ({full} with all 3 attempts), most \
         attempts for one event {most}, (event, attempt) pairs seen twice {repeated}; \
         {letters_total} dead letters for {} events, {twice} dead-lettered more than once; \
         worker peak RSS over the whole run {peak_after:.1} MiB",
        receiver.arrivals().len(),
        letters.len()
    );
    assert_eq!(repeated, 0, "an attempt number reached the receiver twice");
    assert!(
        most <= 3,
        "the schedule allows 3 attempts, one event had {most}"
    );
    assert_eq!(twice, 0, "an event was dead-lettered more than once");
    assert_eq!(letters.len(), EVENTS);
    broker.delete_topology().await;
    broker
        .channel
        .queue_delete(&format!("{prefix}.retry.5s"), QueueDeleteOptions::default())
        .await
        .expect("the 5 s delay queue is deleted");
}
