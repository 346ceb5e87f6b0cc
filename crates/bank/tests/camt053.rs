//! Reading ISO 20022 camt.053 statements.
//!
//! The files under `tests/data/` follow the business example of the ISO 20022
//! Bank-to-Customer Cash Management message definition report (statement
//! `AAAASESS-FP-STAT001`; https://www.iso20022.org/iso-20022-message-definitions), in the
//! .001.02 and .001.08 schemas; `tests/data/README.md` says what each file follows.

mod common;

use common::data;
use waybill_bank::{Account, Date, Error, Format, LineKind, camt053, parse_file};
use waybill_domain::Money;

#[test]
fn a_version_02_statement_reads_into_lines_with_references() {
    let statements = camt053::parse(&data("camt053_001_02_statement.xml")).unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s.format, Format::Camt053 { version: 2 });
    assert_eq!(s.statement_id, "WBDEMO-STAT-20260302");
    assert_eq!(s.sequence.as_deref(), Some("61"));
    assert_eq!(s.account, Account::Iban("DE89370400440532013000".into()));
    assert_eq!(s.currency, "EUR");
    assert_eq!(s.opening.unwrap().amount, Money(10_000_00));
    assert_eq!(s.opening.unwrap().date, Date::new(2026, 3, 1));
    assert_eq!(s.closing.unwrap().amount, Money(14_167_50));

    // Eight booked entries, the batch of two split into its transactions, the pending one left out.
    let ids: Vec<&str> = s.lines.iter().map(|l| l.line_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "WBDEMO-CN-98765/01",
            "WBDEMO-BATCH-0302-1",
            "WBDEMO-BATCH-0302-2",
            "WBDEMO-ACCR-01",
            "WBDEMO-CN-98766/01",
            "WBDEMO-CN-98767/01",
            "WBDEMO-CN-98768/01",
            "WBDEMO-CHRG-0302",
            "WBDEMO-RVSL-0227",
        ]
    );
    let first = &s.lines[0];
    assert_eq!(first.amount, Money(1190_00));
    assert_eq!(first.booking_date, Date::new(2026, 3, 2));
    assert_eq!(first.counterparty.as_deref(), Some("NORDWIND HANDELS GMBH"));
    assert_eq!(first.references.creditor_reference, ["INV/2026/0001"]);
    assert_eq!(first.references.end_to_end_id, None, "NOTPROVIDED is no reference");

    let (alpen, berg) = (&s.lines[1], &s.lines[2]);
    assert_eq!((alpen.amount, berg.amount), (Money(1000_00), Money(2000_00)));
    assert_eq!(alpen.counterparty.as_deref(), Some("ALPENBLICK AG"));
    assert_eq!(alpen.references.end_to_end_id.as_deref(), Some("ALPENBLICK-2026-117"));
    assert_eq!(berg.references.remittance, ["Rechnung INV/2026/0003 vom 02.02.2026"]);

    assert_eq!(s.lines[3].amount, Money(-2000_00));
    assert_eq!(s.lines[3].kind, LineKind::Payment);
    assert_eq!(s.lines[5].references.end_to_end_id.as_deref(), Some("INV/2026/0005"));
    assert_eq!(s.lines[7].kind, LineKind::Fee);
    assert_eq!(s.lines[7].amount, Money(-12_50));
    assert_eq!(s.lines[7].references.remittance, ["Kontofuehrung 02/2026"]);
    assert_eq!(s.lines[8].kind, LineKind::Reversal);
    assert_eq!(s.lines[8].value_date, Date::new(2026, 2, 27));
}

#[test]
fn a_version_08_statement_reads_its_own_shapes() {
    let s = &camt053::parse(&data("camt053_001_08_statement.xml")).unwrap()[0];
    assert_eq!(s.format, Format::Camt053 { version: 8 });
    assert_eq!(s.lines.len(), 6);
    assert!(s.lines.iter().all(|l| l.kind == LineKind::Payment));
    // Dbtr/Pty/Nm
    assert_eq!(s.lines[0].counterparty.as_deref(), Some("ALPENBLICK AG"));
    // A detail amount in NOK on a EUR account: the line is the entry's EUR amount.
    assert_eq!(s.lines[2].amount, Money(99_97));
    assert_eq!(s.lines[2].currency, "EUR");
    // Charges included in the entry: the payer paid 1,000.00, the bank kept 30.00.
    let charged = &s.lines[4];
    assert_eq!((charged.amount, charged.fee, charged.gross()), (Money(970_00), Money(30_00), Money(1000_00)));
    assert_eq!(charged.references.creditor_reference, ["RF80INV20260013"]);
}

#[test]
fn a_batch_whose_details_carry_no_amounts_stays_one_line_with_every_reference() {
    let text = String::from_utf8(data("camt053_001_02_statement.xml")).unwrap();
    let without = text
        .replace("<AmtDtls>\n              <TxAmt>\n                <Amt Ccy=\"EUR\">1000.00</Amt>\n              </TxAmt>\n            </AmtDtls>", "")
        .replace("<AmtDtls>\n              <TxAmt>\n                <Amt Ccy=\"EUR\">2000.00</Amt>\n              </TxAmt>\n            </AmtDtls>", "");
    assert_ne!(without, text);
    let s = &camt053::parse(without.as_bytes()).unwrap()[0];
    assert_eq!(s.lines.len(), 8);
    let batch = &s.lines[1];
    assert_eq!((batch.line_id.as_str(), batch.amount), ("WBDEMO-BATCH-0302", Money(3000_00)));
    assert_eq!(batch.counterparty, None, "two payers");
    assert_eq!(batch.references.remittance, ["INV/2026/0002", "Rechnung INV/2026/0003 vom 02.02.2026"]);
}

#[test]
fn an_account_without_iban_or_currency_reads_as_in_the_iso_example() {
    // The ISO example names its account by Othr/Id and gives the currency only on the amounts.
    let text = String::from_utf8(data("camt053_001_08_statement.xml")).unwrap();
    let text = text
        .replace("<IBAN>DE89370400440532013000</IBAN>", "<Othr><Id>50000000054910000003</Id></Othr>")
        .replace("<Ccy>EUR</Ccy>", "");
    let s = &camt053::parse(text.as_bytes()).unwrap()[0];
    assert_eq!(s.account, Account::Other("50000000054910000003".into()));
    assert_eq!(s.currency, "EUR");
}

#[test]
fn versions_02_to_08_read_alike_and_others_are_refused() {
    let text = String::from_utf8(data("camt053_001_02_statement.xml")).unwrap();
    for v in 2..=8 {
        let t = text.replace("camt.053.001.02", &format!("camt.053.001.{v:02}"));
        let s = parse_file(t.as_bytes()).unwrap();
        assert_eq!(s[0].format, Format::Camt053 { version: v });
        assert_eq!(s[0].lines.len(), 9);
    }
    let e = camt053::parse(text.replace("camt.053.001.02", "camt.053.001.13").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("versions .02 to .08 are read"), "{e}");
    let e = camt053::parse(text.replace("camt.053.001.02", "camt.052.001.02").as_bytes()).unwrap_err();
    assert!(e.to_string().contains("ask the bank for camt.053 instead of camt.052"), "{e}");
}

fn broken(from: &str, to: &str) -> Error {
    let text = String::from_utf8(data("camt053_001_02_statement.xml")).unwrap();
    assert!(text.contains(from), "the test file has {from:?}");
    camt053::parse(text.replacen(from, to, 1).as_bytes()).unwrap_err()
}

#[test]
fn a_bad_amount_names_the_entry_the_element_and_the_line() {
    let e = broken("<Amt Ccy=\"EUR\">500.00</Amt>", "<Amt Ccy=\"EUR\">500,00</Amt>").to_string();
    assert!(e.starts_with("camt.053.001.02: Stmt 1 (WBDEMO-STAT-20260302), Ntry 4, Amt (line "), "{e}");
    assert!(e.contains("not a plain decimal number"), "{e}");
    assert!(e.contains("ask the bank"), "{e}");
}

#[test]
fn a_missing_indicator_or_account_is_named() {
    let e = broken("<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>BOOK</Sts>", "<Sts>BOOK</Sts>").to_string();
    assert!(e.contains("Ntry 1, Ntry/CdtDbtInd"), "{e}");
    assert!(e.contains("not CRDT or DBIT"), "{e}");
    let e = broken("<IBAN>DE89370400440532013000</IBAN>", "").to_string();
    assert!(e.contains("Acct/Id") && e.contains("neither IBAN nor Othr/Id"), "{e}");
}

#[test]
fn a_date_that_is_not_one_is_named() {
    let e = broken("<Dt>2026-02-27</Dt>", "<Dt>27.02.2026</Dt>").to_string();
    assert!(e.contains("Ntry 8, ValDt (line") && e.contains("\"27.02.2026\" is not a date (YYYY-MM-DD)"), "{e}");
}

#[test]
fn a_statement_that_does_not_add_up_is_refused_with_both_figures() {
    let e = broken("<Amt Ccy=\"EUR\">14167.50</Amt>", "<Amt Ccy=\"EUR\">14167.40</Amt>");
    assert_eq!(
        e,
        Error::Unbalanced {
            format: "camt.053.001.02".into(),
            statement: "WBDEMO-STAT-20260302".into(),
            opening: Money(10_000_00),
            lines: Money(4167_50),
            expected: Money(14_167_50),
            closing: Money(14_167_40),
        }
    );
    assert!(e.to_string().contains(
        "opening balance 10000.00 plus the lines (4167.50) makes 14167.50, but the closing balance is 14167.40"
    ));
}

#[test]
fn a_batch_whose_details_do_not_add_up_is_refused() {
    let e = broken(
        "<Amt Ccy=\"EUR\">2000.00</Amt>\n              </TxAmt>",
        "<Amt Ccy=\"EUR\">1900.00</Amt>\n              </TxAmt>",
    );
    let e = e.to_string();
    assert!(e.contains("Ntry 2, NtryDtls/TxDtls"), "{e}");
    assert!(e.contains("the 2 transaction details add up to 2900.00 but the entry is 3000.00"), "{e}");
}

#[test]
fn damaged_xml_and_foreign_documents_say_so() {
    let e = camt053::parse(b"<Document><BkToCstmrStmt>").unwrap_err().to_string();
    assert!(e.contains("not well-formed") && e.contains("ask the bank to send it again"), "{e}");
    let e = camt053::parse(b"<!DOCTYPE d [<!ENTITY a \"aaaa\">]><Document>&a;</Document>").unwrap_err().to_string();
    assert!(e.contains("declares a DTD"), "{e}");
    let e = camt053::parse(b"<html><body/></html>").unwrap_err().to_string();
    assert!(e.contains("no <Document> element (the root is <html>)"), "{e}");
    let e = parse_file(b"%PDF-1.7 statement").unwrap_err().to_string();
    assert!(e.contains("neither camt.053 XML, MT940 nor a settlement report CSV"), "{e}");
}
