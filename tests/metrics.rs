//! The metrics port as Prometheus and Kubernetes see it: after the simulated distributor
//! has run orders through, `/metrics` parses as Prometheus text and carries the
//! technical and business figures a dashboard needs; `/healthz` and `/readyz` answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use waybill_projection::OrderStatus;
use waybill_server::config::Config;
use waybill_server::demo::sim::{SimConfig, Simulator};
use waybill_server::demo::world::{self, Mix};
use waybill_server::node::{self, Node};
use waybill_telemetry::metrics as names;

fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(url).call().expect("the metrics port answers");
    (resp.status().as_u16(), resp.body_mut().read_to_string().unwrap())
}

#[test]
fn metrics_after_a_run_parse_as_prometheus_text() {
    const ORDERS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config { data_dir: dir.path().to_path_buf(), partitions: 2, ..Config::default() };
    cfg.ingest.listen = String::new();
    cfg.control.listen = String::new();
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.policy.fulfillment.pick_timeout_secs = 1.0;
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let base = format!("http://{}", node.metrics_addr.expect("metrics port enabled"));

    let stop = Arc::new(AtomicBool::new(false));
    let mut sim = Simulator::new(
        log,
        SimConfig { orders: ORDERS, seed: 3, rate: 0.0, mix: Mix::default(), pick_timeout: Duration::from_secs(1) },
    )
    .unwrap();
    let sim_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || sim.run(&stop).unwrap())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ended: u64 = node
            .projections
            .order_counts_by_status()
            .unwrap()
            .into_iter()
            .filter(|(s, _)| s.is_final() || *s == OrderStatus::OnHold)
            .map(|(_, n)| n)
            .sum();
        if ended >= ORDERS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "the orders did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, body) = get(&format!("{base}/healthz"));
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = get(&format!("{base}/readyz"));
    assert_eq!(status, 200, "{body}");

    let (status, text) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text");
    let mut by_name: BTreeMap<String, Vec<prometheus_parse::Sample>> = BTreeMap::new();
    for s in scrape.samples {
        by_name.entry(s.metric.clone()).or_default().push(s);
    }
    let total = |name: &str, label: Option<(&str, &str)>| -> f64 {
        by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    // Technical.
    assert!(total(names::RECORDS_CONSUMED, Some(("topic", "waybill.inbound.odoo"))) >= ORDERS as f64);
    assert!(total(names::RECORDS_PRODUCED, Some(("topic", "waybill.journal"))) > 0.0);
    assert!(
        by_name.contains_key(&format!("{}_count", names::PROCESSING_LATENCY))
            || by_name.contains_key(names::PROCESSING_LATENCY),
        "processing latency histogram"
    );
    assert!(by_name.contains_key(names::CONSUMER_LAG));
    assert!(total(names::STORE_SIZE, Some(("store", "log"))) > 0.0);
    assert_eq!(total(names::PARTITION_HEALTHY, None), 2.0, "both partitions healthy");
    // Business.
    assert!(total(names::SAGAS_STARTED, Some(("kind", "o2f"))) >= ORDERS as f64);
    assert!(total(names::SAGAS_COMPLETED, Some(("kind", "o2f"))) > 0.0);
    assert!(total(names::SAGAS_STARTED, Some(("kind", "s2i"))) > 0.0, "invoices started");
    assert!(by_name.contains_key(names::EXCEPTIONS_OPEN));
    assert!(by_name.contains_key(names::POSTINGS_HELD));
    // No unbounded labels.
    for samples in by_name.values() {
        for s in samples {
            for (k, _) in s.labels.iter() {
                assert!(!["order", "order_ref", "saga_id"].contains(&k.as_str()), "{} has label {k}", s.metric);
            }
        }
    }

    stop.store(true, Ordering::Relaxed);
    sim_thread.join().unwrap();
    node.shutdown();
}
