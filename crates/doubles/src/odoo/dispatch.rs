//! From a transport's call to a model method: the public-method gate, argument binding
//! (positional for `execute_kw`, named for JSON-2) and the transaction around the call.

use serde_json::{Map, Value, json};

use super::business;
use super::error::{Exc, OResult, OdooError};
use super::orm::{self, Ctx};
use super::schema;
use super::store::{Store, as_id};

/// A call ready to run: model, method, records, named arguments, context.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) model: String,
    pub(crate) method: String,
    pub(crate) ids: Vec<i64>,
    pub(crate) named: Map<String, Value>,
    pub(crate) ctx: Ctx,
    /// JSON-2 answers a recordset as its ids, so `create` always answers a list.
    pub(crate) json2: bool,
}

/// (`@api.model`?, parameter names after `self`, how many are required)
fn signature(model: &str, method: &str) -> Option<(bool, &'static [&'static str], usize)> {
    Some(match method {
        "create" => (true, &["vals_list"], 1),
        "search" => (true, &["domain", "offset", "limit", "order"], 1),
        "search_read" => (true, &["domain", "fields", "offset", "limit", "order"], 0),
        "search_count" => (true, &["domain", "limit"], 1),
        "name_search" => (true, &["name", "domain", "operator", "limit"], 0),
        "fields_get" => (true, &["allfields", "attributes"], 0),
        "read" => (false, &["fields", "load"], 0),
        "write" => (false, &["vals"], 1),
        "unlink" => (false, &[], 0),
        // mail.thread: a note or message in the record's chatter.
        "message_post"
            if matches!(model, "sale.order" | "purchase.order" | "stock.picking" | "account.move" | "res.partner") =>
        {
            (false, &["body", "message_type", "subtype_xmlid"], 0)
        }
        m if business::business_method(model, m) => (false, &[], 0),
        _ => return None,
    })
}

/// Odoo's `get_public_method`: private names are an `AccessError`, unknown ones an
/// `AttributeError`.
pub(crate) fn check_method(model: &str, method: &str) -> OResult<()> {
    if method.starts_with('_') {
        return Err(OdooError::new(
            Exc::AccessError,
            format!("Private methods (such as '{model}.{method}') cannot be called remotely."),
        ));
    }
    if signature(model, method).is_none() {
        return Err(OdooError::new(Exc::AttributeError, format!("The method '{model}.{method}' does not exist")));
    }
    Ok(())
}

pub(crate) fn model_exists(model: &str) -> bool {
    schema::model(model).is_some()
}

pub(crate) fn is_api_model(model: &str, method: &str) -> bool {
    signature(model, method).is_some_and(|s| s.0)
}

fn ids_of(v: &Value) -> OResult<Vec<i64>> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|i| as_id(i).ok_or_else(|| OdooError::type_error(format!("ids must be integers, got {i}"))))
            .collect(),
        Value::Number(_) => Ok(vec![as_id(v).unwrap_or(0)]),
        Value::Null | Value::Bool(false) => Ok(Vec::new()),
        other => Err(OdooError::type_error(format!("ids must be a list of integers, got {other}"))),
    }
}

fn take_context(named: &mut Map<String, Value>) -> OResult<Ctx> {
    match named.remove("context") {
        None | Some(Value::Null) => Ok(Ctx::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(other) => Err(OdooError::type_error(format!("context must be a dictionary, got {other}"))),
    }
}

fn check_named(method: &str, params: &[&str], required: usize, named: &Map<String, Value>) -> OResult<()> {
    if let Some(extra) = named.keys().find(|k| !params.contains(&k.as_str())) {
        return Err(OdooError::type_error(format!("{method}() got an unexpected keyword argument '{extra}'")));
    }
    if let Some(missing) = params[..required].iter().find(|p| !named.contains_key(**p)) {
        return Err(OdooError::type_error(format!("{method}() missing 1 required positional argument: '{missing}'")));
    }
    Ok(())
}

/// `execute_kw(model, method, args, kwargs)`: records first for record methods.
pub(crate) fn bind_positional(model: &str, method: &str, args: &Value, kwargs: &Value) -> OResult<Call> {
    let (api_model, params, required) = signature(model, method).expect("checked by check_method");
    let mut args: Vec<Value> = match args {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => return Err(OdooError::type_error(format!("execute_kw args must be a list, got {other}"))),
    };
    let mut named = match kwargs {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        other => return Err(OdooError::type_error(format!("execute_kw kwargs must be a dictionary, got {other}"))),
    };
    let ctx = take_context(&mut named)?;
    let ids = if api_model {
        Vec::new()
    } else {
        if args.is_empty() {
            return Err(OdooError::type_error(format!("{method}() missing the record ids (first argument)")));
        }
        ids_of(&args.remove(0))?
    };
    if args.len() > params.len() {
        return Err(OdooError::type_error(format!(
            "{method}() takes {} positional arguments but {} were given",
            params.len() + 1,
            args.len() + 1
        )));
    }
    for (p, v) in params.iter().zip(args) {
        if named.contains_key(*p) {
            return Err(OdooError::type_error(format!("{method}() got multiple values for argument '{p}'")));
        }
        named.insert((*p).to_string(), v);
    }
    check_named(method, params, required, &named)?;
    Ok(Call { model: model.into(), method: method.into(), ids, named, ctx, json2: false })
}

/// JSON-2: `ids`, `context` and every other parameter by name.
pub(crate) fn bind_named(model: &str, method: &str, body: Map<String, Value>) -> OResult<Call> {
    let (_, params, required) = signature(model, method).expect("checked by check_method");
    let mut named = body;
    let ids = ids_of(&named.remove("ids").unwrap_or(Value::Null))?;
    let ctx = take_context(&mut named)?;
    check_named(method, params, required, &named)?;
    Ok(Call { model: model.into(), method: method.into(), ids, named, ctx, json2: true })
}

/// Run a bound call as one transaction: on error nothing it did remains.
pub(crate) fn execute(store: &mut Store, call: &Call) -> OResult<Value> {
    store.begin();
    let result = run(store, call);
    if result.is_err() {
        store.rollback();
    }
    result
}

fn arg<'a>(call: &'a Call, name: &str) -> &'a Value {
    call.named.get(name).unwrap_or(&Value::Null)
}

fn run(store: &mut Store, call: &Call) -> OResult<Value> {
    let model = call.model.as_str();
    match call.method.as_str() {
        "create" => match arg(call, "vals_list") {
            Value::Object(_) => {
                let id = orm::create(store, model, arg(call, "vals_list"), &call.ctx)?;
                Ok(if call.json2 { json!([id]) } else { json!(id) })
            }
            Value::Array(list) => {
                let mut ids = Vec::new();
                for vals in list {
                    ids.push(orm::create(store, model, vals, &call.ctx)?);
                }
                Ok(json!(ids))
            }
            other => Err(OdooError::type_error(format!(
                "create() expects a dictionary or a list of dictionaries, got {other}"
            ))),
        },
        "write" => {
            orm::write(store, model, &call.ids, arg(call, "vals"), &call.ctx)?;
            Ok(json!(true))
        }
        "unlink" => {
            orm::unlink(store, model, &call.ids)?;
            Ok(json!(true))
        }
        "read" => Ok(json!(orm::read(store, model, &call.ids, arg(call, "fields"))?)),
        "search" => {
            let ids = orm::search(
                store,
                model,
                arg(call, "domain"),
                arg(call, "offset"),
                arg(call, "limit"),
                arg(call, "order"),
            )?;
            Ok(json!(ids))
        }
        "search_count" => {
            let ids = orm::search(store, model, arg(call, "domain"), &Value::Null, arg(call, "limit"), &Value::Null)?;
            Ok(json!(ids.len()))
        }
        "search_read" => {
            // Check the field list before searching, as Odoo does.
            orm::read_fields(model, arg(call, "fields"))?;
            let ids = orm::search(
                store,
                model,
                arg(call, "domain"),
                arg(call, "offset"),
                arg(call, "limit"),
                arg(call, "order"),
            )?;
            Ok(json!(orm::read(store, model, &ids, arg(call, "fields"))?))
        }
        "name_search" => orm::name_search(
            store,
            model,
            arg(call, "name"),
            arg(call, "domain"),
            arg(call, "operator"),
            arg(call, "limit"),
        ),
        "fields_get" => Ok(orm::fields_get(model)),
        "message_post" => {
            let Some(&res_id) = call.ids.first() else {
                return Err(OdooError::type_error("message_post needs the record it is posted on"));
            };
            orm::check_ids(store, model, &call.ids)?;
            let vals = json!({"model": model, "res_id": res_id, "body": arg(call, "body").as_str().unwrap_or(""),
                              "message_type": arg(call, "message_type").as_str().unwrap_or("notification")});
            Ok(json!(orm::create(store, "mail.message", &vals, &call.ctx)?))
        }
        method => business::call(store, model, method, &call.ids, &call.ctx),
    }
}
