//! `Reconcile`: a reconciliation run on demand. The run itself (reading the system of
//! record through its connector, logging what the sagas decide from) belongs to the node,
//! which hands the control plane a [`Reconciler`]; this service authenticates, checks the
//! role, audits the call and answers the run's report.

use std::path::PathBuf;

use waybill_saga::reconcile::run::Report;

use super::Control;
use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::proto;
use crate::workbench::Call;

/// Runs reconciliations for the control plane.
pub trait Reconciler: Send + Sync + std::fmt::Debug {
    /// Runs a reconciliation of `kind` now: its report and where it was written.
    /// `Err(Error::InvalidArgument)` for a kind it does not run, `Err(Error::Unavailable)`
    /// when the system of record cannot be read.
    fn reconcile(&self, kind: &str) -> Result<(Report, PathBuf)>;
}

/// The `Reconciliation` service.
#[derive(Debug, Clone)]
pub struct ReconciliationService(pub(crate) std::sync::Arc<Control>);

#[tonic::async_trait]
impl proto::reconciliation_server::Reconciliation for ReconciliationService {
    async fn reconcile(
        &self,
        request: tonic::Request<proto::ReconcileRequest>,
    ) -> Result<tonic::Response<proto::ReconcileReport>, tonic::Status> {
        let who = self.0.authenticate_only(&request)?;
        let peer = super::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        super::blocking(move || c.reconcile(&who, &peer, &r)).await
    }
}

impl Control {
    fn reconcile(&self, who: &Principal, peer: &str, r: &proto::ReconcileRequest) -> Result<proto::ReconcileReport> {
        let kind = if r.kind.trim().is_empty() { "stock" } else { r.kind.trim() };
        let c = Call { who, peer, action: "reconcile", target: kind, order_ref: String::new(), note: "" };
        if let Err(e) = who.require(Role::Operator, "run a reconciliation") {
            return self.refuse_at_edge(&c, e);
        }
        let Some(reconciler) = &self.reconciler else {
            return self.refuse_at_edge(
                &c,
                Error::FailedPrecondition(
                    "this node runs no reconciliation: give the warehouse's [connectors.<name>] a stock_url and name it in [reconcile] connector".into(),
                ),
            );
        };
        let (report, path) = match reconciler.reconcile(kind) {
            Ok(x) => x,
            Err(e) => return self.refuse_at_edge(&c, e),
        };
        let detail = format!(
            "run {}: {} compared, {} findings, {} closed, {} baselined, {} unsettled",
            report.run_id,
            report.compared,
            report.findings.len(),
            report.closed.len(),
            report.baselined.len(),
            report.unsettled.len()
        );
        self.record_workbench_edge(&c, "ran", &detail)?;
        Ok(proto::ReconcileReport {
            run_id: report.run_id,
            kind: report.kind,
            window_us: report.window.0,
            tolerance: report.tolerance.to_string(),
            compared: report.compared as u64,
            agreed: report.agreed as u64,
            baselined: report.baselined,
            findings: report
                .findings
                .into_iter()
                .map(|f| proto::ReconcileFinding {
                    on_hand_milli: f.on_hand.0,
                    expected_milli: f.expected.0,
                    difference_milli: f.difference.0,
                    on_hand: f.on_hand.to_string(),
                    expected: f.expected.to_string(),
                    difference: f.difference.to_string(),
                    wms_last_movement: f.wms_last_movement.unwrap_or_default(),
                    journal_last_movement: f.journal_last_movement.unwrap_or_default(),
                    already_open: f.already_open,
                    sku: f.sku,
                })
                .collect(),
            closed: report.closed,
            unsettled: report.unsettled,
            logged: report.logged as u64,
            report_path: path.display().to_string(),
        })
    }
}
