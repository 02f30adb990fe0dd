//! Start-up and shutdown: builds the shared state once (store, registry, metrics, HTTP client),
//! starts the parts the role asks for, and stops them in order on SIGTERM or SIGINT.
//! [`Application`] is also how tests and the benchmark run a whole worker in-process.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    api::{self, ApiState},
    cli::Role,
    config::Config,
    delivery::Deliverer,
    health::Readiness,
    oidc::{AccountKeys, TokenProvider},
    pipeline::Pipeline,
    queue::DeclareError,
    registry::Registry,
    store::Store,
    telemetry::Metrics,
    worker::Worker,
};

pub struct Application {
    config: Arc<Config>,
    registry: Arc<Registry>,
    metrics: Metrics,
    readiness: Readiness,
    store: Store,
    api_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    /// The HTTP server; watched so that a server that stops on its own stops the process.
    http: JoinHandle<std::io::Result<()>>,
    /// The consumer (roles `all` and `worker`); watched too: it ends on its own only when the
    /// broker refuses the topology, which restarting would not fix.
    worker: Option<JoinHandle<Result<(), DeclareError>>>,
    /// Fired once to stop every part; each part drains its own work before its task ends.
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Application {
    /// Connects to the database, loads the registry, and starts the parts of `role`.
    pub async fn start(config: Config, role: Role) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let metrics = Metrics::new();
        // The consumer (roles `all` and `worker`) marks the broker ready once it is connected.
        let readiness = Readiness::new(role != Role::Api);
        let store = Store::from_config(&config).await?;
        let registry = Registry::load(store.clone(), metrics.clone())
            .await
            .context("cannot load the webhooks")?;
        crate::oidc::keys::warn_if_readable_by_others(&config.oidc.signing_keys);
        let keys = AccountKeys::new(Some(store.clone()), &config.oidc)
            .context("cannot load oidc.signing_keys")?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut worker_task = None;
        tasks.spawn(
            registry
                .clone()
                .refresh_until_cancelled(config.registry.refresh.0, cancel.clone()),
        );
        tasks.spawn(registry.clone().listen_until_cancelled(cancel.clone()));
        if role != Role::Api {
            let deliverer = Deliverer::new(&config, metrics.clone())?;
            // The same client as deliveries: token endpoints are customer-controlled too.
            let tokens = TokenProvider::new(
                deliverer.client().clone(),
                keys.clone(),
                &config.oidc,
                config.delivery.max_response_bytes,
                metrics.clone(),
            )
            .with_address_policy(deliverer.policy().clone());
            let deliverer = deliverer.with_tokens(tokens);
            let log = crate::delivery_log::DeliveryLog::start(
                store.clone(),
                &config.delivery_log,
                metrics.clone(),
                cancel.clone(),
                &tasks,
            );
            let dead_log = crate::delivery_log::dead_letters::DeadLetterLog::start(
                store.clone(),
                &config.delivery_log,
                metrics.clone(),
                cancel.clone(),
                &tasks,
            );
            let pipeline = Arc::new(
                Pipeline::new(&config, registry.clone(), deliverer, metrics.clone())
                    .with_delivery_log(log)
                    .with_dead_letter_log(dead_log),
            );
            tasks.spawn(crate::queue::depths::run(
                config.amqp.url.expose().to_string(),
                crate::queue::topology::Topology::from_config(&config),
                metrics.clone(),
                cancel.clone(),
            ));
            let worker = Worker::new(config.clone(), pipeline, readiness.clone(), metrics.clone());
            worker_task = Some(tokio::spawn(worker.run(cancel.clone())));
            // The longest attempt, token requests included, ends at the attempt deadline.
            if config.shutdown.grace.0 <= config.delivery.attempt_deadline() {
                tracing::warn!(
                    "shutdown.grace is not longer than delivery.attempt_deadline: an attempt \
                     under way at SIGTERM may be cut off and made again"
                );
            }
        }
        tasks.close();
        let state = ApiState::new(
            &config,
            registry.clone(),
            readiness.clone(),
            metrics.clone(),
        )
        .map_err(anyhow::Error::msg)?
        .with_keys(keys)
        .with_background(crate::redrive::Background {
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        });
        let (addrs, http) = start_http(&config, role, state, cancel.clone()).await?;
        let (api_addr, metrics_addr) = (addrs.api, addrs.metrics);
        tracing::info!(?role, %api_addr, "webhook-worker started");
        Ok(Self {
            config,
            registry,
            metrics,
            readiness,
            store,
            api_addr,
            metrics_addr,
            http,
            worker: worker_task,
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

    /// Where the HTTP server listens (the API, or only the operational routes for `worker`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where `/metrics` is served when `api.metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops every part and waits for each to drain within `shutdown.grace`.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let grace = self.config.shutdown.grace.0;
        if !self.http.is_finished() && tokio::time::timeout(grace, &mut self.http).await.is_err() {
            tracing::warn!("HTTP requests still in flight after shutdown.grace; dropping them");
            self.http.abort();
        }
        if let Some(worker) = self.worker.take() {
            if let Ok(Err(error)) = worker.await {
                tracing::error!(%error, "the worker had stopped");
            }
        }
        self.tasks.wait().await;
        self.store.close().await;
    }

    /// Runs until SIGTERM or SIGINT (or until the HTTP server fails), then stops.
    pub async fn run_until_signalled(mut self) -> anyhow::Result<()> {
        let result = tokio::select! {
            _ = shutdown_signal() => Ok(()),
            result = &mut self.http => {
                result.context("the HTTP server task failed")?.context("the HTTP server failed")
            }
            result = worker_stopped(&mut self.worker) => result,
        };
        tracing::info!("shutting down");
        self.stop().await;
        result
    }
}

/// Resolves when the worker stopped on its own (never, for role `api`).
async fn worker_stopped(
    worker: &mut Option<JoinHandle<Result<(), DeclareError>>>,
) -> anyhow::Result<()> {
    let Some(handle) = worker.as_mut() else {
        return std::future::pending().await;
    };
    let result = handle.await;
    *worker = None;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.into()),
        Err(panic) => Err(anyhow::anyhow!("the worker task failed: {panic}")),
    }
}

/// Binds `api.listen` and serves: the whole API for roles `all` and `api`; only `/healthz`,
/// `/readyz` and `/metrics` for role `worker`, which must not expose the write API. With
/// `api.metrics_listen` set, `/metrics` moves there (with `/healthz`); one task serves both.
async fn start_http(
    config: &Config,
    role: Role,
    state: ApiState,
    cancel: CancellationToken,
) -> anyhow::Result<(HttpAddrs, JoinHandle<std::io::Result<()>>)> {
    let address = config.api.listen;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (api.listen)"))?;
    let bound = listener.local_addr()?;
    let metrics_address = config
        .api
        .metrics_address()
        .map_err(|e| anyhow::anyhow!("api.metrics_listen: {e}"))?;
    let metrics_listener = match metrics_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} (api.metrics_listen)"))?,
        ),
        None => None,
    };
    let metrics_bound = match &metrics_listener {
        Some(listener) => Some(listener.local_addr()?),
        None => None,
    };
    let metrics_here = metrics_listener.is_none();
    let metrics = api::metrics_router(state.clone());
    let router = match role {
        Role::All | Role::Api => {
            if state.tokens.is_empty() {
                tracing::warn!("no api.tokens configured: every /v1/webhooks request answers 401");
            }
            api::api_router(state, metrics_here)
        }
        Role::Worker => api::worker_router(state, metrics_here),
    };
    tracing::info!(address = %bound, metrics = ?metrics_bound, ?role, "HTTP server listening");
    let limits = api::ConnectionLimits::from_config(&config.api);
    let main = api::serve_router(listener, router, limits, cancel.clone());
    let task = tokio::spawn(async move {
        match metrics_listener {
            None => main.await,
            Some(listener) => {
                let side = api::serve_router(listener, metrics, limits, cancel);
                tokio::try_join!(main, side).map(|_| ())
            }
        }
    });
    Ok((
        HttpAddrs {
            api: bound,
            metrics: metrics_bound,
        },
        task,
    ))
}

/// Where the HTTP server listens.
struct HttpAddrs {
    api: SocketAddr,
    metrics: Option<SocketAddr>,
}

/// The `run` command: logging, a runtime, and the application until a signal.
pub fn run(config: Config, role: Role) -> anyhow::Result<()> {
    crate::telemetry::init_logging(&config.log);
    // One worker thread per core unless TOKIO_WORKER_THREADS says otherwise: on a small machine
    // shared with the broker, 1 measured ~10 % less CPU per delivery (docs/performance.md).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = Application::start(config, role).await?;
        app.run_until_signalled().await
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
