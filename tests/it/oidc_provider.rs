//! A real OAuth 2.0 authorization server for interop tests: panva's `oidc-provider` (npm),
//! run by `tests/oidc/server.mjs` on 127.0.0.1 and a port of its own per test.
//!
//! Install it first with `tests/oidc/setup.sh`. Each [`OidcProvider`] is one node process,
//! killed when the value is dropped (and, should the test process die, when its stdin closes).

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The client the harness registers to call the introspection endpoint (client_secret_basic).
const INTROSPECTOR_ID: &str = "introspector";
const INTROSPECTOR_SECRET: &str = "introspector-secret-0123456789abcdef";

/// The scope the provider knows, and the resource (RFC 8707) client-credentials tokens may
/// target; a token for the resource carries it as `aud`.
pub const SCOPE: &str = "webhooks:write";
pub const RESOURCE: &str = "https://receiver.example/webhooks";
/// A second resource whose tokens live one second (`expires_in: 1`).
pub const SHORT_LIVED_RESOURCE: &str = "https://short-lived.example/webhooks";

pub struct OidcProvider {
    pub port: u16,
    pub issuer: String,
    pub token_endpoint: String,
    introspection_endpoint: String,
    http: reqwest::Client,
    child: Child,
    stderr: tempfile::NamedTempFile,
}

impl OidcProvider {
    /// Starts a provider with `clients` (oidc-provider client metadata: `client_id`,
    /// `token_endpoint_auth_method`, and `client_secret` or `jwks`).
    pub async fn start(clients: Vec<Value>) -> OidcProvider {
        Self::start_on(clients, 0).await
    }

    /// [`OidcProvider::start`] on `port` (0: one the system picks). A provider stopped and
    /// started again on the same port has the same issuer and token endpoint.
    pub async fn start_on(clients: Vec<Value>, port: u16) -> OidcProvider {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: run tests/oidc/setup.sh"
        );
        let mut clients = clients;
        clients.push(json!({
            "client_id": INTROSPECTOR_ID,
            "client_secret": INTROSPECTOR_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
        }));
        let config = json!({
            "port": port,
            "clients": clients,
            "scopes": [SCOPE],
            "resources": {
                RESOURCE: { "scope": SCOPE },
                SHORT_LIVED_RESOURCE: { "scope": SCOPE, "accessTokenTTL": 1 },
            },
        });
        let stderr = tempfile::NamedTempFile::new().expect("a temporary file for node's stderr");
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(config.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen the stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("cannot run node (is Node.js installed?)");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(20), stdout.read_line(&mut line)).await;
        // Keep reading, so a stray write to stdout never meets a closed pipe (EPIPE kills node).
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });
        let started: Option<Value> = match read {
            Ok(Ok(n)) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        };
        let Some(started) = started else {
            let _ = child.start_kill();
            let log = std::fs::read_to_string(stderr.path()).unwrap_or_default();
            panic!("oidc-provider did not start; it printed {line:?}; stderr:\n{log}");
        };
        let text = |key: &str| started[key].as_str().unwrap_or_default().to_string();
        OidcProvider {
            port: started["port"].as_u64().unwrap_or_default() as u16,
            issuer: text("issuer"),
            token_endpoint: text("token_endpoint"),
            introspection_endpoint: text("introspection_endpoint"),
            http: test_http_client(),
            child,
            stderr,
        }
    }

    /// Stops the provider and waits until it is gone, so that its port is free again.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The introspection response (RFC 7662) for `token`, asked by the introspector client.
    pub async fn introspect(&self, token: &str) -> Value {
        self.http
            .post(&self.introspection_endpoint)
            .basic_auth(INTROSPECTOR_ID, Some(INTROSPECTOR_SECRET))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspection request")
            .error_for_status()
            .expect("introspection status")
            .json()
            .await
            .expect("introspection JSON")
    }

    /// POSTs to the token endpoint naming `client_id`, whatever their outcome.
    pub async fn token_requests(&self, client_id: &str) -> usize {
        self.count(client_id, "total").await
    }

    /// Token requests of `client_id` that the provider answered with a token.
    pub async fn tokens_issued(&self, client_id: &str) -> usize {
        self.count(client_id, "issued").await
    }

    /// How many token requests of `client_id` carried an assertion signed with each kid.
    pub async fn assertion_kids(&self, client_id: &str) -> std::collections::HashMap<String, u64> {
        let counts = self.counts().await;
        counts[client_id]["kids"]
            .as_object()
            .map(|kids| {
                kids.iter()
                    .map(|(kid, n)| (kid.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes the provider fetch `client_id`'s `jwks_uri` again now.
    pub async fn refresh_jwks(&self, client_id: &str) {
        let response = self
            .http
            .post(format!(
                "{}/_test/refresh_jwks?client_id={client_id}",
                self.issuer
            ))
            .send()
            .await
            .expect("refresh request");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status, 204,
            "the provider could not refresh the JWKS: {body}"
        );
    }

    async fn count(&self, client_id: &str, which: &str) -> usize {
        let counts = self.counts().await;
        counts[client_id][which].as_u64().unwrap_or(0) as usize
    }

    async fn counts(&self) -> Value {
        self.http
            .get(format!("{}/_test/token_requests", self.issuer))
            .send()
            .await
            .expect("token request counts")
            .json()
            .await
            .expect("token request counts JSON")
    }

    /// What the provider wrote on stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A plain client for tests against 127.0.0.1 (the worker's own client refuses loopback unless
/// configured to allow it): no proxy, no redirects, a timeout.
pub fn test_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// Address rules that let the token client reach a provider on 127.0.0.1 (its default rules
/// refuse loopback, as the worker's do unless `delivery.allow_networks` opens it).
pub fn loopback_allowed() -> webhook_worker::net::addresses::AddressPolicy {
    webhook_worker::net::addresses::AddressPolicy::new(vec!["127.0.0.0/8".parse().expect("a CIDR")])
}
