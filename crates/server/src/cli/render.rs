//! The one renderer every command group shares: `--output table` (columns padded to
//! their widest cell) or `--output json` (the answer as it is, pretty-printed).

use std::fmt::Write as _;

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

/// Prints `v` as pretty JSON.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain table: columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<String>, out: &mut String| {
        let s: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        let _ = writeln!(out, "{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect(), &mut out);
    line(w.iter().map(|n| "-".repeat(*n)).collect(), &mut out);
    for r in rows {
        line(r.clone(), &mut out);
    }
    out
}

pub(crate) fn money(minor: i64) -> String {
    waybill_domain::Money(minor).to_string()
}

pub(crate) fn age(at_us: i64) -> String {
    if at_us == 0 {
        return "-".into();
    }
    let secs = (waybill_domain::Timestamp::now().0 - at_us).max(0) / 1_000_000;
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Prints `value` as JSON, or the table `rows` under `headers` followed by `footer`.
pub(crate) fn emit<T: serde::Serialize>(
    output: Output,
    value: &T,
    headers: &[&str],
    rows: &[Vec<String>],
    footer: &str,
) -> anyhow::Result<()> {
    match output {
        Output::Json => json(value),
        Output::Table => {
            print!("{}", table(headers, rows));
            if !footer.is_empty() {
                println!("{footer}");
            }
            Ok(())
        }
    }
}
