//! Matching the lines of the test statements against open invoices: every line ends up
//! matched, booked as a charge, or queued with its reason.
//!
//! The statements under `tests/data/` follow the ISO 20022 business example of the
//! Bank-to-Customer Cash Management message definition report
//! (https://www.iso20022.org/iso-20022-message-definitions), SWIFT MT 940 with the
//! German DFÜ-Abkommen `:86:` and the payout reports of Stripe and Adyen; see
//! `tests/data/README.md`.

mod common;

use common::{data, invoice, outcome};
use waybill_bank::{
    Allocation, Error, LineMatch, MatchRule, Matched, OpenInvoice, Outcome, QueueReason, Queued, StatementLine,
    Tolerance, match_lines, open_after, parse_file,
};
use waybill_domain::Money;

const TOLERANCE: Tolerance = Tolerance { absolute: Money(5), basis_points: Some(100) };

fn lines_of(file: &str) -> Vec<StatementLine> {
    parse_file(&data(file)).unwrap().into_iter().flat_map(|s| s.lines).collect()
}

fn matched(rule: MatchRule, allocations: &[(&str, i64)], fee: i64, write_off: i64, remainder: i64) -> Outcome {
    Outcome::Matched(Matched {
        rule,
        allocations: allocations
            .iter()
            .map(|(i, a)| Allocation { invoice: i.to_string(), amount: Money(*a) })
            .collect(),
        fee: Money(fee),
        write_off: Money(write_off),
        remainder: Money(remainder),
    })
}

fn queued(reason: QueueReason, candidates: &[&str]) -> Outcome {
    Outcome::Queued(Queued { reason, candidates: candidates.iter().map(|c| c.to_string()).collect() })
}

fn every_line_has_one_outcome(lines: &[StatementLine], matches: &[LineMatch]) {
    assert_eq!(lines.len(), matches.len());
    for (line, m) in lines.iter().zip(matches) {
        assert_eq!(line.line_id, m.line_id);
    }
}

fn v02_invoices() -> Vec<OpenInvoice> {
    vec![
        invoice("INV/2026/0001", "C001", "Nordwind Handels GmbH", 1190_00, (2026, 2, 10)),
        invoice("INV/2026/00010", "C001", "Nordwind Handels GmbH", 990_00, (2026, 2, 20)),
        invoice("INV/2026/0002", "C002", "Alpenblick AG", 1000_00, (2026, 2, 12)),
        invoice("INV/2026/0003", "C003", "Bergmann KG", 2000_00, (2026, 2, 14)),
        invoice("INV/2026/0004", "C004", "Müller GmbH", 800_00, (2026, 2, 15)),
        invoice("INV/2026/0005", "C001", "Nordwind Handels GmbH", 1450_00, (2026, 2, 28)),
    ]
}

#[test]
fn camt053_v02_payments_by_reference_partial_over_and_batched() {
    let lines = lines_of("camt053_001_02_statement.xml");
    let invoices = v02_invoices();
    let m = match_lines(&lines, &invoices, &TOLERANCE).unwrap();
    every_line_has_one_outcome(&lines, &m);
    use MatchRule::Reference;
    // INV/2026/0001 is paid; INV/2026/00010, whose number starts the same, is not touched by it.
    assert_eq!(*outcome(&m, "WBDEMO-CN-98765/01"), matched(Reference, &[("INV/2026/0001", 1190_00)], 0, 0, 0));
    assert_eq!(*outcome(&m, "WBDEMO-CN-98768/01"), matched(Reference, &[("INV/2026/00010", 990_00)], 0, 0, 0));
    // One line per transaction of the batch.
    assert_eq!(*outcome(&m, "WBDEMO-BATCH-0302-1"), matched(Reference, &[("INV/2026/0002", 1000_00)], 0, 0, 0));
    assert_eq!(*outcome(&m, "WBDEMO-BATCH-0302-2"), matched(Reference, &[("INV/2026/0003", 2000_00)], 0, 0, 0));
    // Partial payment: 500.00 of 800.00, the rest stays open on the invoice.
    assert_eq!(*outcome(&m, "WBDEMO-CN-98766/01"), matched(Reference, &[("INV/2026/0004", 500_00)], 0, 0, 0));
    // Overpayment: 1,500.00 for 1,450.00; the invoice is paid and 50.00 stays unapplied.
    assert_eq!(*outcome(&m, "WBDEMO-CN-98767/01"), matched(Reference, &[("INV/2026/0005", 1450_00)], 0, 0, 50_00));
    assert_eq!(*outcome(&m, "WBDEMO-ACCR-01"), queued(QueueReason::OutgoingPayment, &[]));
    assert_eq!(*outcome(&m, "WBDEMO-CHRG-0302"), Outcome::Charge { amount: Money(-12_50) });
    assert_eq!(*outcome(&m, "WBDEMO-RVSL-0227"), queued(QueueReason::Reversal, &[]));

    let open = open_after(&invoices, &m);
    assert_eq!(open["INV/2026/0004"], Money(300_00));
    assert_eq!(open["INV/2026/0005"], Money(0));
    assert!(open.values().all(|v| v.0 >= 0));
}

#[test]
fn camt053_v08_payments_by_customer_combination_tolerance_and_fees() {
    let lines = lines_of("camt053_001_08_statement.xml");
    let invoices = vec![
        invoice("INV/2026/0010", "C002", "Alpenblick AG", 800_00, (2026, 3, 1)),
        invoice("INV/2026/0011", "C002", "Alpenblick AG", 1580_00, (2026, 3, 5)),
        invoice("INV/2026/0012", "C002", "Alpenblick AG", 999_00, (2026, 3, 9)),
        invoice("INV/2026/0013", "C001", "Nordwind Handels GmbH", 1000_00, (2026, 3, 9)),
        invoice("INV/2026/0014", "C003", "Bergmann KG", 640_00, (2026, 3, 2)),
        invoice("INV/2026/0015", "C003", "Bergmann KG", 1200_00, (2026, 3, 4)),
        invoice("INV/2026/0016", "C005", "Fjord Import AS", 100_00, (2026, 3, 1)),
        invoice("INV/2026/0017", "C006", "Seeblick GmbH", 250_00, (2026, 3, 1)),
        invoice("INV/2026/0018", "C006", "Seeblick GmbH", 250_00, (2026, 3, 8)),
    ];
    let m = match_lines(&lines, &invoices, &TOLERANCE).unwrap();
    every_line_has_one_outcome(&lines, &m);
    // One payment for two invoices, found as the only set that adds up.
    assert_eq!(
        *outcome(&m, "WBDEMO-CN-99001/01"),
        matched(MatchRule::CustomerCombination, &[("INV/2026/0010", 800_00), ("INV/2026/0011", 1580_00)], 0, 0, 0)
    );
    assert_eq!(
        *outcome(&m, "WBDEMO-CN-99002/01"),
        matched(MatchRule::CustomerAmount, &[("INV/2026/0014", 640_00)], 0, 0, 0)
    );
    // 99.97 for 100.00 after the exchange: 0.03 written off.
    assert_eq!(
        *outcome(&m, "WBDEMO-CN-99003/01"),
        matched(MatchRule::WithinTolerance, &[("INV/2026/0016", 100_00)], 0, -3, 0)
    );
    // Two invoices of 250.00 and nothing says which: queued, never guessed.
    assert_eq!(
        *outcome(&m, "WBDEMO-CN-99004/01"),
        queued(
            QueueReason::Ambiguous { customer: "Seeblick GmbH".into(), options: 2 },
            &["INV/2026/0017", "INV/2026/0018"]
        )
    );
    // 970.00 received, 30.00 kept by the bank: the invoice of 1,000.00 is paid in full.
    assert_eq!(
        *outcome(&m, "WBDEMO-CN-99005/01"),
        matched(MatchRule::Reference, &[("INV/2026/0013", 1000_00)], 30_00, 0, 0)
    );
    let Outcome::Queued(q) = outcome(&m, "WBDEMO-CN-99006/01") else { panic!("the gift is queued") };
    assert_eq!(q.reason, QueueReason::UnknownPayer { payer: Some("ERIKA MUSTERMANN".into()) });
    assert_eq!(
        q.reason.to_string(),
        "no open invoice is named in the payment's references and the payer \"ERIKA MUSTERMANN\" is not a customer \
         with open invoices: find the customer"
    );
}

#[test]
fn mt940_payments_by_reference_name_and_several_invoices() {
    let lines = lines_of("mt940_statements.sta");
    let invoices = vec![
        invoice("INV/2026/0020", "C007", "Lindenhof Getränke GmbH", 4760_00, (2026, 3, 1)),
        invoice("INV/2026/0021", "C007", "Lindenhof Getränke GmbH", 357_00, (2026, 3, 2)),
        invoice("INV/2026/0022", "C004", "Müller GmbH", 119_00, (2026, 3, 2)),
        invoice("INV/2026/0023", "C007", "Lindenhof Getränke GmbH", 700_00, (2026, 3, 3)),
        invoice("INV/2026/0024", "C007", "Lindenhof Getränke GmbH", 490_00, (2026, 3, 4)),
    ];
    let m = match_lines(&lines, &invoices, &Tolerance::NONE).unwrap();
    every_line_has_one_outcome(&lines, &m);
    use MatchRule::{CustomerAmount, Reference};
    assert_eq!(*outcome(&m, "2603021234567801"), matched(Reference, &[("INV/2026/0020", 4760_00)], 0, 0, 0));
    assert_eq!(*outcome(&m, "2603021234567802"), Outcome::Charge { amount: Money(-15_80) });
    // "Re. INV-2026-0021": other separators, same words.
    assert_eq!(*outcome(&m, "2603031234567803"), matched(Reference, &[("INV/2026/0021", 357_00)], 0, 0, 0));
    // MUELLER GMBH is the customer Müller GmbH, with one invoice of exactly 119.00.
    assert_eq!(*outcome(&m, "2603031234567804"), matched(CustomerAmount, &[("INV/2026/0022", 119_00)], 0, 0, 0));
    assert_eq!(*outcome(&m, "2603031234567805"), queued(QueueReason::Reversal, &["INV/2026/0021"]));
    assert_eq!(
        *outcome(&m, "00012/1"),
        matched(Reference, &[("INV/2026/0023", 700_00), ("INV/2026/0024", 490_00)], 0, 0, 0)
    );
}

#[test]
fn settlement_charges_match_gross_and_keep_the_fee() {
    let lines = lines_of("settlement_payouts.csv");
    let invoices = vec![
        invoice("INV/2026/0030", "C010", "Hofladen Sommer", 238_00, (2026, 3, 2)),
        invoice("INV/2026/0031", "C011", "Café Blau", 119_00, (2026, 3, 2)),
        invoice("INV/2026/0032", "C010", "Hofladen Sommer", 595_00, (2026, 3, 3)),
    ];
    let m = match_lines(&lines, &invoices, &Tolerance::NONE).unwrap();
    every_line_has_one_outcome(&lines, &m);
    use MatchRule::Reference;
    assert_eq!(*outcome(&m, "txn_3MtwBwLkdIwHu7ix"), matched(Reference, &[("INV/2026/0030", 238_00)], 3_58, 0, 0));
    assert_eq!(*outcome(&m, "txn_3MtwC8LkdIwHu7iy"), matched(Reference, &[("INV/2026/0031", 119_00)], 1_98, 0, 0));
    assert_eq!(*outcome(&m, "txn_3MtwD1LkdIwHu7iz"), queued(QueueReason::Refund, &[]));
    assert_eq!(*outcome(&m, "txn_3MtwE5LkdIwHu7j0"), queued(QueueReason::Chargeback, &[]));
    assert_eq!(*outcome(&m, "txn_3MtwF2LkdIwHu7j1"), Outcome::Charge { amount: Money(-9_90) });
    assert_eq!(*outcome(&m, "txn_3MtwG7LkdIwHu7j2"), matched(Reference, &[("INV/2026/0032", 595_00)], 8_63, 0, 0));
}

/// A received payment with only a payer name and remittance text.
fn payment(id: &str, amount: i64, payer: &str, text: &str) -> StatementLine {
    let mut line = lines_of("camt053_001_02_statement.xml").remove(0);
    line.line_id = id.into();
    line.amount = Money(amount);
    line.counterparty = Some(payer.into());
    line.references = Default::default();
    if !text.is_empty() {
        line.references.remittance.push(text.into());
    }
    line
}

#[test]
fn several_sets_adding_up_are_ambiguous_and_say_so() {
    let invoices = vec![
        invoice("A-1", "C1", "Kranich GmbH", 100_00, (2026, 1, 1)),
        invoice("A-2", "C1", "Kranich GmbH", 200_00, (2026, 1, 2)),
        invoice("A-3", "C1", "Kranich GmbH", 150_00, (2026, 1, 3)),
        invoice("A-4", "C1", "Kranich GmbH", 150_00, (2026, 1, 4)),
    ];
    let m = match_lines(&[payment("p", 300_00, "KRANICH GMBH", "")], &invoices, &Tolerance::NONE).unwrap();
    let Outcome::Queued(q) = &m[0].outcome else { panic!("{m:?}") };
    assert_eq!(q.reason, QueueReason::Ambiguous { customer: "Kranich GmbH".into(), options: 2 });
    assert_eq!(q.candidates, ["A-1", "A-2", "A-3", "A-4"]);
    assert!(
        q.reason
            .to_string()
            .starts_with("2 different invoices or sets of invoices of Kranich GmbH come to the amount paid")
    );
}

#[test]
fn a_shortfall_over_several_named_invoices_pays_the_earliest_first() {
    let invoices = vec![
        invoice("B-2", "C1", "Kranich GmbH", 300_00, (2026, 2, 1)),
        invoice("B-1", "C1", "Kranich GmbH", 200_00, (2026, 1, 1)),
    ];
    let m = match_lines(&[payment("p", 400_00, "x", "B-2 and B-1")], &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[0].outcome, matched(MatchRule::Reference, &[("B-1", 200_00), ("B-2", 200_00)], 0, 0, 0));
    assert_eq!(open_after(&invoices, &m)["B-2"], Money(100_00));
}

#[test]
fn a_small_overpayment_within_tolerance_is_written_off_as_a_gain() {
    let invoices = vec![invoice("C-1", "C1", "Kranich GmbH", 100_00, (2026, 1, 1))];
    let m = match_lines(&[payment("p", 100_04, "x", "C-1")], &invoices, &TOLERANCE).unwrap();
    assert_eq!(m[0].outcome, matched(MatchRule::Reference, &[("C-1", 100_00)], 0, 4, 0));
}

#[test]
fn a_second_payment_for_a_paid_invoice_and_a_foreign_currency_are_queued() {
    let mut invoices = vec![invoice("D-1", "C1", "Kranich GmbH", 100_00, (2026, 1, 1))];
    let twice = [payment("p1", 100_00, "x", "D-1"), payment("p2", 100_00, "x", "D-1")];
    let m = match_lines(&twice, &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[1].outcome, queued(QueueReason::AlreadyPaid, &["D-1"]));
    invoices[0].currency = "USD".into();
    let m = match_lines(&twice[..1], &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[0].outcome, queued(QueueReason::CurrencyMismatch { payment_currency: "EUR".into() }, &["D-1"]));
}

#[test]
fn payers_fitting_several_customers_or_none_are_queued() {
    let invoices = vec![
        invoice("E-1", "C1", "Kranich GmbH", 100_00, (2026, 1, 1)),
        invoice("E-2", "C2", "Kranich AG", 100_00, (2026, 1, 1)),
        invoice("E-3", "C3", "Reiher KG", 80_00, (2026, 1, 1)),
        invoice("E-4", "C3", "Reiher KG", 90_00, (2026, 1, 1)),
    ];
    let lines = [payment("p1", 100_00, "KRANICH", ""), payment("p2", 75_00, "Reiher", "")];
    let m = match_lines(&lines, &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[0].outcome, queued(QueueReason::AmbiguousPayer { payer: "KRANICH".into() }, &["E-1", "E-2"]));
    assert_eq!(m[1].outcome, queued(QueueReason::NoFittingAmount { customer: "Reiher KG".into() }, &["E-3", "E-4"]));
}

#[test]
fn the_only_open_invoice_takes_a_payment_by_name_and_the_excess_stays_unapplied() {
    let invoices = vec![invoice("F-1", "C1", "Kranich GmbH", 100_00, (2026, 1, 1))];
    let m = match_lines(&[payment("p", 130_00, "Kranich GmbH", "Danke")], &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[0].outcome, matched(MatchRule::OnlyOpenInvoice, &[("F-1", 100_00)], 0, 0, 30_00));
}

#[test]
fn a_customer_reference_in_the_text_identifies_the_payer() {
    let invoices = vec![
        invoice("G-1", "K-4711", "Kranich GmbH", 60_00, (2026, 1, 1)),
        invoice("G-2", "K-4711", "Kranich GmbH", 40_00, (2026, 1, 2)),
    ];
    let m =
        match_lines(&[payment("p", 40_00, "Somebody Else", "Kundennr K-4711")], &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(m[0].outcome, matched(MatchRule::CustomerAmount, &[("G-2", 40_00)], 0, 0, 0));
}

#[test]
fn customers_without_a_reference_are_told_apart_by_name() {
    let invoices = vec![
        invoice("J-1", "", "Kranich GmbH", 70_00, (2026, 1, 1)),
        invoice("J-2", "", "Reiher KG", 30_00, (2026, 1, 1)),
    ];
    let m = match_lines(&[payment("p", 30_00, "Kranich GmbH", "")], &invoices, &Tolerance::NONE).unwrap();
    assert_eq!(
        m[0].outcome,
        matched(MatchRule::OnlyOpenInvoice, &[("J-1", 30_00)], 0, 0, 0),
        "Reiher's invoice is not Kranich's"
    );
}

#[test]
fn an_invoice_listed_twice_is_refused() {
    let invoices = vec![invoice("H-1", "C1", "A", 1, (2026, 1, 1)), invoice("H-1", "C1", "A", 2, (2026, 1, 1))];
    assert_eq!(match_lines(&[], &invoices, &Tolerance::NONE), Err(Error::DuplicateInvoice { number: "H-1".into() }));
}
