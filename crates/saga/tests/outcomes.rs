//! Delivery outcomes the connectors report, through the pure saga core: a command a
//! target refused raises `DELIVERY_FAILED` in the saga that issued it (once per refusal),
//! a retry sends exactly that command again, and the answer closes it; a refused invoice
//! or credit note is a finance refusal; a target that is down raises one
//! `TARGET_UNAVAILABLE` per outage, closed when it answers again.

mod fixtures;

use fixtures::*;
use waybill_domain::journal::ExceptionRaised;
use waybill_domain::{Command, ExceptionCategory, InboundEvent, JournalBody, System, Timestamp};
use waybill_saga::OrderFlow;
use waybill_saga::decision::{Cause, DeadLetterKind};
use waybill_saga::flow::{Env, Step, step};
use waybill_saga::{Catalog, Policy};

struct H {
    flow: OrderFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
    commands: Vec<Command>,
}

impl H {
    fn new(key: &str) -> Self {
        H {
            flow: OrderFlow::new(key),
            catalog: catalog(),
            policy: Policy::default(),
            now: Timestamp(1_000_000),
            commands: Vec::new(),
        }
    }
    fn send(&mut self, e: InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
        let s = step(&mut self.flow, &e, &Env::new(&self.catalog, &self.policy), &cause);
        self.commands.extend(s.commands.iter().cloned());
        s
    }
    /// SO1 shipped as SH1 and booked with the carrier: Odoo was asked to confirm it.
    fn booked(&mut self) {
        self.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
        self.send(reserved("SO1", &[(1, 2, 0)]));
        self.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 2)], true));
        self.send(issued("SO1", "SH1", &[(1, "PLAIN", 2)]));
        self.send(booked("SO1", "SH1"));
    }
    fn sent(&self, key: &str) -> Vec<&Command> {
        self.commands.iter().filter(|c| c.meta.idempotency_key == key).collect()
    }
}

fn raised(s: &Step) -> Option<&ExceptionRaised> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ExceptionRaised(x) => Some(x),
        _ => None,
    })
}

fn resolution(s: &Step, id: &str) -> Option<String> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ExceptionResolved(x) if x.exception_id == id => Some(x.resolution.clone()),
        _ => None,
    })
}

fn refusal(s: &Step) -> Option<String> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ControlRefused(r) => Some(r.reason.clone()),
        _ => None,
    })
}

const ODOO_SAYS: &str = "ValidationError: You need to supply a Lot/Serial number for product PLAIN.";

#[test]
fn odoo_refusing_a_shipment_confirmation_raises_one_exception_and_a_retry_sends_the_same_command() {
    let mut h = H::new("SO1");
    h.booked();
    let key = "confirm-shipment:SH1";
    let first = h.sent(key)[0].clone();
    let s = h.send(command_failed("SO1", "o2f:SO1", key, "ConfirmShipment", System::Odoo, ODOO_SAYS, 1));
    let x = raised(&s).expect("a DELIVERY_FAILED exception");
    assert_eq!(x.exception_id, "o2f:SO1/delivery-failed/1");
    assert_eq!(x.category, ExceptionCategory::DeliveryFailed);
    assert_eq!(x.subject.to_string(), "waybill:confirm-shipment:SH1");
    assert_eq!(
        x.message,
        format!(
            "Odoo refused ConfirmShipment for SO1 (shipment SH1): {ODOO_SAYS}; fix it in Odoo, then retry the exception"
        )
    );
    assert!(s.dead_letter.is_none() && s.commands.is_empty());
    assert!(h.flow.stalls().is_empty());

    // The same refusal reported again (the coordinator re-produced the command after a
    // crash) under another event id: nothing new.
    let s = h.send(command_failed("SO1", "o2f:SO1", key, "ConfirmShipment", System::Odoo, ODOO_SAYS, 2));
    assert!(s.is_noop(), "{s:?}");

    // The retry sends exactly the first command; Odoo confirms nothing for it, so the
    // retry closes the exception.
    let s = h.send(retry("SO1", "control:retry:1", "o2f:SO1/delivery-failed/1"));
    assert_eq!(refusal(&s), None);
    assert_eq!(s.commands.len(), 1);
    assert_eq!((&s.commands[0].meta.target, &s.commands[0].body), (&first.meta.target, &first.body));
    assert_eq!(s.commands[0].meta.idempotency_key, key);
    let closed = resolution(&s, "o2f:SO1/delivery-failed/1").expect("closed by the retry");
    assert!(closed.starts_with("ConfirmShipment sent again by olga (operator)"), "{closed}");
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty());

    // A new refusal of the re-sent command opens a new exception.
    let s = h.send(command_failed("SO1", "o2f:SO1", key, "ConfirmShipment", System::Odoo, ODOO_SAYS, 3));
    assert_eq!(raised(&s).unwrap().exception_id, "o2f:SO1/delivery-failed/2");
    // ... which an operator may resolve with a note.
    let s = h.send(resolve("SO1", "control:resolve:1", "o2f:SO1/delivery-failed/2", "validated by hand in Odoo"));
    assert!(resolution(&s, "o2f:SO1/delivery-failed/2").unwrap().contains("validated by hand in Odoo"));
}

#[test]
fn a_refused_carrier_booking_waits_with_its_exception_and_closes_when_the_booking_arrives() {
    let mut h = H::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO1", &[(1, 2, 0)]));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 2)], true));
    h.send(issued("SO1", "SH1", &[(1, "PLAIN", 2)]));
    let first = h.sent("carrier:SH1")[0].clone();
    let s =
        h.send(command_failed("SO1", "o2f:SO1", "carrier:SH1", "BookCarrier", System::Carrier, "no pickup slot", 1));
    let x = raised(&s).unwrap();
    assert_eq!(
        x.message,
        "The carrier refused BookCarrier for SO1 (shipment SH1): no pickup slot; fix it with the carrier, then retry the exception"
    );
    let s = h.send(retry("SO1", "control:retry:1", &x.exception_id.clone()));
    assert_eq!(s.commands[0].body, first.body);
    // The carrier answers bookings: the exception stays open until it does.
    assert_eq!(h.flow.fulfillment.book.open_of(ExceptionCategory::DeliveryFailed).count(), 1);
    assert!(h.flow.stalls().is_empty());
    let s = h.send(booked("SO1", "SH1"));
    assert_eq!(
        resolution(&s, "o2f:SO1/delivery-failed/1").as_deref(),
        Some("carrier:SH1 delivered after a retry (CarrierAssigned)")
    );
    // A report of the old refusal arriving after the booking changes nothing.
    let s = h.send(command_failed("SO1", "o2f:SO1", "carrier:SH1", "BookCarrier", System::Carrier, "late", 2));
    assert!(s.is_noop(), "{s:?}");
}

#[test]
fn a_refused_invoice_is_a_finance_refusal_and_its_retry_posts_the_same_invoice() {
    let mut h = H::new("SO1");
    h.booked();
    let first = h.sent("invoice:SH1")[0].clone();
    let s = h.send(command_failed("SO1", "s2i:SH1", "invoice:SH1", "PostInvoice", System::Finance, "period closed", 1));
    let x = raised(&s).unwrap();
    assert_eq!(
        (x.exception_id.as_str(), x.category),
        ("s2i:SH1/posting-rejected/1", ExceptionCategory::PostingRejected)
    );
    assert!(x.message.contains("finance refused the invoice for shipment SH1: period closed"), "{}", x.message);
    assert!(s.journal.iter().any(|j| matches!(j.body, JournalBody::FinanceRefused(_))));
    let s = h.send(command_failed("SO1", "s2i:SH1", "invoice:SH1", "PostInvoice", System::Finance, "period closed", 2));
    assert!(s.is_noop());
    let s = h.send(retry("SO1", "control:retry:1", "s2i:SH1/posting-rejected/1"));
    assert_eq!((&s.commands[0].meta.idempotency_key, &s.commands[0].body), (&first.meta.idempotency_key, &first.body));
    // The retried invoice refused again while the refusal is open: still one exception.
    let s = h.send(command_failed("SO1", "s2i:SH1", "invoice:SH1", "PostInvoice", System::Finance, "still closed", 3));
    assert!(s.is_noop(), "{s:?}");
    let s = h.send(invoice_posted("SO1", "SH1", "INV-1"));
    assert!(resolution(&s, "s2i:SH1/posting-rejected/1").unwrap().contains("posted after a retry"));
}

#[test]
fn a_compensation_refused_after_the_cancellation_is_raised_on_the_cancelled_order() {
    let mut h = H::new("SO1");
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO1", &[(1, 2, 0)]));
    h.send(cancelled("SO1"));
    let first = h.sent("cancel-release:SO1")[0].clone();
    let s = h.send(command_failed(
        "SO1",
        "o2f:SO1",
        "cancel-release:SO1",
        "CancelWarehouseRelease",
        System::Wms,
        "wave already closed",
        1,
    ));
    let x = raised(&s).unwrap();
    assert!(x.message.starts_with("The warehouse system refused CancelWarehouseRelease for SO1"), "{}", x.message);
    let s = h.send(retry("SO1", "control:retry:1", &x.exception_id.clone()));
    assert_eq!(s.commands[0].body, first.body);
    // A reservation refused after the order was cancelled is moot.
    let s = h.send(command_failed("SO1", "o2f:SO1", "reserve:SO1", "ReserveStock", System::Wms, "late", 1));
    assert!(s.is_noop(), "{s:?}");
}

#[test]
fn reports_the_sagas_cannot_place_are_dead_letters_that_say_why() {
    let mut h = H::new("SO1");
    let s = h.send(command_failed("SO1", "o2f:SO1", "reserve:SO1", "ReserveStock", System::Wms, "x", 1));
    let dl = s.dead_letter.expect("dead letter");
    assert_eq!(dl.kind, DeadLetterKind::Rule);
    assert!(dl.reason.contains("which Waybill has not seen released"), "{}", dl.reason);

    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    let s = h.send(command_failed("SO1", "s2i:NOPE", "invoice:NOPE", "PostInvoice", System::Finance, "x", 1));
    assert!(
        s.dead_letter
            .unwrap()
            .reason
            .starts_with("CommandFailed names saga \"s2i:NOPE\", which order SO1 does not have")
    );
    let s = h.send(command_failed("SO1", "o2f:SO1", "carrier:SH9", "BookCarrier", System::Carrier, "x", 1));
    assert!(s.dead_letter.unwrap().reason.contains("which that saga never issued"));
    let s = h.send(command_failed("SO1", "o2f:SO1", "reserve:SO1", "ConfirmShipment", System::Wms, "x", 1));
    let why = s.dead_letter.unwrap().reason;
    assert!(why.contains("but saga o2f:SO1 issued ReserveStock to wms under that key"), "{why}");
}

#[test]
fn a_target_that_is_down_has_one_open_exception_until_it_answers_again() {
    let mut h = H::new("target:odoo");
    let since = Timestamp(OCCURRED_AT.0 - 192_000_000); // 3 min 12 s before it answers again
    let s = h.send(outage(System::Odoo, true, since, "connection refused", 1));
    assert!(s.dead_letter.is_none(), "{:?}", s.dead_letter);
    let x = raised(&s).unwrap();
    assert_eq!(x.exception_id, "tgt:odoo/target-unavailable/1");
    assert_eq!(x.category, ExceptionCategory::TargetUnavailable);
    assert_eq!(
        x.message,
        "Odoo has not answered since 2023-11-14 22:10 UTC (connection refused); commands wait in waybill.commands.odoo and are delivered when it is back — see docs/operations.md 'a system is down'"
    );
    assert_eq!(s.journal[0].meta.saga_id, "tgt:odoo");
    assert_eq!(s.journal[0].meta.kind, waybill_domain::SagaKind::TargetHealth);
    assert!(h.send(outage(System::Odoo, true, since, "connection refused", 2)).is_noop());
    let s = h.send(retry("target:odoo", "control:retry:1", "tgt:odoo/target-unavailable/1"));
    assert!(s.commands.is_empty());
    assert!(
        refusal(&s).unwrap().contains("the connector delivers the waiting commands and closes it when Odoo answers")
    );
    let s = h.send(outage(System::Odoo, false, since, "answered", 1));
    assert_eq!(
        resolution(&s, "tgt:odoo/target-unavailable/1").as_deref(),
        Some("Odoo answered again after 3 min 12 s")
    );
    // A later outage is a new exception, which an operator may resolve by hand.
    let s = h.send(outage(System::Odoo, true, OCCURRED_AT, "HTTP 503", 3));
    assert_eq!(raised(&s).unwrap().exception_id, "tgt:odoo/target-unavailable/2");
    let s =
        h.send(resolve("target:odoo", "control:resolve:1", "tgt:odoo/target-unavailable/2", "Odoo is in maintenance"));
    assert!(resolution(&s, "tgt:odoo/target-unavailable/2").is_some());
    assert!(h.flow.stalls().is_empty());

    // An outage keyed by anything but its target's key is a dead letter.
    let mut wrong = outage(System::Wms, true, since, "timeout", 1);
    wrong.meta.correlation_key = "SO1".into();
    let mut h = H::new("SO1");
    let dl = h.send(wrong).dead_letter.unwrap();
    assert!(dl.reason.contains("the connector must key it \"target:wms\""), "{}", dl.reason);
}

#[test]
fn finance_refusing_the_second_of_two_waiting_credit_notes_marks_that_receipt_not_the_first() {
    use waybill_domain::event::{DocumentRejected, ItemCondition};
    use waybill_domain::{CommandBody, EventBody};
    use waybill_saga::returns::CreditStatus;

    let mut h = H::new("SO1");
    h.booked();
    h.send(invoice_posted("SO1", "SH1", "INV-1"));
    h.send(rma("SO1", "RMA1", &[(1, "PLAIN", 2)]));
    h.send(received("SO1", "RMA1", "RCV1", vec![returned(1, "PLAIN", 1, ItemCondition::Restock, &[])]));
    h.send(received("SO1", "RMA1", "RCV2", vec![returned(1, "PLAIN", 1, ItemCondition::Restock, &[])]));
    assert!(h.sent("credit:RCV1").len() == 1 && h.sent("credit:RCV2").len() == 1, "both credit notes requested");
    let refused =
        DocumentRejected { order_ref: "SO1".into(), business_key: "RCV2".into(), reason: "duplicate reference".into() };
    let s = h.send(ev("finance:credit-refused:RCV2", System::Finance, "SO1", EventBody::CreditNoteRejected(refused)));
    assert!(raised(&s).unwrap().message.contains("RCV2"));
    let receipts = &h.flow.returns["RMA1"].receipts;
    assert_eq!(receipts["RCV2"].status, CreditStatus::Refused, "the receipt finance refused");
    assert_eq!(receipts["RCV1"].status, CreditStatus::Requested, "the other one still waits for its answer");
    // RCV1's answer still lands on RCV1, and a retry re-sends RCV2's credit note.
    h.send(credit_issued("SO1", "RCV1"));
    assert_eq!(h.flow.returns["RMA1"].receipts["RCV1"].status, CreditStatus::Issued);
    let id = raised(&s).unwrap().exception_id.clone();
    let s = h.send(retry("SO1", "control:retry:1", &id));
    assert!(matches!(&s.commands[0].body, CommandBody::IssueCreditNote(c) if c.receipt_id == "RCV2"), "{s:?}");
}
