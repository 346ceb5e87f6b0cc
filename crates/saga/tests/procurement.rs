//! Procure-to-receive through the pure saga core: a purchase order is received against
//! its notice and validated in Odoo once per receipt, each supplier invoice is matched
//! three ways and posted once (or held for an approver outside tolerance), differences
//! are raised in the supplier's terms, and a cancelled receipt is returned and credited.

use waybill_domain::journal::{DocumentKind, ExceptionRaised};
use waybill_domain::{CommandBody, ExceptionCategory, InboundEvent, JournalBody, Money, SagaKind, Timestamp};
use waybill_saga::decision::{Cause, DeadLetterKind};
use waybill_saga::flow::{self, Env, Flow, Step};
use waybill_saga::procurement::{BillStatus, PurchaseFlow};
use waybill_saga::{Catalog, Policy};
use waybill_test_util::inbound::{OCCURRED_AT, decision, resolve, retry};
use waybill_test_util::purchase::*;

const PO: &str = "P00042";

struct H {
    flow: PurchaseFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
    steps: Vec<Step>,
}

impl H {
    fn new() -> Self {
        H {
            flow: PurchaseFlow::create(&key(PO)),
            catalog: Catalog::default(),
            policy: Policy::default(),
            now: OCCURRED_AT,
            steps: Vec::new(),
        }
    }
    fn send(&mut self, e: InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
        let s = flow::step(&mut self.flow, &e, &Env::new(&self.catalog, &self.policy), &cause);
        self.steps.push(s.clone());
        s
    }
    fn tick(&mut self, days: f64) -> Step {
        self.now = self.now.plus_secs(days * 86_400.0);
        let cause = Cause { id: format!("timer:{}", self.now.0), input: None, at: self.now };
        let s = flow::tick(&mut self.flow, &Env::new(&self.catalog, &self.policy), &cause);
        self.steps.push(s.clone());
        s
    }
    fn commands(&self, name: &str) -> Vec<(String, CommandBody)> {
        self.steps
            .iter()
            .flat_map(|s| s.commands.iter())
            .filter(|c| c.body.name() == name)
            .map(|c| (c.meta.idempotency_key.clone(), c.body.clone()))
            .collect()
    }
    fn finished(&self) -> bool {
        flow::is_finished(&self.flow)
    }
    /// PO P00042: 100 × WIDGET at 8.50, 50 × BOLT at 3.10.
    fn ordered(&mut self) {
        let s = self.send(confirmed(PO, &[(1, "WIDGET", 100, 850), (2, "BOLT", 50, 310)]));
        assert!(s.dead_letter.is_none(), "{:?}", s.dead_letter);
    }
}

fn raised(s: &Step) -> Vec<&ExceptionRaised> {
    s.journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x),
            _ => None,
        })
        .collect()
}

fn journaled(s: &Step, name: &str) -> bool {
    s.journal.iter().any(|j| j.body.name() == name)
}

#[test]
fn a_purchase_order_received_and_billed_as_ordered_completes_with_one_posting_of_each() {
    let mut h = H::new();
    h.ordered();
    assert!(h.send(notice(PO, "ASN-1", &[(1, 1, "WIDGET", 100, &[]), (2, 2, "BOLT", 50, &[])])).dead_letter.is_none());
    let s = h.send(receipt(
        PO,
        "R1",
        Some("ASN-1"),
        vec![got(1, Some(1), "WIDGET", 100, 0), got(2, Some(2), "BOLT", 50, 0)],
    ));
    assert!(raised(&s).is_empty(), "as announced: {:?}", raised(&s));
    assert_eq!(s.commands.len(), 1);
    assert_eq!(s.commands[0].meta.idempotency_key, "receipt:R1");
    assert_eq!(s.commands[0].meta.saga_id, "p2r:P00042");
    assert_eq!(s.commands[0].meta.correlation_key, "po:P00042");
    assert_eq!(s.journal[0].meta.kind, SagaKind::PurchaseToReceive);
    // Redelivered, the receipt changes nothing.
    assert!(
        h.send(receipt(
            PO,
            "R1",
            Some("ASN-1"),
            vec![got(1, Some(1), "WIDGET", 100, 0), got(2, Some(2), "BOLT", 50, 0)]
        ))
        .is_noop()
    );
    h.send(validated(PO, "R1"));
    let s = h.send(bill(PO, "INV-7", &[(1, "WIDGET", 100, 850), (2, "BOLT", 50, 310)]));
    assert!(journaled(&s, "BillMatched"), "{:?}", s.journal);
    let bills = h.commands("PostVendorBill");
    assert_eq!(bills.len(), 1);
    assert_eq!(bills[0].0, "bill:SUP-1/INV-7");
    assert!(!h.finished(), "finance has not posted it yet");
    let s = h.send(bill_posted(PO, "INV-7", Money(100_500)));
    assert!(journaled(&s, "Completed"), "{:?}", s.journal);
    assert!(h.finished());
    assert!(flow::stalls(&h.flow).is_empty());
    assert_eq!(h.commands("ValidateReceipt").len(), 1);
}

#[test]
fn a_bill_before_its_goods_waits_and_is_matched_when_they_arrive() {
    let mut h = H::new();
    h.ordered();
    let s = h.send(bill(PO, "INV-1", &[(1, "WIDGET", 100, 850)]));
    assert!(s.commands.is_empty(), "nothing received yet: {:?}", s.commands);
    assert_eq!(h.flow.procurement.bills["INV-1"].status, BillStatus::Waiting);
    let s = h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 60, 0)]));
    assert_eq!(s.commands.len(), 1, "60 of 100 in: the bill still waits for the rest");
    let s = h.send(receipt(PO, "R2", None, vec![got(1, None, "WIDGET", 40, 0)]));
    let keys: Vec<&str> = s.commands.iter().map(|c| c.meta.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["receipt:R2", "bill:SUP-1/INV-1"]);
}

#[test]
fn a_bill_outside_tolerance_is_held_for_an_approver_with_four_eyes_and_posted_once_approved() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 100, 0), got(2, None, "BOLT", 50, 0)]));
    let mut e = bill(PO, "INV-9", &[(1, "WIDGET", 100, 890), (2, "BOLT", 50, 310)]);
    e.meta.actor = Some("ap-clerk".into());
    let s = h.send(e);
    let held = s
        .journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::PostingHeld(p) => Some(p.clone()),
            _ => None,
        })
        .expect("held");
    assert_eq!(held.posting_id, "bill:INV-9");
    assert_eq!(held.document, DocumentKind::VendorBill);
    assert_eq!(held.requested_by, "ap-clerk");
    assert_eq!(held.reasons, ["line 1 WIDGET: unit price 8.90 is 4.7 % above the order's 8.50 (tolerance 2 %)"]);
    assert!(s.commands.is_empty());
    // The clerk who entered the bill may not approve it.
    let s = h.send(decision(&key(PO), "a1", "bill:INV-9", 1, "ap-clerk", "approver", true));
    assert!(journaled(&s, "ControlRefused") && s.commands.is_empty());
    let s = h.send(decision(&key(PO), "a2", "bill:INV-9", 1, "alice", "approver", true));
    assert!(journaled(&s, "PostingApproved") && journaled(&s, "BillMatched"));
    assert_eq!(s.commands.len(), 1);
    assert_eq!(s.commands[0].meta.idempotency_key, "bill:SUP-1/INV-9");
    // A second approval posts nothing more.
    assert!(h.send(decision(&key(PO), "a3", "bill:INV-9", 2, "bob", "approver", true)).commands.is_empty());
    assert_eq!(h.commands("PostVendorBill").len(), 1);
}

#[test]
fn a_held_bill_past_its_sla_is_escalated_and_the_approval_closes_the_escalation() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 100, 0)]));
    h.send(bill(PO, "INV-2", &[(1, "WIDGET", 120, 850)]));
    assert_eq!(h.flow.procurement.bills["INV-2"].status, BillStatus::Held);
    let s = h.tick(2.0);
    let x = raised(&s);
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].category, ExceptionCategory::ApprovalOverdue);
    assert!(x[0].message.contains("bill INV-2"), "{}", x[0].message);
    assert!(x[0].message.contains("120 billed but 100 received"), "{}", x[0].message);
    let s = h.send(decision(&key(PO), "r1", "bill:INV-2", 1, "alice", "approver", false));
    assert!(journaled(&s, "PostingRejected"));
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::ExceptionResolved(r) if r.exception_id == x[0].exception_id))
    );
    assert_eq!(raised(&s)[0].category, ExceptionCategory::PostingRejected);
    assert!(raised(&s)[0].message.contains("ask the supplier for a corrected invoice"));
    assert!(h.commands("PostVendorBill").is_empty(), "a rejected bill is never posted");
}

#[test]
fn over_receipt_and_damaged_goods_raise_one_receipt_mismatch_and_the_goods_are_still_booked() {
    let mut h = H::new();
    h.ordered();
    h.send(notice(PO, "ASN-1", &[(1, 1, "WIDGET", 100, &["LOT-A"])]));
    let s = h.send(receipt(PO, "R1", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 108, 2)]));
    assert_eq!(s.commands.len(), 1, "the goods are in the warehouse: Odoo books them");
    let x = raised(&s);
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].category, ExceptionCategory::ReceiptMismatch);
    assert_eq!(x[0].exception_id, "p2r:P00042/receipt-mismatch/1");
    assert_eq!(
        x[0].message,
        "receipt R1 of purchase order P00042 from Acme Supplies does not match: line 1 WIDGET: 108 received against 100 ordered (tolerance 5 %); line 1 WIDGET: 2 damaged — claim them with the supplier; ASN-1 line 1 announced 100 WIDGET, 110 arrived; ASN-1 line 1: lot(s) LOT-A announced, none received; settle it with the supplier (a credit, a replacement delivery) and resolve this exception"
    );
    // A retry has nothing to send; a resolution with a note closes it.
    let s = h.send(retry(&key(PO), "rt1", &x[0].exception_id));
    assert!(s.commands.is_empty() && journaled(&s, "ControlRefused"));
    let s = h.send(resolve(&key(PO), "rs1", &x[0].exception_id, "supplier credits 2 damaged and 8 extra"));
    assert!(journaled(&s, "ExceptionResolved"));
}

#[test]
fn a_notice_after_its_receipt_is_compared_when_it_arrives() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 90, 0)]));
    let s = h.send(notice(PO, "ASN-1", &[(1, 1, "WIDGET", 100, &[])]));
    let x = raised(&s);
    assert_eq!(x.len(), 1, "{:?}", s.journal);
    assert!(x[0].message.contains("ASN-1 line 1 announced 100 WIDGET, 90 arrived"), "{}", x[0].message);
}

#[test]
fn a_notice_line_is_received_once() {
    let mut h = H::new();
    h.ordered();
    h.send(notice(PO, "ASN-1", &[(1, 1, "WIDGET", 100, &[])]));
    h.send(receipt(PO, "R1", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 100, 0)]));
    let s = h.send(receipt(PO, "R2", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 100, 0)]));
    let dl = s.dead_letter.expect("refused");
    assert_eq!(dl.kind, DeadLetterKind::Rule);
    assert!(dl.reason.contains("which receipt R1 already received"), "{}", dl.reason);
    assert!(s.commands.is_empty() && s.journal.is_empty());
    // Once the first receipt is cancelled, the line may be received again.
    h.send(receipt_cancelled(PO, "R1"));
    assert!(h.send(receipt(PO, "R3", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 100, 0)])).dead_letter.is_none());
}

#[test]
fn a_receipt_cancelled_after_its_bill_is_returned_and_credited_never_deleted() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 100, 0), got(2, None, "BOLT", 50, 0)]));
    h.send(validated(PO, "R1"));
    h.send(bill(PO, "INV-3", &[(1, "WIDGET", 100, 850), (2, "BOLT", 50, 310)]));
    h.send(bill_posted(PO, "INV-3", Money(100_500)));
    assert!(h.finished());
    // The cancellation reopens the completed order and compensates.
    let s = h.send(receipt_cancelled(PO, "R1"));
    assert!(!h.finished(), "the credit and the goods are awaited now");
    let keys: Vec<&str> = s.commands.iter().map(|c| c.meta.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["rtv:R1", "vcn:R1"]);
    let CommandBody::IssueVendorCreditNote(credit) = &s.commands[1].body else { panic!("{:?}", s.commands[1]) };
    assert_eq!(credit.amount, Money(100_500));
    assert_eq!(credit.bill_number, "INV-3");
    assert_eq!(credit.lines.len(), 2);
    // Cancelled twice: nothing more.
    assert!(h.send(receipt_cancelled(PO, "R1")).commands.is_empty());
    assert_eq!(h.commands("IssueVendorCreditNote").len(), 1);
    assert!(flow::stalls(&h.flow).is_empty(), "the credit is watched");
    let s = h.send(vendor_credited(PO, "R1", Money(100_500)));
    assert!(!journaled(&s, "Completed"), "the order expects its goods again");
    let s = h.send(closed(PO));
    assert!(journaled(&s, "Completed"), "{:?}", s.journal);
}

#[test]
fn a_bill_finance_refused_is_retried_as_the_same_command_and_its_posting_closes_the_exception() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 100, 0), got(2, None, "BOLT", 50, 0)]));
    h.send(validated(PO, "R1"));
    h.send(bill(PO, "INV-4", &[(1, "WIDGET", 100, 850), (2, "BOLT", 50, 310)]));
    let s = h.send(bill_refused(PO, "INV-4", "vendor blocked"));
    let x = raised(&s)[0].clone();
    assert_eq!(x.category, ExceptionCategory::PostingRejected);
    let s = h.send(retry(&key(PO), "rt1", &x.exception_id));
    assert_eq!(s.commands.len(), 1);
    let first = &h.commands("PostVendorBill")[0];
    assert_eq!((&s.commands[0].meta.idempotency_key, &s.commands[0].body), (&first.0, &first.1));
    let s = h.send(bill_posted(PO, "INV-4", Money(100_500)));
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::ExceptionResolved(r) if r.exception_id == x.exception_id))
    );
    assert!(journaled(&s, "Completed"));
}

#[test]
fn an_order_short_delivered_waits_for_the_goods_then_completes_when_closed() {
    let mut h = H::new();
    h.ordered();
    h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 60, 0), got(2, None, "BOLT", 50, 0)]));
    h.send(validated(PO, "R1"));
    h.send(bill(PO, "INV-5", &[(1, "WIDGET", 60, 850), (2, "BOLT", 50, 310)]));
    h.send(bill_posted(PO, "INV-5", Money(66_500)));
    assert!(!h.finished(), "40 WIDGET still expected");
    assert!(flow::stalls(&h.flow).is_empty(), "the watchdog watches the wait");
    let s = h.tick(15.0);
    let x = raised(&s);
    assert_eq!(x[0].category, ExceptionCategory::StepOverdue);
    assert!(x[0].message.contains("line 1 WIDGET: 60 of 100 received"), "{}", x[0].message);
    assert!(x[0].message.contains("close the order in Odoo"), "{}", x[0].message);
    let s = h.send(closed(PO));
    assert!(journaled(&s, "Completed"), "{:?}", s.journal);
}

#[test]
fn goods_and_a_bill_arriving_after_the_order_was_closed_reopen_it_until_they_are_settled() {
    let mut h = H::new();
    h.ordered();
    // The buyer closes the order before the delivery under way arrives.
    let s = h.send(closed(PO));
    assert!(journaled(&s, "Completed"), "nothing received, nothing to bill");
    let s = h.send(receipt(PO, "R1", None, vec![got(1, None, "WIDGET", 40, 0)]));
    assert_eq!(s.commands.len(), 1, "the late goods are still booked in Odoo");
    assert!(!h.finished(), "reopened by the goods");
    assert!(flow::stalls(&h.flow).is_empty());
    let s = h.send(bill(PO, "INV-L", &[(1, "WIDGET", 40, 850)]));
    assert_eq!(h.commands("PostVendorBill").len(), 1, "{:?}", s.journal);
    h.send(validated(PO, "R1"));
    let s = h.send(bill_posted(PO, "INV-L", Money(34_000)));
    assert!(journaled(&s, "Completed"), "{:?}", s.journal);
}

#[test]
fn events_keyed_by_the_wrong_flow_are_dead_letters() {
    let mut h = H::new();
    let s = h.send(bill(PO, "INV-6", &[(1, "WIDGET", 1, 850)]));
    assert!(s.dead_letter.unwrap().reason.contains("which Waybill has not seen confirmed"));
    // A purchase event keyed by an order name.
    let mut order = waybill_saga::OrderFlow::new("SO1");
    let e = confirmed(PO, &[(1, "WIDGET", 1, 850)]);
    let mut wrong = e.clone();
    wrong.meta.correlation_key = "SO1".into();
    let cause = Cause { id: "x".into(), input: None, at: OCCURRED_AT };
    let (catalog, policy) = (Catalog::default(), Policy::default());
    let s = flow::step(&mut order, &wrong, &Env::new(&catalog, &policy), &cause);
    assert!(s.dead_letter.unwrap().reason.contains("key procure-to-receive events po:<purchase order>"));
    // A bill naming another purchase order than its key.
    h.ordered();
    let mut other = bill("P00099", "INV-6", &[(1, "WIDGET", 1, 850)]);
    other.meta.correlation_key = key(PO);
    assert!(h.send(other).dead_letter.unwrap().reason.contains("names purchase order \"P00099\""));
}

#[test]
fn replaying_the_journal_rebuilds_the_state() {
    let mut h = H::new();
    h.ordered();
    h.send(notice(PO, "ASN-1", &[(1, 1, "WIDGET", 100, &[])]));
    h.send(receipt(PO, "R1", Some("ASN-1"), vec![got(1, Some(1), "WIDGET", 100, 1)]));
    h.send(bill(PO, "INV-8", &[(1, "WIDGET", 100, 900)]));
    h.send(decision(&key(PO), "a1", "bill:INV-8", 1, "alice", "approver", true));
    h.send(receipt_cancelled(PO, "R1"));
    h.tick(30.0);
    let mut rebuilt = PurchaseFlow::create(&key(PO));
    for s in &h.steps {
        for e in &s.journal {
            flow::apply(&mut rebuilt, e);
            flow::apply(&mut rebuilt, e); // a duplicate changes nothing
        }
    }
    assert_eq!(rebuilt, h.flow);
}
