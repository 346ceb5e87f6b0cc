//! Between the statement model and the records the cash-application flow logs: a parsed
//! statement and the receivables open at import become one `StatementReceived` (the
//! flow's input, so deciding it again decides the same), and back, for the matcher.

use waybill_domain::cash::{BankLine, InvoiceAllocation, OpenItem, StatementEntry, StatementReceived};
use waybill_domain::{Money, Timestamp};

use crate::matching::{MatchRule, Matched, OpenInvoice};
use crate::model::{Checksum, Date, References, Statement, StatementLine};

/// The record of `statement` (read from a file whose checksum is `checksum`) with the
/// receivables open at import.
pub fn statement_received(statement: &Statement, checksum: &Checksum, open_items: Vec<OpenItem>) -> StatementReceived {
    StatementReceived {
        statement_key: statement.dedup_key(),
        statement_id: statement.statement_id.clone(),
        format: statement.format.to_string(),
        account: statement.account.to_string(),
        currency: statement.currency.clone(),
        entity: None,
        checksum: checksum.0.clone(),
        lines: statement.lines.iter().map(bank_line).collect(),
        open_items,
    }
}

fn bank_line(l: &StatementLine) -> BankLine {
    BankLine {
        line_id: l.line_id.clone(),
        kind: l.kind,
        booking_date: l.booking_date.map(Date::to_timestamp),
        amount: l.amount,
        currency: l.currency.clone(),
        fee: l.fee,
        counterparty: l.counterparty.clone(),
        creditor_references: l.references.creditor_reference.clone(),
        end_to_end_id: l.references.end_to_end_id.clone(),
        remittance: l.references.remittance.clone(),
        bank_reference: l.references.bank_reference.clone(),
    }
}

fn date(t: Timestamp) -> Option<Date> {
    let c = t.civil();
    Date::new(i32::try_from(c.year).ok()?, u8::try_from(c.month).ok()?, u8::try_from(c.day).ok()?)
}

/// The statement lines of a record, for the matcher.
pub fn lines(r: &StatementReceived) -> Vec<StatementLine> {
    r.lines
        .iter()
        .map(|l| StatementLine {
            line_id: l.line_id.clone(),
            kind: l.kind,
            booking_date: l.booking_date.and_then(date),
            value_date: None,
            amount: l.amount,
            currency: l.currency.clone(),
            fee: l.fee,
            counterparty: l.counterparty.clone(),
            references: References {
                creditor_reference: l.creditor_references.clone(),
                end_to_end_id: l.end_to_end_id.clone(),
                remittance: l.remittance.clone(),
                bank_reference: l.bank_reference.clone(),
            },
        })
        .collect()
}

/// The open invoices of a record, for the matcher.
pub fn open_invoices(r: &StatementReceived) -> Vec<OpenInvoice> {
    r.open_items
        .iter()
        .map(|o| OpenInvoice {
            number: o.number.clone(),
            customer_ref: o.customer_ref.clone(),
            customer_name: o.customer_name.clone(),
            open_amount: o.open_amount,
            currency: o.currency.clone(),
            due_date: o.due_at.and_then(date),
        })
        .collect()
}

/// The rule's name in the journal: `reference`, `customer-amount`, ….
pub fn rule_name(rule: MatchRule) -> &'static str {
    match rule {
        MatchRule::Reference => "reference",
        MatchRule::CustomerAmount => "customer-amount",
        MatchRule::CustomerCombination => "customer-combination",
        MatchRule::WithinTolerance => "within-tolerance",
        MatchRule::OnlyOpenInvoice => "only-open-invoice",
    }
}

/// The journal entry of a matched line.
pub fn matched_entry(statement_key: &str, line: &BankLine, m: &Matched) -> StatementEntry {
    StatementEntry {
        statement_key: statement_key.to_string(),
        line_id: line.line_id.clone(),
        rule: rule_name(m.rule).to_string(),
        amount: line.amount,
        currency: line.currency.clone(),
        booking_date: line.booking_date,
        counterparty: line.counterparty.clone(),
        allocations: m
            .allocations
            .iter()
            .map(|a| InvoiceAllocation { invoice: a.invoice.clone(), amount: a.amount })
            .collect(),
        fee: m.fee,
        write_off: m.write_off,
        remainder: m.remainder,
        on_account: None,
    }
}

/// The journal entry of a bank or gateway charge.
pub fn charge_entry(statement_key: &str, line: &BankLine, amount: Money) -> StatementEntry {
    StatementEntry {
        statement_key: statement_key.to_string(),
        line_id: line.line_id.clone(),
        rule: "charge".to_string(),
        amount,
        currency: line.currency.clone(),
        booking_date: line.booking_date,
        counterparty: line.counterparty.clone(),
        allocations: Vec::new(),
        fee: Money(-amount.0),
        write_off: Money(0),
        remainder: Money(0),
        on_account: None,
    }
}
