//! The gRPC services, one idea a file: [`approvals`] (held postings: list, show, approve,
//! reject), [`queries`] (orders, lineage, exceptions, the audit), [`reconcile`] (a reconciliation
//! run on demand), [`watch`] (`WatchOrder`'s
//! shared waiter) and [`convert`] (read
//! models as proto messages). Every handler authenticates, checks the role, then answers
//! from the projections (queries) or writes a control event and waits for the saga's
//! verdict (decisions). Blocking work (sled, the log) runs on tokio's blocking pool.

mod approvals;
mod convert;
mod evidence;
mod queries;
mod reconcile;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use waybill_log::EventLog;
use waybill_projection::ProjectionStore;

pub use approvals::ApprovalsService;
pub use queries::{AuditService, QueriesService};
pub use reconcile::{Reconciler, ReconciliationService};
pub use watch::is_end_state;

use crate::audit::AuditStore;
use crate::auth::{Authenticator, Principal, Role};
use crate::error::{Error, Result};

/// Everything the services need.
#[derive(Debug)]
pub struct Control {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) projections: Arc<ProjectionStore>,
    pub(crate) audit: Arc<AuditStore>,
    pub(crate) auth: Authenticator,
    pub(crate) decision_timeout: Duration,
    /// Master data, for dry-run replays (the saga's pure decisions consult it).
    pub(crate) catalog: Arc<waybill_saga::Catalog>,
    /// The sagas' policy: approval limits for the edge's check of a decision (the saga's
    /// own [`waybill_saga::approval::check`]), and dry-run replays.
    pub(crate) policy: waybill_saga::Policy,
    /// Open `WatchOrder` streams and the thread that serves them.
    pub(crate) watchers: watch::Watchers,
    pub(crate) reconciler: Option<Arc<dyn Reconciler>>,
}

/// Runs `f` on the blocking pool; errors become statuses in [`Error`]'s one mapping.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<tonic::Response<T>, tonic::Status> {
    let out = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("control task failed: {e}")))
        .and_then(|r| r);
    out.map(tonic::Response::new).map_err(tonic::Status::from)
}

/// Where the call came from: the browser's address for a person signed in to the
/// workbench, else the connection's.
pub(crate) fn peer_of<T>(r: &tonic::Request<T>) -> String {
    if let Some(s) = r.extensions().get::<crate::auth::SignedIn>() {
        return format!("web {}", s.peer);
    }
    r.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into())
}

impl Control {
    /// Authenticates the caller without a role check (the role check of an audited
    /// action is part of the action).
    pub(crate) fn authenticate_only<T>(&self, r: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
        Ok(self.auth.authenticate(r).inspect_err(|e| {
            tracing::warn!(peer = %peer_of(r), error = %e, "control call not authenticated");
        })?)
    }

    pub(crate) fn authenticate<T>(
        &self,
        r: &tonic::Request<T>,
        needed: Role,
        what: &str,
    ) -> Result<Principal, tonic::Status> {
        let who = self.auth.authenticate(r).inspect_err(|e| {
            tracing::warn!(peer = %peer_of(r), error = %e, "control call not authenticated");
        })?;
        who.require(needed, what)?;
        Ok(who)
    }
}
