//! Approval round trip over real gRPC, beside the trivial RPC of the same server.
//!
//! A node (embedded log with fsync per batch, coordinator, projector, control plane) is
//! driven by the simulated distributor until every invoice is held (all customers are
//! flagged new). Then, at 1 and at 32 concurrent clients, it measures:
//! - **approve**: `Approvals/Approve` until it returns, which is after the saga's decision —
//!   the approval journal event and the `PostInvoice` command, written in one append — is
//!   visible in the read models;
//! - **echo**: `grpc.health.v1/Check` on the same server (no log, no saga);
//! - **commit**: one single-record append with fsync on the same disk (one log commit).
//!
//! Target: approve p99 ≤ echo p99 + one log commit p99 — plus, honestly, what the
//! decision costs in between (coordinator turn, projector turn). Run with `make bench`.

// The allocator the `waybill` binary runs with (crates/server/src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use waybill_control::proto::DecisionRequest;
use waybill_control::proto::approvals_client::ApprovalsClient;
use waybill_log::{AppendBatch, Record};
use waybill_server::config::Config;
use waybill_server::demo::sim::{SimConfig, Simulator};
use waybill_server::demo::world::{self, Mix};
use waybill_server::node::{self, Node};

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * q).round() as usize] }
}

fn main() -> anyhow::Result<()> {
    let orders: usize = std::env::var("WAYBILL_BENCH_APPROVALS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let dir = tempfile::tempdir()?;
    let mut cfg = Config { data_dir: dir.path().to_path_buf(), partitions: 4, ..Config::default() };
    cfg.ingest.listen = String::new();
    cfg.metrics.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.allow_anonymous = true;
    cfg.control.anonymous_role = "senior-approver".into();
    cfg.policy.fulfillment.pick_timeout_secs = 3600.0;
    let mut catalog = world::catalog();
    catalog.new_customers = catalog.customers.clone();
    let log = node::open_log(&cfg)?;
    let node = Node::start(&cfg, log.clone(), catalog)?;
    let url = format!("http://{}", node.control_addr().expect("control plane on"));

    // Every shipment's invoice ends up held.
    let calm = Mix {
        bad_master_data: 0.0,
        cancelled: 0.0,
        shortage: 0.0,
        short_pick: 0.0,
        late_pick: 0.0,
        bad_record_every: 0,
        returned: 0.0,
        finance_refusal: 0.0,
        purchase_every: 0,
        ..Mix::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut sim = Simulator::new(
        log.clone(),
        SimConfig { orders, seed: 11, rate: 0.0, mix: calm, pick_timeout: Duration::from_secs(3600) },
    )?;
    let sim_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || sim.run(&stop))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = usize::MAX;
    let held = loop {
        std::thread::sleep(Duration::from_millis(500));
        let held = node.projections.postings(Some("held"))?;
        if held.len() >= orders && held.len() == last {
            break held;
        }
        last = held.len();
        anyhow::ensure!(Instant::now() < deadline, "only {} postings held after 300 s", held.len());
    };
    eprintln!("approvals bench: {} held postings", held.len());
    let mut ids: Vec<String> = held.into_iter().map(|(_, p)| p.posting_id).collect();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let channel = rt.block_on(tonic::transport::Endpoint::from_shared(url.clone())?.connect())?;
    let mut rows = Vec::new();
    for concurrency in [1usize, 32] {
        let per_client = (ids.len() / 2 / concurrency).max(1).min(if concurrency == 1 { 100 } else { 6 });
        let mut approve: Vec<f64> = Vec::new();
        let mut echo: Vec<f64> = Vec::new();
        let batch: Vec<String> = ids.drain(..(per_client * concurrency).min(ids.len())).collect();
        let (a, e) = rt.block_on(async {
            let mut tasks = Vec::new();
            for chunk in batch.chunks(per_client) {
                let chunk = chunk.to_vec();
                let ch = channel.clone();
                tasks.push(tokio::spawn(async move {
                    let mut approvals = ApprovalsClient::new(ch.clone());
                    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
                    let mut a = Vec::new();
                    let mut e = Vec::new();
                    for id in chunk {
                        let t = Instant::now();
                        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
                        e.push(t.elapsed().as_secs_f64() * 1000.0);
                        let t = Instant::now();
                        let r = approvals
                            .approve(DecisionRequest { posting_id: id, expected_version: 1, reason: "bench".into() })
                            .await?;
                        a.push(t.elapsed().as_secs_f64() * 1000.0);
                        anyhow::ensure!(r.into_inner().state == "approved", "not approved");
                    }
                    Ok::<_, anyhow::Error>((a, e))
                }));
            }
            let mut a = Vec::new();
            let mut e = Vec::new();
            for t in tasks {
                let (x, y) = t.await??;
                a.extend(x);
                e.extend(y);
            }
            Ok::<_, anyhow::Error>((a, e))
        })?;
        approve.extend(a);
        echo.extend(e);
        // One log commit: a single-record append with fsync, on the same log.
        let mut commit = Vec::new();
        for i in 0..50 {
            let t = Instant::now();
            log.append(AppendBatch {
                records: vec![Record::keyed(waybill_domain::topic::DLQ, format!("bench-{i}"), vec![0u8; 64])],
                positions: vec![],
            })?;
            commit.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push((
            concurrency,
            approve.len(),
            pct(&mut approve, 0.5),
            pct(&mut approve, 0.99),
            pct(&mut echo, 0.5),
            pct(&mut echo, 0.99),
            pct(&mut commit, 0.5),
            pct(&mut commit, 0.99),
        ));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sim_thread.join();
    node.shutdown();

    println!(
        "| clients | approvals | approve p50 / p99 (ms) | echo p50 / p99 (ms) | log commit p50 / p99 (ms) | p99 budget: echo + commit (ms) |"
    );
    println!("|---|---|---|---|---|---|");
    for (c, n, ap50, ap99, ep50, ep99, cp50, cp99) in rows {
        println!(
            "| {c} | {n} | {ap50:.2} / {ap99:.2} | {ep50:.2} / {ep99:.2} | {cp50:.2} / {cp99:.2} | {:.2} |",
            ep99 + cp99
        );
    }
    Ok(())
}
