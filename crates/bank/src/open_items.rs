//! The receivables open in finance, as an export a statement is imported with: CSV with
//! the header `number,customer_ref,customer_name,open_amount,currency,due_date` (the
//! columns in any order, `due_date` optional and ISO `YYYY-MM-DD`, amounts with a `.`
//! decimal point in the currency's unit, e.g. `1190.00`). Cash application decides each
//! statement against exactly these, so the same import decides the same.

use waybill_domain::cash::OpenItem;

use crate::model::{Date, parse_amount};
use crate::settlement::records;
use crate::{Error, Result};

const FORMAT: &str = "open items";
const HINT: &str = "export the open receivables from finance again, or correct the row";
const COLUMNS: [&str; 6] = ["number", "customer_ref", "customer_name", "open_amount", "currency", "due_date"];

fn invalid(location: String, problem: String) -> Error {
    Error::Invalid { format: FORMAT.into(), location, problem, hint: HINT }
}

/// Reads an open-items export.
pub fn parse(bytes: &[u8]) -> Result<Vec<OpenItem>> {
    let text = crate::text::decode(bytes);
    let rows = records(&text)?;
    let Some((_, header)) = rows.first() else {
        return Err(invalid("line 1".into(), "the file is empty".into()));
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let missing: Vec<&str> = COLUMNS[..5].iter().copied().filter(|c| col(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(invalid(
            "line 1".into(),
            format!("the header lacks {}; it must name {}", missing.join(", "), COLUMNS.join(",")),
        ));
    }
    let at = |name: &str| col(name).expect("checked above");
    let mut out = Vec::new();
    for (line, row) in rows.iter().skip(1) {
        if row.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |name: &str| row.get(at(name)).map(|f| f.trim().to_string()).unwrap_or_default();
        let location = format!("line {line}");
        let number = field("number");
        if number.is_empty() {
            return Err(invalid(location, "the invoice number is empty".into()));
        }
        let currency = field("currency").to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(invalid(location, format!("currency {currency:?} of {number} is not an ISO 4217 code")));
        }
        let open_amount = parse_amount(&field("open_amount"), '.', &currency)
            .map_err(|e| invalid(location.clone(), format!("open_amount of {number}: {e}")))?;
        let due_at = match col("due_date").and_then(|i| row.get(i)).map(|f| f.trim()).filter(|f| !f.is_empty()) {
            None => None,
            Some(d) => Some(
                Date::parse_iso(d)
                    .ok_or_else(|| invalid(location.clone(), format!("due_date {d:?} of {number} is not YYYY-MM-DD")))?
                    .to_timestamp(),
            ),
        };
        out.push(OpenItem {
            number,
            customer_ref: field("customer_ref"),
            customer_name: field("customer_name"),
            open_amount,
            currency,
            due_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use waybill_domain::Money;

    use super::*;

    #[test]
    fn an_export_reads_in_any_column_order_and_bad_rows_say_where() {
        let csv = "currency,number,open_amount,customer_ref,customer_name,due_date\n\
                   EUR,INV/2026/0001,1190.00,C001,\"Nordwind Handels GmbH, Hamburg\",2026-12-31\n\
                   EUR,INV/2026/0002,1000,C002,Alpenblick AG,\n";
        let items = parse(csv.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].open_amount, Money(119_000));
        assert_eq!(items[0].customer_name, "Nordwind Handels GmbH, Hamburg");
        assert!(items[0].due_at.is_some() && items[1].due_at.is_none());
        let err = parse(b"number,open_amount\nX,1\n").unwrap_err().to_string();
        assert!(err.contains("lacks customer_ref, customer_name, currency"), "{err}");
        let err = parse(b"number,customer_ref,customer_name,open_amount,currency\nINV1,C1,A,12.345,EUR\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("open_amount of INV1"), "{err}");
    }
}
