//! A company schema registry: `waybill schemas push` registers the catalog in a registry
//! double that follows the Confluent API, and `waybill serve` with `[registry] url` then
//! writes and reads records with that registry's ids — also a record whose producer
//! registered the same schema under yet another id — and refuses to start, naming the
//! subject, when the registry holds a version it cannot read.

#[path = "support/proc.rs"]
#[allow(dead_code)] // shared with other test binaries; not every helper is used here
mod proc;
#[path = "support/registry_double.rs"]
mod registry_double;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use proc::{Proc, free_port};
use registry_double::Double;
use waybill_domain::{System, topic};
use waybill_schema::Registry;

const BIN: &str = env!("CARGO_BIN_EXE_waybill");

fn push(url: &str) -> (bool, String) {
    let out = Command::new(BIN).args(["schemas", "push", "--registry", url]).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn serve(dir: &std::path::Path, registry: &str, ingest_port: u16) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("waybill.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\npartitions = 2\n[ingest]\nlisten = \"127.0.0.1:{ingest_port}\"\nallow_anonymous = true\n[registry]\nurl = {registry:?}\n",
            dir.join("data")
        ),
    )
    .unwrap();
    let mut c = Command::new(BIN);
    c.args(["serve", "--demo-catalog", "--control-listen", "", "--metrics-listen", "", "--config"]).arg(&config);
    Proc::spawn(c)
}

/// The sample OrderReleased framed with schema id `id`.
fn order_framed_with(id: u32, order: &str) -> Vec<u8> {
    let mut e = waybill_schema::samples::events().into_iter().find(|e| e.body.name() == "OrderReleased").unwrap();
    e.meta.event_id = format!("odoo:release:{order}");
    e.meta.correlation_key = order.into();
    e.meta.source = waybill_domain::SourceRef::new(System::Odoo, order);
    if let waybill_domain::EventBody::OrderReleased(o) = &mut e.body {
        o.order_ref = order.into();
    }
    let mut bytes = waybill_schema::encode_event(&e).unwrap();
    bytes[1..5].copy_from_slice(&id.to_be_bytes());
    bytes
}

fn post(port: u16, body: &[u8]) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut r = agent
        .post(&format!("http://127.0.0.1:{port}/v1/events"))
        .header("Content-Type", "application/vnd.confluent.avro")
        .send(body)
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

#[test]
fn push_registers_the_catalog_and_serve_reads_and_writes_the_registry_ids() {
    let double = Double::start();
    // Another team's subject: left alone.
    double.state.lock().unwrap().register("orders-value", r#"{"type": "record", "name": "Order", "fields": []}"#);

    let (ok, out) = push(&double.url);
    assert!(ok, "{out}");
    let catalog = Registry::embedded();
    let count = catalog.iter().count();
    assert!(out.contains(&format!("{count} schema versions registered")), "{out}");
    let (latest_order_id, ids) = {
        let st = double.state.lock().unwrap();
        assert_eq!(st.schemas.len(), count + 1, "every version, once");
        assert_eq!(st.levels.get("waybill.command.PostInvoice").map(String::as_str), Some("FULL"));
        assert_eq!(st.levels.get("waybill.event.OrderReleased").map(String::as_str), Some("BACKWARD_TRANSITIVE"));
        let latest = catalog.latest("waybill.event.OrderReleased").unwrap();
        let id = st
            .schemas
            .iter()
            .find(|(_, (s, v, _))| s == "waybill.event.OrderReleased" && *v == latest.version())
            .map(|(id, _)| *id)
            .unwrap();
        (id, st.schemas.keys().copied().collect::<BTreeSet<u32>>())
    };
    assert_ne!(latest_order_id, catalog.latest("waybill.event.OrderReleased").unwrap().id());
    // Pushing again changes nothing.
    let (ok, out) = push(&double.url);
    assert!(ok, "{out}");
    assert_eq!(double.state.lock().unwrap().schemas.len(), count + 1);

    // A producer registered the same schema under its topic's subject: another id.
    let producer_id = double
        .state
        .lock()
        .unwrap()
        .register("waybill.inbound.odoo-value", catalog.latest("waybill.event.OrderReleased").unwrap().json());
    assert!(!ids.contains(&producer_id));

    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = serve(tmp.path(), &double.url, port);
    server.wait_for_line("the listener banner", Duration::from_secs(60), |l| l.trim_start().starts_with("ingestion"));
    let (status, body) = post(port, &order_framed_with(latest_order_id, "SO-REG-1"));
    assert_eq!(status, 202, "the registry's id is read: {body}");
    let (status, body) = post(port, &order_framed_with(producer_id, "SO-REG-2"));
    assert_eq!(status, 202, "the same schema under the producer's own id is read: {body}");
    let (status, body) = post(port, &order_framed_with(77, "SO-REG-3"));
    assert_eq!(status, 400, "a catalog id is not an id of this registry: {body}");
    std::thread::sleep(Duration::from_secs(2));
    drop(server);

    // Everything Waybill wrote carries the registry's ids.
    let cfg = waybill_server::config::Config { data_dir: tmp.path().join("data"), partitions: 2, ..Default::default() };
    let log = waybill_server::node::open_log(&cfg).unwrap();
    let mut written = Vec::new();
    for t in [topic::JOURNAL.to_string(), topic::commands(System::Wms), topic::inbound(System::Odoo)] {
        for p in 0..2 {
            for r in log.read(&t, p, 0, 1000).unwrap() {
                written.push((t.clone(), u32::from_be_bytes(r.value[1..5].try_into().unwrap())));
            }
        }
    }
    assert!(written.iter().any(|(t, _)| t == topic::JOURNAL), "the orders were processed: {written:?}");
    let foreign: Vec<_> = written
        .iter()
        .filter(|(t, id)| !(ids.contains(id) || (t.starts_with("waybill.inbound") && *id == producer_id)))
        .collect();
    assert!(foreign.is_empty(), "records with ids the registry did not assign: {foreign:?}");
}

#[test]
fn serve_refuses_to_start_when_the_registry_holds_a_version_it_cannot_read() {
    let double = Double::start();
    let (ok, out) = push(&double.url);
    assert!(ok, "{out}");
    // Someone registered a PostInvoice whose shipment_id is a number.
    let latest = Registry::embedded().latest("waybill.command.PostInvoice").unwrap();
    let mut v: serde_json::Value = serde_json::from_str(latest.json()).unwrap();
    let fields = v["fields"][1]["type"]["fields"].as_array_mut().unwrap();
    let f = fields.iter_mut().find(|f| f["name"] == "shipment_id").unwrap();
    f["type"] = "long".into();
    double.state.lock().unwrap().register("waybill.command.PostInvoice", &v.to_string());

    let tmp = tempfile::tempdir().unwrap();
    let mut server = serve(tmp.path(), &double.url, free_port());
    let status = server.child.wait().unwrap();
    let out = server.output();
    assert!(!status.success(), "{out}");
    assert!(out.contains("refusing to start") && out.contains("waybill.command.PostInvoice"), "{out}");
    assert!(out.contains("shipment_id"), "names the field: {out}");

    // And push refuses too, naming the subject.
    let (ok, out) = push(&double.url);
    assert!(!ok && out.contains("waybill.command.PostInvoice"), "{out}");
}
