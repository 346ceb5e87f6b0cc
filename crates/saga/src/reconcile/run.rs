//! What one stock reconciliation run logs and reports, from its two readings of both
//! sides: pure, so the run's I/O shell only reads, waits and appends.
//!
//! A product is logged when its observation can change something — it has no baseline
//! yet, it is beyond tolerance ([`assess`]), or it is back within tolerance with a finding
//! open — and only when both readings, a settle interval apart, agree on both sides: a
//! product moving while the run reads it is left for the next run (`unsettled`), so a
//! movement in flight between the warehouse and Waybill's journal is never a finding.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use waybill_domain::reconcile::{Movements, StockObserved};
use waybill_domain::{Qty, Timestamp};

use super::{Assessment, Baseline, assess};

/// One product as a run read it: the warehouse's figure and Waybill's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockReading {
    /// On hand at the warehouse (zero when the warehouse does not list the product).
    pub on_hand: Qty,
    /// The warehouse's last movement.
    pub wms_last_movement: Option<String>,
    /// What Waybill had journaled (zero when it never moved the product).
    pub journaled: Movements,
    /// Waybill's last journaled movement.
    pub journal_last_movement: Option<String>,
}

/// Where a product's reconciliation stood when the run read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Its baseline.
    pub baseline: Option<Baseline>,
    /// A finding is open.
    pub open: bool,
}

/// A product beyond tolerance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Product code.
    pub sku: String,
    /// On hand at the warehouse.
    pub on_hand: Qty,
    /// What Waybill expects.
    pub expected: Qty,
    /// `on_hand - expected`.
    pub difference: Qty,
    /// The warehouse's last movement.
    pub wms_last_movement: Option<String>,
    /// Waybill's last journaled movement.
    pub journal_last_movement: Option<String>,
    /// It was open before this run (reported again, not raised again).
    pub already_open: bool,
}

/// What a run did, for the CLI table and the JSON artefact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `stock-<window>`.
    pub run_id: String,
    /// `stock`.
    pub kind: String,
    /// The window it ran for.
    pub window: Timestamp,
    /// The tolerance it applied.
    pub tolerance: Qty,
    /// Products read on either side.
    pub compared: usize,
    /// Products within tolerance (nothing to log).
    pub agreed: usize,
    /// Products observed for the first time (their baseline).
    pub baselined: Vec<String>,
    /// Products beyond tolerance.
    pub findings: Vec<Finding>,
    /// Products whose open finding this run closes.
    pub closed: Vec<String>,
    /// Products that moved while the run read them: left for the next run.
    pub unsettled: Vec<String>,
    /// Observations logged.
    pub logged: usize,
}

/// The observations to log and the report, from two readings (`first`, then `second` a
/// settle interval later) and each product's standing.
pub fn plan(
    run_id: &str,
    window: Timestamp,
    tolerance: Qty,
    first: &BTreeMap<String, StockReading>,
    second: &BTreeMap<String, StockReading>,
    standing: &BTreeMap<String, Standing>,
) -> (Vec<StockObserved>, Report) {
    let skus: BTreeSet<&String> = first.keys().chain(second.keys()).collect();
    let mut report = Report {
        run_id: run_id.to_string(),
        kind: "stock".into(),
        window,
        tolerance,
        compared: skus.len(),
        agreed: 0,
        baselined: Vec::new(),
        findings: Vec::new(),
        closed: Vec::new(),
        unsettled: Vec::new(),
        logged: 0,
    };
    let mut out = Vec::new();
    let zero = StockReading {
        on_hand: Qty::ZERO,
        wms_last_movement: None,
        journaled: Movements::default(),
        journal_last_movement: None,
    };
    for sku in skus {
        let a = first.get(sku).unwrap_or(&zero);
        let b = second.get(sku).unwrap_or(&zero);
        let s = standing.get(sku).copied().unwrap_or(Standing { baseline: None, open: false });
        let verdict = assess(s.baseline, b.on_hand, b.journaled.net(), tolerance);
        let matters = match verdict {
            Assessment::Baseline | Assessment::Beyond { .. } => true,
            Assessment::Within { .. } => s.open,
        };
        if !matters {
            report.agreed += 1;
            continue;
        }
        if a.on_hand != b.on_hand || a.journaled != b.journaled {
            report.unsettled.push(sku.clone());
            continue;
        }
        match verdict {
            Assessment::Baseline => report.baselined.push(sku.clone()),
            Assessment::Beyond { expected, difference } => report.findings.push(Finding {
                sku: sku.clone(),
                on_hand: b.on_hand,
                expected,
                difference,
                wms_last_movement: b.wms_last_movement.clone(),
                journal_last_movement: b.journal_last_movement.clone(),
                already_open: s.open,
            }),
            Assessment::Within { .. } => report.closed.push(sku.clone()),
        }
        out.push(StockObserved {
            run_id: run_id.to_string(),
            sku: sku.clone(),
            on_hand: b.on_hand,
            wms_last_movement: b.wms_last_movement.clone(),
            journaled: b.journaled,
            journal_last_movement: b.journal_last_movement.clone(),
            tolerance,
            window,
        });
    }
    report.logged = out.len();
    (out, report)
}

/// Whether a first reading already shows something to log (else the run needs no second
/// reading and logs nothing).
pub fn needs_second_reading(
    tolerance: Qty,
    first: &BTreeMap<String, StockReading>,
    standing: &BTreeMap<String, Standing>,
) -> bool {
    first.iter().any(|(sku, r)| {
        let s = standing.get(sku).copied().unwrap_or(Standing { baseline: None, open: false });
        match assess(s.baseline, r.on_hand, r.journaled.net(), tolerance) {
            Assessment::Baseline | Assessment::Beyond { .. } => true,
            Assessment::Within { .. } => s.open,
        }
    }) || standing.iter().any(|(sku, s)| s.open && !first.contains_key(sku))
}
