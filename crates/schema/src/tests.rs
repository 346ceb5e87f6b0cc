use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use waybill_domain::event::{EventBody, ItemCondition};
use waybill_domain::journal::SagaKind;
use waybill_domain::{ExceptionCategory, System};

use super::*;
use crate::registry::expand;

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn avsc_files(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            avsc_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "avsc") {
            out.insert(format!("schemas/{}", path.strip_prefix(root).unwrap().display()));
        }
    }
}

fn embedded_json(full_name: &str, version: u32) -> &'static str {
    Registry::embedded_sources().iter().find(|s| s.full_name == full_name && s.version == version).unwrap().json
}

/// `OrderReleased` v1 with `extra_data_field` (JSON of one field) appended to `data`.
fn order_released_with(extra_data_field: &str) -> String {
    let mut json: serde_json::Value = serde_json::from_str(embedded_json("waybill.event.OrderReleased", 1)).unwrap();
    let extra: serde_json::Value = serde_json::from_str(extra_data_field).unwrap();
    json["fields"][1]["type"]["fields"].as_array_mut().unwrap().push(extra);
    json.to_string()
}

fn find_named<'a>(schema: &'a Schema, full_name: &str) -> Option<&'a Schema> {
    match schema {
        Schema::Record(r) => {
            if r.name.fullname(None) == full_name {
                return Some(schema);
            }
            r.fields.iter().find_map(|f| find_named(&f.schema, full_name))
        }
        Schema::Enum(e) if e.name.fullname(None) == full_name => Some(schema),
        Schema::Array(a) => find_named(&a.items, full_name),
        Schema::Union(u) => u.variants().iter().find_map(|v| find_named(v, full_name)),
        _ => None,
    }
}

// ---- catalog ----

#[test]
fn every_schema_file_is_in_ids_txt_and_vice_versa() {
    let root = schemas_dir();
    let mut on_disk = BTreeSet::new();
    avsc_files(&root, &root, &mut on_disk);
    let listed: BTreeSet<String> = Registry::embedded_sources().iter().map(SchemaSource::path).collect();
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(unlisted.is_empty(), "files not listed in schemas/ids.txt: {unlisted:?}");
    assert!(missing.is_empty(), "ids.txt lines without a file: {missing:?}");
}

#[test]
fn ids_are_unique_and_increase_in_file_order() {
    // Append-only: every new line takes an id above all earlier ones. Gaps are allowed
    // (the registry accepts them; a range may be reserved for a change being made in
    // parallel), reuse and reordering are not.
    let ids: Vec<u32> = Registry::embedded_sources().iter().map(|s| s.id).collect();
    assert_eq!(ids.first(), Some(&1), "ids.txt starts at id 1");
    let out_of_order: Vec<(u32, u32)> = ids.windows(2).filter(|w| w[1] <= w[0]).map(|w| (w[0], w[1])).collect();
    assert!(out_of_order.is_empty(), "ids.txt must list ids in increasing order, each once: {out_of_order:?}");
}

#[test]
fn embedded_registry_loads_with_lookups_by_id_name_and_version() {
    let reg = Registry::embedded();
    let first = reg.get(1).unwrap();
    assert_eq!(first.full_name(), "waybill.event.OrderReleased");
    assert_eq!((first.name(), first.version(), first.kind()), ("OrderReleased", 1, Kind::Event));
    let newest = reg.iter().filter(|s| s.full_name() == "waybill.event.OrderReleased").map(|s| s.version()).max();
    assert_eq!(Some(reg.latest("waybill.event.OrderReleased").unwrap().version()), newest);
    assert_eq!(reg.version("waybill.event.OrderReleased", 1).unwrap().id(), 1);
    assert!(reg.version("waybill.event.OrderReleased", 0).is_none());
    assert!(reg.version("waybill.event.OrderReleased", 99).is_none());
    assert!(reg.get(4000).is_none());
    assert_eq!(reg.iter().count(), Registry::embedded_sources().len());
    let cp = reg.latest("waybill.journal.Checkpoint").unwrap();
    assert_eq!(cp.kind(), Kind::Checkpoint);
}

#[test]
fn every_variant_has_a_schema_and_every_schema_a_variant() {
    let reg = Registry::embedded();
    let families: BTreeSet<&str> = reg.full_names().collect();
    let mut expected = BTreeSet::new();
    for (ns, names) in
        [("waybill.event", EVENT_NAMES), ("waybill.command", COMMAND_NAMES), ("waybill.journal", JOURNAL_NAMES)]
    {
        for name in names {
            expected.insert(format!("{ns}.{name}"));
        }
    }
    expected.insert("waybill.journal.Checkpoint".to_string());
    expected.insert("waybill.audit.EdgeRecord".to_string());
    expected.insert("waybill.connect.PollerCursor".to_string());
    expected.insert("waybill.snapshot.FlowState".to_string());
    expected.insert("waybill.snapshot.SnapshotMark".to_string());
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(families, expected);

    // The name lists agree with the domain's own name() functions.
    let event_names: Vec<&str> = samples::events().iter().map(|e| e.body.name()).collect();
    assert_eq!(event_names, EVENT_NAMES);
    let command_names: Vec<&str> = samples::commands().iter().map(|c| c.body.name()).collect();
    assert_eq!(command_names, COMMAND_NAMES);
    let journal_names: Vec<&str> = samples::journal_events().iter().map(|j| j.body.name()).collect();
    assert_eq!(journal_names, JOURNAL_NAMES);
}

#[test]
fn every_field_and_named_type_is_documented() {
    fn walk(schema: &Schema, at: &str, missing: &mut Vec<String>) {
        match schema {
            Schema::Record(r) => {
                if r.doc.as_deref().is_none_or(str::is_empty) {
                    missing.push(format!("{at}: record {}", r.name.name));
                }
                for f in &r.fields {
                    if f.doc.as_deref().is_none_or(str::is_empty) {
                        missing.push(format!("{at}: field {}.{}", r.name.name, f.name));
                    }
                    walk(&f.schema, at, missing);
                }
            }
            Schema::Enum(e) if e.doc.as_deref().is_none_or(str::is_empty) => {
                missing.push(format!("{at}: enum {}", e.name.name));
            }
            Schema::Array(a) => walk(&a.items, at, missing),
            Schema::Union(u) => u.variants().iter().for_each(|v| walk(v, at, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for s in Registry::embedded().iter() {
        walk(s.schema(), &format!("{} v{}", s.full_name(), s.version()), &mut missing);
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

#[test]
fn enum_symbols_are_serde_names_in_declaration_order() {
    fn symbols<T: serde::Serialize>(values: &[T]) -> Vec<String> {
        values.iter().map(|v| serde_json::to_value(v).unwrap().as_str().unwrap().to_string()).collect()
    }
    let cases: [(&str, &str, Vec<String>, Option<&str>); 4] = [
        ("waybill.event.OrderReleased", "waybill.System", symbols(&System::ALL), Some("OTHER")),
        (
            "waybill.journal.ExceptionRaised",
            "waybill.journal.ExceptionCategory",
            symbols(&ExceptionCategory::ALL),
            Some("OTHER"),
        ),
        (
            "waybill.journal.Completed",
            "waybill.journal.SagaKind",
            symbols(&[
                SagaKind::OrderToFulfillment,
                SagaKind::ShipToInvoice,
                SagaKind::ReturnsCredit,
                SagaKind::TargetHealth,
                SagaKind::PurchaseToReceive,
                SagaKind::CashApplication,
                SagaKind::Reconciliation,
            ]),
            None,
        ),
        (
            "waybill.event.ReturnReceived",
            "waybill.event.ItemCondition",
            symbols(&[ItemCondition::Restock, ItemCondition::Scrap]),
            None,
        ),
    ];
    for (record, enum_name, want, default) in cases {
        let schema = Registry::embedded().latest(record).unwrap().schema();
        let Some(Schema::Enum(e)) = find_named(schema, enum_name) else { panic!("{enum_name} not in {record}") };
        assert_eq!(e.symbols, want, "{enum_name}: Avro symbols must be serde's names in Rust declaration order");
        assert_eq!(e.default.as_deref(), default, "{enum_name} default");
    }
}

#[test]
fn latest_schemas_have_the_domain_shape_and_take_the_direct_serializer() {
    fn records(schema: &Schema, out: &mut BTreeSet<String>) {
        match schema {
            Schema::Record(r) => {
                out.insert(r.name.fullname(None));
                r.fields.iter().for_each(|f| records(&f.schema, out));
            }
            Schema::Array(a) => records(&a.items, out),
            Schema::Union(u) => u.variants().iter().for_each(|v| records(v, out)),
            _ => {}
        }
    }
    let reg = Registry::embedded();
    for name in reg.full_names() {
        let latest = reg.latest(name).unwrap();
        if matches!(latest.kind(), Kind::Audit | Kind::Connect | Kind::Snapshot) {
            continue; // no domain type: always through a Value (`encode_record`)
        }
        let visited = crate::codec::direct_write_check(latest.kind(), latest.name(), latest.expanded())
            .unwrap_or_else(|e| panic!("{name} v{}: the domain type does not match the schema: {e}", latest.version()));
        assert!(latest.direct_write(), "{name}");
        let mut all = BTreeSet::new();
        records(latest.expanded(), &mut all);
        let unreached: Vec<_> = all.difference(&visited).collect();
        assert!(unreached.is_empty(), "{name}: samples never fill {unreached:?}; extend samples.rs");
    }
}

// ---- round trips ----

#[test]
fn every_event_round_trips_through_avro_naive_avro_and_json() {
    for event in samples::events() {
        let name = event.body.name();
        let bytes = encode_event(&event).unwrap();
        assert_eq!(bytes[0], 0);
        assert_eq!(schema_name_of(&bytes).unwrap(), format!("waybill.event.{name}"));
        assert_eq!(decode_event(&bytes).unwrap(), event, "{name}");
        assert_eq!(encode_event_naive(&event).unwrap(), bytes, "{name}: naive and cached encoders disagree");
        assert_eq!(decode_event_naive(&bytes).unwrap(), event, "{name}");
        let json = encode_event_json(&event);
        assert_eq!(decode_event_json(&json).unwrap(), event, "{name}: {}", String::from_utf8_lossy(&json));
    }
}

#[test]
fn every_command_round_trips() {
    for command in samples::commands() {
        let bytes = encode_command(&command).unwrap();
        assert_eq!(schema_name_of(&bytes).unwrap(), format!("waybill.command.{}", command.body.name()));
        assert_eq!(decode_command(&bytes).unwrap(), command);
    }
}

#[test]
fn every_journal_event_and_the_checkpoint_round_trip() {
    for event in samples::journal_events() {
        let bytes = encode_journal(&event).unwrap();
        assert_eq!(decode_journal(&bytes).unwrap(), event);
        assert_eq!(decode_journal_record(&bytes).unwrap(), JournalRecord::Event(event));
    }
    let mut timer = samples::journal_events().remove(8);
    timer.meta.input = None;
    assert_eq!(decode_journal(&encode_journal(&timer).unwrap()).unwrap(), timer);
    let checkpoint = samples::checkpoint();
    let bytes = encode_checkpoint(&checkpoint).unwrap();
    assert_eq!(decode_checkpoint(&bytes).unwrap(), checkpoint);
    assert_eq!(decode_journal_record(&bytes).unwrap(), JournalRecord::Checkpoint(checkpoint));
    let err = decode_journal(&bytes).unwrap_err();
    assert!(err.to_string().ends_with("expected a journal event (waybill.journal.*)"), "{err}");
}

#[test]
fn every_system_symbol_round_trips() {
    let mut event = samples::events().remove(0);
    for system in System::ALL {
        event.meta.source.system = system;
        assert_eq!(decode_event(&encode_event(&event).unwrap()).unwrap(), event);
    }
}

// ---- schema evolution ----

#[test]
fn old_writer_records_resolve_to_the_new_reader() {
    let v1 = embedded_json("waybill.event.OrderReleased", 1);
    let v2 =
        order_released_with(r#"{"name": "priority", "type": ["null", "string"], "default": null, "doc": "Priority."}"#);
    let old = Registry::from_sources([SchemaSource {
        id: 1,
        full_name: "waybill.event.OrderReleased",
        version: 1,
        json: v1,
    }])
    .unwrap();
    let new = Registry::from_sources([
        SchemaSource { id: 1, full_name: "waybill.event.OrderReleased", version: 1, json: v1 },
        SchemaSource { id: 2, full_name: "waybill.event.OrderReleased", version: 2, json: &v2 },
    ])
    .unwrap();
    assert!(new.get(1).unwrap().needs_resolution);
    assert!(!new.get(2).unwrap().needs_resolution);
    assert!(check_registry(&new).is_ok());

    // The v1 schema predates `meta.actor` and `data.company`, so an event written with it
    // has neither.
    let mut event = samples::events().remove(0);
    event.meta.actor = None;
    if let waybill_domain::EventBody::OrderReleased(o) = &mut event.body {
        o.company = None;
    }
    let written_by_old = old.encode_event(&event).unwrap();
    assert_eq!(&written_by_old[..5], &[0, 0, 0, 0, 1]);
    assert_eq!(new.decode_event(&written_by_old).unwrap(), event);
    // The new producer writes v2. The domain type has no `priority` yet, so v2 cannot
    // take the direct serializer; the Value path fills the default.
    assert!(!new.get(2).unwrap().direct_write());
    let written_by_new = new.encode_event(&event).unwrap();
    assert_eq!(&written_by_new[..5], &[0, 0, 0, 0, 2]);
    assert_eq!(written_by_new.len(), written_by_old.len() + 1, "one byte for the null branch of priority");
    assert_eq!(new.decode_event(&written_by_new).unwrap(), event);
    // A record the old producer cannot know about is reported, not mis-decoded.
    let framed_v2 = wire::frame(2, &[]);
    let err = old.decode_event(&framed_v2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 2 is not in the registry; was the producer built from a newer schemas/ folder?"
    );
}

#[test]
fn every_subject_in_schemas_keeps_its_compatibility_level() {
    if let Err(problems) = check_registry(Registry::embedded()) {
        panic!("incompatible schema changes:\n{}", problems.join("\n"));
    }
}

#[test]
fn the_compatibility_check_rejects_incompatible_edits_and_names_the_field() {
    let v1 = Schema::parse_str(embedded_json("waybill.event.OrderReleased", 1)).unwrap();

    let required =
        Schema::parse_str(&order_released_with(r#"{"name": "priority", "type": "int", "doc": "P."}"#)).unwrap();
    let problems = check_backward_transitive(&[v1.clone(), required]).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("priority"), "{}", problems[0]);
    assert!(
        problems[0].starts_with("waybill.event.OrderReleased v2 cannot read data written with v1"),
        "{}",
        problems[0]
    );

    let mut retyped: serde_json::Value = serde_json::from_str(embedded_json("waybill.event.OrderReleased", 1)).unwrap();
    retyped["fields"][1]["type"]["fields"][0]["type"] = "long".into(); // order_ref: string -> long
    let retyped = Schema::parse_str(&retyped.to_string()).unwrap();
    let problems = check_backward_transitive(&[v1.clone(), retyped]).unwrap_err();
    assert!(problems[0].contains("order_ref"), "{}", problems[0]);

    // Transitive: v3 must read v1 too, not only v2. v2 adds `priority` with a default,
    // v3 drops the default: v3 reads v2 data but not v1 data.
    let with_default =
        Schema::parse_str(&order_released_with(r#"{"name": "priority", "type": "int", "default": 0, "doc": "P."}"#))
            .unwrap();
    let without_default =
        Schema::parse_str(&order_released_with(r#"{"name": "priority", "type": "int", "doc": "P."}"#)).unwrap();
    assert!(check_backward_transitive(&[v1.clone(), with_default.clone()]).is_ok());
    let problems = check_backward_transitive(&[v1, with_default, without_default]).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("waybill.event.OrderReleased v3 cannot read data written with v1"), "{problems:?}");
    assert!(problems[0].contains("priority"), "{problems:?}");
}

#[test]
fn the_compatibility_check_accepts_a_field_with_a_default() {
    let v1 = Schema::parse_str(embedded_json("waybill.event.OrderReleased", 1)).unwrap();
    let v2 = Schema::parse_str(&order_released_with(
        r#"{"name": "priority", "type": ["null", "string"], "default": null, "doc": "P."}"#,
    ))
    .unwrap();
    assert_eq!(check_backward_transitive(&[v1, v2]), Ok(()));
}

#[test]
fn a_named_type_used_twice_is_inlined_for_the_direct_serializer() {
    let schema = Schema::parse_str(
        r#"{"type": "record", "name": "T", "namespace": "waybill.test", "fields": [
            {"name": "a", "type": {"type": "record", "name": "LotQty", "fields": [{"name": "lot", "type": "string"}]}},
            {"name": "b", "type": ["null", "LotQty"], "default": null}
        ]}"#,
    )
    .unwrap();
    #[derive(serde::Serialize)]
    struct Lot {
        lot: &'static str,
    }
    #[derive(serde::Serialize)]
    struct T {
        a: Lot,
        b: Option<Lot>,
    }
    let value = T { a: Lot { lot: "x" }, b: Some(Lot { lot: "y" }) };
    assert!(apache_avro::write_avro_datum_ref(&schema, &value, &mut Vec::new()).is_err(), "0.21 fixed the Ref case?");
    let expanded = expand(&schema).unwrap();
    let mut out = Vec::new();
    apache_avro::write_avro_datum_ref(&expanded, &value, &mut out).unwrap();
    assert_eq!(out, [2, b'x', 2, 2, b'y']);
}

// ---- errors ----

#[test]
fn unknown_schema_id_says_what_to_check() {
    let err = decode_event(&wire::frame(4000, &[0])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 4000 is not in the registry; was the producer built from a newer schemas/ folder?"
    );
    assert!(matches!(schema_name_of(&wire::frame(4000, &[])), Err(Error::UnknownSchemaId { id: 4000 })));
}

#[test]
fn truncated_and_non_avro_records_are_explained() {
    let err = decode_event(&[0, 0, 1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "record is 3 bytes long; a Confluent-framed Avro record needs at least 5 (magic byte 0 + 4-byte schema id)"
    );
    let json = encode_event_json(&samples::events()[0]);
    let err = decode_event(&json).unwrap_err();
    assert_eq!(
        err.to_string(),
        "magic byte is 0x7b, expected 0x00: this looks like JSON; send it to the JSON endpoint or frame it as Confluent Avro"
    );
}

#[test]
fn a_command_sent_to_the_event_decoder_is_named() {
    let bytes = encode_command(&samples::commands()[0]).unwrap();
    let id = Registry::embedded().latest("waybill.command.ReserveStock").unwrap().id();
    let err = decode_event(&bytes).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("schema id {id} is waybill.command.ReserveStock v1, expected an inbound event (waybill.event.*)")
    );
}

#[test]
fn a_cut_or_padded_datum_names_the_schema_and_version() {
    let bytes = encode_event(&samples::events()[0]).unwrap();
    let latest = Registry::embedded().latest("waybill.event.OrderReleased").unwrap();
    let (v, id) = (latest.version(), latest.id());
    let err = decode_event(&bytes[..bytes.len() - 3]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        text.starts_with(&format!(
            "cannot decode waybill.event.OrderReleased v{v} (schema id {id}) into the v{v} reader: "
        )),
        "{text}"
    );

    let mut padded = bytes.clone();
    padded.extend_from_slice(&[1, 2]);
    let err = decode_event(&padded).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("waybill.event.OrderReleased v{v} (schema id {id}) decoded with 2 bytes left over")),
        "{err}"
    );
}

// ---- JSON ----

fn order_json() -> serde_json::Value {
    serde_json::from_slice(&encode_event_json(&samples::events()[0])).unwrap()
}

fn decode_json_value(json: &serde_json::Value) -> Result<InboundEvent> {
    decode_event_json(json.to_string().as_bytes())
}

#[test]
fn json_envelope_has_type_meta_and_data_with_integers() {
    let json = order_json();
    assert_eq!(json["type"], "OrderReleased");
    assert_eq!(json["meta"]["source"]["system"], "ODOO");
    assert_eq!(json["meta"]["occurred_at"], 1_767_225_600_000_000_i64);
    assert_eq!(json["data"]["lines"][1]["quantity"], 2500);
    assert_eq!(json["data"]["lines"][1]["tax_code"], serde_json::Value::Null);
    let text = String::from_utf8(encode_event_json(&samples::events()[0])).unwrap();
    assert!(text.starts_with(r#"{"type":"OrderReleased","meta":{"#), "{text}");
}

#[test]
fn json_errors_name_the_bad_field() {
    let mut json = order_json();
    json["data"]["lines"][1]["quantity"] = "2.5".into();
    let err = decode_json_value(&json).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            r#"JSON event OrderReleased: field `data.lines[1].quantity` must be an integer, got the string "2.5""#
        ),
        "{text}"
    );
    assert!(text.contains("Thousandths"), "{text}");

    let mut json = order_json();
    json["data"].as_object_mut().unwrap().remove("order_ref");
    let err = decode_json_value(&json).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "JSON event OrderReleased: field `data.order_ref` is missing; it is required and must be a string"
        ),
        "{err}"
    );

    let mut json = order_json();
    json["data"]["client_order_ref"] = 7.into();
    let err = decode_json_value(&json).unwrap_err();
    assert!(
        err.to_string().contains("field `data.client_order_ref` must be null or a string, got the number 7"),
        "{err}"
    );

    let mut json = order_json();
    json["meta"]["source"]["system"] = 3.into();
    let err = decode_json_value(&json).unwrap_err();
    assert!(err.to_string().contains("field `meta.source.system` must be one of ODOO, WMS"), "{err}");
}

#[test]
fn json_envelope_errors_say_what_is_expected() {
    let err = decode_event_json(b"[1]").unwrap_err();
    assert!(err.to_string().starts_with("invalid JSON event: the body is an array, not an object"), "{err}");
    let err = decode_event_json(br#"{"meta": {}}"#).unwrap_err();
    assert!(err.to_string().contains("field `type` (the event name) is missing"), "{err}");
    let err = decode_event_json(br#"{"type": "OrderShipped"}"#).unwrap_err();
    assert!(err.to_string().contains(r#"unknown event type "OrderShipped"; known types are OrderReleased, "#), "{err}");
    let err = decode_event_json(b"{nope").unwrap_err();
    assert!(matches!(err, Error::JsonEnvelope(_)), "{err:?}");
}

#[test]
fn json_optional_fields_may_be_left_out_and_unknown_systems_map_to_other() {
    let mut json = order_json();
    json["data"].as_object_mut().unwrap().remove("client_order_ref");
    json["meta"]["source"]["system"] = "MARKETPLACE".into();
    json["data"]["not_in_the_schema"] = true.into();
    let event = decode_json_value(&json).unwrap();
    let EventBody::OrderReleased(order) = &event.body else { panic!("{event:?}") };
    assert_eq!(order.client_order_ref, None);
    assert_eq!(event.meta.source.system, System::Other);
}

// ---- direct datum reader ----

#[test]
fn every_embedded_schema_is_read_without_a_value_tree_and_the_same_as_through_one() {
    let registry = Registry::embedded();
    for event in samples::events() {
        let bytes = encode_event(&event).unwrap();
        assert!(registry.schema_of(&bytes).unwrap().direct_read, "{}", event.body.name());
        let (w, r, value) = registry.decode_value(&bytes, &[Kind::Event]).unwrap();
        let via_value: InboundEvent = crate::codec::family_from_value(w, r, value).unwrap();
        assert_eq!(registry.decode_family_direct::<InboundEvent>(&bytes), Some(via_value));
    }
    for command in samples::commands() {
        let bytes = encode_command(&command).unwrap();
        assert!(registry.schema_of(&bytes).unwrap().direct_read, "{}", command.body.name());
        let (w, r, value) = registry.decode_value(&bytes, &[Kind::Command]).unwrap();
        let via_value: Command = crate::codec::family_from_value(w, r, value).unwrap();
        assert_eq!(registry.decode_family_direct::<Command>(&bytes), Some(via_value));
    }
    for event in samples::journal_events() {
        let bytes = encode_journal(&event).unwrap();
        assert!(registry.schema_of(&bytes).unwrap().direct_read, "{}", event.body.name());
        let (w, r, value) = registry.decode_value(&bytes, &[Kind::Journal]).unwrap();
        let via_value: JournalEvent = crate::codec::family_from_value(w, r, value).unwrap();
        assert_eq!(registry.decode_family_direct::<JournalEvent>(&bytes), Some(via_value));
    }
    let bytes = encode_checkpoint(&samples::checkpoint()).unwrap();
    assert_eq!(registry.decode_checkpoint_direct(&bytes), Some(samples::checkpoint()));
}

#[test]
fn the_direct_reader_refuses_cut_padded_and_corrupt_datums() {
    let registry = Registry::embedded();
    let bytes = encode_event(&samples::events().remove(0)).unwrap();
    assert!(registry.decode_family_direct::<InboundEvent>(&bytes).is_some());
    for cut in 5..bytes.len() {
        assert_eq!(registry.decode_family_direct::<InboundEvent>(&bytes[..cut]), None, "cut at {cut}");
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(registry.decode_family_direct::<InboundEvent>(&padded), None);
    // A datum of another kind is not read as an event.
    let command = encode_command(&samples::commands().remove(0)).unwrap();
    assert_eq!(registry.decode_family_direct::<InboundEvent>(&command), None);
    // Invalid UTF-8 in the first string (the event id, after the 5-byte header and its length).
    let mut bad = bytes.clone();
    bad[6] = 0xff;
    assert_eq!(registry.decode_family_direct::<InboundEvent>(&bad), None);
    assert!(decode_event(&bad).is_err());
}

/// Found by `make fuzz` (target `avro_event`): an 84-byte inbound record whose array claims
/// hundreds of millions of items made apache-avro reserve 30 GB up front and abort the
/// process, so one poison record would have crashed the coordinator on every restart.
#[test]
fn an_array_claiming_millions_of_items_is_a_decode_error_not_an_abort() {
    let hex = "00000000010a6576742d30000a524543240000000000000000ffffff\
               ff0300000000000000ffffffffff00000000000000000000000000e5\
               e5e5e5e5e5e5e5e5e50000feffff8830000000000000000000000000";
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    assert_eq!(bytes.len(), 84);
    let err = decode_event(&bytes).unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
    assert!(err.to_string().contains(&format!("maximum allowed: {}", registry::MAX_DECODE_LEN)), "{err}");
}
