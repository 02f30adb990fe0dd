//! Start-up and shutdown: builds the shared state once (store, registry, metrics, HTTP client),
//! starts the parts the role asks for, and stops them in order on SIGTERM or SIGINT.
//! [`Application`] is also how tests and the benchmark run a whole worker in-process.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    cli::Role, config::Config, delivery::Deliverer, health::Readiness, pipeline::Pipeline,
    registry::Registry, store::Store, telemetry::Metrics, worker::Worker,
};

pub struct Application {
    registry: Arc<Registry>,
    metrics: Metrics,
    readiness: Readiness,
    store: Store,
    api_addr: Option<SocketAddr>,
    /// Fired once to stop every part; each part drains its own work before its task ends.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Application {
    /// Connects to the database, loads the registry, and starts the parts of `role`.
    pub async fn start(config: Config, role: Role) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let readiness = Readiness::new(role != Role::Api);
        let key = config.encryption_key().map_err(anyhow::Error::msg)?;
        let store = Store::connect(
            config.database.url.expose(),
            config.database.max_connections,
            key,
        )
        .await
        .context("cannot open the database (database.url)")?;
        let registry = Registry::load(store.clone(), metrics.clone())
            .await
            .context("cannot load the webhooks")?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(
            registry
                .clone()
                .refresh_until_cancelled(config.registry.refresh.0, cancel.clone()),
        );
        if role != Role::Api {
            let tokens = Some(crate::oidc::TokenProvider);
            let deliverer = Deliverer::new(&config, tokens, metrics.clone())?;
            let pipeline = Arc::new(Pipeline::new(
                &config,
                registry.clone(),
                deliverer,
                metrics.clone(),
            ));
            let worker = Worker::new(config.clone(), pipeline, readiness.clone(), metrics.clone());
            tasks.spawn(worker.run(cancel.clone()));
        }
        tasks.close();
        tracing::info!(?role, "webhook-worker started");
        Ok(Self {
            registry,
            metrics,
            readiness,
            store,
            api_addr: None,
            cancel,
            tasks,
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Where the HTTP API listens, when this role serves it.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Stops every part and waits for each to drain (the worker within `shutdown.grace`).
    pub async fn stop(self) {
        self.cancel.cancel();
        self.tasks.wait().await;
        self.store.close().await;
    }

    /// Runs until SIGTERM or SIGINT, then stops.
    pub async fn run_until_signalled(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.stop().await;
    }
}

/// The `run` command: logging, a runtime, and the application until a signal.
pub fn run(config: Config, role: Role) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = Application::start(config, role).await?;
        app.run_until_signalled().await;
        Ok(())
    })
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
