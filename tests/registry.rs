//! Standard Kafka tooling reads every Waybill topic: the Confluent Schema Registry API
//! that `waybill serve` and `waybill run` serve from the schema catalog answers like a
//! Confluent registry, and after a demo run on a Kafka-protocol broker (Tansu)
//! confluent-kafka's Python `AvroDeserializer`, pointed at that API, decodes every record
//! of every topic — the only records it cannot decode are the garbage the demo injects
//! on purpose.
//!
//! The Python side runs `scripts/registry-check.py` with the venv
//! `scripts/registry-venv.sh` builds (`WAYBILL_REGISTRY_PYTHON`, default
//! `~/.cache/waybill/registry-venv/bin/python`; `make test` builds it first). Like the
//! broker, it fails the test when missing, never skips it.

#[path = "support/proc.rs"]
#[allow(dead_code)] // shared with other test binaries; not every helper is used here
mod proc;
#[path = "support/tansu.rs"]
mod tansu;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use proc::{Proc, free_port};
use serde_json::Value;
use tansu::Broker;

const BIN: &str = env!("CARGO_BIN_EXE_waybill");

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// `(status, content type, JSON body)`.
fn call(method: &str, url: &str, body: Option<&Value>) -> (u16, String, Value) {
    let mut resp = match (method, body) {
        ("GET", _) => agent().get(url).call(),
        ("POST", Some(b)) => agent()
            .post(url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .send(b.to_string().as_bytes()),
        ("PUT", Some(b)) => agent().put(url).send(b.to_string().as_bytes()),
        _ => unreachable!(),
    }
    .expect("the registry answers");
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, ctype, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// The address printed for `what` in the start-up banner (`  schema registry  http://…`).
fn banner_url(line: &str) -> String {
    line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',').to_owned()
}

#[test]
fn serve_prints_every_listener_and_answers_like_a_confluent_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Command::new(BIN);
    c.args(["serve", "--listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(["--registry-listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path());
    let server = Proc::spawn(c);
    let line = server.wait_for_line("the registry's address", Duration::from_secs(60), |l| {
        l.trim_start().starts_with("schema registry")
    });
    let out = server.output();
    for what in ["ingestion", "control plane", "metrics"] {
        assert!(out.lines().any(|l| l.trim_start().starts_with(what) && l.contains("127.0.0.1:")), "{what}: {out}");
    }
    let url = banner_url(&line);

    let (status, ctype, body) = call("GET", &format!("{url}/subjects"), None);
    assert_eq!((status, ctype.as_str()), (200, "application/vnd.schemaregistry.v1+json"));
    assert!(body.as_array().unwrap().iter().any(|s| s == "waybill.journal.Checkpoint"), "{body}");

    // A record's id gives its writer schema: the one in schemas/ids.txt.
    let framed = waybill_schema::encode_checkpoint(&waybill_domain::journal::Checkpoint {
        partition: 0,
        positions: vec![],
        at: waybill_domain::Timestamp(0),
        journal_from: None,
        journal_until: None,
    })
    .unwrap();
    let id = u32::from_be_bytes(framed[1..5].try_into().unwrap());
    let (status, _, body) = call("GET", &format!("{url}/schemas/ids/{id}"), None);
    assert_eq!(status, 200);
    let schema: Value = serde_json::from_str(body["schema"].as_str().unwrap()).unwrap();
    assert_eq!((schema["namespace"].as_str(), schema["name"].as_str()), (Some("waybill.journal"), Some("Checkpoint")));

    let (status, _, body) = call("GET", &format!("{url}/subjects/waybill.journal.Checkpoint/versions/latest"), None);
    assert_eq!((status, body["id"].as_u64()), (200, Some(u64::from(id))));
    let (_, _, body) = call(
        "POST",
        &format!("{url}/subjects/waybill.journal.Checkpoint"),
        Some(&serde_json::json!({"schema": schema.to_string()})),
    );
    assert_eq!(body["id"].as_u64(), Some(u64::from(id)), "{body}");

    // Confluent's error codes.
    for (path, status, code) in [
        ("/schemas/ids/999999", 404, 40403),
        ("/subjects/waybill.journal-value/versions", 404, 40401),
        ("/subjects/waybill.journal.Checkpoint/versions/99", 404, 40402),
        ("/subjects/waybill.journal.Checkpoint/versions/newest", 422, 42202),
    ] {
        let (s, _, body) = call("GET", &format!("{url}{path}"), None);
        assert_eq!((s, body["error_code"].as_u64()), (status, Some(code)), "{path}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let (s, _, body) = call(
        "POST",
        &format!("{url}/subjects/waybill.journal.Checkpoint"),
        Some(&serde_json::json!({"schema": "{\"type\": \"nonsense\"}"})),
    );
    assert_eq!((s, body["error_code"].as_u64()), (422, Some(42201)), "{body}");
    let (s, _, body) = call("PUT", &format!("{url}/config"), Some(&serde_json::json!({"compatibility": "NONE"})));
    assert_eq!((s, body["error_code"].as_u64()), (422, Some(42205)), "{body}");
    assert_eq!(
        call("GET", &format!("{url}/config"), None).2,
        serde_json::json!({"compatibilityLevel": "BACKWARD_TRANSITIVE"})
    );
    assert_eq!(call("GET", &format!("{url}/config/waybill.command.PostInvoice"), None).2["compatibilityLevel"], "FULL");
    assert_eq!(call("GET", &format!("{url}/mode"), None).2, serde_json::json!({"mode": "READONLY"}));

    // A release manager's check against a running deployment: nothing changes.
    let out = Command::new(BIN).args(["schemas", "check", "--against", &url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("0 new schema version(s), 0 incompatible change(s)"), "{text}");
}

/// A copy of `schemas/` as the last release had it, changed by `edit`.
fn released_schemas(edit: impl FnOnce(&std::path::Path)) -> tempfile::TempDir {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let dir = tempfile::tempdir().unwrap();
    for entry in walk(&src) {
        let to = dir.path().join(entry.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    edit(dir.path());
    dir
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn schemas_check_lists_new_versions_and_fails_on_an_edited_release() {
    // The release did not have Checkpoint v2 yet: this build adds it, compatibly.
    let older = released_schemas(|d| {
        let ids = std::fs::read_to_string(d.join("ids.txt")).unwrap();
        std::fs::write(d.join("ids.txt"), ids.replace("91 waybill.journal.Checkpoint v2\n", "")).unwrap();
    });
    let out = Command::new(BIN).args(["schemas", "check", "--against"]).arg(older.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("new version    waybill.journal.Checkpoint v2 (id 91): ok"), "{text}");
    assert!(text.contains("safe to deploy"), "{text}");
    let out = Command::new(BIN)
        .args(["schemas", "check", "--output", "json", "--against"])
        .arg(older.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["safe"], true, "{report}");
    assert_eq!(report["changes"][0]["kind"], "new-version", "{report}");
    assert_eq!(report["changes"][0]["subject"], "waybill.journal.Checkpoint", "{report}");
    assert!(report["changes"][0]["entry"]["approved_by"].is_string(), "{report}");

    // The release's PostInvoice v1 differs from this build's: someone edited a released file.
    let edited = released_schemas(|d| {
        let p = d.join("waybill.command/PostInvoice/v1.avsc");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["fields"][1]["type"]["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "legacy", "type": "string", "doc": "x"}));
        std::fs::write(&p, v.to_string()).unwrap();
    });
    let out = Command::new(BIN).args(["schemas", "check", "--against"]).arg(edited.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("EDITED         waybill.command.PostInvoice v1 (id 24): INCOMPATIBLE"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("incompatible schema changes"));
}

fn python() -> PathBuf {
    let python = std::env::var_os("WAYBILL_REGISTRY_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/waybill/registry-venv/bin/python")
    });
    assert!(
        python.exists(),
        "this test needs confluent-kafka's Python client at {} (WAYBILL_REGISTRY_PYTHON); install it with scripts/registry-venv.sh",
        python.display()
    );
    python
}

#[test]
fn confluent_kafka_python_decodes_every_record_of_every_topic_after_a_demo_on_kafka() {
    let python = python();
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let registry_port = free_port();
    let control_port = free_port();
    let orders = 120;
    let mut c = Command::new(BIN);
    // The demo through its connectors: the systems post to ingestion, on a free port.
    c.args(["run", "--quiet", "--stay", "--listen", "127.0.0.1:0", "--metrics-listen", ""])
        .args(["--control-listen", &format!("127.0.0.1:{control_port}")])
        .args(["--registry-listen", &format!("127.0.0.1:{registry_port}")])
        .args(["--rate", "60", "--pick-timeout", "4", "--timeout", "240", "--orders", &orders.to_string()])
        .arg("--data-dir")
        .arg(tmp.path())
        .args(["--kafka", &broker.addr, "--kafka-property", "producer.batch.num.messages=1"]);
    let demo = Proc::spawn(c);
    demo.wait_for_line("the demo's summary", Duration::from_secs(300), |l| l.contains("press Ctrl-C to stop"));
    let summary = demo.output();
    let injected: u64 = summary
        .lines()
        .find(|l| l.contains("of which injected garbage"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("the summary names the injected garbage:\n{summary}"));
    assert!(injected > 0, "the demo injected garbage:\n{summary}");
    // An operator's look at the dead letters is audited on waybill.audit.
    let out = Command::new(BIN)
        .args(["dlq", "list", "--server", &format!("http://127.0.0.1:{control_port}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/registry-check.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--bootstrap", &broker.addr, "--registry", &format!("http://127.0.0.1:{registry_port}")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "registry-check.py failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    drop(demo);

    let count = |topic: &str, what: &str| report[topic][what].as_u64().unwrap_or(0);
    let topics: Vec<&String> = report.as_object().unwrap().keys().collect();
    for t in [
        "waybill.journal",
        "waybill.control",
        "waybill.dlq",
        "waybill.audit",
        "waybill.inbound.odoo",
        "waybill.commands.wms",
        "waybill.connect.state",
    ] {
        assert!(count(t, "records") > 0, "{t} has records: {report:#}");
    }
    let mut decoded = 0;
    for t in &topics {
        decoded += count(t, "decoded");
        let expected_failures = match t.as_str() {
            // Half-written JSON to the warehouse's topic, an unknown schema id to the
            // carrier's, one each per bad order; each also kept in the dead-letter topic.
            "waybill.inbound.wms" | "waybill.inbound.carrier" => injected / 2,
            "waybill.dlq" => injected,
            _ => 0,
        };
        assert_eq!(
            count(t, "failed"),
            expected_failures,
            "{t}: only the injected garbage may fail to decode ({injected} injected): {:#}",
            report[t.as_str()]
        );
        assert_eq!(count(t, "decoded") + count(t, "failed"), count(t, "records"), "{t}");
    }
    let journal = &report["waybill.journal"]["by_schema"];
    assert!(journal["waybill.journal.Checkpoint"].as_u64() > Some(0), "{journal}");
    assert!(journal["waybill.journal.OrderAccepted"].as_u64() >= Some(orders as u64 / 2), "{journal}");
    eprintln!(
        "decoded {decoded} records on {} topics; {} undecodable, all injected garbage",
        topics.len(),
        2 * injected
    );
}
