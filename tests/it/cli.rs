//! The built binary: `check-config` names a bad key, an address error shows the form expected,
//! `run` serves the API (role `api`) or only the operational routes (role `worker`), and a
//! `run` on a busy port fails in one line.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sha2::{Digest, Sha256};

use crate::support::eventually;

const BIN: &str = env!("CARGO_BIN_EXE_webhook-worker");

/// The binary with only the given environment, so the machine's cannot leak in.
fn binary() -> Command {
    let mut command = Command::new(BIN);
    command.env_clear();
    command
}

#[test]
fn check_config_with_a_bad_encryption_key_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[database]\nencryption_key = \"too-short\"\n").unwrap();
    let output = binary()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("database.encryption_key"), "{stderr}");

    let good = dir.path().join("good.toml");
    let key = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="; // base64 of 32 bytes
    std::fs::write(&good, format!("[database]\nencryption_key = \"{key}\"\n")).unwrap();
    let output = binary()
        .arg("check-config")
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn address_errors_show_the_form_expected() {
    // (arguments, an environment variable as NAME=value or "", what the error must show)
    let cases = [
        (
            "check-config",
            "WEBHOOK_WORKER__API__LISTEN=localhost:8080",
            "e.g. 127.0.0.1:8080",
        ),
        (
            "check-config",
            "WEBHOOK_WORKER__AMQP__URL=127.0.0.1:5672",
            "e.g. amqp://guest:guest@127.0.0.1:5672/%2f",
        ),
        (
            "check-config",
            "WEBHOOK_WORKER__DATABASE__URL=data/webhook-worker.db",
            "e.g. sqlite://data/webhook-worker.db",
        ),
        (
            "publish",
            "WEBHOOK_WORKER__AMQP__URL=amqp://guest:guest@127.0.0.1:notaport/%2f",
            "expected amqp://user:password@host:port/vhost",
        ),
        ("listen --bind localhost", "", "e.g. 127.0.0.1"),
        (
            "healthcheck --url 127.0.0.1:8080",
            "",
            "e.g. http://127.0.0.1:8080/readyz",
        ),
    ];
    for (args, env, form) in cases {
        let mut command = binary();
        command.args(args.split_whitespace());
        if let Some((name, value)) = env.split_once('=') {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args} {env}: {stderr}");
        assert!(stderr.contains(form), "{args} {env}: {stderr}");
        // The URL keys may hold a password: their values are not echoed.
        assert!(!stderr.contains("data/webhook-worker.db\""), "{stderr}");
        assert!(!stderr.contains("notaport"), "{stderr}");
    }
}

/// A running `webhook-worker run`, stopped with SIGTERM (and killed if it hangs) on drop.
struct Running {
    child: Child,
    base: String,
    token: String,
    /// The `amqp.prefix` it runs with (a worker declares its topology under it).
    prefix: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(role: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("whk_cli_{}", hex::encode(rand::random::<[u8; 12]>()));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    let port = free_port();
    let prefix_suffix = uuid::Uuid::new_v4().simple().to_string();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[amqp]\nprefix = \"whw-it-{suffix}\"\n\
             [database]\nurl = \"sqlite://{db}\"\n\
             [api]\nlisten = \"127.0.0.1:{port}\"\n\
             [[api.tokens]]\naccount_id = \"cli\"\ntoken_sha256 = \"{hash}\"\n\
             [log]\nformat = \"pretty\"\nlevel = \"warn\"\n",
            suffix = prefix_suffix,
            db = dir.path().join("webhooks.db").display(),
        ),
    )
    .unwrap();
    let child = binary()
        .args(["run", "--role", role, "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running {
        child,
        base: format!("http://127.0.0.1:{port}"),
        token,
        prefix: format!("whw-it-{prefix_suffix}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    let what = format!("`run --role {role}` to serve /healthz");
    eventually(Duration::from_secs(20), what, || async {
        client
            .get(format!("{}/healthz", running.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    running
}

/// SIGTERM, then the exit status within a few seconds.
async fn terminate(running: &mut Running) -> std::process::ExitStatus {
    let pid = running.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let child = std::cell::RefCell::new(&mut running.child);
    let exited = || async { child.borrow_mut().try_wait().unwrap() };
    eventually(Duration::from_secs(10), "an exit after SIGTERM", exited).await
}

#[tokio::test]
async fn run_with_role_api_serves_the_webhooks_api_and_stops_on_sigterm() {
    let mut running = start("api").await;
    let client = reqwest::Client::new();
    let created = client
        .post(format!("{}/v1/webhooks", running.base))
        .bearer_auth(&running.token)
        .json(&serde_json::json!({"url": "https://example.com/", "enabled_events": ["*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let ready = client
        .get(format!("{}/readyz", running.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "role api does not wait for a broker");
    assert!(terminate(&mut running).await.success());
}

#[tokio::test]
async fn run_with_role_worker_does_not_expose_the_webhooks_api() {
    let running = start("worker").await;
    let client = reqwest::Client::new();
    let list = client
        .get(format!("{}/v1/webhooks", running.base))
        .bearer_auth(&running.token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 404);
    let metrics = client
        .get(format!("{}/metrics", running.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    // The worker declared its topology: remove it, with the default schedule it used.
    let mut running = running;
    assert!(terminate(&mut running).await.success());
    let config = webhook_worker::config::Config::from_toml(&format!(
        "[amqp]\nprefix = {:?}",
        running.prefix
    ))
    .unwrap();
    let topology = webhook_worker::queue::Topology::from_config(&config);
    crate::support::Broker::connect(topology)
        .await
        .delete_topology()
        .await;
}

#[test]
fn rotate_key_adds_a_key_that_jwks_then_publishes_beside_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/keys.db", dir.path().display());
    let key = crate::support::random_key();
    let run = |args: &[&str]| {
        let output = binary()
            .args(args)
            .env("WEBHOOK_WORKER__DATABASE__URL", &database_url)
            .env("WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY", &key)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{args:?}: {output:?}");
        stdout
    };
    let kids = |jwks: &str| -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let first = kids(&run(&["jwks", "--account-id", "acct"]));
    assert_eq!(first.len(), 1, "a key is made on first need");
    let rotation: serde_json::Value =
        serde_json::from_str(&run(&["rotate-key", "--account-id", "acct"])).unwrap();
    let new_kid = rotation["kid"].as_str().unwrap();
    assert!(
        rotation["signs_from"].is_string() && rotation["previous_keys_published_until"].is_string()
    );
    assert_eq!(
        kids(&run(&["jwks", "--account-id", "acct"])),
        [first[0].as_str(), new_kid]
    );
    assert_eq!(kids(&run(&["jwks", "--account-id", "other"])).len(), 1);
}

/// A second `run` on a port already taken ends at once with one line on stderr naming the
/// address (no log lines, no broker shutdown noise, no panic) and a failure status.
#[tokio::test]
async fn run_on_a_busy_api_port_prints_one_error_line_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    std::fs::write(
        &config,
        format!(
            "[amqp]\nprefix = \"whw-it-{suffix}\"\n\
             [database]\nurl = \"sqlite://{db}\"\n\
             [api]\nlisten = \"{address}\"\n",
            db = dir.path().join("webhooks.db").display(),
        ),
    )
    .unwrap();
    let mut command = binary();
    command
        .args(["run", "--role", "all", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("`run` on a busy port exits")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(&address.to_string()), "{stderr}");
    assert!(lines[0].contains("api.listen"), "{stderr}");
    drop(taken);
}
