//! Reconciliation of stock: one flow per product (`recon:stock:<sku>`, saga
//! `rec:stock:<sku>`), fed by the observations a reconciliation run logs.
//!
//! The first observation sets the baseline: the warehouse system's figure, with what
//! Waybill had journaled then. Each later one is [`assess`]ed against the baseline moved
//! by what Waybill journaled since: a difference beyond tolerance opens one
//! `RECONCILIATION_MISMATCH` with both figures and the last movement on each side; an
//! observation back within tolerance closes it (`AGREED`). An operator who resolves the
//! finding accepts the warehouse's figure: it becomes the new baseline (`ACCEPTED`).
//! Every decision reads only the logged observation and the journal, so a replay decides
//! the same; the run itself calls [`assess`] to know which products to log.
//!
//! A subject at rest (baselined, nothing open) is finished; a finding keeps it open, and
//! the open exception is what watches it.

pub mod run;

use serde::{Deserialize, Serialize};
use waybill_domain::journal::ExceptionResolved;
use waybill_domain::reconcile::{self, Movements, ReconcileOutcome, StockObserved, StockReconciliation};
use waybill_domain::{
    EventBody, ExceptionCategory, InboundEvent, JournalBody, JournalEvent, Qty, SagaKind, SourceRef, System,
};

use crate::book::{self, SagaBook};
use crate::decision::{Cause, Decision, Outbound};
use crate::flow::{Env, Flow, Step, commit, reject};
use crate::saga::{Lifecycle, Saga};

/// A product's baseline: the warehouse's figure and Waybill's net movements then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baseline {
    /// On hand at the warehouse system.
    pub on_hand: Qty,
    /// Net of the movements Waybill had journaled ([`Movements::net`]).
    pub net: Qty,
}

/// What one reading of a product says, against its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assessment {
    /// No baseline yet: this reading becomes it.
    Baseline,
    /// Within tolerance of what Waybill expects.
    Within {
        /// The baseline moved by the movements since.
        expected: Qty,
        /// The warehouse's figure minus the expected one.
        difference: Qty,
    },
    /// Beyond tolerance.
    Beyond {
        /// The baseline moved by the movements since.
        expected: Qty,
        /// The warehouse's figure minus the expected one.
        difference: Qty,
    },
}

/// The rule: the warehouse's `on_hand` against the baseline moved by Waybill's net
/// movements since (`net` now, less the baseline's). A difference up to `tolerance`
/// either way is not a finding.
pub fn assess(baseline: Option<Baseline>, on_hand: Qty, net: Qty, tolerance: Qty) -> Assessment {
    let Some(b) = baseline else { return Assessment::Baseline };
    let expected = b.on_hand + (net - b.net);
    let difference = on_hand - expected;
    if difference.0.abs() > tolerance.0.abs() {
        Assessment::Beyond { expected, difference }
    } else {
        Assessment::Within { expected, difference }
    }
}

/// State of one product's reconciliation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockSubject {
    /// What every saga keeps.
    #[serde(flatten)]
    pub book: SagaBook,
    /// What later observations are compared with.
    pub baseline: Option<Baseline>,
    /// The observation that opened the finding still open.
    pub mismatch: Option<StockReconciliation>,
}

impl StockSubject {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::Reconciliation;

    /// Folds one journal event (copies already applied are ignored).
    pub fn apply(&mut self, event: &JournalEvent) {
        if !self.book.fold(event) {
            return;
        }
        if let JournalBody::StockReconciled(r) = &event.body {
            match r.outcome {
                ReconcileOutcome::Baseline | ReconcileOutcome::Accepted => {
                    self.baseline = Some(Baseline { on_hand: r.on_hand, net: r.journaled.net() });
                    self.mismatch = None;
                }
                ReconcileOutcome::Mismatch => self.mismatch = Some(r.clone()),
                ReconcileOutcome::Agreed => self.mismatch = None,
            }
        }
    }
}

impl Saga for StockSubject {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        StockSubject::apply(self, event)
    }
    /// At rest once baselined with no finding open: a standing subject, reopened by the
    /// next run that finds a difference.
    fn is_finished(&self) -> bool {
        self.baseline.is_some() && self.book.open_exceptions.is_empty()
    }
    fn is_started(&self) -> bool {
        self.baseline.is_some()
    }
    fn status(&self) -> String {
        match (&self.baseline, &self.mismatch) {
            (None, _) => "not observed yet",
            (Some(_), Some(_)) => "mismatch open",
            (Some(_), None) => "in agreement",
        }
        .to_string()
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        if !self.book.open_exceptions.contains_key(exception_id) {
            return Err(book::not_open(&self.book, exception_id));
        }
        Err(format!(
            "exception {exception_id} is a reconciliation finding, with no command to re-issue: correct the stock in the warehouse system (a count) and the next run closes it, or resolve it with a note to accept the warehouse's figure as the new baseline"
        ))
    }
    fn lifecycle(&self, _body: &JournalBody) -> Option<Lifecycle> {
        None
    }
    /// An operator resolving the finding accepts the warehouse's figure: the observation
    /// that opened it becomes the baseline, so the next run compares with it.
    fn settle(&self, _key: &str, decision: &mut Decision) {
        let Some(m) = &self.mismatch else { return };
        let resolves = decision.journal.iter().any(|j| {
            matches!(j, JournalBody::ExceptionResolved(r)
                if self.book.open_exceptions.get(&r.exception_id) == Some(&ExceptionCategory::ReconciliationMismatch))
        });
        let own = decision.journal.iter().any(|j| matches!(j, JournalBody::StockReconciled(_)));
        if resolves && !own {
            decision.record(JournalBody::StockReconciled(StockReconciliation {
                outcome: ReconcileOutcome::Accepted,
                expected: m.on_hand,
                ..m.clone()
            }));
        }
    }
}

/// The flow of one reconciliation subject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileFlow {
    /// The correlation key, `recon:stock:<sku>`.
    pub key: String,
    /// The product's reconciliation.
    pub stock: StockSubject,
}

/// The one saga of a subject's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject;

impl ReconcileFlow {
    fn sku(&self) -> &str {
        self.key.strip_prefix(reconcile::STOCK_PREFIX).unwrap_or(&self.key)
    }
    fn id(&self) -> String {
        StockSubject::KIND.saga_id(self.key.strip_prefix(reconcile::KEY_PREFIX).unwrap_or(&self.key))
    }
}

impl Flow for ReconcileFlow {
    type Target = Subject;

    const FAMILY: &'static str = "reconciliation subject";

    /// A standing subject: its baseline is what the next run compares against.
    fn retires(&self) -> bool {
        false
    }

    fn owns(key: &str) -> bool {
        key.starts_with(reconcile::KEY_PREFIX)
    }
    fn create(key: &str) -> Self {
        ReconcileFlow { key: key.to_string(), stock: StockSubject::default() }
    }
    fn key(&self) -> &str {
        &self.key
    }
    fn targets(&self) -> Vec<Subject> {
        vec![Subject]
    }
    fn saga_id(&self, _target: &Subject) -> String {
        self.id()
    }
    fn saga(&self, _target: &Subject) -> Option<&dyn Saga> {
        Some(&self.stock)
    }
    fn saga_mut(&mut self, _target: &Subject) -> &mut dyn Saga {
        &mut self.stock
    }
    fn target_of(&self, saga_id: &str) -> Option<Subject> {
        (saga_id == self.id()).then_some(Subject)
    }
    fn target_of_event(&self, event: &JournalEvent) -> Option<Subject> {
        (event.meta.kind == SagaKind::Reconciliation).then_some(Subject)
    }
    fn home(&self) -> Subject {
        Subject
    }
    fn takes_actions(&self) -> bool {
        self.stock.baseline.is_some()
    }
    fn not_begun(&self) -> Option<String> {
        self.stock
            .baseline
            .is_none()
            .then(|| format!("the stock of {:?}, which no reconciliation run has observed", self.sku()))
    }
    fn route(&mut self, event: &InboundEvent, _env: &Env<'_>, cause: &Cause, out: &mut Step) {
        let d = decide(&self.stock, &self.id(), self.sku(), event);
        commit(self, &Subject, d, cause, out);
    }
}

fn decide(s: &StockSubject, saga_id: &str, sku: &str, event: &InboundEvent) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) {
        return Decision::noop();
    }
    let EventBody::StockObserved(o) = &event.body else {
        return reject(format!(
            "{} keyed {:?}, which is a reconciliation subject's key; only a reconciliation run's observations belong to it",
            event.body.name(),
            event.meta.correlation_key
        ));
    };
    if o.sku != sku {
        return reject(format!(
            "StockObserved names product {:?} but is keyed {:?}; key it {}",
            o.sku,
            event.meta.correlation_key,
            reconcile::stock_key(&o.sku)
        ));
    }
    let record = |outcome, expected| StockReconciliation {
        run_id: o.run_id.clone(),
        outcome,
        on_hand: o.on_hand,
        journaled: o.journaled,
        expected,
        wms_last_movement: o.wms_last_movement.clone(),
        journal_last_movement: o.journal_last_movement.clone(),
    };
    let mut d = Decision::noop();
    match assess(s.baseline, o.on_hand, o.journaled.net(), o.tolerance) {
        Assessment::Baseline => {
            d.record(JournalBody::StockReconciled(record(ReconcileOutcome::Baseline, o.on_hand)));
        }
        // Already reported: the open finding stands until the figures agree or an
        // operator accepts it.
        Assessment::Beyond { .. } if s.mismatch.is_some() => {}
        Assessment::Beyond { expected, difference } => {
            d.record(JournalBody::StockReconciled(record(ReconcileOutcome::Mismatch, expected)));
            let base = s.baseline.unwrap_or(Baseline { on_hand: o.on_hand, net: o.journaled.net() });
            d.raise(
                saga_id,
                s.book.exceptions_raised,
                ExceptionCategory::ReconciliationMismatch,
                SourceRef::new(System::Wms, o.sku.clone()),
                mismatch_message(o, base, expected, difference),
            );
        }
        Assessment::Within { expected, .. } if s.mismatch.is_some() => {
            d.record(JournalBody::StockReconciled(record(ReconcileOutcome::Agreed, expected)));
            for id in s.book.open_of(ExceptionCategory::ReconciliationMismatch) {
                d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                    exception_id: id.clone(),
                    resolution: format!(
                        "run {}: the warehouse system has {} of {} on hand, as Waybill expects ({expected}); closed by the run",
                        o.run_id, o.on_hand, o.sku
                    ),
                }));
            }
        }
        Assessment::Within { .. } => {}
    }
    d
}

/// A finding in the words of a warehouse manager: both figures, how the expectation is
/// made, the last movement on each side, and what to do.
fn mismatch_message(o: &StockObserved, base: Baseline, expected: Qty, difference: Qty) -> String {
    let since: &Movements = &o.journaled;
    let (more, by) = if difference.0 > 0 { ("more", difference) } else { ("less", Qty(-difference.0)) };
    format!(
        "{sku}: the warehouse system has {on_hand} on hand, Waybill expects {expected} ({by} {more} than expected, tolerance {tol}); expected = baseline {b} + net movements since ({net}; journaled in all: {r} received, {rtv} returned to suppliers, {sh} shipped, {re} restocked). Last movement at the warehouse: {wl}; last journaled by Waybill: {jl}. Count the product in the warehouse and correct it there (the next run closes this), or resolve this exception with a note to accept the warehouse's figure as the new baseline",
        sku = o.sku,
        on_hand = o.on_hand,
        tol = o.tolerance,
        b = base.on_hand,
        net = o.journaled.net() - base.net,
        r = since.received,
        rtv = since.returned_to_vendor,
        sh = since.shipped,
        re = since.restocked,
        wl = o.wms_last_movement.as_deref().unwrap_or("none reported"),
        jl = o.journal_last_movement.as_deref().unwrap_or("none"),
    )
}
