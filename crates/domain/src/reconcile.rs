//! Reconciliation: what Waybill believes, compared with what a system of record holds.
//!
//! A reconciliation run reads the system of record through its connector and Waybill's
//! own projections, and logs one observation per subject it could compare while both
//! sides stood still. Each subject (`recon:stock:<sku>`) is a flow of its own: the first
//! observation sets its baseline, and each later one is compared with the baseline moved
//! by what Waybill journaled since. A difference beyond tolerance opens one
//! `RECONCILIATION_MISMATCH` with both values and the last movement on each side; an
//! observation back within tolerance closes it. The decision reads only the logged
//! observation, so a replay decides the same.

use serde::{Deserialize, Serialize};

use crate::value::{Qty, Timestamp};

/// The prefix of a reconciliation subject's correlation key.
pub const KEY_PREFIX: &str = "recon:";

/// The prefix of a stock subject's key: `recon:stock:<sku>`.
pub const STOCK_PREFIX: &str = "recon:stock:";

/// The correlation key of the stock of one product: `recon:stock:<sku>`.
pub fn stock_key(sku: &str) -> String {
    format!("{STOCK_PREFIX}{sku}")
}

/// The stock movements Waybill journaled for one product, in all warehouses, since it
/// started: what its stock expectation is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Movements {
    /// Accepted into stock from purchase receipts.
    pub received: Qty,
    /// Sent back to suppliers (cancelled receipts).
    pub returned_to_vendor: Qty,
    /// Shipped to customers.
    pub shipped: Qty,
    /// Taken back into stock from customer returns.
    pub restocked: Qty,
}

impl Movements {
    /// What the movements add to the stock: in minus out.
    pub fn net(&self) -> Qty {
        self.received + self.restocked - self.shipped - self.returned_to_vendor
    }
}

/// A reconciliation run read one product's stock at the warehouse system while Waybill's
/// journal stood still for it (two readings a settle interval apart agreed on both
/// sides): what the warehouse said, with what Waybill had journaled at the same moment.
/// Waybill's own measurement, so a control event: the run writes it to `waybill.control`,
/// and the same record from a producer (ingestion, an inbound topic) is refused — no
/// system can open or close a finding by claiming figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockObserved {
    /// The run (`stock-<window>`), named in findings.
    pub run_id: String,
    /// Product code.
    pub sku: String,
    /// On hand at the warehouse system, all its locations.
    pub on_hand: Qty,
    /// The warehouse system's last movement of the product, as it names it.
    pub wms_last_movement: Option<String>,
    /// What Waybill had journaled for the product.
    pub journaled: Movements,
    /// Waybill's last journaled movement of the product (`ShipmentRecorded SH-…`).
    pub journal_last_movement: Option<String>,
    /// The tolerance configured when the run read it: a difference up to this is not a
    /// finding.
    pub tolerance: Qty,
    /// When the run started (the window it fired for).
    pub window: Timestamp,
}

/// What an observation did to a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReconcileOutcome {
    /// The first observation: later ones are compared with it.
    Baseline,
    /// Beyond tolerance: a `RECONCILIATION_MISMATCH` is open.
    Mismatch,
    /// Back within tolerance: the mismatch closed.
    Agreed,
    /// An operator accepted the system of record's figure: it is the new baseline.
    Accepted,
}

impl ReconcileOutcome {
    /// Lowercase name, for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileOutcome::Baseline => "baseline",
            ReconcileOutcome::Mismatch => "mismatch",
            ReconcileOutcome::Agreed => "agreed",
            ReconcileOutcome::Accepted => "accepted",
        }
    }
}

/// One observation of a product's stock that changed what the reconciliation knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReconciliation {
    /// The run that observed it.
    pub run_id: String,
    /// What it did.
    pub outcome: ReconcileOutcome,
    /// On hand at the warehouse system.
    pub on_hand: Qty,
    /// What Waybill had journaled for the product.
    pub journaled: Movements,
    /// What Waybill expected on hand: the baseline moved by what it journaled since (the
    /// observed figure itself for a baseline).
    pub expected: Qty,
    /// The warehouse system's last movement of the product.
    pub wms_last_movement: Option<String>,
    /// Waybill's last journaled movement of the product.
    pub journal_last_movement: Option<String>,
}
