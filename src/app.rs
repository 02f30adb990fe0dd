//! Start-up and shutdown: builds the shared state once (store, registry, metrics, HTTP client),
//! starts the parts the role asks for, and stops them in order on SIGTERM or SIGINT.
//! [`Application`] is also how tests and the benchmark run a whole worker in-process.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    api::{self, ApiState},
    config::Config,
    delivery::Deliverer,
    delivery_log::{dead_letters::DeadLetterLog, DeliveryLog},
    health::Readiness,
    oidc::{AccountKeys, TokenProvider},
    pipeline::Pipeline,
    queue::DeclareError,
    registry::Registry,
    role::Role,
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
    /// Binds the HTTP listeners, connects to the database, loads the registry, and starts the
    /// parts of `role`.
    pub async fn start(config: Config, role: Role) -> anyhow::Result<Self> {
        // Bound before anything connects: a busy port ends the start with one clear error,
        // before a broker connection exists that would have to be torn down half-open.
        let listeners = HttpListeners::bind(&config).await?;
        let config = Arc::new(config);
        let metrics = Metrics::new();
        // The consumer (roles `all` and `worker`) marks the broker ready once it is connected.
        let readiness = Readiness::new(role != Role::Api).with_threads(config.delivery.threads);
        let store = Store::from_config(&config).await?;
        let registry = Registry::load(store.clone(), metrics.clone())
            .await
            .context("cannot load the webhooks")?;
        crate::oidc::keys::warn_if_readable_by_others(&config.oidc.signing_keys);
        let keys = AccountKeys::new(Some(store.clone()), &config.oidc)
            .context("cannot load oidc.signing_keys")?;
        let cancel = CancellationToken::new();
        let tasks = TaskTracker::new();
        tasks.spawn(
            registry
                .clone()
                .refresh_until_cancelled(config.registry.periods(), cancel.clone()),
        );
        tasks.spawn(registry.clone().listen_until_cancelled(cancel.clone()));
        let parts = Parts {
            config: &config,
            store: &store,
            registry: &registry,
            keys: &keys,
            metrics: &metrics,
            readiness: &readiness,
            cancel: &cancel,
            tasks: &tasks,
        };
        let worker = match role {
            Role::Api => None,
            Role::All | Role::Worker => Some(start_worker(parts)?),
        };
        tasks.close();
        let state = ApiState::new(
            &config,
            registry.clone(),
            readiness.clone(),
            metrics.clone(),
        )?
        .with_keys(keys)
        .with_background(crate::redrive::Background {
            tasks: tasks.clone(),
            cancel: cancel.clone(),
        });
        let (addrs, http) = start_http(listeners, &config, role, state, cancel.clone())?;
        tracing::info!(?role, api_addr = %addrs.api, "webhook-worker started");
        Ok(Self {
            config,
            registry,
            metrics,
            readiness,
            store,
            api_addr: addrs.api,
            metrics_addr: addrs.metrics,
            http,
            worker,
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
            _ = crate::shutdown::signal() => Ok(()),
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

/// The shared parts the consuming side is built from.
struct Parts<'a> {
    config: &'a Arc<Config>,
    store: &'a Store,
    registry: &'a Arc<Registry>,
    keys: &'a AccountKeys,
    metrics: &'a Metrics,
    readiness: &'a Readiness,
    cancel: &'a CancellationToken,
    tasks: &'a TaskTracker,
}

/// Starts the consuming side (roles `all` and `worker`): the delivery client and token
/// provider, the delivery and dead-letter logs, the queue-depth poller and the worker.
fn start_worker(parts: Parts<'_>) -> anyhow::Result<JoinHandle<Result<(), DeclareError>>> {
    let Parts {
        config,
        store,
        registry,
        keys,
        metrics,
        readiness,
        cancel,
        tasks,
    } = parts;
    let deliverer = Deliverer::new(config, metrics.clone())?;
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
    let log = DeliveryLog::start(
        store.clone(),
        &config.delivery_log,
        metrics.clone(),
        cancel.clone(),
        tasks,
    );
    let dead_log = DeadLetterLog::start(
        store.clone(),
        &config.delivery_log,
        metrics.clone(),
        cancel.clone(),
        tasks,
    );
    let pipeline = Arc::new(
        Pipeline::new(config, registry.clone(), deliverer, metrics.clone())
            .with_delivery_log(log)
            .with_dead_letter_log(dead_log),
    );
    tasks.spawn(crate::queue::depths::run(
        crate::queue::NodeRing::new(&config.amqp.url),
        crate::queue::topology::Topology::from_config(config),
        metrics.clone(),
        cancel.clone(),
    ));
    // The longest attempt, token requests included, ends at the attempt deadline.
    if config.shutdown.grace.0 <= config.delivery.attempt_deadline() {
        tracing::warn!(
            "shutdown.grace is not longer than delivery.attempt_deadline: an attempt \
             under way at SIGTERM may be cut off and made again"
        );
    }
    let mut threads = Vec::with_capacity(config.delivery.threads);
    for index in 0..config.delivery.threads {
        let readiness = readiness.for_thread(index);
        let worker = Worker::new(
            config.clone(),
            pipeline.clone(),
            readiness,
            metrics.clone(),
            index,
        );
        let name = format!("delivery-{index}");
        match crate::worker::thread::spawn(worker, name, cancel.clone()) {
            Ok(thread) => threads.push(thread),
            Err(error) => {
                // The threads already started stop with the start that failed.
                cancel.cancel();
                return Err(error).context("cannot start a delivery thread");
            }
        }
    }
    Ok(tokio::spawn(crate::worker::thread::first_to_fail(threads)))
}

/// The HTTP listeners, bound: `api.listen`, and `api.metrics_listen` when set.
struct HttpListeners {
    api: TcpListener,
    metrics: Option<TcpListener>,
}

impl HttpListeners {
    async fn bind(config: &Config) -> anyhow::Result<Self> {
        let address = config.api.listen;
        let api = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (api.listen)"))?;
        let metrics_address = config
            .api
            .metrics_address()
            .map_err(|e| anyhow::anyhow!("api.metrics_listen: {e}"))?;
        let metrics = match metrics_address {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("cannot listen on {address} (api.metrics_listen)"))?,
            ),
            None => None,
        };
        Ok(Self { api, metrics })
    }
}

/// Serves on the bound listeners: the whole API for roles `all` and `api`; only `/healthz`,
/// `/readyz` and `/metrics` for role `worker`, which must not expose the write API. With
/// `api.metrics_listen` set, `/metrics` moves there (with `/healthz`); one task serves both.
fn start_http(
    listeners: HttpListeners,
    config: &Config,
    role: Role,
    state: ApiState,
    cancel: CancellationToken,
) -> anyhow::Result<(HttpAddrs, JoinHandle<std::io::Result<()>>)> {
    let HttpListeners {
        api: listener,
        metrics: metrics_listener,
    } = listeners;
    let bound = listener.local_addr()?;
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
