//! The published Standard Webhooks verifier (npm `standardwebhooks`, pinned, installed by
//! `tests/oidc/setup.sh`), run by node through `tests/oidc/verify-standard-webhooks.mjs`: one
//! process per test, one JSON line per check. Not our code checking our code.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::support::Received;

pub struct NpmVerifier {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NpmVerifier {
    pub fn start() -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/standardwebhooks").is_dir(),
            "standardwebhooks is not installed: run tests/oidc/setup.sh"
        );
        let mut child = Command::new("node")
            .arg(dir.join("verify-standard-webhooks.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run node (is Node.js installed?)");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self {
            _child: child,
            stdin,
            lines,
        }
    }

    /// The library's verdict on `body` with `headers` (the three `webhook-*` headers) and
    /// `secret`: `Ok`, or its error message.
    pub async fn verify(&mut self, secret: &str, headers: Value, body: &str) -> Result<(), String> {
        let mut line = json!({"secret": secret, "headers": headers, "body": body}).to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("node reads");
        self.stdin.flush().await.expect("node reads");
        let answer = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .expect("node answers in time")
            .expect("node's stdout is readable")
            .expect("node is still running");
        let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
        match answer["ok"].as_bool() {
            Some(true) => Ok(()),
            _ => Err(answer["error"].as_str().unwrap_or("?").to_string()),
        }
    }

    /// [`NpmVerifier::verify`] of a delivery as it was received.
    pub async fn verify_received(
        &mut self,
        secret: &str,
        received: &Received,
    ) -> Result<(), String> {
        let body = String::from_utf8(received.body.to_vec()).expect("a UTF-8 body");
        self.verify(secret, standard_headers(received), &body).await
    }
}

/// The three Standard Webhooks headers of a delivery, as the library takes them.
pub fn standard_headers(received: &Received) -> Value {
    let header = |name: &str| received.header(name).unwrap_or_default();
    json!({
        "webhook-id": header("webhook-id"),
        "webhook-timestamp": header("webhook-timestamp"),
        "webhook-signature": header("webhook-signature"),
    })
}

/// How many signatures a delivery's `webhook-signature` carries.
pub fn signature_count(received: &Received) -> usize {
    received
        .header("webhook-signature")
        .map_or(0, |h| h.split(' ').count())
}
