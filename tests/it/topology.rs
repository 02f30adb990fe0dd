//! Starting against queues an older version declared with other arguments: the worker stops at
//! once with one error line naming the queue and the argument, instead of reconnecting for ever.

use std::{process::Stdio, time::Duration};

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::{AMQPValue, FieldTable},
    Connection, ConnectionProperties,
};
use tokio::io::AsyncReadExt;

use crate::harness::{random_key, unique_prefix, AMQP_URL};

#[tokio::test]
async fn a_queue_declared_with_older_arguments_stops_the_worker_with_one_clear_error_line() {
    let prefix = unique_prefix();
    let incoming = format!("{prefix}.incoming");
    let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // What the previous version declared: a quorum queue, no delivery limit, no dead-lettering.
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(&incoming, durable, args)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-worker"))
        .args(["run", "--role", "worker"])
        .env("WEBHOOK_WORKER__AMQP__URL", AMQP_URL)
        .env("WEBHOOK_WORKER__AMQP__PREFIX", &prefix)
        .env(
            "WEBHOOK_WORKER__DATABASE__URL",
            format!("sqlite://{}/old.db", dir.path().display()),
        )
        .env("WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY", random_key())
        .env("WEBHOOK_WORKER__API__LISTEN", "127.0.0.1:0")
        .env("WEBHOOK_WORKER__LOG__LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker binary");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the worker stops on its own instead of reconnecting")
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(!status.success(), "{status}");
    let naming: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(&incoming))
        .collect();
    assert_eq!(naming.len(), 1, "one line names the queue:\n{stderr}");
    // The broker reports the first argument that differs (here x-dead-letter-exchange).
    assert!(naming[0].contains("argument \"x-"), "{}", naming[0]);
    assert!(
        !stderr.contains("reconnecting"),
        "no reconnect loop:\n{stderr}"
    );

    // The worker declared the exchange before the queue it stopped on; remove both.
    channel
        .queue_delete(&incoming, QueueDeleteOptions::default())
        .await
        .unwrap();
    let _ = channel
        .exchange_delete(&format!("{prefix}.events"), Default::default())
        .await;
}
