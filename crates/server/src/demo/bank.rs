//! The bank of the connector demo: customers pay the invoices finance posted, and about
//! once a second the bank's statement importer posts a statement of those payments to
//! Waybill's ingestion with its own token — with the invoices open at that moment, as a
//! real importer reads them from finance. Most payments quote their invoice; some pay a
//! little more (the rest stays on the customer's account), some quote nothing but come
//! from the customer for the exact amount, and now and then one comes from a payer nobody
//! knows (queued as `UNMATCHED_PAYMENT`); each statement carries the bank's fee.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use waybill_domain::cash::{BankLine, BankLineKind, OpenItem, StatementReceived, correlation_key};
use waybill_domain::{EventBody, Money, System, Timestamp};

use super::answers::event;
use super::entities::{self, DemoEntity};
use super::systems::{PostedInvoice, Scheduler};

/// How often a statement is posted, at most.
const EVERY: Duration = Duration::from_secs(1);

/// The bank and its statement importer.
pub(super) struct Bank {
    posted: Arc<Mutex<Vec<PostedInvoice>>>,
    later: Arc<Scheduler>,
    taken: usize,
    statements: usize,
    last: Option<Instant>,
}

impl Bank {
    pub(super) fn new(posted: Arc<Mutex<Vec<PostedInvoice>>>, later: Arc<Scheduler>) -> Self {
        Bank { posted, later, taken: 0, statements: 0, last: None }
    }

    /// Invoices posted and not paid on a statement yet.
    pub(super) fn pending(&self) -> usize {
        self.posted.lock().unwrap_or_else(|e| e.into_inner()).len() - self.taken
    }

    /// Posts a statement of the invoices posted since the last one, when one is due.
    pub(super) fn tick(&mut self) -> bool {
        if self.pending() == 0 || self.last.is_some_and(|at| at.elapsed() < EVERY) {
            return false;
        }
        let invoices: Vec<PostedInvoice> = self.posted.lock().unwrap_or_else(|e| e.into_inner())[self.taken..].to_vec();
        let first = self.taken;
        self.taken += invoices.len();
        self.last = Some(Instant::now());
        // One statement per company's account: each company is paid into its own.
        for company in &entities::ENTITIES {
            let paid: Vec<(usize, &PostedInvoice)> = invoices
                .iter()
                .enumerate()
                .filter(|(_, i)| i.currency == company.currency)
                .map(|(k, i)| (first + k, i))
                .collect();
            if paid.is_empty() {
                continue;
            }
            self.statements += 1;
            let r = statement(self.statements, company, &paid);
            let key = correlation_key(&r.statement_key);
            let id = format!("bank:statement:{}:{}", company.account, r.statement_id);
            self.later.push(
                Duration::ZERO,
                event(id, System::Bank, &key, EventBody::StatementReceived(Box::new(r))),
                None,
            );
        }
        true
    }
}

fn name(customer_ref: &str) -> String {
    format!("Customer {customer_ref}")
}

/// Statement `n` of `company`'s account paying `invoices` (each with its place among the
/// posted invoices, which decides how it is paid).
fn statement(n: usize, company: &DemoEntity, invoices: &[(usize, &PostedInvoice)]) -> StatementReceived {
    let (account, currency) = (company.account, company.currency);
    let statement_id = format!("2026-{n:04}");
    let today = Some(Timestamp::now());
    let mut lines: Vec<BankLine> = invoices
        .iter()
        .enumerate()
        .map(|(i, &(k, inv))| {
            let (amount, remittance, counterparty) = match (k % 9, k % 13) {
                (_, 7) => (inv.amount, vec![], "Mustermann Holding".to_string()),
                (4, _) => (Money(inv.amount.0 + 10_00), vec![inv.number.clone()], name(&inv.customer_ref)),
                (6, _) => (inv.amount, vec![], name(&inv.customer_ref)),
                _ => (inv.amount, vec![inv.number.clone()], name(&inv.customer_ref)),
            };
            BankLine {
                line_id: format!("{statement_id}/{}", i + 1),
                kind: BankLineKind::Payment,
                booking_date: today,
                amount,
                currency: currency.into(),
                fee: Money(0),
                counterparty: Some(counterparty),
                creditor_references: vec![],
                end_to_end_id: None,
                remittance,
                bank_reference: Some(format!("BNK{n:04}{:04}", i + 1)),
            }
        })
        .collect();
    lines.push(BankLine {
        line_id: format!("{statement_id}/fee"),
        kind: BankLineKind::Fee,
        booking_date: today,
        amount: Money(-2_50),
        currency: currency.into(),
        fee: Money(0),
        counterparty: None,
        creditor_references: vec![],
        end_to_end_id: None,
        remittance: vec![if currency == "EUR" { "Frais de tenue de compte" } else { "Monthly service fee" }.into()],
        bank_reference: None,
    });
    let open_items = invoices
        .iter()
        .map(|(_, inv)| OpenItem {
            number: inv.number.clone(),
            customer_ref: inv.customer_ref.clone(),
            customer_name: name(&inv.customer_ref),
            open_amount: inv.amount,
            currency: currency.into(),
            due_at: None,
        })
        .collect();
    // The importer's checksum of the file: here, of the lines it would have read.
    let checksum = waybill_bank::checksum(&serde_json::to_vec(&lines).unwrap_or_default());
    StatementReceived {
        statement_key: format!("camt053|{account}|{statement_id}"),
        statement_id,
        format: "camt.053".into(),
        account: account.into(),
        currency: currency.into(),
        checksum: checksum.0,
        lines,
        open_items,
        entity: None,
    }
}
