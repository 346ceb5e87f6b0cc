//! Ship-to-invoice and returns-and-credit, driven through the pure `step` function:
//! held postings, approvals with their rules, one invoice per shipment, one credit note
//! per return receipt.

mod fixtures;

use fixtures::*;
use waybill_domain::event::ItemCondition;
use waybill_domain::{CommandBody, ExceptionCategory, InboundEvent, JournalBody, Money, Timestamp};
use waybill_saga::decision::Cause;
use waybill_saga::flow::{Env, OrderFlow, Step, step, tick};
use waybill_saga::invoicing::InvoiceStatus;
use waybill_saga::returns::CreditStatus;
use waybill_saga::{Catalog, Policy};

struct H {
    flow: OrderFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
}

impl H {
    fn new(catalog: Catalog) -> Self {
        H { flow: OrderFlow::new("SO1"), catalog, policy: Policy::default(), now: Timestamp(1_000_000) }
    }
    fn send(&mut self, e: InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
        step(&mut self.flow, &e, &Env::new(&self.catalog, &self.policy), &cause)
    }
    fn names(s: &Step) -> Vec<&'static str> {
        s.commands.iter().map(|c| c.body.name()).collect()
    }
    /// Order SO1: `units` of PLAIN at 12.50, shipped in full as SH1.
    fn ship(&mut self, units: i64) -> Step {
        self.send(released("SO1", vec![line(1, "PLAIN", "Units", units)]));
        self.send(reserved("SO1", &[(1, units, 0)]));
        self.send(pick("SO1", "P1", vec![picked(1, "PLAIN", units)], true));
        self.send(issued("SO1", "SH1", &[(1, "PLAIN", units)]))
    }
    fn posting_version(&self) -> i64 {
        self.flow.invoices["SH1"].posting.as_ref().unwrap().version
    }
}

fn new_customer() -> Catalog {
    let mut c = catalog();
    c.new_customers.insert("C1".into());
    c
}

#[test]
fn an_ordinary_invoice_goes_straight_to_finance_once() {
    let mut h = H::new(catalog());
    let s = h.ship(3);
    assert_eq!(H::names(&s), ["BookCarrier", "PostInvoice"]);
    let CommandBody::PostInvoice(inv) = &s.commands[1].body else { unreachable!() };
    assert_eq!(inv.total, Money(3750));
    assert_eq!(s.commands[1].meta.idempotency_key, "invoice:SH1");
    let s = h.send(invoice_posted("SO1", "SH1", "INV/1"));
    assert!(s.journal.iter().any(|j| matches!(j.body, JournalBody::Completed(_))));
    assert_eq!(h.flow.invoices["SH1"].invoice_number.as_deref(), Some("INV/1"));
}

#[test]
fn an_invoice_to_a_new_customer_is_held_then_approved_once() {
    let mut h = H::new(new_customer());
    let s = h.ship(3);
    assert_eq!(H::names(&s), ["BookCarrier"], "held: no invoice yet");
    assert_eq!(h.flow.invoices["SH1"].status, InvoiceStatus::Held);
    let held = s.journal.iter().find_map(|j| match &j.body {
        JournalBody::PostingHeld(p) => Some(p.clone()),
        _ => None,
    });
    let held = held.expect("a held posting");
    assert!(held.reasons.iter().any(|r| r.contains("customer C1 is flagged as new")), "{:?}", held.reasons);
    let s = h.send(decision("SO1", "a1", "inv:SH1", 1, "alice", "approver", true));
    assert_eq!(H::names(&s), ["PostInvoice"]);
    assert_eq!(h.posting_version(), 2);
    // Approving again, under a new message or a replay, posts nothing more.
    assert!(h.send(decision("SO1", "a2", "inv:SH1", 2, "carol", "approver", true)).commands.is_empty());
    assert!(h.send(decision("SO1", "a1", "inv:SH1", 1, "alice", "approver", true)).is_noop());
}

#[test]
fn approvals_check_version_four_eyes_and_limits() {
    let mut h = H::new(new_customer());
    h.ship(3);
    let refused = |s: &Step| {
        s.journal.iter().find_map(|j| match &j.body {
            JournalBody::ControlRefused(r) => Some(r.reason.clone()),
            _ => None,
        })
    };
    let s = h.send(decision("SO1", "x1", "inv:SH1", 7, "alice", "approver", true));
    assert!(refused(&s).unwrap().contains("version 1"), "stale version");
    let s = h.send(decision("SO1", "x2", "inv:SH1", 1, "wms:SO1", "approver", true));
    assert!(refused(&s).unwrap().contains("four-eyes"), "the requester cannot approve");
    let s = h.send(decision("SO1", "x3", "inv:SH1", 1, "dave", "viewer", true));
    assert!(refused(&s).unwrap().contains("may not decide"), "viewers cannot approve");
    assert!(s.commands.is_empty());
    assert_eq!(h.flow.invoices["SH1"].status, InvoiceStatus::Held);
}

#[test]
fn a_large_invoice_needs_a_senior_approver() {
    let mut h = H::new(catalog());
    h.policy.posting.approval_limits.insert("approver".into(), Money(1_000_00));
    h.policy.posting.hold_invoices_above = Money(1_000_00);
    h.ship(100); // 100 × 12.50 = 1,250.00
    let s = h.send(decision("SO1", "x1", "inv:SH1", 1, "alice", "approver", true));
    assert!(s.commands.is_empty());
    assert!(matches!(&s.journal[0].body, JournalBody::ControlRefused(r) if r.reason.contains("ask a senior-approver")));
    let s = h.send(decision("SO1", "x2", "inv:SH1", 1, "erin", "senior-approver", true));
    assert_eq!(H::names(&s), ["PostInvoice"]);
}

#[test]
fn a_rejected_posting_is_an_exception_and_never_posts() {
    let mut h = H::new(new_customer());
    h.ship(3);
    let s = h.send(decision("SO1", "r1", "inv:SH1", 1, "alice", "approver", false));
    assert!(s.commands.is_empty());
    assert_eq!(h.flow.invoices["SH1"].status, InvoiceStatus::Rejected);
    assert!(h.flow.invoices["SH1"].book.open_exceptions.values().any(|c| *c == ExceptionCategory::PostingRejected));
    assert!(h.send(decision("SO1", "a1", "inv:SH1", 2, "bob", "approver", true)).commands.is_empty());
}

#[test]
fn a_posting_past_its_sla_is_escalated_once() {
    let mut h = H::new(new_customer());
    h.policy.posting.approval_sla_secs = 60.0;
    h.ship(3);
    let due = h.flow.next_deadline().unwrap();
    let s = tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: "t".into(), input: None, at: due });
    assert!(s.journal.iter().any(
        |j| matches!(&j.body, JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::ApprovalOverdue)
    ));
    assert!(
        tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: "t".into(), input: None, at: due }).is_noop()
    );
    h.send(decision("SO1", "a1", "inv:SH1", 1, "alice", "approver", true));
    assert!(h.flow.invoices["SH1"].book.open_exceptions.is_empty(), "approval resolves the escalation");
}

#[test]
fn a_return_becomes_one_credit_note_at_the_invoiced_price_less_the_restocking_fee() {
    let mut h = H::new(catalog());
    h.ship(4);
    h.send(invoice_posted("SO1", "SH1", "INV/1"));
    h.send(rma("SO1", "RMA1", &[(1, "PLAIN", 2)]));
    let s = h.send(received("SO1", "RMA1", "RC1", vec![returned(1, "PLAIN", 2, ItemCondition::Restock, &[])]));
    assert_eq!(H::names(&s), ["IssueCreditNote"]);
    let CommandBody::IssueCreditNote(cn) = &s.commands[0].body else { unreachable!() };
    assert_eq!(cn.invoice_number, "INV/1");
    assert_eq!(cn.restocking_fee, Money(250), "10% of 25.00");
    assert_eq!(cn.total, Money(2250));
    assert_eq!(s.commands[0].meta.idempotency_key, "credit:RC1");
    // The same receipt again: no second credit note.
    let mut again = received("SO1", "RMA1", "RC1", vec![returned(1, "PLAIN", 2, ItemCondition::Restock, &[])]);
    again.meta.event_id.push_str(":resent");
    assert!(h.send(again).is_noop());
    let s = h.send(credit_issued("SO1", "RC1"));
    assert_eq!(H::names(&s), ["AdjustStock"]);
    assert_eq!(h.flow.returns["RMA1"].receipts["RC1"].status, CreditStatus::Issued);
    assert!(h.flow.returns["RMA1"].is_finished());
}

#[test]
fn returning_more_than_shipped_or_a_foreign_serial_is_an_exception() {
    let mut h = H::new(catalog());
    h.ship(2);
    h.send(invoice_posted("SO1", "SH1", "INV/1"));
    h.send(rma("SO1", "RMA1", &[(1, "PLAIN", 2)]));
    let s = h.send(received("SO1", "RMA1", "RC1", vec![returned(1, "PLAIN", 3, ItemCondition::Scrap, &["SN-X"])]));
    assert!(s.commands.is_empty());
    let JournalBody::ExceptionRaised(x) = &s.journal[0].body else { panic!("{s:?}") };
    assert_eq!(x.category, ExceptionCategory::ReturnMismatch);
    assert!(x.message.contains("exceeds the 2 authorised"), "{}", x.message);
    assert!(x.message.contains("serial \"SN-X\" was never shipped"), "{}", x.message);
}

#[test]
fn a_large_credit_note_is_held_for_approval() {
    let mut h = H::new(catalog());
    h.policy.posting.hold_credit_notes_above = Money(10_00);
    h.ship(4);
    h.send(invoice_posted("SO1", "SH1", "INV/1"));
    h.send(rma("SO1", "RMA1", &[(1, "PLAIN", 4)]));
    let s = h.send(received("SO1", "RMA1", "RC1", vec![returned(1, "PLAIN", 4, ItemCondition::Scrap, &[])]));
    assert!(s.commands.is_empty());
    assert!(s.journal.iter().any(|j| matches!(&j.body, JournalBody::PostingHeld(p) if p.posting_id == "cn:RC1")));
    let s = h.send(decision("SO1", "a1", "cn:RC1", 1, "alice", "approver", true));
    assert_eq!(H::names(&s), ["IssueCreditNote"]);
    assert!(h.send(decision("SO1", "a2", "cn:RC1", 2, "bob", "approver", true)).commands.is_empty());
}
