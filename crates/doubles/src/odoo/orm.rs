//! The generic ORM methods every model has: `create`, `write`, `read`, `search`,
//! `unlink`, with Odoo's value conventions and x2many commands.

use serde_json::{Map, Value, json};

use super::business;
use super::domain;
use super::error::{Exc, OResult, OdooError};
use super::schema::{self, Kind, ModelDef};
use super::store::{Rec, Store, as_f64, as_id};

pub(crate) type Ctx = Map<String, Value>;

fn invalid_field(model: &str, field: &str) -> OdooError {
    OdooError::value(format!("Invalid field '{field}' on model '{model}'"))
}

pub(crate) fn def(model: &str) -> &'static ModelDef {
    schema::model(model).expect("model checked at dispatch")
}

/// Check and normalize one value for `field`; x2many values are returned as given.
fn normalize(store: &Store, model: &str, field: &str, kind: Kind, v: &Value) -> OResult<Value> {
    match kind {
        Kind::Sel(options) => match v {
            Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
            Value::String(s) if options.contains(&s.as_str()) => Ok(v.clone()),
            _ => Err(OdooError::value(format!("Wrong value for {model}.{field}: {v}"))),
        },
        Kind::M2o(comodel) => match v {
            Value::Bool(false) | Value::Null => Ok(Value::Bool(false)),
            _ => {
                let id = as_id(v).ok_or_else(|| OdooError::value(format!("Wrong value for {model}.{field}: {v}")))?;
                if !store.exists(comodel, id) {
                    return Err(OdooError::validation(format!(
                        "The operation cannot be completed: {model}.{field} refers to {comodel} record {id}, which does not exist."
                    )));
                }
                Ok(json!(id))
            }
        },
        Kind::Float => match v {
            Value::Bool(false) | Value::Null => Ok(json!(0.0)),
            Value::Number(_) => Ok(json!(as_f64(v))),
            _ => Err(OdooError::value(format!("Wrong value for {model}.{field}: {v}"))),
        },
        Kind::Int => match v {
            Value::Bool(false) | Value::Null => Ok(json!(0)),
            Value::Number(n) if n.is_i64() => Ok(v.clone()),
            _ => Err(OdooError::value(format!("Wrong value for {model}.{field}: {v}"))),
        },
        Kind::Bool => Ok(Value::Bool(!super::store::falsy(v))),
        Kind::Char | Kind::Date | Kind::Datetime => match v {
            Value::Null => Ok(Value::Bool(false)),
            Value::Number(n) => Ok(json!(n.to_string())),
            _ => Ok(v.clone()),
        },
        Kind::M2m(comodel) => Ok(json!(m2m_ids(store, comodel, &[], v)?)),
        Kind::O2m(..) | Kind::Computed => Ok(v.clone()),
    }
}

/// Apply x2many commands to a many2many's current ids.
fn m2m_ids(store: &Store, comodel: &str, current: &[i64], v: &Value) -> OResult<Vec<i64>> {
    let mut ids = current.to_vec();
    let Value::Array(cmds) = v else { return Ok(ids) };
    for cmd in cmds {
        match cmd {
            Value::Number(_) => ids.push(as_id(cmd).unwrap_or(0)),
            Value::Array(c) => match c.first().and_then(Value::as_i64) {
                Some(4) => ids.push(c.get(1).and_then(as_id).unwrap_or(0)),
                Some(3) => {
                    let gone = c.get(1).and_then(as_id);
                    ids.retain(|i| Some(*i) != gone);
                }
                Some(5) => ids.clear(),
                Some(6) => {
                    ids = c
                        .get(2)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(as_id).collect())
                        .unwrap_or_default()
                }
                _ => return Err(OdooError::value(format!("Unsupported many2many command {cmd} for {comodel}"))),
            },
            _ => return Err(OdooError::value(format!("Wrong value for a many2many of {comodel}: {cmd}"))),
        }
    }
    for id in &ids {
        if !store.exists(comodel, *id) {
            return Err(OdooError::missing(comodel, &[*id]));
        }
    }
    ids.dedup();
    Ok(ids)
}

/// Split `vals` into normalized stored values and one2many commands, checking names.
fn prepare(store: &Store, model: &str, vals: &Value, current: Option<i64>) -> OResult<(Rec, Vec<(String, Value)>)> {
    let Value::Object(vals) = vals else {
        return Err(OdooError::type_error(format!("{model}: values must be a dictionary, got {vals}")));
    };
    let d = def(model);
    let mut rec = Rec::new();
    let mut o2m = Vec::new();
    for (field, v) in vals {
        let kind = d.field(field).ok_or_else(|| invalid_field(model, field))?;
        match kind {
            Kind::O2m(..) => o2m.push((field.clone(), v.clone())),
            Kind::Computed => {}
            _ if matches!(field.as_str(), "id" | "create_date" | "write_date") => {}
            Kind::M2m(comodel) => {
                let cur: Vec<i64> = current
                    .map(|id| {
                        store
                            .get(model, id, field)
                            .as_array()
                            .map(|a| a.iter().filter_map(as_id).collect())
                            .unwrap_or_default()
                    })
                    .unwrap_or_default();
                rec.insert(field.clone(), json!(m2m_ids(store, comodel, &cur, v)?));
            }
            _ => {
                rec.insert(field.clone(), normalize(store, model, field, kind, v)?);
            }
        }
    }
    Ok((rec, o2m))
}

/// Apply one2many commands `[0,0,vals]`, `[1,id,vals]`, `[2,id]`, `[3,id]`, `[4,id]`,
/// `[5]`, `[6,0,ids]` on record `id`.
fn apply_o2m(store: &mut Store, model: &str, id: i64, field: &str, cmds: &Value, ctx: &Ctx) -> OResult<()> {
    let Some(Kind::O2m(comodel, inverse)) = def(model).field(field) else { return Ok(()) };
    let Value::Array(cmds) = cmds else {
        return Err(OdooError::value(format!("Wrong value for {model}.{field}: {cmds}")));
    };
    for cmd in cmds {
        let c = cmd.as_array().ok_or_else(|| OdooError::value(format!("Wrong value for {model}.{field}: {cmd}")))?;
        let code = c.first().and_then(Value::as_i64);
        let target = c.get(1).and_then(as_id);
        match code {
            Some(0) => {
                let mut vals = c.get(2).cloned().unwrap_or_else(|| json!({}));
                if let Value::Object(m) = &mut vals {
                    m.insert(inverse.to_string(), json!(id));
                }
                create(store, comodel, &vals, ctx)?;
            }
            Some(1) => write(store, comodel, &[target.unwrap_or(0)], c.get(2).unwrap_or(&json!({})), ctx)?,
            Some(2) | Some(3) => unlink(store, comodel, &[target.unwrap_or(0)])?,
            Some(4) => write(store, comodel, &[target.unwrap_or(0)], &json!({ inverse: id }), ctx)?,
            Some(5) | Some(6) => {
                let keep: Vec<i64> = if code == Some(6) {
                    c.get(2).and_then(Value::as_array).map(|a| a.iter().filter_map(as_id).collect()).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let gone: Vec<i64> =
                    store.children(comodel, inverse, id).into_iter().filter(|i| !keep.contains(i)).collect();
                unlink(store, comodel, &gone)?;
                for k in keep {
                    write(store, comodel, &[k], &json!({ inverse: id }), ctx)?;
                }
            }
            _ => return Err(OdooError::value(format!("Unsupported one2many command {cmd} on {model}.{field}"))),
        }
    }
    Ok(())
}

/// `create` of one record from a dict.
pub(crate) fn create(store: &mut Store, model: &str, vals: &Value, ctx: &Ctx) -> OResult<i64> {
    // `default_<field>` context keys fill fields the values leave out.
    let mut vals = vals.clone();
    if let Value::Object(m) = &mut vals {
        for (k, v) in ctx {
            if let Some(f) = k.strip_prefix("default_")
                && def(model).field(f).is_some()
                && !m.contains_key(f)
            {
                m.insert(f.to_string(), v.clone());
            }
        }
    }
    let (mut rec, o2m) = prepare(store, model, &vals, None)?;
    business::before_create(store, model, &mut rec, ctx)?;
    let id = store.insert(model, rec);
    for (field, cmds) in o2m {
        apply_o2m(store, model, id, &field, &cmds, ctx)?;
    }
    business::after_create(store, model, id, ctx)?;
    Ok(id)
}

pub(crate) fn check_ids(store: &Store, model: &str, ids: &[i64]) -> OResult<()> {
    let missing: Vec<i64> = ids.iter().copied().filter(|i| !store.exists(model, *i)).collect();
    if missing.is_empty() { Ok(()) } else { Err(OdooError::missing(model, &missing)) }
}

pub(crate) fn write(store: &mut Store, model: &str, ids: &[i64], vals: &Value, ctx: &Ctx) -> OResult<()> {
    check_ids(store, model, ids)?;
    for &id in ids {
        let (rec, o2m) = prepare(store, model, vals, Some(id))?;
        business::before_write(store, model, id, &rec)?;
        let pairs: Vec<(&str, Value)> = rec.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        store.set(model, id, &pairs);
        for (field, cmds) in &o2m {
            apply_o2m(store, model, id, field, cmds, ctx)?;
        }
        if !o2m.is_empty() && pairs.is_empty() {
            store.set(model, id, &[]);
        }
    }
    Ok(())
}

pub(crate) fn unlink(store: &mut Store, model: &str, ids: &[i64]) -> OResult<()> {
    check_ids(store, model, ids)?;
    for &id in ids {
        business::before_unlink(store, model, id)?;
        for (_, kind) in def(model).fields {
            if let Kind::O2m(comodel, inverse) = kind {
                let children = store.children(comodel, inverse, id);
                unlink(store, comodel, &children)?;
            }
        }
        store.remove(model, id);
    }
    Ok(())
}

/// Field names for `read`: all when `fields` is empty or false; unknown names refused.
pub(crate) fn read_fields(model: &str, fields: &Value) -> OResult<Vec<String>> {
    let d = def(model);
    let list: Vec<String> = match fields {
        Value::Array(a) => a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect(),
        Value::Null | Value::Bool(false) => Vec::new(),
        other => return Err(OdooError::type_error(format!("fields must be a list of field names, got {other}"))),
    };
    if list.is_empty() {
        return Ok(d.all_fields().into_iter().map(str::to_string).collect());
    }
    for f in &list {
        if d.field(f).is_none() {
            return Err(invalid_field(model, f));
        }
    }
    let mut out = vec!["id".to_string()];
    out.extend(list.into_iter().filter(|f| f != "id"));
    Ok(out)
}

pub(crate) fn read(store: &Store, model: &str, ids: &[i64], fields: &Value) -> OResult<Vec<Value>> {
    check_ids(store, model, ids)?;
    let fields = read_fields(model, fields)?;
    Ok(ids
        .iter()
        .map(|&id| {
            let mut m = Map::new();
            for f in &fields {
                m.insert(f.clone(), store.render(model, id, f));
            }
            Value::Object(m)
        })
        .collect())
}

pub(crate) fn search(
    store: &Store,
    model: &str,
    dom: &Value,
    offset: &Value,
    limit: &Value,
    order: &Value,
) -> OResult<Vec<i64>> {
    let parsed = domain::parse(model, dom)?;
    let order_text = match order {
        Value::String(s) if !s.trim().is_empty() => s.clone(),
        Value::Null | Value::Bool(false) | Value::String(_) => def(model).order.to_string(),
        other => return Err(OdooError::type_error(format!("order must be a string, got {other}"))),
    };
    let order = domain::parse_order(model, &order_text)?;
    let mut ids: Vec<i64> =
        store.ids(model).into_iter().filter(|id| domain::eval(store, model, *id, &parsed)).collect();
    domain::sort(store, model, &mut ids, &order);
    let offset = offset.as_u64().unwrap_or(0) as usize;
    let ids: Vec<i64> = ids.into_iter().skip(offset).collect();
    Ok(match limit.as_u64() {
        Some(n) if n > 0 => ids.into_iter().take(n as usize).collect(),
        _ => ids,
    })
}

/// `name_search(name, domain, operator, limit)` → `[[id, display_name], …]`.
pub(crate) fn name_search(
    store: &Store,
    model: &str,
    name: &Value,
    dom: &Value,
    operator: &Value,
    limit: &Value,
) -> OResult<Value> {
    let op = operator.as_str().unwrap_or("ilike").to_string();
    let name = name.as_str().unwrap_or("").to_string();
    let ids = search(store, model, dom, &json!(0), &Value::Null, &Value::Null)?;
    let limit = limit.as_u64().unwrap_or(100) as usize;
    let hits: Vec<Value> = ids
        .into_iter()
        .filter(|id| {
            let dn = store.display_name(model, *id);
            match op.as_str() {
                "=" => dn == name,
                "ilike" => dn.to_lowercase().contains(&name.to_lowercase()),
                "like" => dn.contains(&name),
                _ => true,
            }
        })
        .take(limit)
        .map(|id| json!([id, store.display_name(model, id)]))
        .collect();
    Ok(Value::Array(hits))
}

/// `fields_get()`: name → `{type, string}` (enough for a connector to check a field exists).
pub(crate) fn fields_get(model: &str) -> Value {
    let d = def(model);
    let mut out = Map::new();
    for f in d.all_fields() {
        let kind = d.field(f).unwrap_or(Kind::Char);
        let (ty, relation) = match kind {
            Kind::Char => ("char", None),
            Kind::Int => ("integer", None),
            Kind::Float => ("float", None),
            Kind::Bool => ("boolean", None),
            Kind::Sel(_) => ("selection", None),
            Kind::Date => ("date", None),
            Kind::Datetime => ("datetime", None),
            Kind::M2o(c) => ("many2one", Some(c)),
            Kind::O2m(c, _) => ("one2many", Some(c)),
            Kind::M2m(c) => ("many2many", Some(c)),
            Kind::Computed => ("float", None),
        };
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("string".into(), json!(f));
        if let Some(r) = relation {
            m.insert("relation".into(), json!(r));
        }
        out.insert(f.to_string(), Value::Object(m));
    }
    Value::Object(out)
}

/// The one id of a wizard call; a `ValueError` ("Expected singleton") otherwise, as Odoo's `ensure_one`.
pub(crate) fn ensure_one(model: &str, ids: &[i64]) -> OResult<i64> {
    match ids {
        [id] => Ok(*id),
        _ => Err(OdooError::new(
            Exc::ValueError,
            format!("Expected singleton: {model}({})", ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")),
        )),
    }
}
