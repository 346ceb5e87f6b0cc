//! Payment-gateway settlement (payout) reports, in one documented CSV layout close to
//! the payout reconciliation reports of the big gateways: one row per balance
//! transaction, grouped by the payout that paid it out to the bank.
//!
//! The first row is the header; columns are found by name (any order, any case) and
//! fields may be quoted as in RFC 4180. Columns this reader does not know are ignored.
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `payout_id` | yes | the payout (batch) the row belongs to: one [`Statement`] per payout |
//! | `type` | yes | `charge`, `refund`, `fee`, `chargeback`, `adjustment`, or `payout` (the transfer to the bank) |
//! | `created` | yes | when the gateway booked the row: `YYYY-MM-DD`, optionally with a time |
//! | `currency` | yes | ISO 4217 code, the same on every row of a payout |
//! | `gross` | yes | what the customer paid (negative for refunds and chargebacks), decimal point |
//! | `fee` | yes | what the gateway kept (positive when charged) |
//! | `net` | yes | `gross − fee`, what reached the merchant's balance |
//! | `reference` | yes (may be empty) | the merchant's reference given at checkout (invoice or order number) |
//! | `transaction_id` | no | the gateway's id of the row; the line id when unique in the payout |
//! | `customer` | no | the customer's name |
//! | `description` | no | free text |
//! | `available_on` | no | the date the money became available (value date) |
//! | `account` | no | the gateway account the report is for |
//!
//! Each row becomes one line: a charge is a [`LineKind::Payment`] of `net` with its
//! `fee` (so the payer paid `net + fee`); gateway fees, refunds and chargebacks are
//! lines of their own. A `payout` row, when present, must equal the sum of the other
//! rows' net amounts; it becomes the statement's closing balance (opening zero).

use waybill_domain::Money;

use crate::model::{Account, Balance, Date, Format, LineKind, References, Statement, StatementLine, parse_amount};
use crate::text::{clean, decode};
use crate::{Error, Result};

/// The columns every report must have.
pub const REQUIRED_COLUMNS: [&str; 8] =
    ["payout_id", "type", "created", "currency", "gross", "fee", "net", "reference"];
/// The columns read when present.
pub const OPTIONAL_COLUMNS: [&str; 5] = ["transaction_id", "customer", "description", "available_on", "account"];

fn invalid(location: String, problem: String, hint: &'static str) -> Error {
    Error::Invalid { format: "settlement report".into(), location, problem, hint }
}

const HINT_ROW: &str = "correct the row or export the report again from the gateway";

/// Reads a settlement report: one statement per payout, in order of first appearance.
pub fn parse(bytes: &[u8]) -> Result<Vec<Statement>> {
    let text = decode(bytes);
    let rows = records(&text)?;
    let Some((header_line, header)) = rows.first() else {
        return Err(invalid("line 1".into(), "the file is empty".into(), "export the report again from the gateway"));
    };
    let mut index = std::collections::BTreeMap::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        let known = REQUIRED_COLUMNS.contains(&name.as_str()) || OPTIONAL_COLUMNS.contains(&name.as_str());
        if known && index.insert(name.clone(), i).is_some() {
            return Err(invalid(
                format!("line {header_line}, header"),
                format!("the column {name:?} appears twice"),
                "keep one column of each name",
            ));
        }
    }
    let missing: Vec<&str> = REQUIRED_COLUMNS.iter().copied().filter(|c| !index.contains_key(*c)).collect();
    if !missing.is_empty() {
        return Err(invalid(
            format!("line {header_line}, header"),
            format!("the columns {} are missing (expected {})", missing.join(", "), REQUIRED_COLUMNS.join(", ")),
            "export the payout reconciliation report with these columns, or rename the gateway's columns to them",
        ));
    }
    let mut statements: Vec<(Statement, Option<(Money, usize)>)> = Vec::new();
    for (line_no, row) in &rows[1..] {
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let get = |col: &str| index.get(col).and_then(|i| row.get(*i)).map(|s| s.trim()).unwrap_or("");
        let at = |col: &str| format!("line {line_no}, column {col}");
        let payout = get("payout_id");
        if payout.is_empty() {
            return Err(invalid(at("payout_id"), "the payout id is empty".into(), HINT_ROW));
        }
        let currency = get("currency").to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(at("currency"), format!("{currency:?} is not an ISO 4217 code"), HINT_ROW));
        }
        let money = |col: &str| signed_amount(get(col), &currency).map_err(|p| invalid(at(col), p, HINT_ROW));
        let (gross, fee, net) = (money("gross")?, money("fee")?, money("net")?);
        if Money(gross.0 - fee.0) != net {
            return Err(invalid(
                format!("line {line_no}"),
                format!("gross {gross} minus fee {fee} is {}, but net is {net}", Money(gross.0 - fee.0)),
                HINT_ROW,
            ));
        }
        let created = Date::parse_iso(get("created")).ok_or_else(|| {
            invalid(at("created"), format!("{:?} is not a YYYY-MM-DD date", get("created")), HINT_ROW)
        })?;
        let pos = match statements.iter().position(|(s, _)| s.statement_id == payout) {
            Some(p) => p,
            None => {
                let account = clean(get("account")).unwrap_or_else(|| "gateway".into());
                statements.push((
                    Statement {
                        format: Format::Settlement,
                        statement_id: payout.to_string(),
                        sequence: None,
                        account: Account::Other(account),
                        currency: currency.clone(),
                        opening: None,
                        closing: None,
                        lines: Vec::new(),
                    },
                    None,
                ));
                statements.len() - 1
            }
        };
        let (statement, payout_row) = &mut statements[pos];
        if statement.currency != currency {
            return Err(invalid(
                at("currency"),
                format!("payout {payout} is in {} but this row is in {currency}", statement.currency),
                "a payout is paid in one currency; split the report by currency",
            ));
        }
        let kind = match get("type").to_ascii_lowercase().as_str() {
            "payout" => {
                *payout_row = Some((net, *line_no));
                statement.closing = Some(Balance { amount: net, date: Some(created) });
                continue;
            }
            "charge" | "payment" => LineKind::Payment,
            "refund" => LineKind::Refund,
            "fee" => LineKind::Fee,
            "chargeback" | "dispute" => LineKind::Chargeback,
            "adjustment" => LineKind::Adjustment,
            other => {
                return Err(invalid(
                    at("type"),
                    format!(
                        "the type {other:?} is unknown (expected charge, refund, fee, chargeback, adjustment or payout)"
                    ),
                    HINT_ROW,
                ));
            }
        };
        let mut references = References::default();
        references.creditor_reference.extend(clean(get("reference")));
        references.remittance.extend(clean(get("description")));
        references.bank_reference = clean(get("transaction_id"));
        statement.lines.push(StatementLine {
            line_id: format!("{payout}/{}", statement.lines.len() + 1),
            kind,
            booking_date: Some(created),
            value_date: Date::parse_iso(get("available_on")),
            amount: net,
            currency: currency.clone(),
            fee: if kind == LineKind::Fee { Money(0) } else { fee },
            counterparty: clean(get("customer")),
            references,
        });
    }
    let mut out = Vec::new();
    for (mut statement, payout_row) in statements {
        let ids: Vec<Option<String>> = statement.lines.iter().map(|l| l.references.bank_reference.clone()).collect();
        for line in &mut statement.lines {
            if let Some(id) = &line.references.bank_reference
                && ids.iter().filter(|i| i.as_ref() == Some(id)).count() == 1
            {
                line.line_id = id.clone();
            }
        }
        if let Some((total, line_no)) = payout_row {
            let sum: Money = statement.lines.iter().map(|l| l.amount).sum();
            if sum != total {
                return Err(invalid(
                    format!("line {line_no}"),
                    format!("payout {} pays out {total} but its rows add up to {sum}", statement.statement_id),
                    "rows of the payout are missing or belong to another payout; export the whole payout again",
                ));
            }
            statement.opening = Some(Balance { amount: Money(0), date: None });
        }
        out.push(statement);
    }
    Ok(out)
}

/// A decimal with an optional leading minus sign.
fn signed_amount(text: &str, currency: &str) -> std::result::Result<Money, String> {
    match text.strip_prefix('-') {
        Some(rest) => parse_amount(rest, '.', currency).map(|m| Money(-m.0)),
        None => parse_amount(text.strip_prefix('+').unwrap_or(text), '.', currency),
    }
}

/// Splits CSV text into records (with the line number each starts on). Fields may be
/// quoted with `"`, quotes inside doubled; the separator is `,` or, when the header has
/// no comma but a semicolon, `;`.
pub(crate) fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let first = text.lines().next().unwrap_or("");
    let sep = if !first.contains(',') && first.contains(';') { ';' } else { ',' };
    let mut out = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut quoted = false;
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            '\n' if !quoted => {
                record.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
            }
            '\r' if !quoted => {}
            c if c == sep && !quoted => record.push(std::mem::take(&mut field)),
            c => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
        }
    }
    if quoted {
        return Err(invalid(
            format!("line {start}"),
            "a quoted field is not closed".into(),
            "a quote is missing; export the report again",
        ));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        out.push((start, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_commas_and_quotes() {
        let r = records("a,b\n\"x, \"\"y\"\"\",2\r\n").unwrap();
        assert_eq!(r[1], (2, vec!["x, \"y\"".to_string(), "2".to_string()]));
    }

    #[test]
    fn net_must_be_gross_minus_fee() {
        let csv = "payout_id,type,created,currency,gross,fee,net,reference\npo_1,charge,2026-03-02,EUR,100.00,2.90,97.00,INV/2026/0001\n";
        let e = parse(csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("gross 100.00 minus fee 2.90 is 97.10, but net is 97.00"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }
}
