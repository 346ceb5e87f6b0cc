//! Cash application through the pure saga core, on real statement files: the camt.053
//! and MT940 files of `crates/bank/tests/data/`, written after the ISO 20022 business
//! example of the Bank-to-Customer Cash Management message definition report
//! (https://www.iso20022.org/iso-20022-message-definitions) and SWIFT MT 940 with the
//! German DFÜ-Abkommen `:86:` (sources in `crates/bank/tests/data/README.md`).
//!
//! Every line is applied or queued; a statement imported twice changes nothing; an
//! overpayment leaves its remainder on the customer's account; a queued line applied by
//! hand is sent once, with the operator's allocation, and an allocation that does not fit
//! the line or the statement's open items is refused saying why; one statement line never
//! makes two journal entries (property-tested below, over refusals, retries, manual
//! assignments and redeliveries).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use waybill_bank::record;
use waybill_domain::cash::{
    BankLine, BankLineKind, InvoiceAllocation, LineAssignment, OpenItem, StatementEntry, StatementLinePosted,
    StatementLineRejected, StatementReceived, correlation_key,
};
use waybill_domain::{
    CommandBody, EventBody, EventMeta, ExceptionCategory, InboundEvent, JournalBody, Money, SourceRef, System,
    Timestamp,
};
use waybill_saga::cash::by_hand::{self, RefusalKind};
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
        let s = flow::step(&mut self.flow, e, &Env::new(&self.catalog, &self.policy), &cause);
        self.steps.push(s.clone());
        s
    }
    fn key(&self) -> String {
        self.flow.key.clone()
    }
    fn statement_key(&self) -> String {
        self.flow.cash.statement.as_ref().unwrap().statement_key.clone()
    }
    /// Operator olga applies a line by hand: `exception` and/or `line` name it.
    fn assign(
        &mut self,
        id: &str,
        exception: &str,
        line: &str,
        invoices: &[(&str, i64)],
        on_account: Option<&str>,
    ) -> Step {
        let a = assignment(&self.statement_key(), exception, line, invoices, on_account);
        let key = self.key();
        self.send(&event(id, System::Operator, &key, EventBody::StatementLineAssignRequested(a)))
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

fn assignment(
    statement_key: &str,
    exception: &str,
    line: &str,
    invoices: &[(&str, i64)],
    on_account: Option<&str>,
) -> LineAssignment {
    LineAssignment {
        statement_key: statement_key.into(),
        exception_id: exception.into(),
        line_id: line.into(),
        allocations: invoices
            .iter()
            .map(|(invoice, amount)| InvoiceAllocation { invoice: (*invoice).into(), amount: Money(*amount) })
            .collect(),
        on_account: on_account.map(str::to_string),
        actor: "olga".into(),
        role: "operator".into(),
        peer: "127.0.0.1:50000".into(),
        request_id: "req".into(),
        note: "the customer confirmed it by phone".into(),
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

// ---- applying an unmatched line by hand ----

fn payment(line_id: &str, amount: i64, payer: &str, reference: Option<&str>) -> BankLine {
    BankLine {
        line_id: line_id.into(),
        kind: BankLineKind::Payment,
        booking_date: Some(OCCURRED_AT),
        amount: Money(amount),
        currency: "EUR".into(),
        fee: Money(0),
        counterparty: Some(payer.into()),
        creditor_references: vec![],
        end_to_end_id: None,
        remittance: reference.map(|r| vec![r.to_string()]).unwrap_or_default(),
        bank_reference: None,
    }
}

/// L0 pays INV-0 by its reference; L1 (120.00) and L2 (30.00) come from a payer nobody
/// knows and name nothing: both are queued.
fn unknown_payers() -> StatementReceived {
    StatementReceived {
        statement_key: "camt053|DE00TEST|S-7".into(),
        statement_id: "S-7".into(),
        format: "camt.053".into(),
        account: "DE00TEST".into(),
        currency: "EUR".into(),
        checksum: "d".repeat(64),
        lines: vec![
            payment("L0", 100_00, "Kunde 0 GmbH", Some("INV-0")),
            payment("L1", 120_00, "Unbekannt AG", None),
            payment("L2", 30_00, "Irgendwer KG", None),
        ],
        open_items: vec![
            item("INV-0", "C0", "Kunde 0 GmbH", 100_00),
            item("INV-1", "C1", "Kunde 1 GmbH", 150_00),
            item("INV-2", "C2", "Kunde 2 GmbH", 200_00),
        ],
        entity: None,
    }
}

/// The open `UNMATCHED_PAYMENT` exception of `line`.
fn queued(h: &H, line: &str) -> String {
    let book = &h.flow.cash.book;
    book.open_of(ExceptionCategory::UnmatchedPayment)
        .find(|id| book.subjects.get(*id).is_some_and(|s| s.id == line))
        .cloned()
        .unwrap_or_else(|| panic!("line {line} is not queued: {:?}", book.open_exceptions))
}

fn entries(s: &Step) -> Vec<(String, StatementEntry)> {
    s.commands
        .iter()
        .filter_map(|c| match &c.body {
            CommandBody::PostStatementLine(e) => Some((c.meta.idempotency_key.clone(), e.clone())),
            _ => None,
        })
        .collect()
}

fn refusal(s: &Step) -> String {
    assert!(s.commands.is_empty(), "a refused assignment sends nothing: {:?}", s.commands);
    s.journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ControlRefused(x) if x.action == "assign-line" => Some(x.reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no refusal journaled: {:#?}", s.journal))
}

#[test]
fn a_queued_line_applied_by_hand_is_sent_once_with_the_allocation_and_its_exception_closes() {
    let r = unknown_payers();
    let mut h = H::new(&r);
    h.send(&received("bank:s7", &r));
    let x1 = queued(&h, "L1");
    queued(&h, "L2");

    // 100.00 to INV-1, the 20.00 left on C1's account.
    let s = h.assign("control:assign-line:1", &x1, "L1", &[("INV-1", 100_00)], Some("C1"));
    let sent = entries(&s);
    assert_eq!(sent.len(), 1, "{:#?}", s.commands);
    let (key, entry) = &sent[0];
    assert_eq!(key, "stmt-line:camt053|DE00TEST|S-7#L1");
    assert_eq!(entry.rule, "manual");
    assert_eq!(entry.allocations, vec![InvoiceAllocation { invoice: "INV-1".into(), amount: Money(100_00) }]);
    assert_eq!((entry.amount, entry.remainder, entry.on_account.as_deref()), (Money(120_00), Money(20_00), Some("C1")));
    let resolution = s
        .journal
        .iter()
        .find_map(|j| match &j.body {
            JournalBody::ExceptionResolved(x) if x.exception_id == x1 => Some(x.resolution.clone()),
            _ => None,
        })
        .expect("the exception is closed");
    assert!(
        resolution.contains("applied by hand by olga (operator): INV-1 100.00 EUR, 20.00 EUR on account of C1"),
        "{resolution}"
    );
    assert!(resolution.contains("the customer confirmed it by phone"), "{resolution}");
    assert!(!h.flow.cash.book.open_exceptions.contains_key(&x1));
    assert_eq!(h.flow.cash.lines["L1"].status, LineStatus::Sent);

    // A second assignment of the line, by its exception or by the line itself: refused,
    // nothing sent (one journal entry per statement line, ever).
    let again = refusal(&h.assign("control:assign-line:2", "", "L1", &[("INV-2", 120_00)], None));
    assert!(
        again.contains("line L1 has its journal entry already (stmt-line:camt053|DE00TEST|S-7#L1, rule manual)"),
        "{again}"
    );
    let again = refusal(&h.assign("control:assign-line:3", &x1, "", &[("INV-2", 120_00)], None));
    assert!(again.contains("is already resolved"), "{again}");
    // A redelivery of the first request changes nothing.
    assert!(h.assign("control:assign-line:1", &x1, "L1", &[("INV-1", 100_00)], Some("C1")).is_noop());

    // Finance's answer closes the line as for any other; named by the line alone, the
    // second queued line goes wholly on account, and the statement completes.
    for line in ["L0", "L1"] {
        h.posted(line);
    }
    assert!(!flow::is_finished(&h.flow));
    let s = h.assign("control:assign-line:4", "", "L2", &[], Some("C2"));
    assert_eq!(entries(&s)[0].1.remainder, Money(30_00));
    h.posted("L2");
    assert!(flow::is_finished(&h.flow), "{:#?}", h.flow.cash.lines);
    let keys: Vec<String> = h.steps.iter().flat_map(entries).map(|(k, _)| k).collect();
    assert_eq!(keys.len(), 3, "one entry per line: {keys:?}");

    // The journal rebuilds the same state.
    let mut rebuilt = StatementFlow::create(&h.key());
    for e in h.steps.iter().flat_map(|s| s.journal.iter()) {
        flow::apply(&mut rebuilt, e);
    }
    assert_eq!(rebuilt, h.flow);
}

/// Invoices and amounts, the customer on account, the kind of refusal, what it says.
type Case<'a> = (&'a [(&'a str, i64)], Option<&'a str>, RefusalKind, &'a str);

#[test]
fn an_allocation_that_does_not_fit_the_line_or_the_open_items_is_refused_saying_why() {
    let r = unknown_payers();
    let mut h = H::new(&r);
    h.send(&received("bank:s7", &r));
    let x1 = queued(&h, "L1");
    let cases: [Case; 8] = [
        (
            &[("INV-1", 100_00)],
            None,
            RefusalKind::Invalid,
            "the allocations come to 100.00 EUR but line L1 (120.00 EUR from Unbekannt AG): 20.00 EUR is not allocated; apply it to an invoice or leave it on the customer's account",
        ),
        (
            &[("INV-1", 100_00), ("INV-2", 30_00)],
            None,
            RefusalKind::Invalid,
            "the allocations come to 130.00 EUR, 10.00 more than line L1 (120.00 EUR from Unbekannt AG); lower them",
        ),
        (
            &[("INV-9", 120_00)],
            None,
            RefusalKind::Invalid,
            "invoice INV-9 is not among the receivables open when statement S-7 was imported (INV-0, INV-1, INV-2); check the number",
        ),
        // INV-0 was paid in full by line L0.
        (
            &[("INV-0", 20_00), ("INV-1", 100_00)],
            None,
            RefusalKind::Invalid,
            "invoice INV-0 has 0.00 EUR open (100.00 at import, 100.00 applied to other lines of the statement); 20.00 is 20.00 too much",
        ),
        (&[("INV-1", 120_00), ("INV-1", 0)], None, RefusalKind::Invalid, "invoice INV-1 is named twice"),
        (
            &[("INV-1", -5_00)],
            Some("C1"),
            RefusalKind::Invalid,
            "the amount for invoice INV-1 is -5.00: amounts are positive",
        ),
        (
            &[("INV-1", 120_00)],
            Some("C1"),
            RefusalKind::Invalid,
            "nothing is left for C1's account; leave out on account",
        ),
        (&[], None, RefusalKind::Invalid, "name the invoices line L1 (120.00 EUR from Unbekannt AG) pays"),
    ];
    for (n, (invoices, on_account, kind, says)) in cases.iter().enumerate() {
        let a = assignment(&h.statement_key(), &x1, "L1", invoices, *on_account);
        let checked = by_hand::check(&h.flow.cash, &a).expect_err("refused");
        assert_eq!(checked.kind, *kind, "{}", checked.reason);
        let reason = refusal(&h.assign(&format!("control:assign-line:{n}"), &x1, "L1", invoices, *on_account));
        assert_eq!(reason, checked.reason, "the saga decides as the control plane checked");
        assert!(reason.contains(says), "{reason}\n  does not say: {says}");
    }
    // Over-applied beyond the open amount: INV-1 has 150.00 open.
    let big = unknown_payers();
    let mut big = big.clone();
    big.lines[1].amount = Money(200_00);
    let mut h2 = H::new(&big);
    h2.send(&received("bank:s7", &big));
    let x = queued(&h2, "L1");
    let reason = refusal(&h2.assign("control:assign-line:big", &x, "L1", &[("INV-1", 200_00)], None));
    assert!(reason.contains("invoice INV-1 has 150.00 EUR open; 200.00 is 50.00 too much: apply at most 150.00 and leave the rest on the customer's account"), "{reason}");
    // Unknown line, a line the matcher applied, another saga's exception.
    let unknown =
        by_hand::check(&h.flow.cash, &assignment(&h.statement_key(), "", "L9", &[("INV-1", 1)], None)).unwrap_err();
    assert_eq!(unknown.kind, RefusalKind::Unknown, "{}", unknown.reason);
    assert!(unknown.reason.contains("statement S-7 has no line \"L9\""), "{}", unknown.reason);
    let applied =
        by_hand::check(&h.flow.cash, &assignment(&h.statement_key(), "", "L0", &[("INV-1", 1)], None)).unwrap_err();
    assert_eq!(applied.kind, RefusalKind::NotOpen);
    assert!(applied.reason.contains("line L0 has its journal entry already"), "{}", applied.reason);
    // Nothing was sent and the exception stays open for a correct allocation.
    assert!(h.flow.cash.book.open_exceptions.contains_key(&x1));
    assert!(h.steps.iter().skip(1).all(|s| s.commands.is_empty()));
    let s = h.assign("control:assign-line:ok", &x1, "L1", &[("INV-1", 120_00)], None);
    assert_eq!(entries(&s).len(), 1);
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
                // A line naming no invoice comes from a payer nobody knows: it is queued,
                // for an operator to apply by hand.
                counterparty: Some(if *inv < 4 { format!("Kunde {inv} GmbH") } else { "Unbekannt AG".into() }),
                creditor_references: vec![],
                end_to_end_id: None,
                remittance: if *inv < 4 { vec![format!("INV-{inv}")] } else { vec![] },
                bank_reference: None,
            })
            .collect(),
        open_items: items,
        entity: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn one_statement_line_never_makes_two_journal_entries(
        lines in proptest::collection::vec(arb_line(), 1..8),
        script in proptest::collection::vec((0u8..8, 0usize..8), 0..40),
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
                6 | 7 => {
                    // An operator applies the line by hand: wholly on account, or to one
                    // invoice for its whole amount (refused when that does not fit).
                    let amount = lines[pick % lines.len()].1;
                    let invoice = format!("INV-{}", pick % 4);
                    let (invoices, on_account) =
                        if *op == 6 { (vec![], Some("C1")) } else { (vec![(invoice.as_str(), amount)], None) };
                    let exception = if pick % 2 == 0 { String::new() } else {
                        h.flow.cash.book.open_exceptions.keys().next().cloned().unwrap_or_default()
                    };
                    h.assign(&format!("control:assign-line:{k}"), &exception, &line, &invoices, on_account);
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

#[test]
fn in_scheduled_windows_a_statement_waits_for_the_next_window_then_applies_every_line_once() {
    let statements = imported("camt053_001_02_statement.xml", open_items());
    let r = &statements[0];
    // Applied at 06:30 Paris time on working days.
    let mut h = H::new(r);
    h.policy.cash.schedule = "0 30 6 * * MON-FRI".into();
    h.policy.cash.time_zone = "Europe/Paris".into();
    // Imported on Tuesday 2023-11-14 at 22:13 UTC: journaled, nothing applied yet, a timer
    // at the next window (Wednesday 06:30 in Paris, 05:30 UTC in winter), so nothing stalls.
    let s = h.send(&received("bank:stmt:1", r));
    let names: Vec<&str> = s.journal.iter().map(|j| j.body.name()).collect();
    assert_eq!(names, ["StatementOpened", "ApplicationScheduled"]);
    assert!(s.commands.is_empty());
    let at = |s: &str| Timestamp(s.parse::<jiff::Timestamp>().unwrap().as_microsecond());
    let window = at("2023-11-15T05:30:00Z");
    assert_eq!(flow::next_deadline(&h.flow), Some(window));
    assert!(flow::stalls(&h.flow).is_empty());
    assert!(!flow::is_finished(&h.flow), "an imported statement is not complete before its window");
    // The same file again before the window is a redelivery.
    assert!(h.send(&received("bank:stmt:1-again", r)).is_noop());

    let (catalog, policy) = (h.catalog.clone(), h.policy.clone());
    let tick = |h: &mut H, at: Timestamp| {
        let cause = Cause { id: format!("timer@{}", at.0), input: None, at };
        let s = flow::tick(&mut h.flow, &Env::new(&catalog, &policy), &cause);
        h.steps.push(s.clone());
        s
    };
    assert!(tick(&mut h, Timestamp(window.0 - 1)).is_noop(), "not before the window");
    let at_window = tick(&mut h, window);
    // At the window the lines are applied exactly as an import outside windows applies them.
    let mut now = H::new(r);
    let at_import = now.send(&received("bank:stmt:1", r));
    assert_eq!(entries(&at_window), entries(&at_import));
    assert!(!entries(&at_window).is_empty());
    assert_eq!(flow::next_deadline(&h.flow), None);
    assert!(tick(&mut h, Timestamp(window.0 + 60_000_000)).is_noop(), "a window applies a statement once");

    // The journal rebuilds the same state.
    let mut rebuilt = StatementFlow::create(&h.key());
    for e in h.steps.iter().flat_map(|s| s.journal.iter()) {
        flow::apply(&mut rebuilt, e);
    }
    assert_eq!(rebuilt, h.flow);

    // The window is a function of the import's logged time: Friday after 06:30 and the
    // weekend wait for Monday 06:30 Paris time; without a schedule, at once.
    let cash = &h.policy.cash;
    assert_eq!(cash.applied_at(at("2026-01-02T06:00:00Z")), at("2026-01-05T05:30:00Z"));
    assert_eq!(cash.applied_at(at("2026-01-03T12:00:00Z")), at("2026-01-05T05:30:00Z"));
    assert_eq!(cash.applied_at(at("2026-06-01T03:00:00Z")), at("2026-06-01T04:30:00Z"), "summer time");
    let event_by_event = Policy::default();
    assert_eq!(event_by_event.cash.applied_at(at("2026-01-03T12:00:00Z")), at("2026-01-03T12:00:00Z"));
}
