//! Starting and stopping the gRPC server: the three Waybill services, `grpc.health.v1`
//! and server reflection, over plain TCP or TLS (optionally with client certificates),
//! plus the audit projector thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use waybill_log::EventLog;
use waybill_projection::ProjectionStore;

use crate::audit::{self, AUDIT_TOPIC, AuditStore};
use crate::auth::{Authenticator, TokenStore};
use crate::config::ControlConfig;
use crate::error::{Error, Result};
use crate::grpc_metrics::GrpcMetricsLayer;
use crate::proto;
use crate::service::{ApprovalsService, AuditService, Control, QueriesService, ReconciliationService};
use crate::workbench::WorkbenchService;

/// How long a shutdown waits for calls in flight before closing connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What the control plane runs on.
#[derive(Debug, Clone)]
pub struct ControlDeps {
    /// The event log (decisions go to `waybill.control`, edge answers to `waybill.audit`).
    pub log: Arc<dyn EventLog>,
    /// The projections (answers and the saga's verdicts).
    pub projections: Arc<ProjectionStore>,
    /// Directory of the audit store (e.g. `data/audit`).
    pub audit_dir: PathBuf,
    /// Partitions of the `waybill.audit` topic (the node's partition count).
    pub partitions: u32,
    /// Master data, for dry-run replays.
    pub catalog: Arc<waybill_saga::Catalog>,
    /// The sagas' policy: approval limits and four-eyes for the edge's check of a
    /// decision (the saga's own rule), and dry-run replays.
    pub policy: waybill_saga::Policy,
    /// Reasons the node cannot serve (log unreachable, a partition stuck); empty when it
    /// can. Polled every second to drive `grpc.health.v1`. `None`: always serving.
    pub readiness: Option<Readiness>,
    /// Runs reconciliations on demand (`Reconcile`); `None`: the node runs none.
    pub reconciler: Option<Arc<dyn crate::service::Reconciler>>,
}

/// A readiness check: the reasons the node is not ready, or none.
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug {
    /// Why the node cannot serve; empty when it can.
    fn problems(&self) -> Vec<String>;
}

/// A shared readiness check.
pub type Readiness = Arc<dyn ReadinessCheck>;

/// Keeps `grpc.health.v1` in step with `ready`: the whole server ("") and each Waybill
/// service turn NOT_SERVING while the check reports problems.
async fn track_health(reporter: tonic_health::server::HealthReporter, ready: Readiness) {
    use tonic_health::ServingStatus;
    let services = [
        "",
        <proto::approvals_server::ApprovalsServer<ApprovalsService> as tonic::server::NamedService>::NAME,
        <proto::queries_server::QueriesServer<QueriesService> as tonic::server::NamedService>::NAME,
        <proto::audit_server::AuditServer<AuditService> as tonic::server::NamedService>::NAME,
        <proto::workbench_server::WorkbenchServer<WorkbenchService> as tonic::server::NamedService>::NAME,
        <proto::reconciliation_server::ReconciliationServer<ReconciliationService> as tonic::server::NamedService>::NAME,
    ];
    let mut last = None;
    loop {
        let check = ready.clone();
        let problems =
            tokio::task::spawn_blocking(move || check.problems()).await.unwrap_or_else(|e| vec![e.to_string()]);
        let serving = problems.is_empty();
        if last != Some(serving) {
            let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
            for name in services {
                reporter.set_service_status(name, status).await;
            }
            if serving {
                tracing::info!("grpc health: serving");
            } else {
                tracing::warn!(problems = %problems.join("; "), "grpc health: not serving");
            }
            last = Some(serving);
        }
        // Look again soon while not serving (start-up, recovery), every second otherwise.
        tokio::time::sleep(if serving { Duration::from_secs(1) } else { Duration::from_millis(100) }).await;
    }
}

/// Every gRPC service the server answers, by full name: the labels the metrics layer
/// may use for `service`.
fn served_services() -> [&'static str; 8] {
    use tonic::server::NamedService;
    [
        <proto::approvals_server::ApprovalsServer<ApprovalsService> as NamedService>::NAME,
        <proto::queries_server::QueriesServer<QueriesService> as NamedService>::NAME,
        <proto::workbench_server::WorkbenchServer<WorkbenchService> as NamedService>::NAME,
        <proto::audit_server::AuditServer<AuditService> as NamedService>::NAME,
        <proto::reconciliation_server::ReconciliationServer<ReconciliationService> as NamedService>::NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ]
}

/// The control plane's services, for callers in this process (the web workbench): the
/// same handlers, rules, roles and audit as over gRPC. A call made on behalf of a person
/// carries [`crate::auth::SignedIn`] in its extensions.
#[derive(Debug, Clone)]
pub struct Services {
    /// Held postings.
    pub approvals: ApprovalsService,
    /// Orders, lineage, exceptions.
    pub queries: QueriesService,
    /// Retry, resolve, replay.
    pub workbench: WorkbenchService,
    /// The audit.
    pub audit: AuditService,
    /// Reconciliation runs on demand.
    pub reconciliation: ReconciliationService,
    control: Arc<Control>,
}

impl Services {
    /// The identities file (people who sign in are in it).
    pub fn identities(&self) -> &TokenStore {
        self.control.auth.store()
    }

    /// The projections the services answer from.
    pub fn projections(&self) -> &Arc<ProjectionStore> {
        &self.control.projections
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlServer {
    addr: SocketAddr,
    services: Services,
    audit: Arc<AuditStore>,
    stop: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

fn read(key: &'static str, path: &Option<PathBuf>) -> Result<Option<Vec<u8>>> {
    path.as_ref()
        .map(|p| {
            std::fs::read(p).map_err(|e| Error::Config { key, problem: format!("cannot read {}: {e}", p.display()) })
        })
        .transpose()
}

impl ControlServer {
    /// Validates `cfg`, binds `cfg.listen` and starts serving. `cfg.listen` must not be
    /// empty.
    pub fn start(cfg: &ControlConfig, deps: ControlDeps) -> Result<ControlServer> {
        cfg.validate().map_err(|i| Error::Config { key: i.key, problem: i.problem })?;
        let addr =
            cfg.listen_addr().map_err(|i| Error::Config { key: i.key, problem: i.problem })?.ok_or_else(|| {
                Error::Config {
                    key: "control.listen",
                    problem: "is empty, so the control plane is disabled; do not start it".into(),
                }
            })?;
        let anonymous = cfg.anonymous().map_err(|i| Error::Config { key: i.key, problem: i.problem })?;
        deps.log.ensure_topic(AUDIT_TOPIC, deps.partitions)?;
        let audit = Arc::new(AuditStore::open(&deps.audit_dir)?);
        let control = Arc::new(Control {
            log: deps.log.clone(),
            projections: deps.projections,
            audit: audit.clone(),
            auth: Authenticator::new(TokenStore::open(cfg.tokens_file.as_deref())?, anonymous),
            decision_timeout: cfg.decision_timeout(),
            catalog: deps.catalog,
            policy: deps.policy,
            watchers: Default::default(),
            reconciler: deps.reconciler,
        });

        let mut builder = Server::builder();
        let tls = match (read("control.tls_cert", &cfg.tls_cert)?, read("control.tls_key", &cfg.tls_key)?) {
            (Some(cert), Some(key)) => {
                let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
                if let Some(ca) = read("control.client_ca", &cfg.client_ca)? {
                    // Clients without a certificate may still authenticate with a token.
                    tls = tls.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(true);
                }
                builder = builder.tls_config(tls).map_err(|e| Error::Config {
                    key: "control.tls_cert",
                    problem: format!("the certificate, key or client CA cannot be used: {e}"),
                })?;
                true
            }
            _ => false,
        };

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
        let (health_reporter, health) = tonic_health::server::health_reporter();
        let services = Services {
            approvals: ApprovalsService(control.clone()),
            queries: QueriesService(control.clone()),
            workbench: WorkbenchService(control.clone()),
            audit: AuditService(control.clone()),
            reconciliation: ReconciliationService(control.clone()),
            control,
        };
        let router = builder
            .layer(GrpcMetricsLayer::new(served_services()))
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(proto::approvals_server::ApprovalsServer::new(services.approvals.clone()))
            .add_service(proto::queries_server::QueriesServer::new(services.queries.clone()))
            .add_service(proto::workbench_server::WorkbenchServer::new(services.workbench.clone()))
            .add_service(proto::audit_server::AuditServer::new(services.audit.clone()))
            .add_service(proto::reconciliation_server::ReconciliationServer::new(services.reconciliation.clone()));

        let std_listener = std::net::TcpListener::bind(addr).map_err(|e| Error::Config {
            key: "control.listen",
            problem: format!("cannot listen on {addr}: {e}; is another waybill running? pick a free port"),
        })?;
        std_listener.set_nonblocking(true).map_err(|e| Error::Internal(format!("listener: {e}")))?;
        let addr = std_listener.local_addr().map_err(|e| Error::Internal(format!("listener: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("control-grpc")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the control runtime: {e}")))?;
        let incoming = {
            let _enter = rt.enter();
            let listener = tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| Error::Internal(format!("listener: {e}")))?;
            TcpIncoming::from(listener).with_nodelay(Some(true))
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let readiness = deps.readiness.clone();
        let spawn_err = |e: std::io::Error| Error::Internal(format!("cannot start a control thread: {e}"));
        threads.push(
            std::thread::Builder::new()
                .name("control-grpc".into())
                .spawn(move || {
                    rt.block_on(async move {
                        health_reporter
                            .set_serving::<proto::approvals_server::ApprovalsServer<ApprovalsService>>()
                            .await;
                        health_reporter.set_serving::<proto::queries_server::QueriesServer<QueriesService>>().await;
                        health_reporter.set_serving::<proto::audit_server::AuditServer<AuditService>>().await;
                        health_reporter
                            .set_serving::<proto::workbench_server::WorkbenchServer<WorkbenchService>>()
                            .await;
                        if let Some(ready) = readiness {
                            tokio::spawn(track_health(health_reporter.clone(), ready));
                        }
                        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
                        let serve = router.serve_with_incoming_shutdown(incoming, async {
                            let _ = drain_rx.await;
                        });
                        tokio::pin!(serve);
                        let result = tokio::select! {
                            r = &mut serve => r,
                            _ = rx => {
                                // Stop accepting, let calls in flight finish, then cut
                                // connections that stay open (idle clients keep theirs).
                                let _ = drain_tx.send(());
                                tokio::time::timeout(SHUTDOWN_GRACE, serve).await.unwrap_or(Ok(()))
                            }
                        };
                        if let Err(e) = result {
                            tracing::error!(error = %e, "control plane stopped");
                        }
                    });
                    rt.shutdown_timeout(Duration::from_millis(100));
                })
                .map_err(spawn_err)?,
        );
        threads.push(audit::spawn(audit.clone(), deps.log, stop.clone()).map_err(spawn_err)?);
        tracing::info!(%addr, tls, mutual_tls = cfg.client_ca.is_some(), anonymous = anonymous.map(|r| r.as_str()), "control plane listening");
        Ok(ControlServer { addr, services, audit, stop, shutdown: Some(tx), threads })
    }

    /// The address the server listens on (with the real port when `listen` named port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The services, for callers in this process (the web workbench).
    pub fn services(&self) -> Services {
        self.services.clone()
    }

    /// The audit store.
    pub fn audit(&self) -> &Arc<AuditStore> {
        &self.audit
    }

    /// Stops serving and waits for the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
