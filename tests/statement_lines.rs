//! Applying an unmatched bank-statement line by hand through a running node and its gRPC
//! control plane, with finance behind the HTTP connector (a double that posts every
//! journal entry it is sent and answers with finance's entry number). A statement from a
//! payer nobody knows queues its lines; a viewer may not apply one, an allocation that
//! does not add up is refused saying what to do, and an operator's allocation reaches
//! finance once, as the line's one journal entry, with the remainder on the customer's
//! account. A second application of the line is refused, the audit shows who applied
//! what and why, and once finance has posted every line the statement completes.

#[path = "support/drive.rs"]
mod drive;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::cash::{BankLine, BankLineKind, OpenItem, StatementReceived, correlation_key};
use waybill_domain::{EventBody, EventMeta, ExceptionCategory, InboundEvent, Money, SourceRef, System, Timestamp};
use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig};
use waybill_server::config::Config;
use waybill_server::connectors::ConnectorSettings;
use waybill_server::node::{self, Node};

const OLGA: &str = "olga-operator-token-0006";
const VERA: &str = "vera-viewer-token-000008";

const TOKENS: &str = r#"
[[tokens]]
token = "olga-operator-token-0006"
identity = "olga"
role = "operator"

[[tokens]]
token = "vera-viewer-token-000008"
identity = "vera"
role = "viewer"

[[tokens]]
token = "bank-importer-token-00009"
identity = "bank-importer"
system = "bank"
"#;

const STATEMENT: &str = "camt053|DE00TEST|S-11";

fn line(id: &str, amount: i64, payer: &str, reference: Option<&str>) -> BankLine {
    BankLine {
        line_id: id.into(),
        kind: BankLineKind::Payment,
        booking_date: Some(Timestamp(1_700_000_000_000_000)),
        amount: Money(amount),
        currency: "EUR".into(),
        fee: Money(0),
        counterparty: Some(payer.into()),
        creditor_references: vec![],
        end_to_end_id: None,
        remittance: reference.map(|r| vec![r.to_string()]).unwrap_or_default(),
        bank_reference: None,
    }
}

fn item(number: &str, customer: &str, open: i64) -> OpenItem {
    OpenItem {
        number: number.into(),
        customer_ref: customer.into(),
        customer_name: format!("Kunde {customer} GmbH"),
        open_amount: Money(open),
        currency: "EUR".into(),
        due_at: None,
    }
}

/// L0 pays INV-0 by its reference; L1 (120.00) and L2 (30.00) come from payers nobody
/// knows and name no invoice: both are queued.
fn statement() -> InboundEvent {
    let r = StatementReceived {
        statement_key: STATEMENT.into(),
        statement_id: "S-11".into(),
        format: "camt.053".into(),
        account: "DE00TEST".into(),
        currency: "EUR".into(),
        checksum: "e".repeat(64),
        lines: vec![
            line("L0", 100_00, "Kunde C0 GmbH", Some("INV-0")),
            line("L1", 120_00, "Unbekannt AG", None),
            line("L2", 30_00, "Irgendwer KG", None),
        ],
        open_items: vec![item("INV-0", "C0", 100_00), item("INV-1", "C1", 150_00), item("INV-2", "C2", 200_00)],
        entity: None,
    };
    InboundEvent {
        meta: EventMeta {
            event_id: "bank:S-11".into(),
            source: SourceRef::new(System::Bank, "S-11"),
            correlation_key: correlation_key(STATEMENT),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body: EventBody::StatementReceived(Box::new(r)),
    }
}

/// Finance posts every journal entry it is sent and answers with the entry number.
fn finance() -> HttpTarget {
    HttpTarget::start(HttpTargetConfig::new(b"s3cret".to_vec(), |got| {
        let Some(data) = got.json.as_ref().map(|j| j["data"].clone()) else { return Answer::Accepted };
        let line = data["line_id"].as_str().unwrap_or_default().to_string();
        Answer::ok(serde_json::json!({"events": [{
            "type": "StatementLinePosted",
            "meta": {
                "event_id": format!("finance:{}", got.key),
                "source": {"system": "FINANCE", "id": format!("BNK1/{line}")},
                "correlation_key": format!("stmt:{}", data["statement_key"].as_str().unwrap_or_default()),
                "occurred_at": 0
            },
            "data": {"statement_key": data["statement_key"], "line_id": line, "entry_number": format!("BNK1/{line}")}
        }]}))
    }))
}

struct Harness {
    _dir: tempfile::TempDir,
    node: Option<Node>,
    finance: HttpTarget,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Harness {
        Harness::start_with(|_| {})
    }

    fn start_with(tweak: impl FnOnce(&mut Config)) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
        std::fs::write(dir.join("finance.hmac"), "s3cret").unwrap();
        let finance = finance();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = "127.0.0.1:0".into();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = String::new();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        cfg.connectors.insert(
            "finance".into(),
            ConnectorSettings {
                kind: "http".into(),
                url: finance.command_url(),
                hmac_secret_file: Some(dir.join("finance.hmac")),
                backoff_base_ms: 20,
                ..ConnectorSettings::default()
            },
        );
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let node = Node::start(&cfg, log, drive::catalog()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { _dir: tmp, node: Some(node), finance, rt }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn clients(&self, token: &str) -> Clients {
        let opts = ClientOptions {
            server: format!("http://{}", self.node().control_addr().unwrap()),
            token: Some(token.to_string()),
            ..ClientOptions::default()
        };
        self.rt.block_on(client::connect(&opts)).unwrap()
    }

    fn assign(
        &self,
        c: &mut Clients,
        r: proto::AssignStatementLineRequest,
    ) -> Result<proto::ExceptionActionResponse, tonic::Status> {
        self.rt.block_on(c.workbench.assign_statement_line(r)).map(|r| r.into_inner())
    }

    /// Waits until `what` holds.
    fn wait(&self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

fn allocation(invoice: &str, amount_minor: i64) -> proto::LineAllocation {
    proto::LineAllocation { invoice: invoice.into(), amount_minor }
}

#[test]
fn an_operator_applies_a_queued_line_by_hand_and_finance_gets_its_one_entry() {
    let h = Harness::start();
    drive::append(h.node(), statement());
    let x1 = format!("cash:{STATEMENT}/unmatched-payment/1");
    h.wait("line L1 queued", || h.node().projections.exception(&x1).unwrap().is_some_and(|x| x.is_open()));
    let key = |line: &str| format!("stmt-line:{STATEMENT}#{line}");
    h.wait("line L0's entry at finance", || h.finance.command(&key("L0")).is_some());

    // A viewer may look, not apply.
    let ask = |allocations: Vec<proto::LineAllocation>, on_account: &str| proto::AssignStatementLineRequest {
        exception_id: x1.clone(),
        allocations,
        on_account: on_account.into(),
        note: "Unbekannt AG is C1's parent; C1's buyer confirmed by phone".into(),
        ..Default::default()
    };
    let mut vera = h.clients(VERA);
    let e = h.assign(&mut vera, ask(vec![allocation("INV-1", 120_00)], "")).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{}", e.message());

    // An allocation that does not add up is refused with what to do.
    let mut olga = h.clients(OLGA);
    let e = h.assign(&mut olga, ask(vec![allocation("INV-1", 100_00)], "")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert!(
        e.message()
            .contains("20.00 EUR is not allocated; apply it to an invoice or leave it on the customer's account"),
        "{}",
        e.message()
    );
    let e = h.assign(&mut olga, ask(vec![allocation("INV-7", 120_00)], "")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("invoice INV-7 is not among the receivables open"), "{}", e.message());

    // 100.00 to INV-1, the rest on C1's account.
    let done = h.assign(&mut olga, ask(vec![allocation("INV-1", 100_00)], "C1")).unwrap();
    assert_eq!((done.action.as_str(), done.outcome.as_str()), ("assign-line", "applied"));
    assert_eq!(done.idempotency_key, key("L1"));
    assert!(done.exception.as_ref().is_some_and(|x| x.resolved_at_us > 0), "{:?}", done.exception);
    h.wait("line L1's entry at finance", || h.finance.command(&key("L1")).is_some());
    let sent = h.finance.command(&key("L1")).unwrap();
    let data = &sent.json.as_ref().unwrap()["data"];
    assert_eq!(data["rule"], "manual");
    assert_eq!(data["allocations"], serde_json::json!([{"invoice": "INV-1", "amount": 100_00}]));
    assert_eq!((data["remainder"].as_i64(), data["on_account"].as_str()), (Some(20_00), Some("C1")));

    // Applying the line again is refused: one journal entry per statement line, ever.
    let e = h.assign(&mut olga, ask(vec![allocation("INV-2", 120_00)], "")).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    let by_line = proto::AssignStatementLineRequest {
        statement_key: format!("stmt:{STATEMENT}"),
        line_id: "L1".into(),
        ..ask(vec![allocation("INV-2", 120_00)], "")
    };
    let by_line = proto::AssignStatementLineRequest { exception_id: String::new(), ..by_line };
    let e = h.assign(&mut olga, by_line).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(e.message().contains("line L1 has its journal entry already"), "{}", e.message());

    // The audit has who applied what, and why.
    let audit = || {
        let req = proto::ListAuditRequest { posting_id: x1.clone(), actor: "olga".into(), limit: 20 };
        h.rt.block_on(olga.clone().audit.list_audit(req)).unwrap().into_inner().entries
    };
    h.wait("the audit's verdict", || audit().iter().any(|e| e.outcome == "applied"));
    let entries = audit();
    let applied = entries.iter().find(|e| e.outcome == "applied").unwrap();
    assert_eq!(
        (applied.action.as_str(), applied.role.as_str(), applied.order_ref.as_str()),
        ("assign-line", "operator", &*format!("stmt:{STATEMENT}"))
    );
    assert!(
        applied.reason.contains("INV-1 100.00, the rest on account of C1: Unbekannt AG is C1's parent"),
        "{}",
        applied.reason
    );
    assert!(
        applied.detail.contains("applied by hand by olga (operator): INV-1 100.00 EUR, 20.00 EUR on account of C1"),
        "{}",
        applied.detail
    );
    let refused = entries.iter().filter(|e| e.action == "assign-line" && e.outcome == "refused").count();
    assert_eq!(refused, 3, "the refusals at the edge are audited too: {entries:#?}");

    // The other queued line, named by statement and line, wholly on account; once finance
    // has posted every line, the statement is done.
    let l2 = proto::AssignStatementLineRequest {
        statement_key: STATEMENT.into(),
        line_id: "L2".into(),
        on_account: "C2".into(),
        note: "a prepayment of C2, per its accounting".into(),
        ..Default::default()
    };
    assert_eq!(h.assign(&mut olga, l2).unwrap().idempotency_key, key("L2"));
    h.wait("the statement completed", || {
        let view = h.node().projections.order(&format!("stmt:{STATEMENT}")).unwrap();
        view.is_some_and(|o| {
            o.sagas.iter().any(|s| s.saga_id == format!("cash:{STATEMENT}") && s.completed_at.is_some())
        })
    });
    for line in ["L0", "L1", "L2"] {
        assert_eq!(h.finance.duplicates_of(&key(line)), 0, "{line} reached finance once");
    }
    assert_eq!(h.finance.received().len(), 3, "one journal entry per line");
}

/// The receivables open when the camt.053 example is imported, as finance exports them.
const OPEN_ITEMS: &str = "number,customer_ref,customer_name,open_amount,currency,due_date
INV/2026/0001,C001,Nordwind Handels GmbH,1190.00,EUR,2026-12-31
INV/2026/00010,C001,Nordwind Handels GmbH,990.00,EUR,
INV/2026/0002,C002,Alpenblick AG,1000.00,EUR,
INV/2026/0003,C003,Bergmann KG,2000.00,EUR,
INV/2026/0004,C004,Müller GmbH,800.00,EUR,
INV/2026/0005,C001,Nordwind Handels GmbH,1450.00,EUR,
";

/// `waybill statements import` reads a real camt.053 file and the open items exported from
/// finance, posts the statement to ingestion as the bank, and cash application applies or
/// queues every line; importing the same file again changes nothing.
#[test]
fn a_camt053_file_imported_twice_is_applied_once() {
    let h = Harness::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("open.csv"), OPEN_ITEMS).unwrap();
    let file = format!("{}/../bank/tests/data/camt053_001_02_statement.xml", env!("CARGO_MANIFEST_DIR"));
    let import = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
            .args(["statements", "import", &file, "--open-items"])
            .arg(dir.path().join("open.csv"))
            .args(["--ingest", &format!("http://{}", h.node().ingest_addr.unwrap())])
            .args(["--token", "bank-importer-token-00009"])
            .output()
            .unwrap()
    };
    let out = import();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "stdout: {said}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("posted as bank:import:"), "{said}");
    let applied_or_queued = |h: &Harness| {
        h.node()
            .projections
            .statements()
            .unwrap()
            .iter()
            .flat_map(|(_, t)| t.iter())
            .filter(|t| t.event == "LineApplied" || (t.event == "ExceptionRaised" && t.summary.contains("unmatched")))
            .count()
    };
    h.wait("the statement's lines", || applied_or_queued(&h) > 0);
    h.wait("finance's entries", || !h.finance.received().is_empty());
    std::thread::sleep(Duration::from_millis(300));
    let (lines, entries) = (applied_or_queued(&h), h.finance.received().len());
    assert_eq!(h.node().projections.statements().unwrap().len(), 1);

    // The same file again: posted, and nothing changes.
    let again = import();
    assert!(
        again.status.success(),
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((applied_or_queued(&h), h.finance.received().len()), (lines, entries));
    assert_eq!(h.node().projections.statements().unwrap().len(), 1);

    // Without the bank's token, ingestion refuses and the CLI says so.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["statements", "import", &file, "--open-items"])
        .arg(dir.path().join("open.csv"))
        .args(["--ingest", &format!("http://{}", h.node().ingest_addr.unwrap())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refused by ingestion (401)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn in_scheduled_windows_a_statement_is_applied_at_the_window_not_on_import() {
    // One window a minute, at a second about four seconds from now (UTC).
    let second = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 4) % 60;
    let h = Harness::start_with(|cfg| {
        cfg.policy.cash.schedule = format!("{second} * * * * *");
        cfg.policy.cash.time_zone = "UTC".into();
    });
    drive::append(h.node(), statement());
    let timeline = |h: &Harness| -> Vec<String> {
        h.node().projections.statements().unwrap().iter().flat_map(|(_, t)| t.iter().map(|e| e.event.clone())).collect()
    };
    h.wait("the import", || timeline(&h).iter().any(|e| e == "ApplicationScheduled"));
    assert!(h.finance.received().is_empty(), "nothing is sent before the window");
    assert!(!timeline(&h).iter().any(|e| e == "LineApplied"), "{:?}", timeline(&h));
    // The coordinator fires the window from its logged timer ticks: the matched line is
    // sent, the two payers nobody knows are queued.
    h.wait("the window", || !h.finance.received().is_empty());
    let events = timeline(&h);
    let at = |name: &str| events.iter().position(|e| e == name).unwrap();
    assert!(at("ApplicationScheduled") < at("LineApplied"), "{events:?}");
    h.wait("the queued lines", || {
        h.node().projections.exceptions(true, Some(ExceptionCategory::UnmatchedPayment)).unwrap().len() == 2
    });
    assert_eq!(h.finance.received().len(), 1);
}
