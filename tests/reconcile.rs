//! Stock reconciliation through a node, as a warehouse manager sees it: the scheduled run
//! reads the warehouse double's stock through the connector (signed, paged); a drift
//! injected into the warehouse's stock is found within one scheduled run and raised as a
//! `RECONCILIATION_MISMATCH` with both figures and the last movement on each side; once
//! the drift is corrected the next run closes it. The `waybill_reconciliation_*` metrics
//! are scraped from `/metrics`, and an on-demand run through gRPC `Reconcile` answers the
//! report and writes it as JSON.

use std::time::{Duration, Instant};

use waybill_control::client::{self, ClientOptions};
use waybill_control::proto;
use waybill_domain::ExceptionCategory;
use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig};
use waybill_doubles::stock::StockLedger;
use waybill_server::config::Config;
use waybill_server::connectors::ConnectorSettings;
use waybill_server::demo::world;
use waybill_server::node::{self, Node};
use waybill_telemetry::metrics as names;

const TOKENS: &str = r#"
[[tokens]]
token = "olga-operator-token-0006"
identity = "olga"
role = "operator"

[[tokens]]
token = "vera-viewer-token-000009"
identity = "vera"
role = "viewer"
"#;

fn wait(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scrape(base: &str, name: &str) -> Option<f64> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = agent.get(format!("{base}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape.samples.into_iter().find(|s| s.metric == name && s.labels.get("kind") == Some("stock")).map(|s| {
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        }
    })
}

#[test]
fn a_drift_in_the_warehouse_is_found_by_the_next_scheduled_run_with_its_evidence_and_closed_once_corrected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let skus: Vec<String> = (0..7).map(|i| format!("SKU-{i:04}")).collect();
    let ledger = StockLedger::opening(skus.clone(), 100_000);
    let wms = HttpTarget::start(HttpTargetConfig {
        reads: Some(("/v1/stock".into(), ledger.reads())),
        ..HttpTargetConfig::new(b"s3cret".to_vec(), |_| Answer::Accepted)
    });
    std::fs::write(dir.join("wms.hmac"), "s3cret").unwrap();
    std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();

    let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
    cfg.log.fsync = "never".into();
    cfg.ingest.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.tokens_file = Some(dir.join("tokens.toml"));
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.connectors.insert(
        "wms".into(),
        ConnectorSettings {
            kind: "http".into(),
            url: wms.command_url(),
            stock_url: format!("{}/v1/stock", wms.url()),
            // Three products a page: seven products take three signed reads.
            stock_page: 3,
            hmac_secret_file: Some(dir.join("wms.hmac")),
            ..ConnectorSettings::default()
        },
    );
    // A run every two seconds, in the warehouse's zone.
    cfg.reconcile.schedule = "*/2 * * * * *".into();
    cfg.reconcile.time_zone = "Europe/Berlin".into();
    cfg.reconcile.settle_ms = 200;
    cfg.validate().unwrap();
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log, world::catalog()).unwrap();
    let metrics = format!("http://{}", node.metrics_addr.unwrap());

    // The first scheduled run sets every product's baseline.
    wait("the first run's baselines", 20, || node.projections.stock_checks().unwrap().len() == skus.len());
    let reads = wms.requests().iter().filter(|r| r.path == "/v1/stock").count();
    assert!(reads >= 3, "seven products at three a page are three reads, got {reads}");
    assert_eq!(scrape(&metrics, names::RECONCILIATION_MISMATCHES), Some(0.0));
    assert!(scrape(&metrics, names::RECONCILIATION_LAST_RUN).is_some_and(|t| t > 1.7e9));
    assert!(scrape(&metrics, names::RECONCILIATION_RUNS).is_some_and(|n| n >= 1.0), "runs are counted");

    // Five units of SKU-0003 vanish at the warehouse, with no movement behind them.
    ledger.drift("SKU-0003", -5_000);
    let drifted_at = Instant::now();
    let open =
        |node: &Node| node.projections.exceptions(true, Some(ExceptionCategory::ReconciliationMismatch)).unwrap();
    wait("the finding", 20, || !open(&node).is_empty());
    // Within one scheduled run (two seconds apart) plus the settle interval and the saga.
    assert!(drifted_at.elapsed() < Duration::from_secs(8), "found after {:?}", drifted_at.elapsed());
    let found = open(&node);
    assert_eq!(found.len(), 1, "{found:#?}");
    let x = &found[0];
    assert_eq!(x.order_ref.as_deref(), Some("recon:stock:SKU-0003"));
    for evidence in ["SKU-0003", "95", "100", "5", "opening count", "Count the product"] {
        assert!(x.message.contains(evidence), "{evidence:?} missing from {:?}", x.message);
    }
    wait("the mismatch gauge", 10, || scrape(&metrics, names::RECONCILIATION_MISMATCHES) == Some(1.0));
    // Runs keep firing: the finding is not raised again.
    std::thread::sleep(Duration::from_millis(4_500));
    let raised = node.projections.exceptions(false, Some(ExceptionCategory::ReconciliationMismatch)).unwrap().len();
    assert_eq!(raised, 1, "a standing drift is one finding");

    // An on-demand run through the control plane reports it (operator), and a viewer
    // may not run one.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connect = |token: &str| {
        let opts = ClientOptions {
            server: format!("http://{}", node.control_addr().unwrap()),
            token: Some(token.into()),
            ..ClientOptions::default()
        };
        rt.block_on(client::connect(&opts)).unwrap()
    };
    let mut olga = connect("olga-operator-token-0006");
    let report = rt
        .block_on(olga.reconciliation.reconcile(proto::ReconcileRequest { kind: "stock".into() }))
        .unwrap()
        .into_inner();
    assert_eq!(report.compared, 7);
    assert_eq!(report.findings.len(), 1);
    let f = &report.findings[0];
    assert_eq!(
        (f.sku.as_str(), f.on_hand_milli, f.expected_milli, f.difference_milli),
        ("SKU-0003", 95_000, 100_000, -5_000)
    );
    assert!(f.already_open);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report.report_path).unwrap()).unwrap();
    assert_eq!(json["findings"][0]["sku"], "SKU-0003");
    // The CLI prints the same run as a table, with where its report is.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["reconcile", "stock", "--server", &format!("http://{}", node.control_addr().unwrap())])
        .args(["--token", "olga-operator-token-0006"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["7 products compared", "1 findings", "SKU-0003", "95", "100", "-5", "still open", "report: "] {
        assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
    }
    let mut vera = connect("vera-viewer-token-000009");
    let denied =
        rt.block_on(vera.reconciliation.reconcile(proto::ReconcileRequest { kind: "stock".into() })).unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let other =
        rt.block_on(olga.reconciliation.reconcile(proto::ReconcileRequest { kind: "payroll".into() })).unwrap_err();
    assert_eq!(other.code(), tonic::Code::InvalidArgument);
    assert!(other.message().contains("stock"), "{}", other.message());

    // A count at the warehouse corrects it: the next run closes the finding.
    ledger.drift("SKU-0003", 5_000);
    wait("the finding closed", 20, || open(&node).is_empty());
    let closed = node.projections.exception(&x.exception_id).unwrap().unwrap();
    assert!(closed.resolution.as_deref().is_some_and(|r| r.contains("closed by the run")), "{closed:?}");
    wait("the mismatch gauge back to 0", 10, || scrape(&metrics, names::RECONCILIATION_MISMATCHES) == Some(0.0));
    drop(node);
}
