//! The Confluent Schema Registry REST API, read-only, over a [`Registry`]: what a
//! standard deserializer (Confluent's clients, kcat, Kafka UI, Kafka Connect, ksqlDB)
//! asks for when it meets a Confluent-framed record. Pure request → response; the server
//! crate serves it over HTTP.
//!
//! - **Subjects** follow the record-name strategy the topics use (a topic carries several
//!   record types): the subject of a schema is its full name, `waybill.event.OrderReleased`.
//! - **Versions** are the catalog's (`schemas/<namespace>/<Name>/v<N>.avsc`), **ids** the
//!   ones in `schemas/ids.txt` — the ids in every record Waybill writes.
//! - **Compatibility** levels come from `schemas/compatibility.txt` (`GET /config`,
//!   `GET /config/{subject}`, `POST /compatibility/...`).
//! - **Read-only** (`GET /mode` is `READONLY`): registering a schema the catalog already
//!   holds answers its id, as Confluent does for a schema registered before, so a
//!   producer with `auto.register.schemas` works; any other write is refused with
//!   error 42205, saying how a schema gets into the catalog.
//!
//! Errors carry Confluent's codes: 40401 subject not found, 40402 version not found,
//! 40403 schema not found, 42201 invalid schema, 42202 invalid version, 42205 operation
//! not permitted, 404/405 for paths and methods the API does not have.

use serde_json::{Value, json};

use crate::levels::Levels;
use crate::registry::{RegisteredSchema, Registry};

/// The media type of every answer.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Subject not found.
pub const SUBJECT_NOT_FOUND: u32 = 40401;
/// Version not found.
pub const VERSION_NOT_FOUND: u32 = 40402;
/// Schema not found.
pub const SCHEMA_NOT_FOUND: u32 = 40403;
/// Invalid schema.
pub const INVALID_SCHEMA: u32 = 42201;
/// Invalid version.
pub const INVALID_VERSION: u32 = 42202;
/// Operation not permitted (the registry is read-only).
pub const OPERATION_NOT_PERMITTED: u32 = 42205;

/// An answer: HTTP status and JSON body (`{"error_code", "message"}` on errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Value,
}

impl Response {
    fn ok(body: Value) -> Response {
        Response { status: 200, body }
    }

    fn error(status: u16, code: u32, message: impl Into<String>) -> Response {
        Response { status, body: json!({ "error_code": code, "message": message.into() }) }
    }

    /// The Confluent error code, for an error answer.
    pub fn error_code(&self) -> Option<u64> {
        self.body.get("error_code").and_then(Value::as_u64)
    }
}

/// The API over a registry and its compatibility levels.
#[derive(Debug, Clone, Copy)]
pub struct Api<'a> {
    registry: &'a Registry,
    levels: &'a Levels,
}

impl Api<'static> {
    /// The API over the catalog compiled into this build.
    pub fn embedded() -> Api<'static> {
        Api { registry: Registry::embedded(), levels: Levels::embedded() }
    }
}

impl<'a> Api<'a> {
    /// The API over `registry` at `levels`.
    pub fn new(registry: &'a Registry, levels: &'a Levels) -> Api<'a> {
        Api { registry, levels }
    }

    /// Answers one request. `path` is the URL path (percent-encoded, as received),
    /// `query` the query string without `?`, `body` the request body.
    pub fn handle(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Response {
        let segments: Vec<String> =
            path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let get = method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD");
        let post = method.eq_ignore_ascii_case("POST");
        let param = |name: &str| query_param(query, name);
        match (seg.as_slice(), get, post) {
            ([], true, _) => Response::ok(json!({})),
            (["schemas", "types"], true, _) => Response::ok(json!(["AVRO"])),
            (["schemas"], true, _) => {
                let prefix = param("subjectPrefix").unwrap_or_default();
                let latest_only = param("latestOnly").is_some_and(|v| v == "true");
                let list: Vec<Value> = self
                    .registry
                    .iter()
                    .filter(|s| s.full_name().starts_with(&prefix))
                    .filter(|s| !latest_only || self.registry.latest(s.full_name()).is_some_and(|l| l.id() == s.id()))
                    .map(version_body)
                    .collect();
                Response::ok(Value::Array(list))
            }
            (["schemas", "ids", id, rest @ ..], true, _) => {
                let schema = match self.by_id(id) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                match rest {
                    [] => Response::ok(json!({ "schema": compact(schema.json()) })),
                    ["schema"] => Response::ok(raw(schema)),
                    ["subjects"] => Response::ok(json!([schema.full_name()])),
                    ["versions"] => {
                        Response::ok(json!([{ "subject": schema.full_name(), "version": schema.version() }]))
                    }
                    _ => not_found(path),
                }
            }
            (["subjects"], true, _) => {
                let prefix = param("subjectPrefix").unwrap_or_default();
                let list: Vec<&str> = self.registry.full_names().filter(|s| s.starts_with(&prefix)).collect();
                Response::ok(json!(list))
            }
            (["subjects", subject], _, true) => {
                let versions = match self.subject(subject) {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                match self.find(subject, &versions, body) {
                    Ok(found) => Response::ok(version_body(found)),
                    Err(r) => r,
                }
            }
            (["subjects", subject, "versions"], true, _) => match self.subject(subject) {
                Ok(v) => Response::ok(json!(v.iter().map(|s| s.version()).collect::<Vec<_>>())),
                Err(r) => r,
            },
            (["subjects", subject, "versions"], _, true) => self.register(subject, body),
            (["subjects", subject, "versions", version, rest @ ..], true, _) => {
                let schema = match self.subject(subject).and_then(|v| pick_version(subject, &v, version)) {
                    Ok(s) => s,
                    Err(r) => return r,
                };
                match rest {
                    [] => Response::ok(version_body(schema)),
                    ["schema"] => Response::ok(raw(schema)),
                    ["referencedby"] => Response::ok(json!([])),
                    _ => not_found(path),
                }
            }
            (["compatibility", "subjects", subject, "versions", rest @ ..], _, true) => {
                let verbose = param("verbose").is_some_and(|v| v == "true");
                self.compatibility(subject, rest.first().copied(), body, verbose)
            }
            (["config"], true, _) => {
                Response::ok(json!({ "compatibilityLevel": self.levels.default_level().as_str() }))
            }
            (["config", subject], true, _) => match self.subject(subject) {
                Ok(_) => Response::ok(json!({ "compatibilityLevel": self.levels.of(subject).as_str() })),
                Err(r) => r,
            },
            (["mode"], true, _) => Response::ok(json!({ "mode": "READONLY" })),
            (["mode", subject], true, _) => match self.subject(subject) {
                Ok(_) => Response::ok(json!({ "mode": "READONLY" })),
                Err(r) => r,
            },
            ([first, ..], _, _) if ["schemas", "subjects", "config", "mode", "compatibility"].contains(first) => {
                Response::error(
                    422,
                    OPERATION_NOT_PERMITTED,
                    format!(
                        "{method} /{}: Waybill serves its schema catalog read-only (mode READONLY); schemas, versions, levels and modes change by editing schemas/ (an .avsc, a line in schemas/ids.txt, schemas/compatibility.txt, an entry in schemas/CHANGELOG.md) and releasing Waybill",
                        seg.join("/")
                    ),
                )
            }
            _ => not_found(path),
        }
    }

    fn by_id(&self, id: &str) -> Result<&'a RegisteredSchema, Response> {
        let schema = id.parse::<u32>().ok().and_then(|n| self.registry.get(n));
        schema.ok_or_else(|| {
            Response::error(
                404,
                SCHEMA_NOT_FOUND,
                format!(
                    "Schema {id} not found: it is not in this Waybill's catalog (schemas/ids.txt); a record carrying it was written by a producer with other schemas (its own registry's ids?) or by a newer Waybill"
                ),
            )
        })
    }

    fn subject(&self, subject: &str) -> Result<Vec<&'a RegisteredSchema>, Response> {
        let versions = self.registry.versions(subject);
        if versions.is_empty() {
            let hint = if subject.ends_with("-value") || subject.ends_with("-key") {
                " Waybill's topics carry several record types, so subjects follow the record-name strategy: the record's full name, e.g. waybill.event.OrderReleased, not <topic>-value; set the client's subject name strategy to RecordNameStrategy."
            } else {
                " Subjects are record full names, e.g. waybill.event.OrderReleased; GET /subjects lists them."
            };
            return Err(Response::error(404, SUBJECT_NOT_FOUND, format!("Subject '{subject}' not found.{hint}")));
        }
        Ok(versions)
    }

    /// The version of `subject` whose schema is `body`'s (same Parsing Canonical Form:
    /// the same binary encoding).
    fn find(
        &self,
        subject: &str,
        versions: &[&'a RegisteredSchema],
        body: &[u8],
    ) -> Result<&'a RegisteredSchema, Response> {
        let candidate = parse_body(body)?;
        let form = candidate.canonical_form();
        versions.iter().copied().find(|s| s.schema().canonical_form() == form).ok_or_else(|| {
            Response::error(
                404,
                SCHEMA_NOT_FOUND,
                format!(
                    "Schema not found: no version of subject '{subject}' has this schema (compared by Avro's Parsing Canonical Form); GET /subjects/{subject}/versions/latest shows the newest"
                ),
            )
        })
    }

    fn register(&self, subject: &str, body: &[u8]) -> Response {
        let versions = self.registry.versions(subject);
        if let Ok(candidate) = parse_body(body) {
            let form = candidate.canonical_form();
            if let Some(s) = versions.iter().find(|s| s.schema().canonical_form() == form) {
                return Response::ok(json!({ "id": s.id() }));
            }
        }
        Response::error(
            422,
            OPERATION_NOT_PERMITTED,
            format!(
                "Subject '{subject}' is in read-only mode: Waybill serves its schema catalog and registers nothing. A new schema version goes into schemas/ (the .avsc, a line in schemas/ids.txt, an entry in schemas/CHANGELOG.md) and ships with a Waybill release; `waybill schemas check` says whether it is compatible"
            ),
        )
    }

    fn compatibility(&self, subject: &str, version: Option<&str>, body: &[u8], verbose: bool) -> Response {
        let versions = match self.subject(subject) {
            Ok(v) => v,
            Err(r) => return r,
        };
        let candidate = match parse_body(body) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let level = self.levels.of(subject);
        let existing: Vec<&apache_avro::Schema> = match version {
            // Against every version the level names.
            None => versions.iter().map(|s| s.schema()).collect(),
            // Against the one version named (Confluent: the level's direction, that version).
            Some(v) => match pick_version(subject, &versions, v) {
                Ok(s) => vec![s.schema()],
                Err(r) => return r,
            },
        };
        let level = if version.is_some() { non_transitive(level) } else { level };
        let messages = crate::compat::check_candidate(subject, level, &existing, &candidate);
        let mut body = json!({ "is_compatible": messages.is_empty() });
        if verbose {
            body["messages"] = json!(messages);
        }
        Response::ok(body)
    }
}

/// The level's direction without transitivity (a check against one named version).
fn non_transitive(level: crate::Level) -> crate::Level {
    use crate::Level;
    match level {
        Level::BackwardTransitive => Level::Backward,
        Level::ForwardTransitive => Level::Forward,
        Level::FullTransitive => Level::Full,
        other => other,
    }
}

fn pick_version<'a>(
    subject: &str,
    versions: &[&'a RegisteredSchema],
    version: &str,
) -> Result<&'a RegisteredSchema, Response> {
    let latest = || versions.last().copied().expect("a subject has a version");
    if version == "latest" || version == "-1" {
        return Ok(latest());
    }
    match version.parse::<u32>() {
        Ok(n) if n >= 1 && n <= i32::MAX as u32 => versions.get(n as usize - 1).copied().ok_or_else(|| {
            Response::error(
                404,
                VERSION_NOT_FOUND,
                format!("Version {n} not found: subject '{subject}' has versions 1 to {}", latest().version()),
            )
        }),
        _ => Err(Response::error(
            422,
            INVALID_VERSION,
            format!(
                "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )),
    }
}

/// `{"schema": "...", "schemaType": "AVRO"?}` → the parsed schema, or 42201.
fn parse_body(body: &[u8]) -> Result<apache_avro::Schema, Response> {
    let invalid = |why: String| Response::error(422, INVALID_SCHEMA, format!("Invalid schema: {why}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(format!("the body is not JSON ({e}); send {{\"schema\": \"<Avro schema as a string>\"}}"))
    })?;
    if let Some(t) = value.get("schemaType").and_then(Value::as_str)
        && t != "AVRO"
    {
        return Err(invalid(format!("schemaType {t} is not served here; Waybill's catalog is Avro only")));
    }
    let text = value.get("schema").and_then(Value::as_str).ok_or_else(|| {
        invalid("the body has no \"schema\" string; send {\"schema\": \"<Avro schema as a string>\"}".into())
    })?;
    apache_avro::Schema::parse_str(text).map_err(|e| invalid(format!("it does not parse as Avro: {e}")))
}

fn version_body(s: &RegisteredSchema) -> Value {
    json!({ "subject": s.full_name(), "version": s.version(), "id": s.id(), "schema": compact(s.json()) })
}

/// The schema itself (`.../schema` endpoints answer the schema, not a wrapper).
fn raw(s: &RegisteredSchema) -> Value {
    serde_json::from_str(s.json()).unwrap_or_else(|_| Value::String(compact(s.json())))
}

fn not_found(path: &str) -> Response {
    Response::error(
        404,
        404,
        format!(
            "HTTP 404 Not Found: {path} is not part of the Schema Registry API Waybill serves (schemas/ids/<id>, subjects, subjects/<subject>/versions/<version>, compatibility, config, mode)"
        ),
    )
}

/// The `.avsc` text without the whitespace between tokens: key order and every
/// attribute (docs, defaults, logical types) as in the file.
pub fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| percent_decode(v))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api<'static> {
        Api::embedded()
    }

    fn schema_body(full_name: &str, version: u32) -> Vec<u8> {
        let s = Registry::embedded().version(full_name, version).unwrap();
        serde_json::to_vec(&json!({ "schema": s.json() })).unwrap()
    }

    #[test]
    fn a_schema_by_id_is_the_catalog_file_and_parses_back() {
        let r = api().handle("GET", "/schemas/ids/77", "", b"");
        assert_eq!(r.status, 200);
        let text = r.body["schema"].as_str().unwrap();
        let parsed = apache_avro::Schema::parse_str(text).unwrap();
        assert_eq!(parsed.canonical_form(), Registry::embedded().get(77).unwrap().schema().canonical_form());
        assert!(text.contains("\"doc\":\"Odoo confirmed"), "docs are kept: {text}");
        assert_eq!(
            api().handle("GET", "/schemas/ids/77/versions", "", b"").body,
            json!([{"subject": "waybill.event.OrderReleased", "version": 2}])
        );
        assert_eq!(
            api().handle("GET", "/schemas/ids/77/subjects", "", b"").body,
            json!(["waybill.event.OrderReleased"])
        );
        assert_eq!(api().handle("GET", "/schemas/ids/77/schema", "", b"").body["name"], "OrderReleased");
    }

    #[test]
    fn unknown_ids_subjects_and_versions_get_confluent_codes() {
        let r = api().handle("GET", "/schemas/ids/9999", "", b"");
        assert_eq!((r.status, r.error_code()), (404, Some(40403)));
        let r = api().handle("GET", "/subjects/waybill.inbound.wms-value/versions", "", b"");
        assert_eq!((r.status, r.error_code()), (404, Some(40401)));
        assert!(r.body["message"].as_str().unwrap().contains("RecordNameStrategy"), "{}", r.body);
        let r = api().handle("GET", "/subjects/waybill.event.OrderReleased/versions/9", "", b"");
        assert_eq!((r.status, r.error_code()), (404, Some(40402)));
        let r = api().handle("GET", "/subjects/waybill.event.OrderReleased/versions/first", "", b"");
        assert_eq!((r.status, r.error_code()), (422, Some(42202)));
        let r = api().handle("GET", "/nothing/here", "", b"");
        assert_eq!((r.status, r.error_code()), (404, Some(404)));
    }

    #[test]
    fn subjects_are_record_names_with_the_catalog_versions() {
        let r = api().handle("GET", "/subjects", "", b"");
        let subjects: Vec<&str> = r.body.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(subjects.contains(&"waybill.journal.Checkpoint") && subjects.contains(&"waybill.command.PostInvoice"));
        assert_eq!(subjects.len(), Registry::embedded().full_names().count());
        let r = api().handle("GET", "/subjects", "subjectPrefix=waybill.command.", b"");
        assert!(r.body.as_array().unwrap().iter().all(|s| s.as_str().unwrap().starts_with("waybill.command.")));
        let r = api().handle("GET", "/subjects/waybill.event.OrderReleased/versions", "", b"");
        assert_eq!(r.body, json!([1, 2, 3]));
        let r = api().handle("GET", "/subjects/waybill.event.OrderReleased/versions/latest", "", b"");
        assert_eq!((r.body["id"].as_u64(), r.body["version"].as_u64()), (Some(273), Some(3)));
        let r = api().handle("GET", "/subjects/waybill%2Eevent.OrderReleased/versions/1", "", b"");
        assert_eq!(r.body["id"], 1);
    }

    #[test]
    fn lookup_finds_the_version_with_the_same_schema() {
        let r = api().handle(
            "POST",
            "/subjects/waybill.event.OrderReleased",
            "",
            &schema_body("waybill.event.OrderReleased", 1),
        );
        assert_eq!((r.status, r.body["id"].as_u64(), r.body["version"].as_u64()), (200, Some(1), Some(1)));
        let r = api().handle(
            "POST",
            "/subjects/waybill.event.OrderReleased",
            "",
            &schema_body("waybill.event.StockReserved", 1),
        );
        assert_eq!((r.status, r.error_code()), (404, Some(40403)));
        let r = api().handle(
            "POST",
            "/subjects/waybill.event.OrderReleased",
            "",
            br#"{"schema": "{\"type\": \"recrd\"}"}"#,
        );
        assert_eq!((r.status, r.error_code()), (422, Some(42201)));
        // Registering what the catalog holds answers its id; anything else is refused.
        let r = api().handle(
            "POST",
            "/subjects/waybill.event.OrderReleased/versions",
            "",
            &schema_body("waybill.event.OrderReleased", 2),
        );
        assert_eq!((r.status, &r.body), (200, &json!({"id": 77})));
        let r = api().handle(
            "POST",
            "/subjects/waybill.event.OrderReleased/versions",
            "",
            &schema_body("waybill.event.StockReserved", 1),
        );
        assert_eq!((r.status, r.error_code()), (422, Some(42205)));
        let r = api().handle("PUT", "/config", "", br#"{"compatibility": "NONE"}"#);
        assert_eq!((r.status, r.error_code()), (422, Some(42205)));
    }

    #[test]
    fn compatibility_follows_the_subject_level() {
        let subject = "waybill.event.OrderReleased";
        let mut v: Value = serde_json::from_str(Registry::embedded().latest(subject).unwrap().json()).unwrap();
        v["fields"][1]["type"]["fields"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "priority", "type": "int", "doc": "P."}));
        let body = serde_json::to_vec(&json!({ "schema": v.to_string() })).unwrap();
        let r =
            api().handle("POST", &format!("/compatibility/subjects/{subject}/versions/latest"), "verbose=true", &body);
        assert_eq!(r.body["is_compatible"], false, "{}", r.body);
        assert!(r.body["messages"][0].as_str().unwrap().contains("priority"), "{}", r.body);
        let r = api().handle(
            "POST",
            &format!("/compatibility/subjects/{subject}/versions/latest"),
            "",
            &schema_body(subject, 2),
        );
        assert_eq!(r.body, json!({"is_compatible": true}));
        assert_eq!(api().handle("GET", "/config", "", b"").body, json!({"compatibilityLevel": "BACKWARD_TRANSITIVE"}));
        assert_eq!(
            api().handle("GET", "/config/waybill.command.PostInvoice", "", b"").body,
            json!({"compatibilityLevel": "FULL"})
        );
        assert_eq!(api().handle("GET", "/mode", "", b"").body, json!({"mode": "READONLY"}));
    }

    #[test]
    fn compact_keeps_strings_and_drops_layout() {
        assert_eq!(compact("{\n  \"a\" : \"x y\\\" z\",\n \"b\": [1, 2]\n}"), "{\"a\":\"x y\\\" z\",\"b\":[1,2]}");
    }
}
