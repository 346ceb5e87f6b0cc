//! Dead letters through the control plane while the server runs: an operator lists and
//! replays them over gRPC (and with `waybill dlq list|replay --server`), a viewer is
//! refused, and every call is in the audit.

use std::time::{Duration, Instant};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::{System, topic};
use waybill_log::{AppendBatch, Record};
use waybill_server::config::Config;
use waybill_server::node::{self, Node};

const OLGA: &str = "olga-operator-token-0006";
const VERA: &str = "vera-viewer-token-000004";
const BIN: &str = env!("CARGO_BIN_EXE_waybill");

fn clients(rt: &tokio::runtime::Runtime, url: &str, token: &str) -> Clients {
    let opts = ClientOptions { server: url.into(), token: Some(token.into()), ..ClientOptions::default() };
    rt.block_on(client::connect(&opts)).unwrap()
}

fn dead_letters(node: &Node) -> i64 {
    (0..2).map(|p| node.log.end_offset(topic::DLQ, p).unwrap()).sum()
}

fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn operators_list_and_replay_dead_letters_through_the_control_plane_audited() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("tokens.toml"),
        format!(
            "[[tokens]]\ntoken = \"{OLGA}\"\nidentity = \"olga\"\nrole = \"operator\"\n\n[[tokens]]\ntoken = \"{VERA}\"\nidentity = \"vera\"\nrole = \"viewer\"\n"
        ),
    )
    .unwrap();
    let mut cfg = Config { data_dir: tmp.path().join("data"), partitions: 2, ..Config::default() };
    cfg.log.fsync = "never".into();
    cfg.ingest.listen = String::new();
    cfg.metrics.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.tokens_file = Some(tmp.path().join("tokens.toml"));
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), Default::default()).unwrap();
    let url = format!("http://{}", node.control_addr().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // Half-written JSON on the warehouse's topic: the coordinator dead-letters it.
    let garbage = b"{\"order\": \"SO-DLQ-1\", \"qty\": ".to_vec();
    let record = Record::keyed(topic::inbound(System::Wms), b"SO-DLQ-1".to_vec(), garbage.clone());
    log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();
    wait("the dead letter", || dead_letters(&node) == 1);

    // A viewer may not read them; an operator may.
    let list = proto::ListDeadLettersRequest { matching: String::new(), limit: 0 };
    let err = rt.block_on(clients(&rt, &url, VERA).workbench.list_dead_letters(list.clone())).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("operator"), "{}", err.message());
    let r = rt.block_on(clients(&rt, &url, OLGA).workbench.list_dead_letters(list)).unwrap().into_inner();
    assert_eq!(r.total, 1);
    let d = &r.dead_letters[0];
    assert_eq!((d.kind.as_str(), d.source_topic.as_str(), &d.value), ("decode", "waybill.inbound.wms", &garbage));
    assert!(d.reason.contains("magic byte"), "{}", d.reason);

    // The same from the command line, while the server runs.
    let out = std::process::Command::new(BIN)
        .args(["dlq", "list", "--server", &url, "--output", "json"])
        .env("WAYBILL_TOKEN", OLGA)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items[0]["source_topic"], "waybill.inbound.wms", "{items}");

    // Replay: back on its topic, dead-lettered again (the cause is not fixed), and a
    // second replay has nothing left to offer.
    let out = std::process::Command::new(BIN)
        .args(["dlq", "replay", "--server", &url, "--note", "warehouse fixed its serializer"])
        .env("WAYBILL_TOKEN", OLGA)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 1 dead letters"));
    wait("the replayed record to be dead-lettered again", || dead_letters(&node) == 2);
    let again = proto::ReplayDeadLettersRequest { matching: String::new(), note: String::new() };
    let r = rt.block_on(clients(&rt, &url, OLGA).workbench.replay_dead_letters(again)).unwrap().into_inner();
    assert_eq!(r.replayed, 1, "only the new dead letter (the replayed record refused again) is offered");

    // Every call is audited: the viewer's refusal, the operator's listings and replays.
    let mut c = clients(&rt, &url, OLGA);
    let deadline = Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let req = proto::ListAuditRequest { posting_id: topic::DLQ.into(), actor: String::new(), limit: 0 };
        let entries = rt.block_on(c.audit.list_audit(req)).unwrap().into_inner().entries;
        if entries.len() >= 5 || Instant::now() > deadline {
            break entries;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let seen: Vec<(&str, &str, &str)> =
        entries.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.outcome.as_str())).collect();
    for want in [("vera", "dlq-list", "refused"), ("olga", "dlq-list", "listed"), ("olga", "dlq-replay", "replayed")] {
        assert!(seen.contains(&want), "{want:?} in {seen:?}");
    }
    assert!(entries.iter().any(|e| e.reason == "warehouse fixed its serializer"), "{entries:#?}");
    node.shutdown();
}
