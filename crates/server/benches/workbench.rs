//! Workbench pages over real HTTP at 10,000 held postings, beside the web server's
//! trivial route.
//!
//! A node (embedded log, coordinator, projector, control plane, web workbench on loopback)
//! is driven by the simulated distributor until every invoice is held: all customers are
//! flagged new, nothing else goes wrong. **How the store is filled:** through the real
//! sagas — the in-process simulator releases `WAYBILL_BENCH_WORKBENCH_POSTINGS` orders
//! (default 10,000) as fast as it can (`rate` 0), and the log runs with `fsync = "never"`
//! so the fill takes minutes, not tens of minutes; the read models then hold real
//! `PostingView` records, one held invoice per shipment (a few orders ship twice, so
//! there are slightly more postings than orders). Durability plays no part in what is
//! measured: every measured request only reads.
//!
//! Then one client signs in (`POST /signin`, session cookie `waybill_session`) and, as
//! that person over one kept-alive connection, measures in rotating order:
//! - **inbox**: `GET /inbox`, the first page (50 rows, oldest first) as rendered;
//! - **inbox, later page**: `GET /inbox?page_token=…`, the page reached by following
//!   "Next page" to the middle of the list;
//! - **posting**: `GET /postings/<id>`, one posting with its evidence and history;
//! - **healthz**: `GET /healthz` on the same web server (no work): the baseline.
//!
//! The target: the inbox at 10,000 held postings renders in under 50 ms on the
//! server. Knobs: `WAYBILL_BENCH_WORKBENCH_POSTINGS` (orders released, default 10000),
//! `WAYBILL_BENCH_WORKBENCH_SAMPLES` (requests per row, default 200). Run with
//! `make bench`; results in docs/benchmarks.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use waybill_server::config::Config;
use waybill_server::demo::sim::{SimConfig, Simulator};
use waybill_server::demo::world::{self, Mix};
use waybill_server::node::{self, Node};

fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[((v.len() - 1) as f64 * q).round() as usize] }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The "Next page" link's token in a rendered list page.
fn next_token(page: &str) -> Option<String> {
    let at = page.find("page_token=")? + "page_token=".len();
    let rest = &page[at..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

/// Rows of the inbox table in a rendered page.
fn rows(page: &str) -> Vec<&str> {
    page.split("data-posting-id=\"").skip(1).filter_map(|s| s.split('"').next()).collect()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET` as the signed-in person; the body, or an error naming the path and status.
fn get(agent: &ureq::Agent, base: &str, cookie: &str, path: &str) -> anyhow::Result<String> {
    let mut r = agent.get(format!("{base}{path}")).header("Cookie", cookie).call()?;
    let status = r.status().as_u16();
    let body = r.body_mut().with_config().limit(64 << 20).read_to_string()?;
    anyhow::ensure!(status == 200, "GET {path} answered {status}");
    Ok(body)
}

fn main() -> anyhow::Result<()> {
    let orders = env("WAYBILL_BENCH_WORKBENCH_POSTINGS", 10_000);
    let samples = env("WAYBILL_BENCH_WORKBENCH_SAMPLES", 200);
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[people]]\nidentity = \"clerk\"\nrole = \"approver\"\npassword_hash = {:?}\n",
            waybill_control::auth::hash_password("bench-password")
        ),
    )?;
    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 4, ..Config::default() };
    cfg.log.fsync = "never".into();
    cfg.ingest.listen = String::new();
    cfg.metrics.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.tokens_file = Some(tokens);
    cfg.web.listen = "127.0.0.1:0".into();
    cfg.policy.fulfillment.pick_timeout_secs = 3600.0;
    cfg.validate()?;
    let mut catalog = world::catalog();
    catalog.new_customers = catalog.customers.clone();
    let log = node::open_log(&cfg)?;
    let node = Node::start(&cfg, log.clone(), catalog)?;
    let base = format!("http://{}", node.web_addr.expect("workbench on"));

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
        SimConfig { orders, seed: 12, rate: 0.0, mix: calm, pick_timeout: Duration::from_secs(3600) },
    )?;
    let sim_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || sim.run(&stop))
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(1800);
    let mut last = usize::MAX;
    let held = loop {
        std::thread::sleep(Duration::from_secs(3));
        let held = node.projections.postings(Some("held"))?.len();
        eprintln!("workbench bench: {held} held postings after {:.0} s", started.elapsed().as_secs_f64());
        if held >= orders && held == last {
            break held;
        }
        last = held;
        anyhow::ensure!(Instant::now() < deadline, "only {held} postings held after 1800 s");
    };
    stop.store(true, Ordering::Relaxed);
    let _ = sim_thread.join();
    let fill_s = started.elapsed().as_secs_f64();
    eprintln!("workbench bench: {held} held postings, filled in {fill_s:.0} s");

    // Sign in as a person would: the form, then the session cookie from the redirect.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let r = agent.post(format!("{base}/signin")).send_form([("identity", "clerk"), ("password", "bench-password")])?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.split(';').next().filter(|c| c.starts_with("waybill_session=")))
        .ok_or_else(|| anyhow::anyhow!("sign-in answered {} without a session cookie", r.status()))?
        .to_string();

    // The first page, then "Next page" to the middle of the list.
    let first = get(&agent, &base, &cookie, "/inbox")?;
    anyhow::ensure!(rows(&first).len() == 50, "the first inbox page has {} rows, not 50", rows(&first).len());
    let mut later = String::new();
    let mut page = first;
    for _ in 0..(held / 50 / 2).max(1) {
        let Some(t) = next_token(&page) else { break };
        later = format!("/inbox?page_token={t}");
        page = get(&agent, &base, &cookie, &later)?;
    }
    anyhow::ensure!(!later.is_empty(), "the inbox has a single page");
    let posting = format!("/postings/{}", url_encode(rows(&page).first().copied().unwrap_or_default()));
    anyhow::ensure!(get(&agent, &base, &cookie, &posting)?.contains("Approve"), "{posting} shows no approve button");

    let paths: [(&str, &str); 4] =
        [("healthz (baseline)", "/healthz"), ("inbox", "/inbox"), ("inbox, later page", &later), ("posting", &posting)];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len()];
    let mut bytes = vec![0usize; paths.len()];
    for i in 0..samples {
        // A different order each round, so no row always follows the same one.
        for j in 0..paths.len() {
            let k = (i + j) % paths.len();
            let t = Instant::now();
            let body = get(&agent, &base, &cookie, paths[k].1)?;
            times[k].push(t.elapsed().as_secs_f64() * 1000.0);
            bytes[k] = body.len();
        }
    }
    // Where the time went before the `ps/` index: the inbox decoded every order in the
    // store on each request. Timed here in-process (no HTTP), for the record.
    let mut scan = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let n = node.projections.orders(None, usize::MAX)?.len();
        scan.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(n >= orders, "{n} orders in the store");
    }
    node.shutdown();

    let base_p50 = pct(&mut times[0].clone(), 0.5);
    println!(
        "Workbench pages at {held} held postings ({orders} orders, filled in {fill_s:.0} s), one signed-in client:"
    );
    println!();
    println!("| request | median (ms) | p99 (ms) | n | page (KB) | median / baseline |");
    println!("|---|---|---|---|---|---|");
    for (k, (name, path)) in paths.iter().enumerate() {
        let p50 = pct(&mut times[k], 0.5);
        let p99 = pct(&mut times[k], 0.99);
        let path = path.split('?').next().unwrap_or(path);
        let path = if path.starts_with("/postings/") { "/postings/<id>" } else { path };
        let query = if name.contains("later") { "?page_token=…" } else { "" };
        println!(
            "| {name}: `GET {path}{query}` | {p50:.2} | {p99:.2} | {} | {:.1} | {:.1}× |",
            times[k].len(),
            bytes[k] as f64 / 1024.0,
            p50 / base_p50
        );
    }
    let n = scan.len();
    println!(
        "| (in-process) every order decoded, as `/inbox` did before the posting index | {:.2} | {:.2} | {n} | | |",
        pct(&mut scan, 0.5),
        pct(&mut scan, 0.99)
    );
    Ok(())
}
