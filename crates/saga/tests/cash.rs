//! Cash application through the pure saga core, on real statement files: the camt.053
//! and MT940 files of `crates/bank/tests/data/`, written after the ISO 20022 business
//! example of the Bank-to-Customer Cash Management message definition report
//! (https://www.iso20022.org/iso-20022-message-definitions) and SWIFT MT 940 with the
//! German DFÜ-Abkommen `:86:` (sources in `crates/bank/tests/data/README.md`).
//!
//! Every line is applied or queued; a statement imported twice changes nothing; an
//! overpayment leaves its remainder on the customer's account; one statement line never
//! makes two journal entries (property-tested below, over refusals, retries and
//! redeliveries).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use waybill_bank::record;
use waybill_domain::cash::{
    BankLine, BankLineKind, OpenItem, StatementLinePosted, StatementLineRejected, StatementReceived, correlation_key,
};
use waybill_domain::{
    CommandBody, EventBody, EventMeta, ExceptionCategory, InboundEvent, JournalBody, Money, SourceRef, System,
    Timestamp,
};
use waybill_saga::cash::{LineStatus, StatementFlow};
use waybill_saga::decision::{Cause, DeadLetterKind};
use waybill_saga::flow::{self, Env, Flow, Step};
use waybill_saga::{Catalog, Policy};
use waybill_test_util::inbound::{OCCURRED_AT, resolve, retry};

fn file(name: &str) -> Vec<u8> {
    let path = format!("{}/../bank/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn item(number: &str, customer_ref: &str, name: &str, open: i64) -> OpenItem {
    OpenItem {
        number: number.into(),
        customer_ref: customer_ref.into(),
        customer_name: name.into(),
        open_amount: Money(open),
        currency: "EUR".into(),
        due_at: None,
    }
}

/// The receivables open when the camt.053 example is imported.
fn open_items() -> Vec<OpenItem> {
    vec![
        item("INV/2026/0001", "C001", "Nordwind Handels GmbH", 1190_00),
        item("INV/2026/00010", "C001", "Nordwind Handels GmbH", 990_00),
        item("INV/2026/0002", "C002", "Alpenblick AG", 1000_00),
        item("INV/2026/0003", "C003", "Bergmann KG", 2000_00),
        item("INV/2026/0004", "C004", "Müller GmbH", 800_00),
        item("INV/2026/0005", "C001", "Nordwind Handels GmbH", 1450_00),
    ]
}

fn imported(name: &str, items: Vec<OpenItem>) -> Vec<StatementReceived> {
    let bytes = file(name);
    let checksum = waybill_bank::checksum(&bytes);
    waybill_bank::parse_file(&bytes)
        .unwrap()
        .iter()
        .map(|s| record::statement_received(s, &checksum, items.clone()))
        .collect()
}

fn event(id: &str, system: System, key: &str, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: id.into(),
            source: SourceRef::new(system, key),
            correlation_key: key.into(),
            occurred_at: OCCURRED_AT,
            actor: None,
        },
        body,
    }
}

fn received(id: &str, r: &StatementReceived) -> InboundEvent {
    event(id, System::Bank, &correlation_key(&r.statement_key), EventBody::StatementReceived(Box::new(r.clone())))
}

struct H {
    flow: StatementFlow,
    catalog: Catalog,
    policy: Policy,
    steps: Vec<Step>,
}

impl H {
    fn new(r: &StatementReceived) -> Self {
        H {
            flow: StatementFlow::create(&correlation_key(&r.statement_key)),
            catalog: Catalog::default(),
            policy: Policy::default(),
            steps: Vec::new(),
        }
    }
    fn send(&mut self, e: &InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: OCCURRED_AT };
        let s = flow::step(&mut self.flow, e, &Env { catalog: &self.catalog, policy: &self.policy }, &cause);
        self.steps.push(s.clone());
        s
    }
    fn key(&self) -> String {
        self.flow.key.clone()
    }
    fn statement_key(&self) -> String {
        self.flow.cash.statement.as_ref().unwrap().statement_key.clone()
    }
    fn posted(&mut self, line: &str) -> Step {
        let key = self.key();
        let body = EventBody::StatementLinePosted(StatementLinePosted {
            statement_key: self.statement_key(),
            line_id: line.into(),
            entry_number: format!("BNK1/{line}"),
        });
        self.send(&event(&format!("finance:posted:{line}"), System::Finance, &key, body))
    }
}

#[test]
fn every_line_of_the_camt053_example_is_applied_or_queued_and_the_overpayment_stays_on_account() {
    let statements = imported("camt053_001_02_statement.xml", open_items());
    assert_eq!(statements.len(), 1);
    let r = &statements[0];
    let mut h = H::new(r);
    let s = h.send(&received("bank:stmt:1", r));
    assert!(s.dead_letter.is_none(), "{:?}", s.dead_letter);
    let applied: BTreeSet<&str> = s
        .journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::LineApplied(e) => Some(e.line_id.as_str()),
            _ => None,
        })
        .collect();
    let queued: BTreeSet<&str> = s
        .journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::UnmatchedPayment => {
                Some(x.subject.id.as_str())
            }
            _ => None,
        })
        .collect();
    let all: BTreeSet<&str> = r.lines.iter().map(|l| l.line_id.as_str()).collect();
    assert!(applied.is_disjoint(&queued));
    assert_eq!(applied.union(&queued).copied().collect::<BTreeSet<_>>(), all, "every line applied or queued");
    assert_eq!(s.commands.len(), applied.len(), "one entry per applied line");
    assert_eq!(queued, BTreeSet::from(["WBDEMO-ACCR-01", "WBDEMO-RVSL-0227"]));

    // The overpayment: 1,500.00 for INV/2026/0005 (1,450.00); 50.00 stays on account.
    let entry = |line: &str| h.flow.cash.lines[line].entry.clone().unwrap_or_else(|| panic!("{line} has no entry"));
    let over = entry("WBDEMO-CN-98767/01");
    assert_eq!(over.allocations.len(), 1);
    assert_eq!((over.allocations[0].invoice.as_str(), over.allocations[0].amount), ("INV/2026/0005", Money(1450_00)));
    assert_eq!(over.remainder, Money(50_00));
    // The partial payment: 500.00 of INV/2026/0004's 800.00 (300.00 stay open there).
    let partial = entry("WBDEMO-CN-98766/01");
    assert_eq!((partial.allocations[0].amount, partial.remainder), (Money(500_00), Money(0)));
    // The bank's charge is an expense entry.
    let charge = entry("WBDEMO-CHRG-0302");
    assert_eq!((charge.rule.as_str(), charge.fee), ("charge", Money(12_50)));
    // The queued line says why, in words.
    let x = h.flow.cash.book.open_exceptions.keys().next().unwrap().clone();
    assert!(x.starts_with("cash:"), "{x}");

    // Imported again (another delivery of the same file): nothing.
    assert!(h.send(&received("bank:stmt:2", r)).is_noop());
    // The same statement id with another file: refused, naming both checksums.
    let mut other = r.clone();
    other.checksum = "0".repeat(64);
    let dl = h.send(&received("bank:stmt:3", &other)).dead_letter.unwrap();
    assert_eq!(dl.kind, DeadLetterKind::Rule);
    assert!(dl.reason.contains("was imported before from another file"), "{}", dl.reason);

    // Finance posts every entry; operators apply the queued lines by hand.
    for line in applied.clone() {
        assert!(!flow::is_finished(&h.flow));
        h.posted(line);
    }
    assert!(flow::stalls(&h.flow).is_empty());
    let key = h.key();
    let open: Vec<String> = h.flow.cash.book.open_exceptions.keys().cloned().collect();
    for (k, id) in open.iter().enumerate() {
        let s = h.send(&retry(&key, &format!("rt{k}"), id));
        assert!(s.commands.is_empty(), "an unmatched line is applied by hand, not retried");
        h.send(&resolve(&key, &format!("rs{k}"), id, "booked against the supplier payment by hand"));
    }
    assert!(flow::is_finished(&h.flow), "{:#?}", h.flow.cash.lines);
    assert!(h.flow.cash.lines.values().all(|l| matches!(l.status, LineStatus::Posted | LineStatus::Handled)));
    let posts: Vec<&str> = h
        .steps
        .iter()
        .flat_map(|s| s.commands.iter())
        .filter(|c| matches!(c.body, CommandBody::PostStatementLine(_)))
        .map(|c| c.meta.idempotency_key.as_str())
        .collect();
    assert_eq!(posts.len(), applied.len(), "one journal entry per line, ever");
}

#[test]
fn every_line_of_the_mt940_statements_is_applied_or_queued() {
    let items = vec![item("RE-2026-0142", "K-77", "Hansen Logistik GmbH", 2380_00)];
    for r in imported("mt940_statements.sta", items) {
        let mut h = H::new(&r);
        let s = h.send(&received(&format!("bank:{}", r.statement_key), &r));
        assert!(s.dead_letter.is_none(), "{:?}", s.dead_letter);
        let handled = s
            .journal
            .iter()
            .filter(|j| {
                matches!(&j.body, JournalBody::LineApplied(_))
                    || matches!(&j.body, JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::UnmatchedPayment)
            })
            .count();
        assert_eq!(handled, r.lines.len(), "statement {}", r.statement_id);
    }
}

#[test]
fn a_refused_entry_is_retried_as_the_same_command_and_its_posting_closes_the_exception() {
    let r = &imported("camt053_001_02_statement.xml", open_items())[0];
    let mut h = H::new(r);
    let first = h.send(&received("bank:stmt:1", r)).commands[0].clone();
    let line = match &first.body {
        CommandBody::PostStatementLine(e) => e.line_id.clone(),
        other => panic!("{other:?}"),
    };
    let key = h.key();
    let body = EventBody::StatementLineRejected(StatementLineRejected {
        statement_key: h.statement_key(),
        line_id: line.clone(),
        reason: "journal BNK1 is locked".into(),
    });
    let s = h.send(&event("finance:refused:1", System::Finance, &key, body));
    let x = s
        .journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(x.category, ExceptionCategory::PostingRejected);
    let again = h.send(&retry(&key, "rt1", &x.exception_id));
    assert_eq!(again.commands.len(), 1);
    assert_eq!(
        (&again.commands[0].meta.idempotency_key, &again.commands[0].body),
        (&first.meta.idempotency_key, &first.body)
    );
    let s = h.posted(&line);
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::ExceptionResolved(r) if r.exception_id == x.exception_id))
    );
}

// ---- one journal entry per statement line, ever ----

fn arb_line() -> impl Strategy<Value = (u8, i64, u8)> {
    // (which invoice the remittance names: 0..4, 4 = none), amount in cents, kind
    (0u8..5, -50_00i64..300_00, 0u8..8)
}

fn statement(lines: &[(u8, i64, u8)]) -> StatementReceived {
    let items: Vec<OpenItem> = (0..4)
        .map(|i| item(&format!("INV-{i}"), &format!("C{i}"), &format!("Kunde {i} GmbH"), 100_00 + i * 50_00))
        .collect();
    StatementReceived {
        statement_key: "camt053|DE00TEST|S-1".into(),
        statement_id: "S-1".into(),
        format: "camt.053".into(),
        account: "DE00TEST".into(),
        currency: "EUR".into(),
        checksum: "c".repeat(64),
        lines: lines
            .iter()
            .enumerate()
            .map(|(n, (inv, amount, kind))| BankLine {
                line_id: format!("L{n}"),
                kind: if *kind == 0 { BankLineKind::Fee } else { BankLineKind::Payment },
                booking_date: Some(Timestamp(OCCURRED_AT.0)),
                amount: Money(*amount),
                currency: "EUR".into(),
                fee: Money(0),
                counterparty: Some(format!("Kunde {} GmbH", inv % 4)),
                creditor_references: vec![],
                end_to_end_id: None,
                remittance: if *inv < 4 { vec![format!("INV-{inv}")] } else { vec![] },
                bank_reference: None,
            })
            .collect(),
        open_items: items,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn one_statement_line_never_makes_two_journal_entries(
        lines in proptest::collection::vec(arb_line(), 1..8),
        script in proptest::collection::vec((0u8..6, 0usize..8), 0..40),
    ) {
        let r = statement(&lines);
        let mut h = H::new(&r);
        h.send(&received("bank:1", &r));
        let key = h.key();
        for (k, (op, pick)) in script.iter().enumerate() {
            let line = format!("L{}", pick % lines.len());
            let stmt = r.statement_key.clone();
            match op {
                0 => { h.send(&received(&format!("bank:again:{k}"), &r)); }
                1 => { h.posted(&line); }
                2 => {
                    let body = EventBody::StatementLineRejected(StatementLineRejected {
                        statement_key: stmt, line_id: line.clone(), reason: "locked".into(),
                    });
                    h.send(&event(&format!("finance:refused:{k}"), System::Finance, &key, body));
                }
                3 | 4 => {
                    let open: Vec<String> = h.flow.cash.book.open_exceptions.keys().cloned().collect();
                    if let Some(x) = open.get(pick % open.len().max(1)) {
                        if *op == 3 {
                            h.send(&retry(&key, &format!("rt{k}"), x));
                        } else {
                            h.send(&resolve(&key, &format!("rs{k}"), x, "done by hand"));
                        }
                    }
                }
                _ => {
                    // A redelivery of an earlier event.
                    h.send(&received("bank:1", &r));
                }
            }
        }
        let mut bodies: BTreeMap<String, CommandBody> = BTreeMap::new();
        let mut lines_posted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for c in h.steps.iter().flat_map(|s| s.commands.iter()) {
            if let CommandBody::PostStatementLine(e) = &c.body {
                lines_posted.entry(e.line_id.clone()).or_default().insert(c.meta.idempotency_key.clone());
            }
            if let Some(b) = bodies.insert(c.meta.idempotency_key.clone(), c.body.clone()) {
                prop_assert_eq!(&b, &c.body, "two commands under {}", c.meta.idempotency_key);
            }
        }
        for (line, keys) in &lines_posted {
            prop_assert_eq!(keys.len(), 1, "line {} posted under {:?}", line, keys);
        }
        let applied = h.steps.iter().flat_map(|s| s.journal.iter())
            .filter(|j| matches!(j.body, JournalBody::LineApplied(_))).count();
        prop_assert_eq!(applied, lines_posted.len(), "one application per line");
        // The journal rebuilds the state.
        let mut rebuilt = StatementFlow::create(&key);
        for e in h.steps.iter().flat_map(|s| s.journal.iter()) {
            flow::apply(&mut rebuilt, e);
            flow::apply(&mut rebuilt, e);
        }
        prop_assert_eq!(rebuilt, h.flow.clone());
        prop_assert!(flow::stalls(&h.flow).is_empty(), "{:?}", flow::stalls(&h.flow));
    }
}
