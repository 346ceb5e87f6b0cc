//! Odoo search domains (prefix notation, implicit `&`) and `order` clauses.

use std::cmp::Ordering;

use serde_json::Value;

use super::error::{OResult, OdooError};
use super::schema::{self, Kind};
use super::store::{Store, as_id, falsy};

/// A parsed domain.
#[derive(Debug, Clone)]
pub(crate) enum Domain {
    True,
    Leaf(String, String, Value),
    Not(Box<Domain>),
    And(Box<Domain>, Box<Domain>),
    Or(Box<Domain>, Box<Domain>),
}

const OPERATORS: &[&str] = &[
    "=",
    "!=",
    "<>",
    "in",
    "not in",
    ">",
    ">=",
    "<",
    "<=",
    "like",
    "ilike",
    "not like",
    "not ilike",
    "=like",
    "=ilike",
    "child_of",
    "parent_of",
    "any",
    "not any",
];

/// Parse a domain list (`[]`, `[["a","=",1], "|", …]`) for `model`, checking fields.
pub(crate) fn parse(model: &str, domain: &Value) -> OResult<Domain> {
    let items = match domain {
        Value::Null | Value::Bool(false) => return Ok(Domain::True),
        Value::Array(items) => items,
        other => return Err(OdooError::value(format!("Invalid domain: {other}"))),
    };
    if items.is_empty() {
        return Ok(Domain::True);
    }
    let mut pos = 0;
    let mut terms = Vec::new();
    while pos < items.len() {
        terms.push(parse_one(model, items, &mut pos)?);
    }
    // Implicit '&' between consecutive top-level terms.
    let mut it = terms.into_iter().rev();
    let mut acc = it.next().unwrap_or(Domain::True);
    for t in it {
        acc = Domain::And(Box::new(t), Box::new(acc));
    }
    Ok(acc)
}

fn parse_one(model: &str, items: &[Value], pos: &mut usize) -> OResult<Domain> {
    let Some(item) = items.get(*pos) else {
        return Err(OdooError::value("Invalid domain: an operator is missing its operands"));
    };
    *pos += 1;
    match item {
        Value::String(op) if op == "&" || op == "|" => {
            let a = parse_one(model, items, pos)?;
            let b = parse_one(model, items, pos)?;
            Ok(if op == "&" { Domain::And(Box::new(a), Box::new(b)) } else { Domain::Or(Box::new(a), Box::new(b)) })
        }
        Value::String(op) if op == "!" => Ok(Domain::Not(Box::new(parse_one(model, items, pos)?))),
        Value::Array(leaf) if leaf.len() == 3 => {
            if leaf[0] == 1 && leaf[2] == 1 {
                return Ok(Domain::True);
            }
            if leaf[0] == 0 && leaf[2] == 1 {
                return Ok(Domain::Not(Box::new(Domain::True)));
            }
            let field = leaf[0]
                .as_str()
                .ok_or_else(|| OdooError::value(format!("Invalid leaf {}", Value::Array(leaf.clone()))))?;
            let op = leaf[1].as_str().unwrap_or("").to_lowercase();
            if !OPERATORS.contains(&op.as_str()) {
                return Err(OdooError::value(format!("Invalid leaf {}", Value::Array(leaf.clone()))));
            }
            check_path(model, field)?;
            Ok(Domain::Leaf(field.to_string(), op, leaf[2].clone()))
        }
        other => Err(OdooError::value(format!("Invalid leaf {other}"))),
    }
}

fn check_path(model: &str, path: &str) -> OResult<()> {
    let mut current = model;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let def = schema::model(current).expect("known model");
        let kind = def
            .field(part)
            .ok_or_else(|| OdooError::value(format!("Invalid field {current}.{part} in leaf ('{path}', …)")))?;
        if parts.peek().is_some() {
            match kind {
                Kind::M2o(comodel) => current = comodel,
                _ => return Err(OdooError::value(format!("Invalid field {current}.{part} in leaf ('{path}', …)"))),
            }
        }
    }
    Ok(())
}

/// Whether record `id` of `model` satisfies `domain`.
pub(crate) fn eval(store: &Store, model: &str, id: i64, domain: &Domain) -> bool {
    match domain {
        Domain::True => true,
        Domain::Not(d) => !eval(store, model, id, d),
        Domain::And(a, b) => eval(store, model, id, a) && eval(store, model, id, b),
        Domain::Or(a, b) => eval(store, model, id, a) || eval(store, model, id, b),
        Domain::Leaf(field, op, value) => leaf(store, model, id, field, op, value),
    }
}

fn leaf(store: &Store, model: &str, id: i64, field: &str, op: &str, want: &Value) -> bool {
    let got = store.get_path(model, id, field);
    let last_model_kind = last_kind(model, field);
    // A many2one compared with a string compares its display name (Odoo's name_search).
    let got = match (last_model_kind, want) {
        (Some(Kind::M2o(comodel)), Value::String(_)) => match as_id(&got) {
            Some(t) => Value::String(store.display_name(comodel, t)),
            None => Value::Bool(false),
        },
        (Some(Kind::M2o(_)), _) => as_id(&got).map(Value::from).unwrap_or(Value::Bool(false)),
        _ => got,
    };
    match op {
        "=" => equal(&got, want),
        "!=" | "<>" => !equal(&got, want),
        "in" => in_list(&got, want),
        "not in" => !in_list(&got, want),
        ">" | ">=" | "<" | "<=" => {
            if falsy_value(&got) && !matches!(got, Value::Number(_)) {
                return false;
            }
            match compare(&got, want) {
                Some(ord) => match op {
                    ">" => ord == Ordering::Greater,
                    ">=" => ord != Ordering::Less,
                    "<" => ord == Ordering::Less,
                    _ => ord != Ordering::Greater,
                },
                None => false,
            }
        }
        "like" | "ilike" | "not like" | "not ilike" | "=like" | "=ilike" => {
            let insensitive = op.contains("ilike");
            let pattern = want.as_str().unwrap_or("");
            let text = got.as_str().unwrap_or("");
            let (text, pattern) = if insensitive {
                (text.to_lowercase(), pattern.to_lowercase())
            } else {
                (text.to_string(), pattern.to_string())
            };
            let hit = if op.starts_with('=') { like(&text, &pattern) } else { text.contains(&pattern) };
            if op.starts_with("not") { !hit } else { hit }
        }
        _ => false,
    }
}

fn last_kind(model: &str, path: &str) -> Option<Kind> {
    let mut current = model;
    let mut kind = None;
    for part in path.split('.') {
        kind = schema::model(current)?.field(part);
        if let Some(Kind::M2o(comodel)) = kind {
            current = comodel;
        }
    }
    kind
}

fn falsy_value(v: &Value) -> bool {
    matches!(v, Value::Null | Value::Bool(false))
}

fn equal(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (_, Value::Bool(false)) | (_, Value::Null) => falsy(got) && !matches!(got, Value::Number(_)) || got == want,
        (Value::Array(ids), w) => ids.iter().any(|i| equal(i, w)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => got == want,
    }
}

fn in_list(got: &Value, want: &Value) -> bool {
    match want {
        Value::Array(list) => list.iter().any(|w| equal(got, w)),
        other => equal(got, other),
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// SQL `LIKE` with `%` and `_`.
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    fn go(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('%') => (0..=t.len()).any(|i| go(&t[i..], &p[1..])),
            Some('_') => !t.is_empty() && go(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && go(&t[1..], &p[1..]),
        }
    }
    go(&t, &p)
}

/// Parse `"write_date asc, id asc"`, checking field names.
pub(crate) fn parse_order(model: &str, order: &str) -> OResult<Vec<(String, bool)>> {
    let def = schema::model(model).expect("known model");
    let mut out = Vec::new();
    for part in order.split(',') {
        let mut words = part.split_whitespace();
        let Some(field) = words.next() else { continue };
        let desc = match words.next().map(str::to_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => return Err(OdooError::value(format!("Invalid order direction {other:?} in {order:?}"))),
        };
        if def.field(field).is_none() {
            return Err(OdooError::value(format!("Invalid field {field:?} on model {model:?}")));
        }
        out.push((field.to_string(), desc));
    }
    Ok(out)
}

/// Sort ids by the order clauses, `id` ascending breaking remaining ties.
pub(crate) fn sort(store: &Store, model: &str, ids: &mut [i64], order: &[(String, bool)]) {
    ids.sort_by(|a, b| {
        for (field, desc) in order {
            let key = |id: i64| {
                let v = store.render(model, id, field);
                match v {
                    Value::Array(ref x) if x.len() == 2 && x[1].is_string() => x[1].clone(),
                    other => other,
                }
            };
            let (va, vb) = (key(*a), key(*b));
            // Odoo sorts NULLs last ascending, first descending (PostgreSQL's default).
            let ord = match (falsy_value(&va), falsy_value(&vb)) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => compare(&va, &vb).unwrap_or(Ordering::Equal),
            };
            let ord = if *desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        a.cmp(b)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("so0042", "so%"));
        assert!(like("so0042", "so00_2"));
        assert!(!like("so0042", "so1%"));
    }
}
