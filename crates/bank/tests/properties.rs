//! Properties of the matcher over generated statements and invoices: allocations,
//! write-off and remainder always account for the whole payment; no invoice is paid
//! beyond what it has open; the same input always gives the same answer, whatever the
//! order of the open invoices; and damaged files give errors, never a panic.
//!
//! The damaged files start from the statements under `tests/data/`, written after the
//! ISO 20022 camt.053 business example, SWIFT MT 940 and the gateways' payout reports
//! (sources in `tests/data/README.md`).

use proptest::prelude::*;
use waybill_bank::model::parse_amount;
use waybill_bank::{
    Date, LineKind, LineMatch, OpenInvoice, Outcome, References, StatementLine, Tolerance, match_lines, mt940,
    open_after, parse_file, settlement,
};
use waybill_domain::Money;

const CUSTOMERS: [(&str, &str); 3] = [("C1", "Kranich GmbH"), ("C2", "Reiher AG"), ("C3", "Storch KG")];

fn invoices() -> impl Strategy<Value = Vec<OpenInvoice>> {
    // Amounts from a small set as often as not, so that equal amounts and sums collide.
    let amount = prop_oneof![prop::sample::select(vec![50_00i64, 100_00, 150_00, 250_00]), 1i64..2_000_00];
    prop::collection::vec((0..3usize, amount, 1u8..28, prop::bool::weighted(0.9)), 0..10).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (c, amount, day, eur))| OpenInvoice {
                number: format!("INV/2026/{:04}", i + 1),
                customer_ref: CUSTOMERS[c].0.into(),
                customer_name: CUSTOMERS[c].1.into(),
                open_amount: Money(amount),
                currency: if eur { "EUR" } else { "USD" }.into(),
                due_date: Date::new(2026, 3, day),
            })
            .collect()
    })
}

fn lines() -> impl Strategy<Value = Vec<StatementLine>> {
    let kind = prop::sample::select(vec![
        LineKind::Payment,
        LineKind::Payment,
        LineKind::Payment,
        LineKind::Fee,
        LineKind::Refund,
        LineKind::Chargeback,
        LineKind::Reversal,
    ]);
    let payer = prop::sample::select(vec!["KRANICH GMBH", "Reiher", "STORCH KG", "Somebody"]);
    // References to invoices 1–12 (some not open), sometimes with a trailing 0 that must not match.
    let text = prop::collection::vec((1usize..13, prop::bool::weighted(0.2)), 0..3).prop_map(|refs| {
        refs.iter()
            .map(|(n, decoy)| format!("INV/2026/{n:04}{}", if *decoy { "0" } else { "" }))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let line = (kind, -500_00i64..3_000_00, 0i64..20_00, payer, text);
    prop::collection::vec(line, 0..8).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (kind, amount, fee, payer, text))| StatementLine {
                line_id: format!("L{i}"),
                kind,
                booking_date: None,
                value_date: None,
                amount: Money(amount),
                currency: "EUR".into(),
                fee: Money(fee),
                counterparty: Some(payer.into()),
                references: References { remittance: vec![text], ..References::default() },
            })
            .collect()
    })
}

fn tolerance() -> impl Strategy<Value = Tolerance> {
    (0i64..200, prop::option::of(0u32..300)).prop_map(|(a, bp)| Tolerance { absolute: Money(a), basis_points: bp })
}

/// A permutation of `v` chosen by `seed`.
fn shuffled<T: Clone>(v: &[T], mut seed: u64) -> Vec<T> {
    let mut out = v.to_vec();
    for i in (1..out.len()).rev() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        out.swap(i, (seed >> 33) as usize % (i + 1));
    }
    out
}

fn run(lines: &[StatementLine], invoices: &[OpenInvoice], tol: &Tolerance) -> Vec<LineMatch> {
    match_lines(lines, invoices, tol).expect("invoice numbers are unique")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn allocations_write_off_and_remainder_make_up_the_payment(
        lines in lines(), invoices in invoices(), tol in tolerance()
    ) {
        let matches = run(&lines, &invoices, &tol);
        prop_assert_eq!(matches.len(), lines.len());
        for (line, m) in lines.iter().zip(&matches) {
            prop_assert_eq!(&line.line_id, &m.line_id);
            if let Outcome::Matched(x) = &m.outcome {
                let allocated: Money = x.allocations.iter().map(|a| a.amount).sum();
                prop_assert_eq!(allocated + x.write_off + x.remainder, line.gross());
                prop_assert_eq!(x.fee, line.fee);
                prop_assert!(x.allocations.iter().all(|a| a.amount.0 > 0));
                prop_assert!(x.remainder.0 >= 0);
                prop_assert!(x.write_off.0 == 0 || tol.allows(x.write_off, allocated));
            }
        }
    }

    #[test]
    fn no_invoice_is_paid_beyond_its_open_amount_or_in_another_currency(
        lines in lines(), invoices in invoices(), tol in tolerance()
    ) {
        let matches = run(&lines, &invoices, &tol);
        for (number, left) in open_after(&invoices, &matches) {
            prop_assert!(left.0 >= 0, "{} is left at {}", number, left);
        }
        for m in &matches {
            if let Outcome::Matched(x) = &m.outcome {
                for a in &x.allocations {
                    let inv = invoices.iter().find(|i| i.number == a.invoice).expect("allocated to a given invoice");
                    prop_assert_eq!(&inv.currency, "EUR");
                }
            }
        }
    }

    #[test]
    fn matching_is_deterministic_and_ignores_the_order_of_open_invoices(
        lines in lines(), invoices in invoices(), tol in tolerance(), seed in any::<u64>()
    ) {
        let first = run(&lines, &invoices, &tol);
        prop_assert_eq!(&first, &run(&lines, &invoices, &tol));
        prop_assert_eq!(&first, &run(&lines, &shuffled(&invoices, seed), &tol));
    }

    #[test]
    fn amounts_read_back_as_written(minor in 0i64..1_000_000_000_00) {
        let text = format!("{},{:02}", minor / 100, minor % 100);
        prop_assert_eq!(parse_amount(&text, ',', "EUR"), Ok(Money(minor)));
    }

    #[test]
    fn a_written_mt940_statement_reads_back_and_balances(
        amounts in prop::collection::vec(-1_000_00i64..1_000_00, 0..12), opening in 0i64..10_000_00
    ) {
        let money = |m: i64| format!("{},{:02}", m.abs() / 100, m.abs() % 100);
        let mut file = format!(":20:PROP\n:25:DE89370400440532013000\n:28C:1/1\n:60F:C260301EUR{}\n", money(opening));
        for (i, a) in amounts.iter().enumerate() {
            let mark = if *a < 0 { "D" } else { "C" };
            file.push_str(&format!(":61:2603010301{mark}{}NTRFNONREF//B{i}\n:86:line {i}\n", money(*a)));
        }
        let closing = opening + amounts.iter().sum::<i64>();
        let mark = if closing < 0 { "D" } else { "C" };
        file.push_str(&format!(":62F:{mark}260301EUR{}\n-\n", money(closing)));
        let s = &mt940::parse(file.as_bytes()).expect("a balanced statement reads")[0];
        let read: Vec<i64> = s.lines.iter().map(|l| l.amount.0).collect();
        prop_assert_eq!(read, amounts);
        prop_assert_eq!(s.closing.map(|b| b.amount), Some(Money(closing)));
    }

    #[test]
    fn damaged_files_give_errors_not_panics(
        cut in 0usize..4000, junk in "[:?/A-Z0-9,é\n-]{0,40}", which in 0usize..4
    ) {
        let name = ["camt053_001_02_statement.xml", "camt053_001_08_statement.xml", "mt940_statements.sta", "settlement_payouts.csv"][which];
        let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
        let mut bytes = std::fs::read(path).expect("test file");
        let at = cut.min(bytes.len());
        bytes.splice(at..at, junk.bytes());
        let _ = parse_file(&bytes);
        let _ = mt940::parse(&bytes);
        let _ = settlement::parse(&bytes);
    }
}
