//! Order-to-fulfillment rules, driven through the pure `step` function.

mod fixtures;

use fixtures::*;
use waybill_domain::{CommandBody, ExceptionCategory, JournalBody, Qty, Timestamp};
use waybill_saga::decision::{Cause, DeadLetterKind};
use waybill_saga::flow::{Env, OrderFlow, Step, step, tick};
use waybill_saga::fulfillment::Status;
use waybill_saga::{Catalog, Policy};

struct Harness {
    flow: OrderFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
}

impl Harness {
    fn new(order: &str) -> Self {
        Harness {
            flow: OrderFlow::new(order),
            catalog: catalog(),
            policy: Policy::default(),
            now: Timestamp(1_000_000),
        }
    }

    fn send(&mut self, e: waybill_domain::InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
        step(&mut self.flow, &e, &Env::new(&self.catalog, &self.policy), &cause)
    }

    fn command_names(s: &Step) -> Vec<&'static str> {
        s.commands.iter().map(|c| c.body.name()).collect()
    }

    fn status(&self) -> Status {
        self.flow.fulfillment.status
    }
}

fn happy_path(h: &mut Harness) {
    let s = h.send(released("SO1", vec![line(1, "PLAIN", "Units", 3)]));
    assert_eq!(Harness::command_names(&s), ["ReserveStock"]);
    assert_eq!(s.commands[0].meta.idempotency_key, "reserve:SO1");
    let s = h.send(reserved("SO1", &[(1, 3, 0)]));
    assert_eq!(Harness::command_names(&s), ["ReleaseToWarehouse"]);
    h.send(accepted("SO1"));
    assert_eq!(h.status(), Status::Picking);
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 3)], true));
    assert_eq!(h.status(), Status::Picked);
    let s = h.send(issued("SO1", "SH1", &[(1, "PLAIN", 3)]));
    assert_eq!(Harness::command_names(&s), ["BookCarrier", "PostInvoice"]);
    let s = h.send(booked("SO1", "SH1"));
    assert_eq!(Harness::command_names(&s), ["ConfirmShipment"]);
    let s = h.send(delivered("SO1", "SH1"));
    assert!(s.journal.iter().any(|j| matches!(j.body, JournalBody::Completed(_))));
}

#[test]
fn happy_path_completes_with_one_command_per_step() {
    let mut h = Harness::new("SO1");
    happy_path(&mut h);
    assert_eq!(h.status(), Status::Delivered);
    assert!(h.flow.fulfillment.is_finished());
    assert!(!h.flow.is_finished(), "the invoice is still with finance");
    h.send(invoice_posted("SO1", "SH1", "INV/1"));
    assert!(h.flow.is_finished());
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty());
}

#[test]
fn redelivered_events_are_no_ops() {
    let mut h = Harness::new("SO1");
    happy_path(&mut h);
    for e in [
        released("SO1", vec![line(1, "PLAIN", "Units", 3)]),
        reserved("SO1", &[(1, 3, 0)]),
        accepted("SO1"),
        pick("SO1", "P1", vec![picked(1, "PLAIN", 3)], true),
        issued("SO1", "SH1", &[(1, "PLAIN", 3)]),
        booked("SO1", "SH1"),
        delivered("SO1", "SH1"),
    ] {
        assert!(h.send(e).is_noop());
    }
}

#[test]
fn same_shipment_under_a_new_event_id_is_still_one_shipment() {
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 3)]));
    h.send(reserved("SO1", &[(1, 3, 0)]));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 3)], true));
    assert_eq!(
        Harness::command_names(&h.send(issued("SO1", "SH1", &[(1, "PLAIN", 3)]))),
        ["BookCarrier", "PostInvoice"]
    );
    let mut again = issued("SO1", "SH1", &[(1, "PLAIN", 3)]);
    again.meta.event_id = "wms:issued:SH1:resent".into();
    assert!(h.send(again).is_noop(), "a second goods issue for the same shipment must not book a second carrier");
}

#[test]
fn unknown_sku_uom_mismatch_and_missing_tax_raise_master_data_exception_and_dead_letter() {
    let mut h = Harness::new("SO2");
    let mut bad_tax = line(3, "PLAIN", "Units", 1);
    bad_tax.tax_code = None;
    let s = h.send(released("SO2", vec![line(1, "NOPE", "Units", 1), line(2, "LOTTED", "Units", 1), bad_tax]));
    assert!(s.commands.is_empty(), "nothing goes to the warehouse for bad master data");
    let dl = s.dead_letter.expect("the order goes to the dead-letter topic");
    assert_eq!(dl.kind, DeadLetterKind::Rule);
    assert!(dl.reason.contains("unknown SKU \"NOPE\""), "{}", dl.reason);
    assert!(dl.reason.contains("unit of measure \"Units\" does not match \"kg\""), "{}", dl.reason);
    assert!(dl.reason.contains("line 3: missing tax code"), "{}", dl.reason);
    assert_eq!(h.status(), Status::OnHold);
    assert_eq!(
        h.flow.fulfillment.book.open_exceptions.values().copied().collect::<Vec<_>>(),
        [ExceptionCategory::MasterData]
    );
    // The same bad order again changes nothing.
    assert!(h.send(released("SO2", vec![line(1, "NOPE", "Units", 1)])).journal.len() <= 3);
}

#[test]
fn replay_after_master_data_fix_resumes_the_order() {
    let mut h = Harness::new("SO2");
    let order = released("SO2", vec![line(1, "NEW", "Units", 1)]);
    assert!(h.send(order.clone()).dead_letter.is_some());
    assert!(h.send(order.clone()).is_noop(), "a replay before the fix is a no-op");
    h.catalog = h.catalog.clone().with_product("NEW", "Units", waybill_saga::catalog::Tracking::None);
    let s = h.send(order);
    assert_eq!(Harness::command_names(&s), ["ReserveStock"]);
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty(), "the master-data exception is resolved");
}

#[test]
fn shortage_backorders_the_rest_and_releases_what_was_reserved() {
    let mut h = Harness::new("SO3");
    h.send(released("SO3", vec![line(1, "PLAIN", "Units", 5), line(2, "PLAIN", "Units", 2)]));
    let s = h.send(reserved("SO3", &[(1, 3, 2), (2, 0, 2)]));
    assert_eq!(Harness::command_names(&s), ["CreateBackorder", "ReleaseToWarehouse"]);
    let CommandBody::ReleaseToWarehouse(rel) = &s.commands[1].body else { unreachable!() };
    assert_eq!(rel.lines.len(), 1);
    assert_eq!(rel.lines[0].quantity, Qty::units(3));
    assert!(h.flow.fulfillment.book.open_exceptions.values().any(|c| *c == ExceptionCategory::StockShortage));
}

#[test]
fn nothing_reserved_means_entirely_backordered_and_finished() {
    let mut h = Harness::new("SO3");
    h.send(released("SO3", vec![line(1, "PLAIN", "Units", 5)]));
    let s = h.send(reserved("SO3", &[(1, 0, 5)]));
    assert_eq!(Harness::command_names(&s), ["CreateBackorder"]);
    assert_eq!(h.status(), Status::Backordered);
    assert!(h.flow.is_finished());
}

#[test]
fn partial_picks_accumulate_and_a_short_final_pick_backorders() {
    let mut h = Harness::new("SO4");
    h.send(released("SO4", vec![line(1, "PLAIN", "Units", 10)]));
    h.send(reserved("SO4", &[(1, 10, 0)]));
    assert!(h.send(pick("SO4", "P1", vec![picked(1, "PLAIN", 4)], false)).commands.is_empty());
    assert_eq!(h.status(), Status::Picking);
    let s = h.send(pick("SO4", "P2", vec![picked(1, "PLAIN", 5)], true));
    assert_eq!(Harness::command_names(&s), ["CreateBackorder"]);
    assert_eq!(h.flow.fulfillment.lines[&1].picked, Qty::units(9));
    assert_eq!(h.flow.fulfillment.lines[&1].backordered, Qty::units(1));
}

#[test]
fn over_pick_and_missing_lots_are_pick_mismatches() {
    let mut h = Harness::new("SO5");
    h.send(released("SO5", vec![line(1, "LOTTED", "kg", 2), line(2, "SERIAL", "Units", 2)]));
    h.send(reserved("SO5", &[(1, 2, 0), (2, 2, 0)]));
    let s = h.send(pick("SO5", "P1", vec![picked(1, "LOTTED", 3)], false));
    let JournalBody::ExceptionRaised(x) = &s.journal[0].body else { panic!("{s:?}") };
    assert_eq!(x.category, ExceptionCategory::PickMismatch);
    assert!(x.message.contains("exceeds the 2 released"), "{}", x.message);
    assert!(x.message.contains("needs lots for 3 but lots cover 0"), "{}", x.message);
    let mut serial_line = picked(2, "SERIAL", 2);
    serial_line.serials = vec!["S1".into(), "S1".into()];
    let s = h.send(pick("SO5", "P2", vec![serial_line], false));
    assert!(
        matches!(&s.journal[0].body, JournalBody::ExceptionRaised(x) if x.message.contains("one distinct serial per unit"))
    );
}

#[test]
fn late_pick_raises_overdue_then_resolves_it() {
    let mut h = Harness::new("SO6");
    h.policy.fulfillment.pick_timeout_secs = 10.0;
    h.send(released("SO6", vec![line(1, "PLAIN", "Units", 1)]));
    h.send(reserved("SO6", &[(1, 1, 0)]));
    let due = h.flow.next_deadline().expect("a pick timer is set");
    assert_eq!(due, h.now.plus_secs(10.0));
    let early = tick(
        &mut h.flow,
        &Env::new(&h.catalog, &h.policy),
        &Cause { id: "t".into(), input: None, at: Timestamp(due.0 - 1) },
    );
    assert!(early.is_noop(), "nothing fires before the deadline");
    let s = tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: "t".into(), input: None, at: due });
    assert!(
        s.journal.iter().any(
            |j| matches!(&j.body, JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::PickOverdue)
        )
    );
    assert!(h.flow.next_deadline().is_none(), "the timer fires once");
    h.send(pick("SO6", "P1", vec![picked(1, "PLAIN", 1)], true));
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty(), "the late pick resolves the exception");
}

#[test]
fn cancellation_before_goods_issue_compensates() {
    let mut h = Harness::new("SO7");
    h.send(released("SO7", vec![line(1, "PLAIN", "Units", 1)]));
    h.send(reserved("SO7", &[(1, 1, 0)]));
    let s = h.send(cancelled("SO7"));
    assert_eq!(Harness::command_names(&s), ["CancelReservation", "CancelWarehouseRelease"]);
    assert_eq!(h.status(), Status::Cancelled);
    assert!(h.flow.is_finished());
    // The warehouse's late pick is ignored.
    assert!(h.send(pick("SO7", "P1", vec![picked(1, "PLAIN", 1)], true)).is_noop());
}

#[test]
fn goods_issued_after_the_cancellation_are_an_exception_not_a_silent_drop() {
    let mut h = Harness::new("SO17");
    h.send(released("SO17", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO17", &[(1, 2, 0)]));
    h.send(cancelled("SO17"));
    // The warehouse shipped before the cancellation reached it.
    let s = h.send(issued("SO17", "SH17", &[(1, "PLAIN", 2)]));
    assert!(s.commands.is_empty(), "nothing is booked, carried or invoiced for a cancelled order");
    assert!(!s.journal.iter().any(|j| matches!(j.body, JournalBody::ShipmentRecorded(_))));
    let raised: Vec<_> = s
        .journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].category, ExceptionCategory::LateCancellation);
    assert!(raised[0].message.contains("SH17") && raised[0].message.contains("2 PLAIN"), "{}", raised[0].message);
    assert_eq!(h.status(), Status::Cancelled);
    // The same shipment under another event id raises nothing more.
    let mut again = issued("SO17", "SH17", &[(1, "PLAIN", 2)]);
    again.meta.event_id = "wms:issued:again".into();
    assert!(h.send(again).journal.is_empty());
}

#[test]
fn cancellation_after_goods_issue_is_an_exception_not_a_compensation() {
    let mut h = Harness::new("SO8");
    h.send(released("SO8", vec![line(1, "PLAIN", "Units", 1)]));
    h.send(reserved("SO8", &[(1, 1, 0)]));
    h.send(pick("SO8", "P1", vec![picked(1, "PLAIN", 1)], true));
    h.send(issued("SO8", "SH8", &[(1, "PLAIN", 1)]));
    let s = h.send(cancelled("SO8"));
    assert!(s.commands.is_empty());
    assert!(h.flow.fulfillment.book.open_exceptions.values().any(|c| *c == ExceptionCategory::LateCancellation));
}

#[test]
fn events_for_an_unknown_order_go_to_the_dead_letter_topic() {
    let mut h = Harness::new("SO9");
    let s = h.send(pick("SO9", "P1", vec![picked(1, "PLAIN", 1)], true));
    let dl = s.dead_letter.expect("dead letter");
    assert!(dl.reason.contains("has not seen released"), "{}", dl.reason);
    assert!(s.journal.is_empty());
}

fn tick_at(h: &mut Harness, at: Timestamp) -> Step {
    h.now = at;
    tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: format!("timer:SO1@{}", at.0), input: None, at })
}

fn raised(s: &Step, category: ExceptionCategory) -> Vec<String> {
    s.journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) if x.category == category => Some(x.message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_order_the_warehouse_picked_empty_ends_entirely_backordered() {
    // The demo's SO002570: one unit reserved, the pick confirmed complete with 0 units.
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 1)]));
    h.send(reserved("SO1", &[(1, 1, 0)]));
    h.send(accepted("SO1"));
    let s = h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 0)], true));
    assert_eq!(Harness::command_names(&s), ["CreateBackorder"]);
    assert!(s.journal.iter().any(|j| matches!(j.body, JournalBody::Completed(_))));
    assert_eq!(h.status(), Status::Backordered);
    assert!(h.flow.is_finished());
    assert_eq!(h.flow.next_deadline(), None, "a finished order has no timer");
    // A goods issue that still arrives changes nothing.
    assert!(h.send(issued("SO1", "SH1", &[(1, "PLAIN", 1)])).is_noop());
}

#[test]
fn a_pick_with_no_lines_that_completes_the_picking_ends_the_order_too() {
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO1", &[(1, 2, 0)]));
    h.send(pick("SO1", "P1", vec![], true));
    assert_eq!(h.status(), Status::Backordered);
    assert!(h.flow.is_finished());
}

#[test]
fn picking_finished_after_every_shipment_was_delivered_completes_the_order() {
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 3)]));
    h.send(reserved("SO1", &[(1, 3, 0)]));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 2)], false));
    h.send(issued("SO1", "SH1", &[(1, "PLAIN", 2)]));
    h.send(booked("SO1", "SH1"));
    h.send(delivered("SO1", "SH1"));
    assert!(!h.flow.fulfillment.is_finished(), "picking is not finished yet");
    let s = h.send(pick("SO1", "P2", vec![], true));
    assert!(s.journal.iter().any(|j| matches!(j.body, JournalBody::Completed(_))));
    assert_eq!(h.status(), Status::Delivered);
}

#[test]
fn a_picked_order_whose_goods_issue_never_comes_raises_step_overdue_and_closes_it_when_it_comes() {
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO1", &[(1, 2, 0)]));
    h.send(accepted("SO1"));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 2)], true));
    assert_eq!(h.status(), Status::Picked);
    let due = h.flow.next_deadline().expect("a picked order waiting for its goods issue has a timer");
    assert_eq!(due, h.now.plus_secs(waybill_saga::watch::WAREHOUSE_WAIT_SECS));
    assert!(tick_at(&mut h, Timestamp(due.0 - 1)).is_noop(), "not due yet");
    let s = tick_at(&mut h, due);
    let msgs = raised(&s, ExceptionCategory::StepOverdue);
    assert_eq!(msgs.len(), 1, "{:?}", s.journal);
    assert!(msgs[0].contains("goods issue of 2 picked unit(s)"), "{}", msgs[0]);
    assert!(msgs[0].contains("chase the warehouse"), "{}", msgs[0]);
    assert_eq!(h.flow.next_deadline(), None, "the open exception tells someone; no second alarm");
    assert!(h.flow.stalls().is_empty());
    // The goods issue arrives: the exception closes itself.
    let s = h.send(issued("SO1", "SH1", &[(1, "PLAIN", 2)]));
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::ExceptionResolved(x) if x.exception_id.contains("step-overdue")))
    );
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty());
    // Now it waits for the proof of delivery, on a longer clock.
    let due = waybill_saga::watch::fulfillment(&h.flow.fulfillment).map(|w| w.due_at);
    assert_eq!(due, Some(h.now.plus_secs(waybill_saga::watch::DELIVERY_WAIT_SECS)));
}

#[test]
fn resolving_step_overdue_without_the_step_arriving_starts_the_clock_again() {
    let mut h = Harness::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 1)]));
    let due = h.flow.next_deadline().expect("waiting for the reservation answer has a timer");
    let s = tick_at(&mut h, due);
    let msgs = raised(&s, ExceptionCategory::StepOverdue);
    assert!(msgs[0].contains("the warehouse's answer to the stock reservation"), "{}", msgs[0]);
    let id = h.flow.fulfillment.book.open_exceptions.keys().next().unwrap().clone();
    h.now = Timestamp(due.0 + 5_000_000);
    h.send(resolve("SO1", "control:resolve:1", &id, "called the warehouse"));
    assert_eq!(h.flow.next_deadline(), Some(h.now.plus_secs(waybill_saga::watch::WAREHOUSE_WAIT_SECS)));
}
