//! Legal entities through the pure saga core: two companies side by side, each with its
//! currency, tax codes and approval limits (`[entities]`, built on a country template).
//! An order is decided under its own company's policy, its holds and exceptions name the
//! company, an approver's limit is the company's, a company nobody configured holds the
//! order, and a statement belongs to the company that owns its account.

mod fixtures;

use std::collections::BTreeMap;

use fixtures::*;
use serde_json::json;
use waybill_domain::cash::{BankLine, BankLineKind, OpenItem, StatementReceived, correlation_key};
use waybill_domain::{
    EventBody, EventMeta, ExceptionCategory, InboundEvent, JournalBody, Money, SourceRef, System, Timestamp,
};
use waybill_saga::cash::StatementFlow;
use waybill_saga::decision::Cause;
use waybill_saga::entity::EntitiesConfig;
use waybill_saga::flow::{self, Env, Flow, OrderFlow, Step};
use waybill_saga::{Catalog, Entities, Policy};

/// `acme-fr` (EUR, invoices above 5,000.00 held, an approver signs up to 10,000.00) and
/// `acme-us` (USD, above 2,500.00 held, an approver signs up to 3,000.00), each on a
/// template as `deploy/entities/` ships them; `acme-fr` is the default.
fn policy() -> Policy {
    let templates = BTreeMap::from([
        (
            "fr".to_string(),
            json!({"currency": "EUR", "tax_codes": ["VAT20"],
                   "policy": {"posting": {"hold_invoices_above": 5_000_00, "approval_limits": {"approver": 10_000_00}}}}),
        ),
        (
            "us".to_string(),
            json!({"currency": "USD", "tax_codes": ["US-SALES"],
                   "policy": {"posting": {"hold_invoices_above": 2_500_00, "approval_limits": {"approver": 3_000_00}}}}),
        ),
    ]);
    let cfg = EntitiesConfig {
        default: Some("acme-fr".into()),
        template_dir: None,
        companies: BTreeMap::from([
            ("acme-fr".to_string(), json!({"template": "fr", "bank_accounts": ["FR76-FR"]})),
            ("acme-us".to_string(), json!({"template": "us", "bank_accounts": ["US-1"]})),
        ]),
    };
    let mut p = Policy::default();
    p.entities = std::sync::Arc::new(Entities::build(&cfg, &p, &templates).unwrap());
    p
}

fn catalog() -> Catalog {
    fixtures::catalog().with_tax_code("US-SALES")
}

struct H {
    flow: OrderFlow,
    catalog: Catalog,
    policy: Policy,
}

impl H {
    fn new() -> Self {
        H { flow: OrderFlow::new("SO1"), catalog: catalog(), policy: policy() }
    }
    fn send(&mut self, e: InboundEvent) -> Step {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: Timestamp(1_000_000) };
        flow::step(&mut self.flow, &e, &Env::new(&self.catalog, &self.policy), &cause)
    }
    /// SO1 of `company` in `currency`: `units` of PLAIN at 12.50 (tax `tax`), shipped as SH1.
    fn ship(&mut self, company: Option<&str>, currency: &str, tax: &str, units: i64) -> Vec<Step> {
        let mut e = released("SO1", vec![line(1, "PLAIN", "Units", units)]);
        if let EventBody::OrderReleased(o) = &mut e.body {
            o.company = company.map(String::from);
            o.currency = currency.into();
            o.lines[0].tax_code = Some(tax.into());
        }
        vec![
            self.send(e),
            self.send(reserved("SO1", &[(1, units, 0)])),
            self.send(pick("SO1", "P1", vec![picked(1, "PLAIN", units)], true)),
            self.send(issued("SO1", "SH1", &[(1, "PLAIN", units)])),
        ]
    }
}

fn held(steps: &[Step]) -> Option<waybill_domain::journal::PostingHeld> {
    steps.iter().flat_map(|s| &s.journal).find_map(|j| match &j.body {
        JournalBody::PostingHeld(p) => Some(p.clone()),
        _ => None,
    })
}

fn refusal(s: &Step) -> Option<String> {
    s.journal.iter().find_map(|j| match &j.body {
        JournalBody::ControlRefused(r) => Some(r.reason.clone()),
        _ => None,
    })
}

#[test]
fn the_same_invoice_is_held_in_one_company_and_not_in_the_other() {
    // 240 × 12.50 = 3,000.00: above acme-us's 2,500.00, below acme-fr's 5,000.00.
    let mut us = H::new();
    let steps = us.ship(Some("acme-us"), "USD", "US-SALES", 240);
    let accepted = steps[0].journal.iter().find_map(|j| match &j.body {
        JournalBody::OrderAccepted(o) => Some(o.company.clone()),
        _ => None,
    });
    assert_eq!(accepted, Some(Some("acme-us".to_string())), "the journal names the resolved entity");
    assert_eq!(us.flow.entity(), Some("acme-us"));
    let h = held(&steps).expect("held under acme-us's policy");
    assert_eq!((h.entity.as_deref(), h.currency.as_deref()), (Some("acme-us"), Some("USD")));
    assert!(h.reasons.iter().any(|r| r.contains("above the approval limit 2500.00")), "{:?}", h.reasons);

    let mut fr = H::new();
    let steps = fr.ship(Some("acme-fr"), "EUR", "VAT20", 240);
    assert!(held(&steps).is_none(), "acme-fr holds above 5,000.00 only");
    assert!(steps[3].commands.iter().any(|c| c.body.name() == "PostInvoice"));

    // An order that names no company is the default entity's.
    let mut default = H::new();
    default.ship(None, "EUR", "VAT20", 1);
    assert_eq!(default.flow.entity(), Some("acme-fr"));
}

#[test]
fn an_approver_signs_up_to_the_limit_of_the_company_that_held_the_posting() {
    // 280 × 12.50 = 3,500.00 USD: above an acme-us approver's 3,000.00.
    let mut us = H::new();
    us.ship(Some("acme-us"), "USD", "US-SALES", 280);
    let s = us.send(decision("SO1", "a1", "inv:SH1", 1, "alice", "approver", true));
    assert!(s.commands.is_empty());
    let why = refusal(&s).expect("refused");
    assert!(why.contains("may approve up to 3000.00; ask a senior-approver"), "{why}");
    let s = us.send(decision("SO1", "a2", "inv:SH1", 1, "erin", "senior-approver", true));
    assert_eq!(s.commands.iter().map(|c| c.body.name()).collect::<Vec<_>>(), ["PostInvoice"]);

    // 560 × 12.50 = 7,000.00 EUR at acme-fr: held, and an approver may sign it there.
    let mut fr = H::new();
    fr.ship(Some("acme-fr"), "EUR", "VAT20", 560);
    let s = fr.send(decision("SO1", "a1", "inv:SH1", 1, "alice", "approver", true));
    assert_eq!(s.commands.iter().map(|c| c.body.name()).collect::<Vec<_>>(), ["PostInvoice"], "{:?}", refusal(&s));
}

#[test]
fn an_invoice_in_another_currency_than_the_company_books_in_is_held() {
    let mut us = H::new();
    let steps = us.ship(Some("acme-us"), "EUR", "US-SALES", 2);
    let h = held(&steps).expect("held");
    assert!(h.reasons.iter().any(|r| r.contains("invoice in EUR but the entity keeps its books")), "{:?}", h.reasons);
    // The same rule holds credit notes and vendor bills (one rule, `foreign_currency`).
    let us_policy = &us.policy.for_entity(Some("acme-us")).posting;
    assert!(us_policy.foreign_currency("credit note", "EUR").is_some_and(|r| r.contains("limits in USD")));
    assert_eq!(us_policy.foreign_currency("vendor bill", "USD"), None);
    assert_eq!(Policy::default().posting.foreign_currency("invoice", "JPY"), None, "no entities: no currency rule");
}

#[test]
fn exceptions_name_the_company_and_an_unknown_company_or_foreign_tax_code_holds_the_order() {
    // A shortage raises an exception of the order's company.
    let mut us = H::new();
    let mut e = released("SO1", vec![line(1, "PLAIN", "Units", 5)]);
    if let EventBody::OrderReleased(o) = &mut e.body {
        o.company = Some("acme-us".into());
        o.currency = "USD".into();
        o.lines[0].tax_code = Some("US-SALES".into());
    }
    us.send(e);
    let s = us.send(reserved("SO1", &[(1, 3, 2)]));
    let raised: Vec<_> = s
        .journal
        .iter()
        .filter_map(|j| match &j.body {
            JournalBody::ExceptionRaised(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    assert!(!raised.is_empty());
    assert!(raised.iter().all(|x| x.entity.as_deref() == Some("acme-us")), "{raised:?}");

    for (company, tax, expect) in [
        (Some("acme-de"), "VAT20", "company \"acme-de\" is not a configured entity (acme-fr, acme-us)"),
        (Some("acme-us"), "VAT20", "tax code \"VAT20\" is not one of entity acme-us's tax codes"),
    ] {
        let mut h = H::new();
        let mut e = released("SO1", vec![line(1, "PLAIN", "Units", 1)]);
        if let EventBody::OrderReleased(o) = &mut e.body {
            o.company = company.map(String::from);
            o.lines[0].tax_code = Some(tax.into());
        }
        let s = h.send(e);
        let x = s
            .journal
            .iter()
            .find_map(|j| match &j.body {
                JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::MasterData => Some(x.clone()),
                _ => None,
            })
            .expect("a master-data exception");
        assert!(x.message.contains(expect), "{}", x.message);
        assert!(s.dead_letter.is_some(), "the order is held, its record kept");
    }
}

fn statement(account: &str, named: Option<&str>, currency: &str) -> InboundEvent {
    let r = StatementReceived {
        statement_key: format!("camt053|{account}|S-1"),
        statement_id: "S-1".into(),
        format: "camt.053".into(),
        account: account.into(),
        currency: currency.into(),
        entity: named.map(String::from),
        checksum: "c".repeat(64),
        lines: vec![BankLine {
            line_id: "S-1/1".into(),
            kind: BankLineKind::Payment,
            booking_date: None,
            amount: Money(100_00),
            currency: currency.into(),
            fee: Money(0),
            counterparty: Some("Customer C1".into()),
            creditor_references: vec![],
            end_to_end_id: None,
            remittance: vec!["INV-1".into()],
            bank_reference: None,
        }],
        open_items: vec![OpenItem {
            number: "INV-1".into(),
            customer_ref: "C1".into(),
            customer_name: "Customer C1".into(),
            open_amount: Money(100_00),
            currency: currency.into(),
            due_at: None,
        }],
    };
    let key = correlation_key(&r.statement_key);
    InboundEvent {
        meta: EventMeta {
            event_id: format!("bank:{account}"),
            source: SourceRef::new(System::Bank, key.clone()),
            correlation_key: key,
            occurred_at: Timestamp(1_000_000),
            actor: None,
        },
        body: EventBody::StatementReceived(Box::new(r)),
    }
}

#[test]
fn a_statement_is_the_company_s_that_owns_the_account() {
    let (catalog, policy) = (catalog(), policy());
    let run = |e: &InboundEvent| {
        let mut flow = StatementFlow::create(&e.meta.correlation_key);
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: Timestamp(1_000_000) };
        let s = flow::step(&mut flow, e, &Env::new(&catalog, &policy), &cause);
        (flow, s)
    };
    let (flow, s) = run(&statement("US-1", None, "USD"));
    assert_eq!(flow.entity(), Some("acme-us"));
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::StatementOpened(o) if o.entity.as_deref() == Some("acme-us")))
    );
    // An account nobody lists is the default company's.
    assert_eq!(run(&statement("XX-9", None, "EUR")).0.entity(), Some("acme-fr"));
    // An importer that files acme-us's account under acme-fr is refused, saying why.
    let (_, s) = run(&statement("US-1", Some("acme-fr"), "USD"));
    let why = s.dead_letter.expect("refused").reason;
    assert!(why.contains("account US-1 belongs to entity acme-us, but the statement names acme-fr"), "{why}");
}

#[test]
fn an_order_held_for_its_company_is_that_company_s_once_released_again_with_it_corrected() {
    let mut h = H::new();
    let released = |company: &str| {
        let mut e = released("SO1", vec![line(1, "PLAIN", "Units", 240)]);
        if let EventBody::OrderReleased(o) = &mut e.body {
            o.company = Some(company.into());
            o.currency = "USD".into();
            o.lines[0].tax_code = Some("US-SALES".into());
        }
        e
    };
    let s = h.send(released("acme-de"));
    assert!(s.dead_letter.is_some(), "held for its company");
    assert_eq!(h.flow.entity(), Some("acme-de"), "as named, for the problem");
    // Corrected in Odoo and released again: accepted as acme-us's, and decided so from then on.
    let mut again = released("acme-us");
    again.meta.event_id = "odoo:release:SO1:2".into();
    let s = h.send(again);
    assert!(s.dead_letter.is_none(), "{:?}", s.dead_letter);
    assert!(
        s.journal
            .iter()
            .any(|j| matches!(&j.body, JournalBody::OrderAccepted(o) if o.company.as_deref() == Some("acme-us")))
    );
    assert_eq!(h.flow.entity(), Some("acme-us"));
    h.send(reserved("SO1", &[(1, 240, 0)]));
    h.send(pick("SO1", "P1", vec![picked(1, "PLAIN", 240)], true));
    let s = h.send(issued("SO1", "SH1", &[(1, "PLAIN", 240)]));
    let held = held(&[s]).expect("3,000.00 USD is above acme-us's 2,500.00");
    assert_eq!(held.entity.as_deref(), Some("acme-us"));
}
