//! The `waybill` binary as an operator meets it: configuration mistakes stop start-up
//! with the key and the problem, the dead-letter tools list what was rejected, and a
//! reader removed for good can be forgotten by the embedded log.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_waybill");

fn waybill(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn configuration_errors_name_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("waybill.toml");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    std::fs::write(&cfg, "partitions = 0\n").unwrap();
    let (ok, _, err) = waybill(&["serve", "--config", cfg.to_str().unwrap(), "--data-dir", data], &[]);
    assert!(!ok);
    assert!(err.contains("`partitions`") && err.contains("outside 1..=1024"), "{err}");

    std::fs::write(&cfg, "[ingest]\nlisten = \"localhost\"\n").unwrap();
    let (ok, _, err) = waybill(&["serve", "--config", cfg.to_str().unwrap(), "--data-dir", data], &[]);
    assert!(!ok);
    assert!(err.contains("`ingest.listen`") && err.contains("127.0.0.1:8420"), "{err}");

    let (ok, _, err) = waybill(&["serve", "--data-dir", data], &[("WAYBILL_LOG__FSYNC", "sometimes")]);
    assert!(!ok);
    assert!(err.contains("`log.fsync`") && err.contains("\"batch\""), "{err}");

    std::fs::write(&cfg, "catalog = \"nowhere.toml\"\n").unwrap();
    let (ok, _, err) = waybill(&["serve", "--config", cfg.to_str().unwrap(), "--data-dir", data], &[]);
    assert!(!ok);
    assert!(err.contains("`catalog`") && err.contains("nowhere.toml"), "{err}");
}

#[test]
fn dead_letters_can_be_listed_after_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = waybill(
        &[
            "run",
            "--quiet",
            "--orders",
            "120",
            "--rate",
            "0",
            "--control-listen",
            "",
            "--metrics-listen",
            "",
            "--registry-listen",
            "",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("orders by state") && out.contains("saga latency p50"), "{out}");
    let (ok, out, err) = waybill(&["dlq", "list", "--data-dir", data], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("fails master-data checks"), "{out}");
    assert!(out.contains("schema id 9999 is not in the registry"), "{out}");
    assert!(out.contains("dead letters"), "{out}");
    let (ok, out, err) = waybill(&["dlq", "list", "--data-dir", data, "--output", "json"], &[]);
    assert!(ok, "{err}");
    let items: serde_json::Value = serde_json::from_str(&out).expect("dlq list --output json prints JSON");
    let items = items.as_array().unwrap();
    assert!(
        items.iter().any(|d| d["kind"] == "unknown-schema" && d["source_topic"] == "waybill.inbound.carrier"),
        "{out}"
    );
    assert!(
        items.iter().all(|d| d["reason"].as_str().is_some_and(|r| !r.is_empty()) && d["value_base64"].is_string()),
        "{out}"
    );
    assert!(items.iter().any(|d| d["headers"]["waybill.dlq.kind"] == "decode"), "{out}");
}

#[test]
fn an_unreachable_kafka_is_a_clear_error_naming_the_brokers() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let servers = format!("127.0.0.1:{port}");
    let env = [("WAYBILL_KAFKA__BOOTSTRAP__SERVERS", servers.as_str()), ("WAYBILL_KAFKA__REQUEST_TIMEOUT_MS", "1500")];
    let (ok, _, err) = waybill(&["topics", "plan"], &env);
    assert!(!ok);
    assert!(err.contains(&format!("cannot reach Kafka at {servers}")), "{err}");
    assert!(err.contains("kafka.bootstrap.servers"), "says what to check: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // Transactions are refused with the reason, before any connection.
    let env = [("WAYBILL_KAFKA__BOOTSTRAP__SERVERS", servers.as_str()), ("WAYBILL_KAFKA__TRANSACTIONS", "maybe")];
    let (ok, _, err) = waybill(&["topics", "plan"], &env);
    assert!(!ok);
    assert!(err.contains("`kafka.transactions`") && err.contains("\"maybe\""), "{err}");

    // Without [kafka], `topics` says what it is for.
    let (ok, _, err) = waybill(&["topics", "plan"], &[]);
    assert!(!ok);
    assert!(err.contains("no [kafka] section"), "{err}");
}

#[test]
fn entities_prints_each_company_with_every_layer_applied_and_refuses_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("waybill.toml");
    let templates = format!("{}/../../deploy/entities", env!("CARGO_MANIFEST_DIR"));
    let toml = format!(
        r#"
[policy.posting]
hold_credit_notes_above = 25000

[entities]
default = "acme-fr"
template_dir = {templates:?}

[entities.companies.acme-fr]
name = "Acme Distribution SAS"
template = "fr"
odoo_company_id = 1
bank_accounts = ["FR7630006000011234567890189"]

[entities.companies.acme-us]
name = "Acme Distribution Inc."
template = "us"
odoo_company_id = 2
[entities.companies.acme-us.policy.posting.approval_limits]
approver = 200000
[entities.companies.acme-us.policy.cash]
schedule = "0 30 6 * * MON-FRI"
time_zone = "America/New_York"
"#
    );
    std::fs::write(&cfg, &toml).unwrap();
    let (ok, out, err) = waybill(&["entities", "--config", cfg.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let row =
        |code: &str| out.lines().find(|l| l.starts_with(code)).unwrap_or_else(|| panic!("{code}: {out}")).to_string();
    let fr = row("acme-fr");
    assert!(fr.contains("(default)") && fr.contains("EUR") && fr.contains("VAT0 VAT10 VAT20"), "{fr}");
    assert!(
        fr.contains("5000.00") && fr.contains("approver 10000.00") && fr.contains("as each statement arrives"),
        "{fr}"
    );
    // The entity's own limit over its template's; its cash window; the template's hold.
    let us = row("acme-us");
    assert!(us.contains("USD") && us.contains("2500.00") && us.contains("approver 2000.00"), "{us}");
    assert!(us.contains("senior-approver 50000.00") && us.contains("America/New_York"), "{us}");
    assert!(out.contains("acme-fr: bank accounts FR7630006000011234567890189"), "{out}");
    let (ok, json, _) = waybill(&["entities", "--config", cfg.to_str().unwrap(), "--output", "json"], &[]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[1]["hold_credit_notes_above"], "250.00", "the deployment's [policy] under both: {v}");

    // A typo in an overlay is refused with the entity and the key.
    let typo =
        toml.replace("time_zone = \"America/New_York\"", "time_zone = \"America/New_York\"\nshedule = \"daily\"");
    std::fs::write(&cfg, typo).unwrap();
    let (ok, _, err) = waybill(&["entities", "--config", cfg.to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(err.contains("entities.companies.acme-us") && err.contains("unknown field `shedule`"), "{err}");
}

#[test]
fn a_reader_removed_for_good_is_forgotten_so_retention_stops_waiting_for_it() {
    use waybill_log::{AppendBatch, Position};
    let dir = tempfile::tempdir().unwrap();
    let cfg = waybill_server::config::Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    let topic = "waybill.commands.wms";
    {
        let log = waybill_server::node::open_log(&cfg).unwrap();
        let positions = vec![Position { group: "gone".into(), topic: topic.into(), partition: 0, next_offset: 0 }];
        log.append(AppendBatch { records: vec![], positions }).unwrap();
    }
    let data = dir.path().to_str().unwrap();
    let (ok, out, err) = waybill(&["log", "forget-group", "--group", "gone", "--data-dir", data], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("forgot group \"gone\"'s positions in 1 partitions"), "{out}");
    let log = waybill_server::node::open_log(&cfg).unwrap();
    assert_eq!(log.committed("gone", topic, 0).unwrap(), None);
    drop(log);
    let (ok, out, _) = waybill(&["log", "forget-group", "--group", "gone", "--data-dir", data], &[]);
    assert!(ok && out.contains("nothing to forget"), "{out}");
}
