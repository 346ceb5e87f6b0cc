//! End to end, through the `waybill` binary: SIGKILL the orchestrator at random moments
//! under demo load (the systems in process, so the run can resume), restart it on the
//! same data directory, and check what a user would
//! check afterwards: every saga reached its end, no command was emitted twice, and the
//! dead-letter topic holds only the bad input the simulator injected. Then delete the
//! projections, rebuild them, and compare byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_domain::topic;
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions};
use waybill_projection::{OrderStatus, ProjectionStore};
use waybill_saga::coordinator::headers;
use waybill_server::demo::world::{self, Mix};

const BIN: &str = env!("CARGO_BIN_EXE_waybill");

/// `waybill run` on `dir`: through the connectors and the doubles, or with the systems
/// in process (`--in-process`), which is what a resumed run needs — the doubles keep their
/// data in memory and die with the process.
fn demo(dir: &Path, orders: usize, in_process: bool) -> Command {
    let mut c = Command::new(BIN);
    c.arg("run");
    if in_process {
        c.args(["--in-process", "--listen", ""]);
    }
    c.args([
        "--quiet",
        "--control-listen",
        "",
        "--metrics-listen",
        "",
        "--registry-listen",
        "",
        "--pick-timeout",
        "1.0",
        "--rate",
        "500",
        "--timeout",
        "180",
    ])
    .arg("--orders")
    .arg(orders.to_string())
    .arg("--data-dir")
    .arg(dir)
    .stdin(Stdio::null());
    c
}

fn open_log(dir: &Path) -> Arc<dyn EventLog> {
    Arc::new(EmbeddedLog::open(&dir.join("log"), EmbeddedOptions::default()).expect("the log opens after a crash"))
}

fn all_records(log: &dyn EventLog, t: &str) -> Vec<waybill_log::StoredRecord> {
    let mut out = Vec::new();
    for p in 0..log.partitions(t).unwrap() as i32 {
        let mut from = 0;
        loop {
            let batch = log.read(t, p, from, 4096).unwrap();
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            out.extend(batch);
        }
    }
    out
}

#[test]
fn sigkill_under_load_loses_nothing_and_repeats_nothing() {
    const ORDERS: usize = 400;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut kills = 0;
    for round in 0..8 {
        let mut child = demo(dir.path(), ORDERS, true).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let wait = Duration::from_millis(rng.u64(150..1200));
        let started = Instant::now();
        while started.elapsed() < wait {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        eprintln!("round {round}: killed after {wait:?} ({status})");
    }
    assert!(kills >= 4, "the test must actually kill the orchestrator mid-run ({kills} kills)");

    let out = demo(dir.path(), ORDERS, true).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "final run failed: {}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains("WARNING"), "every order must reach an end state:\n{stdout}");

    let log = open_log(dir.path());
    // No command emitted twice.
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for t in topic::command_topics() {
        for r in all_records(log.as_ref(), &t) {
            let key = String::from_utf8(r.header(headers::IDEMPOTENCY_KEY).expect("key header").to_vec()).unwrap();
            *keys.entry(key).or_default() += 1;
        }
    }
    let repeated: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "commands emitted twice: {repeated:?}");
    assert!(keys.len() > ORDERS * 3, "the run issued commands ({})", keys.len());

    // The dead-letter topic holds the injected garbage and the orders with bad master
    // data, each exactly once — nothing else.
    let mix = Mix::default();
    let bad_master: BTreeSet<String> =
        (0..ORDERS).filter(|i| world::fate(42, *i, &mix).bad_master_data).map(world::order_ref).collect();
    let mut garbage = 0;
    let mut rejected_orders = BTreeMap::<String, usize>::new();
    for r in all_records(log.as_ref(), topic::DLQ) {
        let kind = String::from_utf8_lossy(r.header(headers::DLQ_KIND).unwrap()).into_owned();
        let reason = String::from_utf8_lossy(r.header(headers::DLQ_REASON).unwrap()).into_owned();
        match kind.as_str() {
            "decode" | "unknown-schema" => {
                let id = String::from_utf8_lossy(r.header("waybill.event-id").unwrap()).into_owned();
                assert!(id.starts_with("bad:"), "only injected garbage fails to decode, not {id}: {reason}");
                garbage += 1;
            }
            "rule" => {
                assert!(reason.contains("fails master-data checks"), "unexpected rule violation: {reason}");
                *rejected_orders.entry(String::from_utf8(r.key.clone()).unwrap()).or_default() += 1;
            }
            other => panic!("unknown dead-letter kind {other}"),
        }
    }
    assert_eq!(garbage, 2 * ORDERS / mix.bad_record_every);
    assert_eq!(rejected_orders.keys().cloned().collect::<BTreeSet<_>>(), bad_master);
    assert!(rejected_orders.values().all(|n| *n == 1), "a bad order was dead-lettered twice: {rejected_orders:?}");

    // Every saga reached its end.
    drop(log);
    let store = ProjectionStore::open(dir.path().join("projections")).unwrap();
    let counts: BTreeMap<OrderStatus, u64> = store.order_counts_by_status().unwrap().into_iter().collect();
    let ended: u64 = [OrderStatus::Completed, OrderStatus::Backordered, OrderStatus::Cancelled, OrderStatus::OnHold]
        .iter()
        .map(|s| counts.get(s).copied().unwrap_or(0))
        .sum();
    assert_eq!(ended, ORDERS as u64, "orders by status: {counts:?}; the final run said:\n{stdout}");
    for order in &bad_master {
        let status = store.order(order).unwrap().expect("bad orders are projected too").status;
        assert!(matches!(status, OrderStatus::OnHold | OrderStatus::Cancelled), "{order} is {status}");
    }
}

#[test]
fn rebuilt_projections_are_byte_identical() {
    // Through the connectors (sale orders), and in process (with purchase orders too).
    for in_process in [false, true] {
        rebuild_matches(in_process);
    }
}

fn rebuild_matches(in_process: bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), 150, in_process).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if in_process {
        let store = ProjectionStore::open(dir.path().join("projections")).unwrap();
        assert_eq!(store.purchase_orders().unwrap().len(), 15, "the run bought");
    }
    let before = ProjectionStore::open(dir.path().join("projections")).unwrap().dump().unwrap();
    assert!(before.len() > 1000, "the projections hold the run ({} keys)", before.len());

    std::fs::remove_dir_all(dir.path().join("projections")).unwrap();
    let out = Command::new(BIN).args(["projections", "rebuild", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt projections from"));
    let after = ProjectionStore::open(dir.path().join("projections")).unwrap().dump().unwrap();
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "projection key {:?} differs after rebuild", String::from_utf8_lossy(&a.0));
    }
}

#[test]
fn a_corrupt_log_is_reported_with_its_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(dir.path(), 30, false).output().unwrap();
    assert!(out.status.success());
    let segments = dir.path().join("log").join("segments");
    let seg = std::fs::read_dir(&segments).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&seg, bytes).unwrap();
    let out = demo(dir.path(), 30, false).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&seg.display().to_string()) && stderr.contains("corrupt at byte"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
