//! Stock reconciliation through the pure saga core: a product's first observation sets
//! its baseline; a drift beyond tolerance opens one finding with both figures and the
//! last movement on each side; the same drift seen again adds nothing; the drift corrected
//! closes it; an operator's resolution accepts the warehouse's figure as the new baseline;
//! and the journal, folded again, rebuilds the state.

use waybill_domain::reconcile::{Movements, ReconcileOutcome, StockObserved, stock_key};
use waybill_domain::{
    EventBody, EventMeta, ExceptionCategory, InboundEvent, JournalBody, JournalEvent, Qty, SourceRef, System,
};
use waybill_saga::decision::{Cause, DeadLetterKind};
use waybill_saga::flow::{self, Env, Flow, Step};
use waybill_saga::reconcile::{Assessment, Baseline, ReconcileFlow, StockSubject, assess};
use waybill_saga::saga::Saga;
use waybill_saga::{Catalog, Policy};
use waybill_test_util::inbound::{OCCURRED_AT, resolve, retry};

const SKU: &str = "SKU-0007";

struct H {
    flow: ReconcileFlow,
    catalog: Catalog,
    policy: Policy,
    journal: Vec<JournalEvent>,
    runs: u32,
}

impl H {
    fn new() -> Self {
        H {
            flow: ReconcileFlow::create(&stock_key(SKU)),
            catalog: Catalog::default(),
            policy: Policy::default(),
            journal: Vec::new(),
            runs: 0,
        }
    }
    fn send(&mut self, e: &InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: OCCURRED_AT };
        let s = flow::step(&mut self.flow, e, &Env::new(&self.catalog, &self.policy), &cause);
        self.journal.extend(s.journal.iter().cloned());
        s
    }
    /// A run observes `on_hand` at the warehouse with `shipped` and `received` journaled.
    fn observe(&mut self, on_hand: i64, received: i64, shipped: i64) -> Step {
        self.runs += 1;
        let body = EventBody::StockObserved(StockObserved {
            run_id: format!("stock-{}", self.runs),
            sku: SKU.into(),
            on_hand: Qty::units(on_hand),
            wms_last_movement: Some("shipment SHP-9".into()),
            journaled: Movements {
                received: Qty::units(received),
                shipped: Qty::units(shipped),
                ..Movements::default()
            },
            journal_last_movement: Some("ShipmentRecorded SHP-9".into()),
            tolerance: Qty::units(1),
            window: OCCURRED_AT,
        });
        let key = stock_key(SKU);
        self.send(&InboundEvent {
            meta: EventMeta {
                event_id: format!("reconcile:stock-{}:{SKU}", self.runs),
                source: SourceRef::new(System::Wms, SKU),
                correlation_key: key,
                occurred_at: OCCURRED_AT,
                actor: None,
            },
            body,
        })
    }
    fn outcomes(s: &Step) -> Vec<ReconcileOutcome> {
        s.journal
            .iter()
            .filter_map(|j| match &j.body {
                JournalBody::StockReconciled(r) => Some(r.outcome),
                _ => None,
            })
            .collect()
    }
    fn open(&self) -> Vec<String> {
        self.flow.stock.book.open_exceptions.keys().cloned().collect()
    }
}

#[test]
fn assess_moves_the_baseline_by_the_movements_since_and_allows_the_tolerance() {
    let b = Some(Baseline { on_hand: Qty::units(100), net: Qty::units(10) });
    assert_eq!(assess(None, Qty::units(7), Qty::ZERO, Qty::ZERO), Assessment::Baseline);
    // 5 more shipped than at the baseline: 95 expected.
    let within = assess(b, Qty::units(95), Qty::units(5), Qty::ZERO);
    assert_eq!(within, Assessment::Within { expected: Qty::units(95), difference: Qty::ZERO });
    let one_off = assess(b, Qty::units(94), Qty::units(5), Qty::units(1));
    assert_eq!(one_off, Assessment::Within { expected: Qty::units(95), difference: Qty::units(-1) });
    let beyond = assess(b, Qty::units(93), Qty::units(5), Qty::units(1));
    assert_eq!(beyond, Assessment::Beyond { expected: Qty::units(95), difference: Qty::units(-2) });
}

#[test]
fn a_drift_is_found_once_with_its_evidence_and_closed_when_corrected() {
    let mut h = H::new();
    // Baseline: 1,000 on hand, nothing journaled yet.
    assert_eq!(H::outcomes(&h.observe(1000, 0, 0)), vec![ReconcileOutcome::Baseline]);
    assert!(h.flow.stock.is_finished(), "a baselined subject with nothing open is at rest");
    // At rest, but a standing subject: retention never retires it (its baseline is what
    // the next run compares against).
    assert!(flow::is_finished(&h.flow) && flow::finished_at(&h.flow).is_none());
    // 40 received, 12 shipped: 1,028 expected, and the warehouse agrees: nothing journaled.
    assert!(h.observe(1028, 40, 12).journal.is_empty());
    // Five units vanish at the warehouse.
    let s = h.observe(1023, 40, 12);
    assert_eq!(H::outcomes(&s), vec![ReconcileOutcome::Mismatch]);
    let raised: Vec<_> = s
        .journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(raised.len(), 1);
    let x = &raised[0];
    assert_eq!(x.category, ExceptionCategory::ReconciliationMismatch);
    assert_eq!(x.subject, SourceRef::new(System::Wms, SKU));
    for evidence in ["1023", "1028", "5", "shipment SHP-9", "ShipmentRecorded SHP-9", "40", "12", "Count the product"] {
        assert!(x.message.contains(evidence), "{evidence:?} missing from {:?}", x.message);
    }
    assert!(!h.flow.stock.is_finished(), "an open finding keeps the subject open");
    assert_eq!(h.flow.stock.status(), "mismatch open");
    // The same drift in the next run: nothing new.
    assert!(h.observe(1023, 40, 12).journal.is_empty());
    assert_eq!(h.open(), vec![x.exception_id.clone()]);
    // Redelivered observation: nothing.
    h.runs -= 1;
    assert!(h.observe(1023, 40, 12).journal.is_empty());
    // A retry is refused with what to do instead.
    let s = h.send(&retry(&stock_key(SKU), "op:retry", &x.exception_id));
    let refusal = s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ControlRefused(r) => Some(r.reason.clone()),
        _ => None,
    });
    assert!(refusal.as_deref().is_some_and(|r| r.contains("no command to re-issue")), "{refusal:?}");
    // Corrected by a count at the warehouse, with 3 more shipped meanwhile: 1,025.
    let s = h.observe(1025, 40, 15);
    assert_eq!(H::outcomes(&s), vec![ReconcileOutcome::Agreed]);
    assert!(s.journal.iter().any(
        |j| matches!(&j.body, JournalBody::ExceptionResolved(r) if r.exception_id == x.exception_id && r.resolution.contains("closed by the run"))
    ));
    assert!(h.open().is_empty());
    assert!(h.flow.stock.is_finished());
}

#[test]
fn an_operator_resolving_a_finding_accepts_the_warehouse_figure_as_the_new_baseline() {
    let mut h = H::new();
    h.observe(500, 0, 0);
    let s = h.observe(490, 0, 0);
    assert_eq!(H::outcomes(&s), vec![ReconcileOutcome::Mismatch]);
    let id = h.open().pop().unwrap();
    let s = h.send(&resolve(&stock_key(SKU), "op:resolve", &id, "ten written off as damaged in the WMS"));
    assert_eq!(H::outcomes(&s), vec![ReconcileOutcome::Accepted]);
    assert!(h.open().is_empty());
    assert_eq!(h.flow.stock.baseline, Some(Baseline { on_hand: Qty::units(490), net: Qty::ZERO }));
    // The next run compares with the accepted figure: 490 less 4 shipped.
    assert!(h.observe(486, 0, 4).journal.is_empty());
    assert!(h.flow.stock.is_finished());
}

#[test]
fn the_journal_folded_again_rebuilds_the_state() {
    let mut h = H::new();
    h.observe(100, 0, 0);
    h.observe(90, 0, 0);
    let id = h.open().pop().unwrap();
    h.send(&resolve(&stock_key(SKU), "op:resolve", &id, "accepted"));
    h.observe(80, 0, 0);
    h.observe(90, 0, 0);
    let mut again = StockSubject::default();
    for e in &h.journal {
        again.apply(e);
        again.apply(e); // a copy changes nothing
    }
    assert_eq!(again, h.flow.stock);
}

#[test]
fn an_observation_keyed_to_another_product_or_another_event_on_its_key_is_a_dead_letter() {
    let mut h = H::new();
    let mut e = InboundEvent {
        meta: EventMeta {
            event_id: "x".into(),
            source: SourceRef::new(System::Wms, "SKU-1"),
            correlation_key: stock_key(SKU),
            occurred_at: OCCURRED_AT,
            actor: None,
        },
        body: EventBody::StockObserved(StockObserved {
            run_id: "r".into(),
            sku: "SKU-1".into(),
            on_hand: Qty::units(1),
            wms_last_movement: None,
            journaled: Movements::default(),
            journal_last_movement: None,
            tolerance: Qty::ZERO,
            window: OCCURRED_AT,
        }),
    };
    let s = h.send(&e);
    let dl = s.dead_letter.expect("refused");
    assert_eq!(dl.kind, DeadLetterKind::Rule);
    assert!(dl.reason.contains("recon:stock:SKU-1"), "{}", dl.reason);
    e.meta.event_id = "y".into();
    e.body = EventBody::OrderCancelled(waybill_domain::event::OrderCancelled {
        order_ref: "SO1".into(),
        reason: "x".into(),
    });
    let dl = h.send(&e).dead_letter.expect("refused");
    assert!(dl.reason.contains("reconciliation subject"), "{}", dl.reason);
}

mod run_plan {
    use std::collections::BTreeMap;

    use waybill_domain::reconcile::Movements;
    use waybill_domain::{Qty, Timestamp};
    use waybill_saga::reconcile::Baseline;
    use waybill_saga::reconcile::run::{Standing, StockReading, needs_second_reading, plan};

    fn reading(on_hand: i64, shipped: i64) -> StockReading {
        StockReading {
            on_hand: Qty::units(on_hand),
            wms_last_movement: Some("shipment SHP-1".into()),
            journaled: Movements { shipped: Qty::units(shipped), ..Movements::default() },
            journal_last_movement: Some("ShipmentRecorded SHP-1".into()),
        }
    }

    fn standing(on_hand: i64, open: bool) -> Standing {
        Standing { baseline: Some(Baseline { on_hand: Qty::units(on_hand), net: Qty::ZERO }), open }
    }

    /// Five products: A agrees, B is new, C drifted, D is back in agreement with a finding
    /// open, E drifted but moved between the readings.
    #[test]
    fn a_run_logs_what_can_change_something_and_leaves_products_in_motion_for_the_next_run() {
        let first: BTreeMap<String, StockReading> = [
            ("A", reading(90, 10)),
            ("B", reading(50, 0)),
            ("C", reading(85, 10)),
            ("D", reading(90, 10)),
            ("E", reading(70, 10)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut second = first.clone();
        second.insert("E".into(), reading(69, 11));
        let standing: BTreeMap<String, Standing> = [
            ("A", standing(100, false)),
            ("C", standing(100, false)),
            ("D", standing(100, true)),
            ("E", standing(100, false)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert!(needs_second_reading(Qty::ZERO, &first, &standing));
        let (logged, report) = plan("stock-1", Timestamp(0), Qty::ZERO, &first, &second, &standing);
        let skus: Vec<&str> = logged.iter().map(|o| o.sku.as_str()).collect();
        assert_eq!(skus, vec!["B", "C", "D"]);
        assert_eq!(report.compared, 5);
        assert_eq!(report.agreed, 1);
        assert_eq!(report.baselined, vec!["B"]);
        assert_eq!(report.findings.len(), 1);
        let f = &report.findings[0];
        assert_eq!(
            (f.sku.as_str(), f.on_hand, f.expected, f.difference),
            ("C", Qty::units(85), Qty::units(90), Qty::units(-5))
        );
        assert_eq!(report.closed, vec!["D"]);
        assert_eq!(report.unsettled, vec!["E"]);
        // Everything in agreement and nothing open: one reading is enough, nothing logged.
        let quiet: BTreeMap<String, StockReading> = [("A".to_string(), reading(90, 10))].into_iter().collect();
        assert!(!needs_second_reading(
            Qty::ZERO,
            &quiet,
            &standing.iter().filter(|(k, _)| *k == "A").map(|(k, v)| (k.clone(), *v)).collect()
        ));
    }
}

/// An observation is Waybill's own measurement: only `waybill.control` carries it. A
/// producer — the warehouse included — that sends one through ingestion or its inbound
/// topic is refused, so no system can open or close a finding by claiming figures.
#[test]
fn no_producer_may_send_a_stock_observation() {
    use waybill_saga::admission::{Channel, Ownership, admit};
    let mut h = H::new();
    h.runs += 1;
    let e = InboundEvent {
        meta: EventMeta {
            event_id: "forged".into(),
            source: SourceRef::new(System::Wms, SKU),
            correlation_key: stock_key(SKU),
            occurred_at: OCCURRED_AT,
            actor: None,
        },
        body: EventBody::StockObserved(StockObserved {
            run_id: "forged".into(),
            sku: SKU.into(),
            on_hand: Qty::units(1),
            wms_last_movement: None,
            journaled: Movements::default(),
            journal_last_movement: None,
            tolerance: Qty::ZERO,
            window: OCCURRED_AT,
        }),
    };
    let own = Ownership::default();
    for channel in [Channel::Ingestion(System::Wms), Channel::Inbound(System::Wms), Channel::Ingestion(System::Odoo)] {
        let refused = admit(&e, channel, &own).expect_err("refused");
        assert_eq!(refused.dead_letter.kind, DeadLetterKind::Forbidden, "{channel:?}");
    }
    assert!(admit(&e, Channel::Control, &own).is_ok());
}
