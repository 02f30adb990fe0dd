//! Start-up and shutdown: builds the shared state once (store, registry, metrics), starts the
//! parts the role asks for, and stops them in order on SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{cli::Role, config::Config, registry::Registry, store::Store, telemetry::Metrics};

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
    shutdown_signal().await;
    tracing::info!("shutting down");
    cancel.cancel();
    let _ = refresh.await;
    store.close().await;
    Ok(())
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
