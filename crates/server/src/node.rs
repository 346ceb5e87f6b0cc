//! A running Waybill node: the event log, one coordinator worker per partition, the
//! projector, and the ingestion endpoint, wired from a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use waybill_control::{ControlDeps, ControlServer};
use waybill_domain::topic;
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions};
use waybill_projection::ProjectionStore;
use waybill_projection::runner::Projector;
use waybill_saga::Catalog;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig as SagaCoordinatorConfig, Stats};
use waybill_saga::store::StateStore;

use crate::config::Config;
use crate::ingest::{self, Ingest};
use crate::observe::{self, Health};

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct DataPaths {
    /// The embedded log.
    pub log: PathBuf,
    /// The saga state store.
    pub state: PathBuf,
    /// The projections.
    pub projections: PathBuf,
    /// The control plane's audit projection.
    pub audit: PathBuf,
}

impl DataPaths {
    /// Paths under `dir`.
    pub fn new(dir: &Path) -> Self {
        DataPaths {
            log: dir.join("log"),
            state: dir.join("state"),
            projections: dir.join("projections"),
            audit: dir.join("audit"),
        }
    }
}

/// Opens the embedded log of `cfg` and makes sure Waybill's topics exist with the
/// configured partition count (co-partitioning is checked here: a mismatch is an error).
pub fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    let paths = DataPaths::new(&cfg.data_dir);
    let options = EmbeddedOptions { fsync: cfg.fsync_policy()?, segment_bytes: cfg.log.segment_mb * 1024 * 1024 };
    let log = EmbeddedLog::open(&paths.log, options)
        .with_context(|| format!("opening the embedded log in {}", paths.log.display()))?;
    let log: Arc<dyn EventLog> = Arc::new(log);
    ensure_topics(log.as_ref(), cfg.partitions)?;
    Ok(log)
}

/// Creates every Waybill topic with `partitions` partitions.
pub fn ensure_topics(log: &dyn EventLog, partitions: u32) -> anyhow::Result<()> {
    let mut topics = topic::coordinator_inputs();
    topics.push(topic::JOURNAL.to_string());
    topics.push(topic::DLQ.to_string());
    topics.extend(topic::command_topics());
    for t in topics {
        log.ensure_topic(&t, partitions).with_context(|| format!("topic {t}"))?;
    }
    Ok(())
}

/// Drops the projections and rebuilds them from the log; returns the records read.
pub fn rebuild_projections(cfg: &Config) -> anyhow::Result<u64> {
    let log = open_log(cfg)?;
    let paths = DataPaths::new(&cfg.data_dir);
    let store = Arc::new(
        ProjectionStore::open(&paths.projections)
            .with_context(|| format!("opening projections in {}", paths.projections.display()))?,
    );
    let n = Projector::new(log, store.clone()).rebuild()?;
    store.flush()?;
    Ok(n as u64)
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The event log.
    pub log: Arc<dyn EventLog>,
    /// The projections.
    pub projections: Arc<ProjectionStore>,
    /// Coordinator counters.
    pub stats: Arc<Stats>,
    /// Where ingestion listens, when enabled.
    pub ingest_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The gRPC control plane, when enabled (`control.listen`).
    pub control: Option<ControlServer>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    http_shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Node {
    /// Starts a node on `log`.
    pub fn start(cfg: &Config, log: Arc<dyn EventLog>, catalog: Catalog) -> anyhow::Result<Node> {
        let paths = DataPaths::new(&cfg.data_dir);
        let catalog = Arc::new(catalog);
        let state = StateStore::open(&paths.state)?;
        let coordinator = Arc::new(Coordinator::new(
            log.clone(),
            state,
            catalog.clone(),
            cfg.policy.clone(),
            SagaCoordinatorConfig {
                max_batch: cfg.coordinator.max_batch,
                idle_wait: Duration::from_millis(cfg.coordinator.idle_wait_ms),
                ..SagaCoordinatorConfig::default()
            },
        ));
        let projections = Arc::new(
            ProjectionStore::open(&paths.projections)
                .with_context(|| format!("opening projections in {}", paths.projections.display()))?,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        for p in 0..cfg.partitions as i32 {
            let (c, stop, failure) = (coordinator.clone(), stop.clone(), failure.clone());
            threads.push(std::thread::Builder::new().name(format!("coordinator-{p}")).spawn(move || {
                supervise(&format!("coordinator partition {p}"), &stop, &failure, || {
                    c.run_partition(p, &stop).map_err(anyhow::Error::from)
                })
            })?);
        }
        {
            let projector = Projector::new(log.clone(), projections.clone());
            let (stop, failure) = (stop.clone(), failure.clone());
            threads.push(std::thread::Builder::new().name("projector".into()).spawn(move || {
                supervise("projector", &stop, &failure, || projector.run(&stop).map_err(anyhow::Error::from))
            })?);
        }
        let mut node = Node {
            log: log.clone(),
            projections,
            stats: coordinator.stats(),
            ingest_addr: None,
            metrics_addr: None,
            control: None,
            stop,
            threads,
            http_shutdown: Vec::new(),
            failure,
        };
        if !cfg.ingest.listen.is_empty() {
            let ingest = Arc::new(Ingest::open(node.log.clone())?);
            node.ingest_addr =
                Some(node.serve_http("ingest-http", "ingest.listen", &cfg.ingest.listen, ingest::router(ingest))?);
        }
        if !cfg.metrics.listen.is_empty() {
            let health = Arc::new(node.health(cfg));
            node.metrics_addr = Some(node.serve_http(
                "metrics-http",
                "metrics.listen",
                &cfg.metrics.listen,
                observe::router(health),
            )?);
        }
        if !cfg.control.listen.is_empty() {
            let deps = ControlDeps {
                log: node.log.clone(),
                projections: node.projections.clone(),
                approval_limits: cfg.policy.posting.approval_limits.clone(),
                catalog: catalog.clone(),
                policy: cfg.policy.clone(),
                audit_dir: paths.audit.clone(),
                partitions: cfg.partitions,
                readiness: Some(Arc::new(node.health(cfg))),
            };
            match ControlServer::start(&cfg.control, deps) {
                Ok(c) => node.control = Some(c),
                Err(e) => {
                    node.shutdown();
                    return Err(e.into());
                }
            }
        }
        Ok(node)
    }

    /// Serves `router` over HTTP on `listen` (config key `key`) on its own thread until
    /// shutdown; returns the bound address.
    fn serve_http(
        &mut self,
        what: &'static str,
        key: &str,
        listen: &str,
        router: axum::Router,
    ) -> anyhow::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!("{key}: cannot listen on {listen}; is another waybill running? pick a free port")
        })?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.http_shutdown.push(tx);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        self.threads.push(std::thread::Builder::new().name(what.into()).spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, server = what, "listener failed");
                        return;
                    }
                };
                let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, server = what, "http server stopped");
                }
            });
        })?);
        tracing::info!(%addr, server = what, "listening");
        Ok(addr)
    }

    /// The readiness view of this node (log reachable, no partition stuck).
    pub fn health(&self, cfg: &Config) -> Health {
        Health {
            log: self.log.clone(),
            stats: self.stats.clone(),
            projections: self.projections.clone(),
            data_dir: cfg.data_dir.clone(),
            partitions: cfg.partitions,
            stuck_after: Duration::from_secs(cfg.metrics.stuck_after_secs),
        }
    }

    /// The first fatal error any worker hit, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the control plane listens, when enabled.
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.control.as_ref().map(ControlServer::addr)
    }

    /// Stops every worker and waits for them.
    pub fn shutdown(mut self) {
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        self.stop.store(true, Ordering::Relaxed);
        for tx in self.http_shutdown.drain(..) {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = self.log.flush();
    }
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM — what Kubernetes sends to stop a pod.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs `f` until `stop`, restarting it with backoff when it fails.
fn supervise(
    what: &str,
    stop: &AtomicBool,
    failure: &Mutex<Option<String>>,
    mut f: impl FnMut() -> anyhow::Result<()>,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::Relaxed) {
        match f() {
            Ok(()) => return,
            Err(e) => {
                let msg = format!("{what}: {e:#}");
                tracing::error!(error = %msg, retry_in_ms = backoff.as_millis() as u64, "worker failed; restarting");
                failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(msg);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
