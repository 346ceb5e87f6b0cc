//! JSON for webhooks that cannot speak Avro:
//! `{"type": "OrderReleased", "meta": {...}, "data": {...}}` with the Avro records' field
//! names; `Qty`, `Money` and `Timestamp` are integers, enums their symbols
//! (`"ODOO"`), optional fields may be `null` or left out.
//!
//! Decoding walks the latest schema of the named event, so a wrong field is reported
//! with its path and what the schema expects, and the result is the same value an Avro
//! record of that event would decode to. Fields the schema does not know are ignored, as
//! Avro schema resolution ignores writer fields the reader lacks.

use apache_avro::Schema;
use apache_avro::types::Value;
use serde_json::Value as Json;
use waybill_domain::InboundEvent;

use crate::codec::{EVENT_NAMES, event_from_value, event_to_json};
use crate::error::{Error, Result};
use crate::registry::{Kind, Registry};

impl Registry {
    /// Decodes a JSON event envelope; see the [module docs](crate::json).
    pub fn decode_event_json(&self, bytes: &[u8]) -> Result<InboundEvent> {
        let root: Json = serde_json::from_slice(bytes).map_err(|e| Error::JsonEnvelope(e.to_string()))?;
        let Some(object) = root.as_object() else {
            return Err(Error::JsonEnvelope(format!("the body is {}, not an object", describe(&root))));
        };
        let Some(kind) = object.get("type").and_then(Json::as_str) else {
            return Err(Error::JsonEnvelope("field `type` (the event name) is missing or not a string".into()));
        };
        let schema = self.latest_of(Kind::Event, kind).map_err(|_| {
            Error::JsonEnvelope(format!("unknown event type {kind:?}; known types are {}", EVENT_NAMES.join(", ")))
        })?;
        let value = to_avro(&root, schema.expanded(), "", None).map_err(|(path, problem)| Error::JsonField {
            event: kind.to_string(),
            path,
            problem,
        })?;
        event_from_value(schema, value)
    }

    /// Encodes an event as the JSON envelope [`Registry::decode_event_json`] reads.
    pub fn encode_event_json(&self, event: &InboundEvent) -> Vec<u8> {
        event_to_json(event)
    }
}

type Problem = (String, String);

fn join(path: &str, field: &str) -> String {
    if path.is_empty() { field.to_string() } else { format!("{path}.{field}") }
}

fn describe(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) => format!("the string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

fn expected(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "true or false".into(),
        Schema::Int => "an integer (32-bit)".into(),
        Schema::Long => "an integer".into(),
        Schema::TimestampMicros => "an integer: microseconds since the Unix epoch".into(),
        Schema::Float | Schema::Double => "a number".into(),
        Schema::String => "a string".into(),
        Schema::Array(_) => "an array".into(),
        Schema::Map(_) | Schema::Record(_) => "an object".into(),
        Schema::Enum(e) => format!("one of {}", e.symbols.join(", ")),
        Schema::Union(u) => {
            let parts: Vec<String> = u.variants().iter().map(expected).collect();
            parts.join(" or ")
        }
        other => format!("a value of Avro type {other:?}, which JSON events do not support"),
    }
}

fn mismatch(json: &Json, schema: &Schema, path: &str, doc: Option<&str>) -> Problem {
    let mut problem = format!("must be {}, got {}", expected(schema), describe(json));
    if let Some(doc) = doc {
        problem.push_str(&format!(" (field doc: {doc})"));
    }
    (path.to_string(), problem)
}

/// Converts JSON to an Avro value of `schema` (which must have no `Schema::Ref`s).
fn to_avro(json: &Json, schema: &Schema, path: &str, doc: Option<&str>) -> Result<Value, Problem> {
    let bad = || mismatch(json, schema, path, doc);
    Ok(match (schema, json) {
        (Schema::Null, Json::Null) => Value::Null,
        (Schema::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Schema::Int, Json::Number(n)) => Value::Int(n.as_i64().and_then(|i| i32::try_from(i).ok()).ok_or_else(bad)?),
        (Schema::Long, Json::Number(n)) => Value::Long(n.as_i64().ok_or_else(bad)?),
        (Schema::TimestampMicros, Json::Number(n)) => Value::TimestampMicros(n.as_i64().ok_or_else(bad)?),
        (Schema::Float, Json::Number(n)) => Value::Float(n.as_f64().ok_or_else(bad)? as f32),
        (Schema::Double, Json::Number(n)) => Value::Double(n.as_f64().ok_or_else(bad)?),
        (Schema::String, Json::String(s)) => Value::String(s.clone()),
        (Schema::Enum(e), Json::String(s)) => {
            let symbol = if e.symbols.contains(s) { s } else { e.default.as_ref().ok_or_else(bad)? };
            let index = e.symbols.iter().position(|x| x == symbol).ok_or_else(bad)?;
            Value::Enum(u32::try_from(index).map_err(|_| bad())?, symbol.clone())
        }
        (Schema::Array(a), Json::Array(items)) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_avro(item, &a.items, &format!("{path}[{i}]"), None))
                .collect::<Result<_, _>>()?,
        ),
        (Schema::Map(m), Json::Object(entries)) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_avro(v, &m.types, &join(path, k), None)?)))
                .collect::<Result<_, Problem>>()?,
        ),
        (Schema::Record(r), Json::Object(object)) => {
            let mut fields = Vec::with_capacity(r.fields.len());
            for field in &r.fields {
                let field_path = join(path, &field.name);
                let field_doc = field.doc.as_deref();
                let value = match (object.get(&field.name), &field.default) {
                    (Some(v), _) => to_avro(v, &field.schema, &field_path, field_doc)?,
                    (None, Some(default)) => to_avro(default, &field.schema, &field_path, field_doc)?,
                    (None, None) => {
                        let mut problem = format!("is missing; it is required and must be {}", expected(&field.schema));
                        if let Some(doc) = field_doc {
                            problem.push_str(&format!(" (field doc: {doc})"));
                        }
                        return Err((field_path, problem));
                    }
                };
                fields.push((field.name.clone(), value));
            }
            Value::Record(fields)
        }
        (Schema::Union(u), _) => {
            let variants = u.variants();
            if json.is_null()
                && let Some(i) = variants.iter().position(|v| matches!(v, Schema::Null))
            {
                return Ok(Value::Union(u32::try_from(i).map_err(|_| bad())?, Box::new(Value::Null)));
            }
            let candidates: Vec<(usize, &Schema)> =
                variants.iter().enumerate().filter(|(_, v)| !matches!(v, Schema::Null)).collect();
            let mut first_problem = None;
            for (i, variant) in &candidates {
                match to_avro(json, variant, path, doc) {
                    Ok(v) => return Ok(Value::Union(u32::try_from(*i).map_err(|_| bad())?, Box::new(v))),
                    Err(p) => {
                        first_problem.get_or_insert(p);
                    }
                }
            }
            // For `["null", record]` the inner problem points deeper ("data.x.y is
            // missing"); for `["null", scalar]` the union says it better ("must be null
            // or a string").
            return Err(match (candidates.as_slice(), first_problem) {
                ([(_, Schema::Record(_) | Schema::Array(_) | Schema::Map(_))], Some(p)) => p,
                _ => bad(),
            });
        }
        _ => return Err(bad()),
    })
}
