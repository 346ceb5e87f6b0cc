//! A running Waybill node: the event log, one coordinator worker per partition, the
//! projector, and the ingestion endpoint, wired from a [`Config`].

use std::collections::BTreeMap;
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
use waybill_projection::ProjectionStore;
use waybill_projection::runner::Projector;
use waybill_saga::Catalog;
use waybill_saga::coordinator::{Coordinator, CoordinatorConfig as SagaCoordinatorConfig, Stats};
use waybill_saga::store::StateStore;
use waybill_telemetry::metrics as names;

use crate::backend::{self, Backend};
use crate::config::Config;
use crate::connectors::Connectors;
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
    /// Reconciliation reports (one JSON file per run).
    pub reconcile: PathBuf,
}

impl DataPaths {
    /// Paths under `dir`.
    pub fn new(dir: &Path) -> Self {
        DataPaths {
            log: dir.join("log"),
            state: dir.join("state"),
            projections: dir.join("projections"),
            audit: dir.join("audit"),
            reconcile: dir.join("reconcile"),
        }
    }
}

/// Opens the log of `cfg` (embedded, or Kafka with `[kafka]`) and makes sure Waybill's
/// topics exist with the configured partition count (co-partitioning is checked here: a
/// mismatch is an error).
pub fn open_log(cfg: &Config) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(backend::open(cfg)?.log)
}

pub use crate::backend::ensure_topics;

/// Opens the read models. A store written by a build with another key layout is
/// derived data: it is dropped, and the projector rebuilds it from the log as it starts.
fn open_projections(dir: &Path) -> anyhow::Result<ProjectionStore> {
    match ProjectionStore::open(dir) {
        Err(waybill_projection::Error::Layout { found, expected }) => {
            tracing::warn!(
                dir = %dir.display(), found = %found, expected = %expected,
                "the projections were written with another layout; rebuilding them from the log"
            );
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the old projections in {}", dir.display()))?;
            ProjectionStore::open(dir).with_context(|| format!("opening projections in {}", dir.display()))
        }
        other => other.with_context(|| format!("opening projections in {}", dir.display())),
    }
}

/// Drops the projections and rebuilds them from the log; returns the records read.
pub fn rebuild_projections(cfg: &Config) -> anyhow::Result<u64> {
    crate::schemas::use_external_registry(cfg)?;
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
    ingest_tls: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the Confluent Schema Registry API is served, when enabled.
    pub registry_addr: Option<SocketAddr>,
    /// The gRPC control plane, when enabled (`control.listen`).
    pub control: Option<ControlServer>,
    /// Where the web workbench is served, when enabled (`web.listen`).
    pub web_addr: Option<SocketAddr>,
    web_tls: bool,
    web: Option<Arc<waybill_web::Web>>,
    /// The connectors to the target systems (`[connectors.*]`).
    pub connectors: Arc<Mutex<Connectors>>,
    /// Stock reconciliation, when the warehouse's connector has a `stock_url`.
    pub stock_job: Option<Arc<crate::reconcile::StockJob>>,
    member: Option<Member>,
    #[cfg(feature = "kafka")]
    kafka: Option<Arc<waybill_log::kafka::KafkaLog>>,
    workers: Arc<Workers>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    http_shutdown: Vec<tokio::sync::oneshot::Sender<()>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl Node {
    /// Starts a node on `log`, owning every partition.
    pub fn start(cfg: &Config, log: Arc<dyn EventLog>, catalog: Catalog) -> anyhow::Result<Node> {
        Node::start_on(cfg, Backend::shared(log), catalog)
    }

    /// Starts a node on `backend`: on Kafka it joins the consumer group and works on the
    /// partitions the group gives it; otherwise it owns every partition.
    pub fn start_on(cfg: &Config, backend: Backend, catalog: Catalog) -> anyhow::Result<Node> {
        // With `[registry] url`, records carry the company registry's ids from here on.
        crate::schemas::use_external_registry(cfg)?;
        let log = backend.log.clone();
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
                snapshots: cfg.coordinator.snapshots_on(backend.is_kafka()),
                // Checked when the configuration was loaded.
                retire_after: cfg.coordinator.retire_after().unwrap_or(None),
                ..SagaCoordinatorConfig::default()
            },
        ));
        let projections = Arc::new(open_projections(&paths.projections)?);
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        // Connectors deliver the commands of the partitions this node owns; they follow
        // the coordinator workers' assignment.
        let connectors = Arc::new(Mutex::new(Connectors::start(&cfg.connectors, &cfg.policy.entities, &log)?));
        let workers = Arc::new(Workers::new(coordinator.clone(), failure.clone(), connectors.clone()));
        #[cfg_attr(not(feature = "kafka"), allow(unused_mut))]
        let mut member = None;
        #[cfg(feature = "kafka")]
        if let Some(kafka) = &backend.kafka {
            let group = cfg.kafka.as_ref().map(|k| k.settings()).transpose()?.map(|s| s.group).unwrap_or_default();
            tracing::info!(group = %group, topic = topic::JOURNAL, "joining the consumer group");
            member = Some(kafka.join_group(&group, topic::JOURNAL, workers.clone())?);
        }
        if member.is_none() {
            let all: Vec<i32> = (0..cfg.partitions as i32).collect();
            workers.assign(&all);
        }
        if let Some(embedded) = backend.embedded.clone() {
            let every = Duration::from_secs(cfg.log.retention_check_secs);
            let (stop, failure) = (stop.clone(), failure.clone());
            threads.push(std::thread::Builder::new().name("log-retention".into()).spawn(move || {
                supervise("embedded log retention", &stop, &failure, || {
                    crate::log_retention::run(embedded.clone(), every, &stop)
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
        // Stock reconciliation: on demand through the control plane, and on the schedule
        // while this node owns partition 0 (one scheduler in the group, like the pollers).
        let stock_job = {
            let reader = connectors.lock().unwrap_or_else(|p| p.into_inner()).stock_reader(&cfg.reconcile.connector);
            reader.map(|r| {
                Arc::new(crate::reconcile::StockJob::new(
                    r,
                    projections.clone(),
                    log.clone(),
                    cfg.reconcile.clone(),
                    paths.reconcile.clone(),
                ))
            })
        };
        if let (Some(job), Some(schedule)) = (&stock_job, cfg.reconcile.schedule().map_err(anyhow::Error::msg)?) {
            let (job, stop, workers) = (job.clone(), stop.clone(), workers.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("reconcile-scheduler".into())
                    .spawn(move || crate::reconcile::run_schedule(schedule, job, || workers.owns(0), stop))?,
            );
        }
        let mut node = Node {
            log: log.clone(),
            projections,
            stats: coordinator.stats(),
            ingest_addr: None,
            ingest_tls: false,
            metrics_addr: None,
            registry_addr: None,
            web_addr: None,
            web_tls: false,
            web: None,
            control: None,
            connectors,
            stock_job: stock_job.clone(),
            member,
            #[cfg(feature = "kafka")]
            kafka: backend.kafka.clone(),
            workers,
            stop,
            threads,
            http_shutdown: Vec::new(),
            failure,
        };
        if !cfg.ingest.listen.is_empty() {
            let ingest = Arc::new(Ingest::open(node.log.clone(), cfg.policy.ownership.clone())?);
            // Producers and people are one namespace: the control plane's tokens file.
            let tokens = waybill_control::auth::TokenStore::open(cfg.control.tokens_file.as_deref())?;
            let http = ingest::IngestHttp::new(
                ingest,
                waybill_control::auth::Authenticator::new(tokens, None),
                cfg.ingest.allow_anonymous,
                |system| cfg.ingest.limits(system),
            );
            let tls = match (&cfg.ingest.tls_cert, &cfg.ingest.tls_key) {
                (Some(cert), Some(key)) => Some(ingest::tls_config(cert, key, cfg.ingest.client_ca.as_deref())?),
                _ => None,
            };
            node.ingest_tls = tls.is_some();
            node.ingest_addr = Some(node.serve_http(
                "ingest-http",
                "ingest.listen",
                &cfg.ingest.listen,
                ingest::router(Arc::new(http)),
                tls,
            )?);
        }
        if !cfg.metrics.listen.is_empty() {
            let health = Arc::new(node.health(cfg));
            node.metrics_addr = Some(node.serve_http(
                "metrics-http",
                "metrics.listen",
                &cfg.metrics.listen,
                observe::router(health),
                None,
            )?);
        }
        if !cfg.registry.listen.is_empty() {
            node.registry_addr = Some(node.serve_http(
                "registry-http",
                "registry.listen",
                &cfg.registry.listen,
                crate::registry::router(),
                None,
            )?);
        }
        if !cfg.control.listen.is_empty() {
            let deps = ControlDeps {
                log: node.log.clone(),
                projections: node.projections.clone(),
                catalog: catalog.clone(),
                policy: cfg.policy.clone(),
                audit_dir: paths.audit.clone(),
                partitions: cfg.partitions,
                readiness: Some(Arc::new(node.health(cfg))),
                reconciler: stock_job.clone().map(|j| j as Arc<dyn waybill_control::Reconciler>),
            };
            match ControlServer::start(&cfg.control, deps) {
                Ok(c) => node.control = Some(c),
                Err(e) => {
                    node.shutdown();
                    return Err(e.into());
                }
            }
        }
        if let (false, Some(control)) = (cfg.web.listen.is_empty(), node.control.as_ref())
            && let Err(e) = node.start_web(cfg, control.services())
        {
            node.shutdown();
            return Err(e);
        }
        Ok(node)
    }

    /// The web workbench on `web.listen`, over the control plane's `services`, its
    /// dashboard sampling this node's metrics.
    fn start_web(&mut self, cfg: &Config, services: waybill_control::Services) -> anyhow::Result<()> {
        let health = Arc::new(self.health(cfg));
        let scrape: waybill_web::samples::Scrape = Arc::new(move || health.scrape());
        let web_cfg = waybill_web::WebConfig {
            entities: cfg.policy.entities.iter().map(|e| e.code.clone()).collect(),
            ..cfg.web.clone()
        };
        let web = waybill_web::Web::start(web_cfg, services, Some(scrape))?;
        let tls = match (&cfg.web.tls_cert, &cfg.web.tls_key) {
            (Some(cert), Some(key)) => Some(ingest::tls_config(cert, key, None)?),
            _ => None,
        };
        self.web_tls = tls.is_some();
        self.web = Some(web.clone());
        self.web_addr =
            Some(self.serve_http("web-http", "web.listen", &cfg.web.listen, waybill_web::router(web), tls)?);
        Ok(())
    }

    /// Serves `router` over HTTP on `listen` (config key `key`) on its own thread until
    /// shutdown; returns the bound address.
    fn serve_http(
        &mut self,
        what: &'static str,
        key: &str,
        listen: &str,
        router: axum::Router,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    ) -> anyhow::Result<SocketAddr> {
        let std_listener = std::net::TcpListener::bind(listen).with_context(|| {
            format!("{key}: cannot listen on {listen}; is another waybill running? pick a free port")
        })?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let tls_on = tls.is_some();
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
                if let Some(tls) = tls {
                    return ingest::serve_tls(listener, router, tls, rx).await;
                }
                let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, server = what, "http server stopped");
                }
            });
        })?);
        tracing::info!(%addr, server = what, tls = tls_on, "listening");
        Ok(addr)
    }

    /// The readiness view of this node (log reachable, no partition stuck).
    pub fn health(&self, cfg: &Config) -> Health {
        Health {
            #[cfg(feature = "kafka")]
            kafka: self.kafka.clone(),
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

    /// Every listener of this node, one line each (`ingestion  http://127.0.0.1:8420/v1/events`),
    /// for the start-up banner: a port chosen by the OS (`:0`) is only known here.
    pub fn listeners(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |what: &str, url: String| out.push(format!("  {what:<16} {url}"));
        if let Some(a) = self.ingest_addr {
            add("ingestion", format!("{}://{a}/v1/events", if self.ingest_tls { "https" } else { "http" }));
        }
        if let Some(a) = self.control_addr() {
            add("control plane", format!("{a} (gRPC; the CLI's --server http://{a})"));
        }
        if let Some(a) = self.registry_addr {
            add("schema registry", format!("http://{a} (Confluent API; schema.registry.url)"));
        }
        if let Some(a) = self.metrics_addr {
            add("metrics", format!("http://{a}/metrics, /healthz, /readyz"));
        }
        if let Some(a) = self.web_addr {
            add(
                "workbench",
                format!("{}://{a}/ (sign in with a [[people]] identity)", if self.web_tls { "https" } else { "http" }),
            );
        }
        out
    }

    /// Stops every worker and waits for them.
    pub fn shutdown(mut self) {
        // Live streams end first, so the workbench's listener can drain.
        if let Some(w) = self.web.take() {
            w.stop();
        }
        if let Some(c) = self.control.take() {
            c.shutdown();
        }
        // Leaving the group revokes (and so stops) this node's partitions; the rest of
        // the group takes them over.
        #[cfg(feature = "kafka")]
        if let Some(m) = self.member.take() {
            m.leave();
        }
        self.workers.stop_all();
        self.connectors.lock().unwrap_or_else(|p| p.into_inner()).stop();
        self.stop.store(true, Ordering::Relaxed);
        for tx in self.http_shutdown.drain(..) {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Err(e) = self.log.flush() {
            tracing::error!(
                error = %e,
                "cannot make the event log durable at shutdown; records acknowledged since its last good fsync may be lost, and the next start's recovery checks the files"
            );
        }
        // The projector has stopped: make what it applied durable now. sled flushes in the
        // background and when its last handle drops, but a process that exits right after
        // shutdown (the CLI, `waybill run`) may still hold a handle in a service thread, and
        // the projections it leaves on disk must be the ones it printed.
        if let Err(e) = self.projections.flush() {
            tracing::warn!(error = %e, "cannot flush the projections at shutdown; the next start catches up from the log");
        }
    }
}

#[cfg(feature = "kafka")]
type Member = waybill_log::kafka::GroupMember;
#[cfg(not(feature = "kafka"))]
type Member = std::convert::Infallible;

/// The coordinator workers of the partitions this node owns: one thread per partition,
/// started when the partition is assigned (it restores first) and stopped — after its
/// in-flight batch — when the partition is revoked.
struct Workers {
    coordinator: Arc<Coordinator>,
    failure: Arc<Mutex<Option<String>>>,
    running: Mutex<BTreeMap<i32, Running>>,
    connectors: Arc<Mutex<Connectors>>,
}

/// A partition's worker: its stop flag and thread.
type Running = (Arc<AtomicBool>, JoinHandle<()>);

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running: Vec<i32> = self.lock().keys().copied().collect();
        f.debug_struct("Workers").field("running", &running).finish()
    }
}

impl Workers {
    fn new(
        coordinator: Arc<Coordinator>,
        failure: Arc<Mutex<Option<String>>>,
        connectors: Arc<Mutex<Connectors>>,
    ) -> Self {
        Workers { coordinator, failure, running: Mutex::new(BTreeMap::new()), connectors }
    }

    fn connectors(&self) -> std::sync::MutexGuard<'_, Connectors> {
        self.connectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node works on `partition` now.
    fn owns(&self, partition: i32) -> bool {
        self.lock().contains_key(&partition)
    }

    /// Starts a worker for each of `partitions` not running yet.
    fn assign(&self, partitions: &[i32]) {
        let stats = self.coordinator.stats();
        let mut running = self.lock();
        for &p in partitions {
            if running.contains_key(&p) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (c, s, failure) = (self.coordinator.clone(), stop.clone(), self.failure.clone());
            let spawned = std::thread::Builder::new().name(format!("coordinator-{p}")).spawn(move || {
                supervise(&format!("coordinator partition {p}"), &s, &failure, || match c.run_partition(p, &s) {
                    // Another replica owns the partition now (its transactional producer
                    // fenced ours): stop writing for it; the group's revocation follows.
                    Err(waybill_saga::Error::Log(e @ waybill_log::Error::Fenced { .. })) => {
                        tracing::error!(waybill.partition = p, error = %e, "partition fenced; its worker stops");
                        Ok(())
                    }
                    other => other.map_err(anyhow::Error::from),
                })
            });
            match spawned {
                Ok(handle) => {
                    stats.own(p);
                    running.insert(p, (stop, handle));
                }
                Err(e) => {
                    let msg = format!("cannot start the worker of partition {p}: {e}");
                    tracing::error!(error = %msg);
                    self.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(msg);
                }
            }
        }
        drop(running);
        self.connectors().assign(partitions);
        metrics::counter!(names::REBALANCES, "change" => "assigned").increment(1);
    }

    /// Stops the workers of `partitions` and waits until their in-flight batches are
    /// appended; their state stays in the local store for a later assignment.
    fn revoke(&self, partitions: &[i32], lost: bool) {
        self.connectors().revoke(partitions);
        let stats = self.coordinator.stats();
        let stopping: Vec<(i32, Arc<AtomicBool>, JoinHandle<()>)> = {
            let mut running = self.lock();
            partitions.iter().filter_map(|p| running.remove(p).map(|(s, h)| (*p, s, h))).collect()
        };
        for (_, stop, _) in &stopping {
            stop.store(true, Ordering::Relaxed);
        }
        for (p, _, handle) in stopping {
            let _ = handle.join();
            stats.release(p);
            tracing::info!(waybill.partition = p, lost, "partition released");
        }
        metrics::counter!(names::REBALANCES, "change" => if lost { "lost" } else { "revoked" }).increment(1);
    }

    /// Stops every worker.
    fn stop_all(&self) {
        let all: Vec<i32> = self.lock().keys().copied().collect();
        if !all.is_empty() {
            self.revoke(&all, false);
        }
    }
}

#[cfg(feature = "kafka")]
impl waybill_log::kafka::PartitionOwner for Workers {
    fn assigned(&self, partitions: &[i32]) {
        self.assign(partitions);
    }

    fn revoked(&self, partitions: &[i32], lost: bool) {
        self.revoke(partitions, lost);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_of_another_layout_are_dropped_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projections");
        {
            let db = sled::open(&path).unwrap();
            let tree = db.open_tree(ProjectionStore::TREE).unwrap();
            tree.insert(b"m/layout", b"1".as_slice()).unwrap();
            tree.insert(b"o/SO1", b"an old encoding".as_slice()).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(ProjectionStore::open(&path), Err(waybill_projection::Error::Layout { .. })));
        let store = open_projections(&path).expect("an old layout is rebuilt, not an error");
        assert!(store.order("SO1").unwrap().is_none(), "the old records are gone");
    }
}
