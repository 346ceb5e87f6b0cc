//! Reading payment-gateway settlement reports.
//!
//! `tests/data/settlement_payouts.csv` uses the column layout documented in
//! `src/settlement.rs`, modelled on Stripe's payout reconciliation report
//! (https://docs.stripe.com/reports/payout-reconciliation) and Adyen's settlement details
//! report (https://docs.adyen.com/reporting/settlement-reconciliation/transaction-level/settlement-details-report); see
//! `tests/data/README.md`.

mod common;

use common::data;
use waybill_bank::{Date, Format, LineKind, parse_file, settlement};
use waybill_domain::Money;

#[test]
fn each_payout_is_a_statement_with_fees_and_chargebacks_as_their_own_lines() {
    let statements = parse_file(&data("settlement_payouts.csv")).unwrap();
    assert_eq!(statements.len(), 2);
    let po = &statements[0];
    assert_eq!(po.format, Format::Settlement);
    assert_eq!(po.statement_id, "po_1001");
    assert_eq!(po.closing.unwrap().amount, Money(157_54));
    let kinds: Vec<LineKind> = po.lines.iter().map(|l| l.kind).collect();
    assert_eq!(kinds, [LineKind::Payment, LineKind::Payment, LineKind::Refund, LineKind::Chargeback, LineKind::Fee]);
    let charge = &po.lines[0];
    assert_eq!(charge.line_id, "txn_3MtwBwLkdIwHu7ix");
    assert_eq!((charge.amount, charge.fee, charge.gross()), (Money(234_42), Money(3_58), Money(238_00)));
    assert_eq!(charge.references.creditor_reference, ["INV/2026/0030"]);
    assert_eq!(charge.references.remittance, ["Order 5512, card"]);
    assert_eq!(charge.booking_date, Date::new(2026, 3, 2));
    assert_eq!(charge.value_date, Date::new(2026, 3, 4));
    assert_eq!(po.lines[1].counterparty.as_deref(), Some("Café Blau"));
    assert_eq!(po.lines[3].amount, Money(-134_00));
    assert_eq!(po.lines[3].references.remittance, ["Dispute lost: \"not received\""]);
    assert_eq!((po.lines[4].amount, po.lines[4].fee), (Money(-9_90), Money(0)));
    assert_eq!(statements[1].lines.len(), 1);
}

const HEADER: &str = "payout_id,type,created,currency,gross,fee,net,reference\n";

#[test]
fn a_payout_that_its_rows_do_not_add_up_to_is_refused() {
    let csv = format!(
        "{HEADER}po_1,charge,2026-03-02,EUR,100.00,2.00,98.00,INV/1\npo_1,payout,2026-03-03,EUR,99.00,0.00,99.00,\n"
    );
    let e = settlement::parse(csv.as_bytes()).unwrap_err().to_string();
    assert_eq!(
        e,
        "settlement report: line 3: payout po_1 pays out 99.00 but its rows add up to 98.00; \
         rows of the payout are missing or belong to another payout; export the whole payout again"
    );
}

#[test]
fn missing_columns_and_unknown_types_are_named() {
    let e = settlement::parse(b"payout_id,type,amount\npo_1,charge,1.00\n").unwrap_err().to_string();
    assert!(e.contains("the columns created, currency, gross, fee, net, reference are missing"), "{e}");
    let csv = format!("{HEADER}po_1,transfer,2026-03-02,EUR,1.00,0.00,1.00,\n");
    let e = settlement::parse(csv.as_bytes()).unwrap_err().to_string();
    assert!(e.starts_with("settlement report: line 2, column type: the type \"transfer\" is unknown"), "{e}");
    let csv = format!("{HEADER}po_1,charge,02.03.2026,EUR,1.00,0.00,1.00,\n");
    let e = settlement::parse(csv.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("line 2, column created: \"02.03.2026\" is not a YYYY-MM-DD date"), "{e}");
}

#[test]
fn columns_are_found_by_name_in_any_order_and_case() {
    let csv = "Reference;NET;fee;gross;Currency;created;type;payout_id;extra\nINV/9;9.50;0.50;10.00;eur;2026-03-02;charge;po_9;x\n";
    let s = &settlement::parse(csv.as_bytes()).unwrap()[0];
    assert_eq!((s.lines[0].amount, s.lines[0].fee, s.currency.as_str()), (Money(9_50), Money(50), "EUR"));
    assert_eq!(s.opening, None, "no payout row: no balances to check");
}
