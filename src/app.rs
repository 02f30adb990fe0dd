//! Start-up and shutdown: builds the shared state once (store, registry, metrics), starts the
//! parts the role asks for, and stops them in order on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, ApiState},
    cli::Role,
    config::Config,
    health::Readiness,
    registry::Registry,
    store::Store,
    telemetry::Metrics,
};

pub fn run(config: Config, role: Role) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(Arc::new(config), role))
}

async fn run_async(config: Arc<Config>, role: Role) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let key = config.encryption_key().map_err(anyhow::Error::msg)?;
    let store = Store::connect(
        config.database.url.expose(),
        config.database.max_connections,
        key,
    )
    .await
    .context("cannot open the database (database.url)")?;
    let registry = Registry::load(store.clone(), metrics.clone()).await?;
    tracing::info!(?role, "webhook-worker started");

    let cancel = CancellationToken::new();
    let refresh = tokio::spawn(
        registry
            .clone()
            .refresh_until_cancelled(config.registry.refresh.0, cancel.clone()),
    );
    // The consumer (roles `all` and `worker`) marks the broker ready once it is connected.
    let readiness = Readiness::new(matches!(role, Role::All | Role::Worker));
    let state = ApiState::new(&config, registry.clone(), readiness, metrics.clone())
        .map_err(anyhow::Error::msg)?;
    let mut http = start_http(&config, role, state, cancel.clone()).await?;

    tokio::select! {
        _ = shutdown_signal() => {}
        result = &mut http => {
            // The HTTP server stopped on its own: report it and stop the rest.
            result.context("the HTTP server task failed")?.context("the HTTP server failed")?;
        }
    }
    tracing::info!("shutting down");
    cancel.cancel();
    if !http.is_finished()
        && tokio::time::timeout(config.shutdown.grace.0, &mut http)
            .await
            .is_err()
    {
        tracing::warn!("HTTP requests still in flight after shutdown.grace; dropping them");
        http.abort();
    }
    let _ = refresh.await;
    store.close().await;
    Ok(())
}

/// Binds `api.listen` and serves: the whole API for roles `all` and `api`; only `/healthz`,
/// `/readyz` and `/metrics` for role `worker`, which must not expose the write API.
async fn start_http(
    config: &Config,
    role: Role,
    state: ApiState,
    cancel: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let address = config.api.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (api.listen)"))?;
    let router = match role {
        Role::All | Role::Api => {
            if state.tokens.is_empty() {
                tracing::warn!("no api.tokens configured: every /v1/webhooks request answers 401");
            }
            api::router(state)
        }
        Role::Worker => api::ops_router(state),
    };
    tracing::info!(%address, ?role, "HTTP server listening");
    Ok(tokio::spawn(api::serve_router(listener, router, cancel)))
}

/// Resolves on SIGTERM (containers) or SIGINT (a terminal).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
