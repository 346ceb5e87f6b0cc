//! The workbench actions, driven through the pure saga core: a retry re-issues the
//! failed step's command with its original idempotency key and body, a resolution closes
//! an exception with the operator's note, an assignment names who works an open
//! exception, anything else is refused in the journal; a replay applies what was
//! dead-lettered and is a no-op the second time.

mod fixtures;

use fixtures::*;
use waybill_domain::event::ReplayInput;
use waybill_domain::{Command, InboundEvent, JournalBody, Timestamp};
use waybill_saga::decision::Cause;
use waybill_saga::flow::{Env, OrderFlow, ReplayRecord, Step, replay, step, tick};
use waybill_saga::{Catalog, Policy};

struct H {
    flow: OrderFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
    commands: Vec<Command>,
}

impl H {
    fn new() -> Self {
        H {
            flow: OrderFlow::new("SO1"),
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
    fn ship(&mut self, units: i64) -> Step {
        self.send(released("SO1", vec![line(1, "PLAIN", "Units", units)]));
        self.send(reserved("SO1", &[(1, units, 0)]));
        self.send(pick("SO1", "P1", vec![picked(1, "PLAIN", units)], true));
        self.send(issued("SO1", "SH1", &[(1, "PLAIN", units)]))
    }
    fn command(&self, key: &str) -> Vec<&Command> {
        self.commands.iter().filter(|c| c.meta.idempotency_key == key).collect()
    }
}

fn refusal(s: &Step) -> Option<String> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ControlRefused(r) => Some(r.reason.clone()),
        _ => None,
    })
}

fn raised(s: &Step) -> String {
    s.journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.exception_id.clone()),
            _ => None,
        })
        .expect("an exception was raised")
}

#[test]
fn a_retry_re_issues_the_refused_invoice_with_the_same_key_and_body() {
    let mut h = H::new();
    h.ship(3);
    let s = h.send(invoice_refused("SO1", "SH1", "period closed"));
    let id = raised(&s);
    assert_eq!(id, "s2i:SH1/posting-rejected/1");
    let s = h.send(retry("SO1", "control:retry:1", &id));
    assert!(refusal(&s).is_none(), "{:?}", refusal(&s));
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::ExceptionRetried(x) if x.idempotency_key == "invoice:SH1"))
    );
    let sent = h.command("invoice:SH1");
    assert_eq!(sent.len(), 2, "the original and the retry");
    assert_eq!(sent[0].body, sent[1].body, "a retry is the same command, never a second invoice");
    // The same control record delivered again: nothing more.
    assert!(h.send(retry("SO1", "control:retry:1", &id)).is_noop());
    // Finance posts it: the exception closes by itself.
    let s = h.send(invoice_posted("SO1", "SH1", "INV/1"));
    assert!(s.journal.iter().any(|j| matches!(&j.body, JournalBody::ExceptionResolved(x) if x.exception_id == id)));
    let s = h.send(retry("SO1", "control:retry:2", &id));
    assert!(refusal(&s).unwrap().contains("already resolved"));
    assert_eq!(h.command("invoice:SH1").len(), 2);
}

#[test]
fn an_overdue_pick_is_retried_as_the_same_release() {
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 4)]));
    h.send(reserved("SO1", &[(1, 3, 1)]));
    h.now = Timestamp(h.now.0 + 3_600_000_000 * 24);
    let s = tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: "timer".into(), input: None, at: h.now });
    let id = raised(&s);
    let s = h.send(retry("SO1", "control:retry:1", &id));
    assert!(refusal(&s).is_none(), "{:?}", refusal(&s));
    let sent = h.command("release:SO1");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, sent[1].body);
}

fn assigned(s: &Step) -> Option<(String, Option<String>)> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ExceptionAssigned(x) => Some((x.owner.clone(), x.previous_owner.clone())),
        _ => None,
    })
}

#[test]
fn assigning_names_an_owner_reassigning_names_the_previous_one_and_a_repeat_changes_nothing() {
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 4)]));
    let s = h.send(reserved("SO1", &[(1, 3, 1)]));
    let id = raised(&s);
    let s = h.send(assign("SO1", "control:assign:1", &id, " wh-leads "));
    assert!(refusal(&s).is_none(), "{:?}", refusal(&s));
    assert_eq!(assigned(&s), Some(("wh-leads".into(), None)));
    assert_eq!(h.flow.fulfillment.book.owners.get(&id).map(String::as_str), Some("wh-leads"));
    // Assigning is not progress: the exception stays open and nothing is sent.
    assert!(h.flow.fulfillment.book.open_exceptions.contains_key(&id));
    assert!(s.commands.is_empty());

    // The same owner again: idempotent, nothing journaled.
    let s = h.send(assign("SO1", "control:assign:2", &id, "wh-leads"));
    assert!(s.is_noop(), "{s:?}");
    // A redelivered control record: done the first time.
    assert!(h.send(assign("SO1", "control:assign:1", &id, " wh-leads ")).is_noop());

    // Reassignment names who had it.
    let s = h.send(assign("SO1", "control:assign:3", &id, "olga"));
    assert_eq!(assigned(&s), Some(("olga".into(), Some("wh-leads".into()))));

    // A blank owner, an unknown exception, a resolved one: refused in words.
    let s = h.send(assign("SO1", "control:assign:4", &id, "  "));
    assert!(refusal(&s).unwrap().contains("needs an owner"));
    let s = h.send(assign("SO1", "control:assign:5", "o2f:SO1/stock-shortage/9", "olga"));
    assert!(refusal(&s).unwrap().contains("never raised"));
    let s = h.send(assign("SO1", "control:assign:6", "s2i:NOPE/other/1", "olga"));
    assert!(refusal(&s).unwrap().contains("does not belong to a saga of order SO1"));
    h.send(resolve("SO1", "control:resolve:1", &id, "replenishment booked"));
    assert!(h.flow.fulfillment.book.owners.is_empty(), "a resolution ends the assignment in the saga's state");
    let s = h.send(assign("SO1", "control:assign:7", &id, "bob"));
    assert!(refusal(&s).unwrap().contains("already resolved"), "{:?}", refusal(&s));
}

#[test]
fn an_overdue_pick_reads_in_business_terms() {
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 4)]));
    h.send(reserved("SO1", &[(1, 4, 0)]));
    let due = h.flow.fulfillment.next_deadline().expect("the pick is due");
    h.now = Timestamp(due.0 + 3 * 3_600_000_000);
    let s = tick(&mut h.flow, &Env::new(&h.catalog, &h.policy), &Cause { id: "timer".into(), input: None, at: h.now });
    let message = s
        .journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.message.clone()),
            _ => None,
        })
        .expect("a pick-overdue exception");
    let warehouse = &released("SO1", vec![line(1, "PLAIN", "Units", 4)]);
    let waybill_domain::EventBody::OrderReleased(o) = &warehouse.body else { unreachable!() };
    let expected = format!("Pick for SO1 is 3 h 0 min overdue at warehouse {}", o.lines[0].warehouse);
    assert!(message.starts_with(&expected), "{message}");
    assert!(!message.contains("µs"), "{message}");

    // A shortage says how much of what is missing, and where.
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 4)]));
    let s = h.send(reserved("SO1", &[(1, 3, 1)]));
    let message = s
        .journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.message.clone()),
            _ => None,
        })
        .expect("a stock-shortage exception");
    let expected = format!("order SO1: 1 Units of PLAIN (line 1) short at warehouse {}", o.lines[0].warehouse);
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn resolving_needs_an_open_exception_and_a_note() {
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 4)]));
    let s = h.send(reserved("SO1", &[(1, 3, 1)]));
    let id = raised(&s);
    assert_eq!(id, "o2f:SO1/stock-shortage/1");
    // A shortage has no command to re-issue.
    let s = h.send(retry("SO1", "control:retry:1", &id));
    assert!(refusal(&s).unwrap().contains("no command to re-issue"));
    let s = h.send(resolve("SO1", "control:resolve:1", &id, "  "));
    assert!(refusal(&s).unwrap().contains("needs a note"));
    let s = h.send(resolve("SO1", "control:resolve:2", &id, "replenishment booked"));
    assert!(s.journal.iter().any(
        |j| matches!(&j.body, JournalBody::ExceptionResolved(x) if x.resolution == "resolved by olga (operator): replenishment booked")
    ));
    assert!(h.flow.fulfillment.book.open_exceptions.is_empty());
    let s = h.send(resolve("SO1", "control:resolve:3", &id, "again"));
    assert!(refusal(&s).unwrap().contains("already resolved"));
    let s = h.send(resolve("SO1", "control:resolve:4", "o2f:SO1/stock-shortage/9", "typo"));
    assert!(refusal(&s).unwrap().contains("never raised"));
    let s = h.send(resolve("SO1", "control:resolve:5", "s2i:NOPE/other/1", "typo"));
    assert!(refusal(&s).unwrap().contains("does not belong"));
}

#[test]
fn an_invoice_an_approver_rejected_is_not_retried() {
    let mut h = H::new();
    h.catalog.new_customers.insert("C1".into());
    h.ship(3);
    let s = h.send(decision("SO1", "d1", "inv:SH1", 1, "alice", "approver", false));
    let id = raised(&s);
    let s = h.send(retry("SO1", "control:retry:1", &id));
    assert!(refusal(&s).unwrap().contains("without approval"));
    assert!(h.command("invoice:SH1").is_empty());
    // A refused workbench action does not count as touching the posting (four-eyes).
    assert!(h.flow.invoices["SH1"].posting.as_ref().unwrap().touched_by.iter().all(|a| a != "olga"));
}

fn record(at: i64, e: &InboundEvent, dead_letter: Option<&str>) -> ReplayRecord {
    ReplayRecord {
        input: ReplayInput {
            topic: "waybill.inbound.carrier".into(),
            partition: 0,
            offset: at,
            dead_letter: dead_letter.map(str::to_string),
        },
        event: Ok(e.clone()),
    }
}

#[test]
fn a_replay_applies_what_was_dead_lettered_and_then_nothing() {
    let mut h = H::new();
    h.send(released("SO1", vec![line(1, "PLAIN", "Units", 2)]));
    h.send(reserved("SO1", &[(1, 2, 0)]));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 2)], true));
    // The carrier's booking overtook the goods issue: dead-lettered.
    let early = booked("SO1", "SH1");
    let s = h.send(early.clone());
    assert!(s.dead_letter.is_some());
    h.send(issued("SO1", "SH1", &[(1, "PLAIN", 2)]));
    let records = vec![
        record(1, &released("SO1", vec![line(1, "PLAIN", "Units", 2)]), None),
        record(2, &early, Some("dlq:waybill.inbound.carrier:0:2")),
    ];
    let env = Env::new(&h.catalog, &h.policy);
    let cause = Cause { id: "control:replay:1".into(), input: None, at: h.now };
    let s = replay(&mut h.flow, "control:replay:1", &replay_request("SO1", "r1"), &records, &env, &cause);
    assert!(s.dead_letter.is_none());
    let keys: Vec<&str> = s.commands.iter().map(|c| c.meta.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["confirm-shipment:SH1"]);
    assert!(s.journal.iter().any(|j| matches!(&j.body, JournalBody::CarrierAssigned(_))));
    assert!(s.journal.iter().any(
        |j| matches!(&j.body, JournalBody::ExceptionResolved(x) if x.exception_id == "dlq:waybill.inbound.carrier:0:2")
    ));
    let summary = s.journal.last().unwrap();
    assert_eq!(summary.meta.caused_by, "control:replay:1");
    let JournalBody::SagaReplayed(x) = &summary.body else { panic!("ends with SagaReplayed") };
    assert_eq!((x.inputs, x.applied), (2, 1));
    // A redelivery of the request changes nothing; a second replay applies nothing.
    assert!(replay(&mut h.flow, "control:replay:1", &replay_request("SO1", "r1"), &records, &env, &cause).is_noop());
    let cause = Cause { id: "control:replay:2".into(), input: None, at: h.now };
    let s = replay(&mut h.flow, "control:replay:2", &replay_request("SO1", "r2"), &records, &env, &cause);
    assert!(s.commands.is_empty());
    let JournalBody::SagaReplayed(x) = &s.journal.last().unwrap().body else { panic!("ends with SagaReplayed") };
    assert_eq!(x.applied, 0);
    // The booking delivered again later is a duplicate.
    assert!(h.send(early).is_noop());
}
