//! Helpers shared by the integration tests: the test files and open invoices.

#![allow(dead_code)]

use waybill_bank::matching::{LineMatch, Outcome};
use waybill_bank::{Date, OpenInvoice};
use waybill_domain::Money;

/// The bytes of a file under `tests/data/`.
pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An open EUR invoice.
pub fn invoice(number: &str, customer_ref: &str, customer_name: &str, open: i64, due: (i32, u8, u8)) -> OpenInvoice {
    OpenInvoice {
        number: number.into(),
        customer_ref: customer_ref.into(),
        customer_name: customer_name.into(),
        open_amount: Money(open),
        currency: "EUR".into(),
        due_date: Date::new(due.0, due.1, due.2),
    }
}

/// The outcome for a line id.
pub fn outcome<'a>(matches: &'a [LineMatch], line_id: &str) -> &'a Outcome {
    &matches.iter().find(|m| m.line_id == line_id).unwrap_or_else(|| panic!("no outcome for line {line_id}")).outcome
}
