//! SWIFT MT940 customer statement messages.
//!
//! A file may hold several statements, with or without the SWIFT envelope (`{1:…}{2:…}
//! {4:` … `-}`) and with or without header lines before `:20:`; each `:20:` starts a
//! statement and a line `-` ends one. Fields may continue over several lines (`:86:`
//! has up to six); a continuation line is joined directly to a full line of 65
//! characters after the tag (the bank wrapped it) and with a space otherwise. Amounts use a decimal comma.
//!
//! `:61:` is read as value date (YYMMDD), optional entry date (MMDD), mark (`C`, `D`, or
//! `RC`/`RD` for a reversal), optional funds code (the third letter of the currency),
//! amount, transaction type (`N` and three characters), customer reference, `//` and
//! the bank's reference, and supplementary details on its next line. The `:86:` that
//! follows is read as the German structured form (`166?00…?20EREF+…SVWZ+…?32name`),
//! the tagged form (`/NAME/…/REMI/…/EREF/…`) or plain text.
//!
//! Every statement is checked: opening balance plus the lines must equal the closing
//! balance.

use waybill_domain::Money;

use crate::model::{Account, Balance, Date, Format, LineKind, References, Statement, StatementLine, parse_amount};
use crate::text::{clean, decode};
use crate::{Error, Result};

/// A field: tag (`61`, `86`, `60F`), its text (continuations joined), first line number.
#[derive(Debug)]
struct Field {
    tag: String,
    value: String,
    line: usize,
}

fn invalid(line: usize, tag: &str, problem: String, hint: &'static str) -> Error {
    let location = if tag.is_empty() { format!("line {line}") } else { format!("line {line}, field :{tag}:") };
    Error::Invalid { format: "MT940".into(), location, problem, hint }
}

const HINT_LAYOUT: &str = "the field does not follow the MT940 layout; ask the bank to send the statement again";

/// Reads every statement in an MT940 file and checks each one's balances.
pub fn parse(bytes: &[u8]) -> Result<Vec<Statement>> {
    let text = decode(bytes).replace("\r\n", "\n").replace('\r', "\n");
    let mut statements: Vec<Vec<Field>> = Vec::new();
    let mut current: Vec<Field> = Vec::new();
    let mut open_field = false;
    let mut last_len = 0;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        // Trailing spaces are kept in field text: at a wrap they are a word boundary.
        let mut raw = raw;
        if raw.starts_with('{') {
            match raw.find("{4:") {
                Some(p) => raw = &raw[p + 3..],
                None => continue,
            }
        }
        let line = raw.trim_end();
        if line.is_empty() {
            continue;
        }
        if line == "-" || line.starts_with("-}") {
            if !current.is_empty() {
                statements.push(std::mem::take(&mut current));
            }
            open_field = false;
            continue;
        }
        if let Some((tag, rest)) = field_start(raw) {
            if tag == "20" && !current.is_empty() {
                statements.push(std::mem::take(&mut current));
            }
            current.push(Field { tag: tag.to_string(), value: rest.to_string(), line: n });
            open_field = true;
            last_len = rest.chars().count();
        } else if open_field {
            let field = current.last_mut().expect("an open field exists");
            if field.tag == "61" {
                field.value.push('\n');
            } else if last_len < 65 {
                field.value.push(' ');
            }
            field.value.push_str(raw);
            last_len = raw.chars().count();
        }
    }
    if !current.is_empty() {
        statements.push(current);
    }
    if statements.is_empty() {
        return Err(invalid(1, "", "the file holds no :20: field".into(), "this is not an MT940 statement file"));
    }
    statements
        .iter()
        .map(|fields| {
            let s = statement(fields)?;
            s.check_balance()?;
            Ok(s)
        })
        .collect()
}

/// `:61:rest` → (`61`, `rest`).
fn field_start(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix(':')?;
    let end = rest.find(':')?;
    let tag = &rest[..end];
    let b = tag.as_bytes();
    let ok = (2..=3).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_digit)
        && b.get(2).is_none_or(|c| c.is_ascii_uppercase());
    ok.then(|| (tag, &rest[end + 1..]))
}

fn statement(fields: &[Field]) -> Result<Statement> {
    let first = fields[0].line;
    let get = |tags: &[&str]| fields.iter().find(|f| tags.contains(&f.tag.as_str()));
    let need = |tags: &[&str], what: &str| {
        get(tags).ok_or_else(|| {
            invalid(
                first,
                "",
                format!("the statement starting here has no :{}: ({what})", tags[0]),
                "the statement is incomplete; ask the bank to send it again",
            )
        })
    };
    let reference = need(&["20"], "transaction reference")?.value.trim().to_string();
    let account = Account::from_text(need(&["25"], "account")?.value.trim());
    let number = get(&["28C", "28"]).map(|f| f.value.trim().to_string()).filter(|s| !s.is_empty());
    let open_field = need(&["60F", "60M"], "opening balance")?;
    let (opening, currency) = balance(open_field)?;
    let close_field = need(&["62F", "62M"], "closing balance")?;
    let (closing, close_ccy) = balance(close_field)?;
    if close_ccy != currency {
        return Err(invalid(
            close_field.line,
            &close_field.tag,
            format!("the closing balance is in {close_ccy} but the opening balance in {currency}"),
            HINT_LAYOUT,
        ));
    }
    let statement_id = number.clone().unwrap_or_else(|| reference.clone());
    let mut lines: Vec<(StatementLine, Option<String>)> = Vec::new();
    // An :86: that does not follow a :61: is about the whole statement and is not read.
    for (i, f) in fields.iter().enumerate().filter(|(_, f)| f.tag == "61") {
        let info = fields.get(i + 1).filter(|n| n.tag == "86");
        let positional = format!("{statement_id}/{}", lines.len() + 1);
        lines.push(entry(f, info, &currency, positional)?);
    }
    let lines = lines
        .iter()
        .map(|(line, bank_ref)| {
            let unique = bank_ref.as_ref().filter(|r| lines.iter().filter(|l| l.1.as_ref() == Some(r)).count() == 1);
            let mut line = line.clone();
            if let Some(r) = unique {
                line.line_id = r.clone();
            }
            line
        })
        .collect();
    Ok(Statement {
        format: Format::Mt940,
        statement_id,
        sequence: Some(reference),
        account,
        currency,
        opening: Some(opening),
        closing: Some(closing),
        lines,
    })
}

/// `C110522EUR3236,28` → balance and currency.
fn balance(f: &Field) -> Result<(Balance, String)> {
    let v = f.value.trim();
    let err = |problem: String| invalid(f.line, &f.tag, problem, HINT_LAYOUT);
    let sign = match v.get(..1) {
        Some("C") => 1,
        Some("D") => -1,
        _ => return Err(err(format!("the balance {v:?} does not start with C or D"))),
    };
    let date =
        v.get(1..7).and_then(yymmdd).ok_or_else(|| err(format!("the balance {v:?} has no valid YYMMDD date")))?;
    let ccy = v.get(7..10).filter(|c| c.bytes().all(|b| b.is_ascii_uppercase()));
    let ccy = ccy.ok_or_else(|| err(format!("the balance {v:?} has no currency code after the date")))?;
    let amount = parse_amount(&v[10..], ',', ccy).map_err(err)?;
    Ok((Balance { amount: Money(sign * amount.0), date: Some(date) }, ccy.to_string()))
}

fn yymmdd(s: &str) -> Option<Date> {
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let yy: i32 = s[..2].parse().ok()?;
    let year = if yy < 80 { 2000 + yy } else { 1900 + yy };
    Date::new(year, s[2..4].parse().ok()?, s[4..6].parse().ok()?)
}

/// One `:61:` line and its `:86:`, as a line and the bank's reference.
fn entry(
    f: &Field,
    info: Option<&Field>,
    currency: &str,
    positional: String,
) -> Result<(StatementLine, Option<String>)> {
    let (first, supplementary) = f.value.split_once('\n').unwrap_or((&f.value, ""));
    let v = first.trim();
    let err = |problem: String| invalid(f.line, "61", problem, HINT_LAYOUT);
    let value_date =
        v.get(..6).and_then(yymmdd).ok_or_else(|| err(format!("{v:?} does not start with a YYMMDD value date")))?;
    let mut rest = &v[6..];
    let mut booking_date = None;
    if rest.get(..4).is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit())) {
        let (m, d): (u8, u8) = (rest[..2].parse().unwrap_or(0), rest[2..4].parse().unwrap_or(0));
        let year = match i32::from(m) - i32::from(value_date.month) {
            d if d > 6 => value_date.year - 1,
            d if d < -6 => value_date.year + 1,
            _ => value_date.year,
        };
        booking_date =
            Some(Date::new(year, m, d).ok_or_else(|| err(format!("the entry date {:?} is not a date", &rest[..4])))?);
        rest = &rest[4..];
    }
    let (sign, reversal, after) = if let Some(r) = rest.strip_prefix("RC") {
        (-1, true, r)
    } else if let Some(r) = rest.strip_prefix("RD") {
        (1, true, r)
    } else if let Some(r) = rest.strip_prefix('C') {
        (1, false, r)
    } else if let Some(r) = rest.strip_prefix('D') {
        (-1, false, r)
    } else {
        return Err(err(format!("after the dates, {rest:?} does not start with C, D, RC or RD")));
    };
    // The funds code is the third letter of the currency code, when given.
    let after = after.strip_prefix(|c: char| c.is_ascii_alphabetic()).unwrap_or(after);
    let end = after.find(|c: char| !(c.is_ascii_digit() || c == ',')).unwrap_or(after.len());
    let amount = parse_amount(&after[..end], ',', currency).map_err(err)?;
    let rest = &after[end..];
    let type_code = rest.get(..4).filter(|t| t.starts_with(['N', 'F', 'S']));
    let type_code =
        type_code.ok_or_else(|| err(format!("{rest:?} does not start with a transaction type such as NTRF")))?;
    let (customer_ref, bank_ref) = match rest[4..].split_once("//") {
        Some((c, b)) => (c, clean(b)),
        None => (&rest[4..], None),
    };
    let kind = if reversal {
        LineKind::Reversal
    } else {
        match &type_code[1..] {
            "CHG" | "COM" => LineKind::Fee,
            "RTI" => LineKind::Reversal,
            "INT" => LineKind::Adjustment,
            _ => LineKind::Payment,
        }
    };
    let mut references = References { bank_reference: bank_ref.clone(), ..References::default() };
    if let Some(c) = clean(customer_ref).filter(|c| c != "NONREF") {
        references.remittance.push(c);
    }
    if let Some(s) = clean(supplementary) {
        references.remittance.push(s);
    }
    let mut line = StatementLine {
        line_id: positional,
        kind,
        booking_date,
        value_date: Some(value_date),
        amount: Money(sign * amount.0),
        currency: currency.to_string(),
        fee: Money(0),
        counterparty: None,
        references,
    };
    if let Some(info) = info {
        details(&info.value, &mut line);
    }
    Ok((line, bank_ref))
}

/// Reads an `:86:` into the line's counterparty and references.
fn details(text: &str, line: &mut StatementLine) {
    let t = text.trim();
    let refs = &mut line.references;
    let b = t.as_bytes();
    if b.len() > 3 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'?' {
        // German structured form: business transaction code, then ?NN subfields.
        let mut purpose = String::new();
        let mut last_part = 0;
        let mut name = String::new();
        for part in t[3..].split('?').skip(1) {
            let cut = if part.get(..2).is_some_and(|c| c.bytes().all(|b| b.is_ascii_digit())) { 2 } else { 0 };
            let (code, value) = part.split_at(cut);
            match code {
                "20" | "21" | "22" | "23" | "24" | "25" | "26" | "27" | "28" | "29" | "60" | "61" | "62" | "63" => {
                    // Purpose subfields hold 27 characters: a full one was cut mid-text,
                    // a shorter one ended a word.
                    if !purpose.is_empty() && last_part < 27 {
                        purpose.push(' ');
                    }
                    purpose.push_str(value);
                    last_part = value.chars().count();
                }
                "32" | "33" => name.push_str(value),
                _ => {}
            }
        }
        line.counterparty = clean(&name);
        if &t[..3] == "159" && line.kind == LineKind::Payment {
            line.kind = LineKind::Reversal; // "Retoure": a returned transfer
        }
        sepa_purpose(&purpose, refs);
    } else if t.starts_with('/') && ["/NAME/", "/REMI/", "/EREF/"].iter().any(|k| t.contains(k)) {
        let tags = tagged(t);
        for (key, value) in tags {
            match key {
                "NAME" => line.counterparty = clean(&value),
                "EREF" => line.references.end_to_end_id = clean(&value).filter(|v| v != "NOTPROVIDED"),
                "REMI" => {
                    let v = value.strip_prefix("USTD//").or_else(|| value.strip_prefix("USTD/")).unwrap_or(&value);
                    if let Some(s) = v.strip_prefix("STRD/CUR/").or_else(|| v.strip_prefix("STRD/ISO/")) {
                        line.references.creditor_reference.extend(clean(s));
                    } else {
                        line.references.remittance.extend(clean(v));
                    }
                }
                _ => {}
            }
        }
    } else {
        refs.remittance.extend(clean(t));
    }
}

/// The SEPA purpose keywords of the German structured form: `EREF+` end-to-end id,
/// `SVWZ+` remittance text; text before any keyword is remittance too.
fn sepa_purpose(purpose: &str, refs: &mut References) {
    const KEYS: [&str; 9] = ["EREF+", "KREF+", "MREF+", "CRED+", "DEBT+", "SVWZ+", "ABWA+", "ABWE+", "COAM+"];
    let mut cuts: Vec<(usize, &str)> =
        KEYS.iter().flat_map(|k| purpose.match_indices(k).map(|(i, _)| (i, *k))).collect::<Vec<_>>();
    cuts.sort();
    let head = &purpose[..cuts.first().map_or(purpose.len(), |c| c.0)];
    refs.remittance.extend(clean(head));
    for (j, (start, key)) in cuts.iter().enumerate() {
        let end = cuts.get(j + 1).map_or(purpose.len(), |c| c.0);
        let value = clean(&purpose[start + key.len()..end]);
        match *key {
            "EREF+" => refs.end_to_end_id = value.filter(|v| v != "NOTPROVIDED"),
            "SVWZ+" => refs.remittance.extend(value),
            _ => {}
        }
    }
}

/// Splits the tagged form `/KEY/value/KEY/value` on the keys it knows, so values may
/// contain slashes (`/REMI/INV/2026/0001`).
fn tagged(text: &str) -> Vec<(&str, String)> {
    const KEYS: [&str; 16] = [
        "TRTP", "IBAN", "BIC", "NAME", "REMI", "EREF", "MARF", "CSID", "ORDP", "BENM", "ADDR", "PURP", "RTRN", "ULTC",
        "ULTD", "ISDT",
    ];
    let mut out: Vec<(&str, String)> = Vec::new();
    for token in text.split('/').skip(1) {
        match KEYS.iter().find(|k| **k == token) {
            Some(k) => out.push((k, String::new())),
            None => {
                if let Some((_, v)) = out.last_mut() {
                    if !v.is_empty() || token.is_empty() {
                        v.push('/');
                    }
                    v.push_str(token);
                }
            }
        }
    }
    for (_, v) in &mut out {
        *v = v.trim_matches('/').to_string();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_details_keep_slashes_inside_values() {
        let t = tagged("/TRTP/SEPA OVERBOEKING/NAME/ACME BV/REMI/USTD//INV/2026/0001/EREF/E2E-1");
        assert_eq!(t[1], ("NAME", "ACME BV".to_string()));
        assert_eq!(t[2], ("REMI", "USTD//INV/2026/0001".to_string()));
        assert_eq!(t[3], ("EREF", "E2E-1".to_string()));
    }

    #[test]
    fn sepa_keywords_split_the_purpose() {
        let mut r = References::default();
        sepa_purpose("EREF+E2E-77SVWZ+INV/2026/0003 thanks", &mut r);
        assert_eq!(r.end_to_end_id.as_deref(), Some("E2E-77"));
        assert_eq!(r.remittance, vec!["INV/2026/0003 thanks".to_string()]);
    }

    #[test]
    fn entry_dates_across_new_year_take_the_next_year() {
        let f = Field { tag: "61".into(), value: "2512310102C10,00NTRFNONREF//B1".into(), line: 1 };
        let (line, _) = entry(&f, None, "EUR", "S/1".into()).unwrap();
        assert_eq!(line.value_date, Date::new(2025, 12, 31));
        assert_eq!(line.booking_date, Date::new(2026, 1, 2));
    }
}
