//! Reading SWIFT MT940 statements.
//!
//! `tests/data/mt940_statements.sta` follows SWIFT's MT 940 Customer Statement Message
//! (Standards MT, Category 9), with German structured `:86:` fields as the DFÜ-Abkommen
//! (Anlage 3) defines them and the sample `mt940_tests/betterplace/sepa_snippet.sta` of
//! https://github.com/wolph/mt940 shows, and the tagged `:86:` of Dutch banks
//! (`mt940_tests/jejik/rabobank-iban.sta` there); see `tests/data/README.md`.

mod common;

use common::data;
use waybill_bank::{Account, Date, Error, Format, LineKind, mt940, parse_file};
use waybill_domain::Money;

#[test]
fn every_statement_of_the_file_is_read() {
    let statements = parse_file(&data("mt940_statements.sta")).unwrap();
    assert_eq!(statements.len(), 3);
    assert!(statements.iter().all(|s| s.format == Format::Mt940));
    let ids: Vec<&str> = statements.iter().map(|s| s.statement_id.as_str()).collect();
    assert_eq!(ids, ["00042/00001", "00043/00001", "00012"]);
    assert_eq!(statements[0].sequence.as_deref(), Some("STARTUMSE"));
    assert_eq!(statements[0].account, Account::Other("10020030/1234567890".into()));
    assert_eq!(statements[2].account, Account::Iban("NL91ABNA0417164300".into()));
    assert_eq!(statements[0].opening.unwrap().amount, Money(25_000_00));
    assert_eq!(statements[0].closing.unwrap().amount, Money(29_744_20));
    assert_eq!(statements[0].closing.unwrap().date, Date::new(2026, 3, 2));
    assert_ne!(statements[0].dedup_key(), statements[1].dedup_key());
}

#[test]
fn structured_details_give_name_end_to_end_id_and_purpose() {
    let s = &mt940::parse(&data("mt940_statements.sta")).unwrap()[0];
    let credit = &s.lines[0];
    assert_eq!(credit.line_id, "2603021234567801");
    assert_eq!(credit.amount, Money(4760_00), "CR is a credit with funds code R");
    assert_eq!(credit.value_date, Date::new(2026, 3, 2));
    assert_eq!(credit.booking_date, Date::new(2026, 3, 2));
    assert_eq!(credit.counterparty.as_deref(), Some("LINDENHOF GETRAENKE GMBH"), "?32 and ?33 across a wrapped line");
    assert_eq!(credit.references.end_to_end_id.as_deref(), Some("INV/2026/0020"));
    // The bank wrapped the purpose at 65 characters in the middle of a word: joined again.
    assert_eq!(credit.references.remittance, ["Rechnung INV/2026/0020 Lindenhof"]);
    let fee = &s.lines[1];
    assert_eq!((fee.kind, fee.amount), (LineKind::Fee, Money(-15_80)));
    assert_eq!(fee.references.remittance, ["Kontofuehrung 02/2026 Entgelte laut Anlage"]);
}

#[test]
fn reversals_and_the_tagged_form_are_read() {
    let statements = mt940::parse(&data("mt940_statements.sta")).unwrap();
    let returned = &statements[1].lines[2];
    assert_eq!(returned.kind, LineKind::Reversal);
    assert_eq!(returned.amount, Money(-357_00), "RC: the reversal of a credit takes money out");
    assert_eq!(returned.references.remittance[0], "RUECKBUCHUNG", "the :61: supplementary details");
    let tagged = &statements[2].lines[0];
    assert_eq!(tagged.line_id, "00012/1", "no bank reference: statement and position");
    assert_eq!(tagged.counterparty.as_deref(), Some("LINDENHOF GETRAENKE GMBH"));
    assert_eq!(tagged.references.remittance, ["NL69INGB0123456789", "INV/2026/0023 INV/2026/0024"]);
    assert_eq!(tagged.references.end_to_end_id, None);
}

#[test]
fn a_statement_that_does_not_add_up_names_both_figures() {
    let text = String::from_utf8(data("mt940_statements.sta"))
        .unwrap()
        .replace(":62F:C260302EUR29744,20", ":62F:C260302EUR29744,30");
    let e = mt940::parse(text.as_bytes()).unwrap_err();
    assert_eq!(
        e,
        Error::Unbalanced {
            format: "MT940".into(),
            statement: "00042/00001".into(),
            opening: Money(25_000_00),
            lines: Money(4744_20),
            expected: Money(29_744_20),
            closing: Money(29_744_30),
        }
    );
}

#[test]
fn a_bad_field_names_its_line_and_what_to_do() {
    let file = ":20:X\n:25:123\n:28C:1\n:60F:C260301EUR10,00\n:61:260301X5,00NTRFNONREF\n:62F:C260301EUR15,00\n-\n";
    let e = mt940::parse(file.as_bytes()).unwrap_err().to_string();
    assert_eq!(
        e,
        "MT940: line 5, field :61:: after the dates, \"X5,00NTRFNONREF\" does not start with C, D, RC or RD; \
         the field does not follow the MT940 layout; ask the bank to send the statement again"
    );
    let e = mt940::parse(b":20:X\n:25:123\n:61:260301C5,00NTRFNONREF\n-\n").unwrap_err().to_string();
    assert!(e.contains("line 1: the statement starting here has no :60F: (opening balance)"), "{e}");
    let e = mt940::parse(b":20:X\n:25:1\n:60F:C260301EUR10.00\n:62F:C260301EUR10,00\n").unwrap_err().to_string();
    assert!(e.contains("line 3, field :60F:") && e.contains("\"10.00\" is not a plain decimal number with ','"), "{e}");
}

#[test]
fn a_minimal_statement_with_dot_less_amounts_and_no_entry_date_reads() {
    let file = ":20:GENERIC\r\n:25:11111111\r\n:28:1\r\n:60F:C110101EUR100,00\r\n:61:110101D10,N000NONREF\r\n:86:\r\n:62F:C110201EUR90,00\r\n";
    let s = &mt940::parse(file.as_bytes()).unwrap()[0];
    assert_eq!(s.lines[0].amount, Money(-10_00));
    assert_eq!(s.lines[0].booking_date, None);
    assert_eq!(s.lines[0].line_id, "1/1");
}
