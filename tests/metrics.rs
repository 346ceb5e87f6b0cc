//! The metrics port as Prometheus and Kubernetes see it: after the simulated distributor
//! has run orders through, `/metrics` parses as Prometheus text and carries the
//! technical and business figures a dashboard needs; `/healthz` and `/readyz` answer.
//! gRPC calls to the control plane are counted by service, method and status code.

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

/// Samples of `/metrics` at `base`, by metric name.
fn scrape(base: &str) -> BTreeMap<String, Vec<prometheus_parse::Sample>> {
    let (status, text) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text");
    let mut by_name: BTreeMap<String, Vec<prometheus_parse::Sample>> = BTreeMap::new();
    for s in scrape.samples {
        by_name.entry(s.metric.clone()).or_default().push(s);
    }
    by_name
}

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
    // The purchase orders the simulated distributor placed, and the vendor bills' own series.
    assert!(total(names::SAGAS_STARTED, Some(("kind", "p2r"))) > 0.0, "purchase orders started");
    assert!(total(names::SAGAS_COMPLETED, Some(("kind", "p2r"))) > 0.0, "purchase orders completed");
    let documents: Vec<&str> = by_name[names::POSTINGS_HELD].iter().filter_map(|s| s.labels.get("document")).collect();
    assert!(documents.contains(&"vendor_bill"), "{documents:?}");
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

/// `waybill_grpc_requests_total{grpc_service, grpc_method, grpc_code}` in `scrape`.
fn grpc_calls(
    scrape: &BTreeMap<String, Vec<prometheus_parse::Sample>>,
    service: &str,
    method: &str,
    code: &str,
) -> f64 {
    scrape
        .get(names::GRPC_REQUESTS)
        .into_iter()
        .flatten()
        .filter(|s| {
            s.labels.get("grpc_service") == Some(service)
                && s.labels.get("grpc_method") == Some(method)
                && s.labels.get("grpc_code") == Some(code)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn grpc_calls_are_counted_by_service_method_and_code() {
    use waybill_control::client::{self, ClientOptions};
    use waybill_control::grpc_metrics::code_name;
    use waybill_control::proto;

    const VIEWER: &str = "vera-viewer-token-000004";
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("[[tokens]]\ntoken = \"{VIEWER}\"\nidentity = \"vera\"\nrole = \"viewer\"\n"))
        .unwrap();
    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 2, ..Config::default() };
    cfg.log.fsync = "never".into();
    cfg.ingest.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.tokens_file = Some(tokens);
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.validate().unwrap();
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log, world::catalog()).unwrap();
    let base = format!("http://{}", node.metrics_addr.expect("metrics port enabled"));
    let server = format!("http://{}", node.control_addr().expect("control plane enabled"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let connect = |token: Option<&str>| {
        let opts =
            ClientOptions { server: server.clone(), token: token.map(str::to_string), ..ClientOptions::default() };
        rt.block_on(client::connect(&opts)).unwrap()
    };

    // The process-wide recorder may hold calls of other tests: compare before and after.
    let before = scrape(&base);
    let mut viewer = connect(Some(VIEWER));
    for _ in 0..3 {
        let req = proto::ListExceptionsRequest { limit: 10, ..Default::default() };
        rt.block_on(viewer.queries.list_exceptions(req)).expect("a viewer may list exceptions");
    }
    let approve =
        proto::DecisionRequest { posting_id: "inv:SHP-NONE".into(), expected_version: 1, reason: "checked".into() };
    // Refused for the role or the unknown posting, whichever the server checks first.
    let refused = rt.block_on(viewer.approvals.approve(approve.clone())).expect_err("a viewer may not approve");
    let viewer_code = code_name(refused.code());
    assert!(["PERMISSION_DENIED", "NOT_FOUND"].contains(&viewer_code), "{refused:?}");
    let mut nobody = connect(None);
    let refused = rt.block_on(nobody.approvals.approve(approve)).expect_err("no credentials");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let channel = rt.block_on(tonic::transport::Endpoint::from_shared(server.clone()).unwrap().connect()).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
    rt.block_on(health.check(req)).expect("health answers");

    let after = scrape(&base);
    let delta = |service: &str, method: &str, code: &str| {
        grpc_calls(&after, service, method, code) - grpc_calls(&before, service, method, code)
    };
    assert_eq!(delta("waybill.v1.Queries", "ListExceptions", "OK"), 3.0);
    assert_eq!(delta("waybill.v1.Approvals", "Approve", viewer_code), 1.0);
    assert_eq!(delta("waybill.v1.Approvals", "Approve", "UNAUTHENTICATED"), 1.0);
    assert_eq!(delta("grpc.health.v1.Health", "Check", "OK"), 1.0);
    let text = get(&format!("{base}/metrics")).1;
    assert!(text.contains(&format!("# HELP {} ", names::GRPC_REQUESTS)), "the gRPC counter is described on /metrics");

    node.shutdown();
}

/// The sum of counter `name` in `scrape` over the series whose labels include `with`.
fn counter(scrape: &BTreeMap<String, Vec<prometheus_parse::Sample>>, name: &str, with: &[(&str, &str)]) -> f64 {
    scrape
        .get(name)
        .into_iter()
        .flatten()
        .filter(|s| with.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The workbench's figures on the dashboard: sign-ins by outcome and pages by route and
/// status class, after a wrong password, a sign-in and two pages.
#[test]
fn workbench_sign_ins_and_pages_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let hash = waybill_control::auth::hash_password("correct horse battery");
    std::fs::write(&tokens, format!("[[people]]\nidentity = \"ada\"\nrole = \"approver\"\npassword_hash = {hash:?}\n"))
        .unwrap();
    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 2, ..Config::default() };
    cfg.log.fsync = "never".into();
    cfg.ingest.listen = String::new();
    cfg.control.listen = "127.0.0.1:0".into();
    cfg.control.tokens_file = Some(tokens);
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.web.listen = "127.0.0.1:0".into();
    cfg.validate().unwrap();
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log, world::catalog()).unwrap();
    let base = format!("http://{}", node.metrics_addr.expect("metrics port enabled"));
    let web = format!("http://{}", node.web_addr.expect("workbench enabled"));
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let sign_in = |password: &str| {
        let r = agent.post(&format!("{web}/signin")).send_form([("identity", "ada"), ("password", password)]).unwrap();
        let cookie = r.headers().get("set-cookie").and_then(|v| v.to_str().ok()).map(|c| {
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
            c.split(';').next().unwrap().to_string()
        });
        (r.status().as_u16(), cookie)
    };

    let before = scrape(&base);
    assert_eq!(sign_in("wrong").0, 401);
    let (status, cookie) = sign_in("correct horse battery");
    assert_eq!(status, 303);
    let cookie = cookie.expect("a session cookie");
    for path in ["/inbox", "/exceptions"] {
        let r = agent.get(&format!("{web}{path}")).header("cookie", &cookie).call().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = agent.get(&format!("{web}/inbox")).call().unwrap();
    assert_eq!(r.status().as_u16(), 303, "no session: to the sign-in page");

    let after = scrape(&base);
    let delta = |name: &str, with: &[(&str, &str)]| counter(&after, name, with) - counter(&before, name, with);
    assert_eq!(delta(names::WEB_SIGNINS, &[("outcome", "refused")]), 1.0);
    assert_eq!(delta(names::WEB_SIGNINS, &[("outcome", "ok")]), 1.0);
    assert_eq!(delta(names::WEB_REQUESTS, &[("route", "/inbox"), ("status", "2xx")]), 1.0);
    assert_eq!(delta(names::WEB_REQUESTS, &[("route", "/inbox"), ("status", "3xx")]), 1.0);
    assert_eq!(delta(names::WEB_REQUESTS, &[("route", "/exceptions"), ("status", "2xx")]), 1.0);
    assert_eq!(delta(names::WEB_REQUESTS, &[("route", "/signin"), ("status", "4xx")]), 1.0);
    node.shutdown();
}

/// Every connector metric on the dashboard and in the alerts, scraped from a node whose
/// connectors talk to the doubles: an Odoo connector with its poller, and a warehouse
/// that answers, throttles once, fails once and then is down for a moment.
#[test]
fn connector_metrics_are_emitted_for_real() {
    use waybill_domain::command::OrderOnly;
    use waybill_domain::{Command, CommandBody, CommandMeta, System, Timestamp, topic};
    use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig};
    use waybill_doubles::odoo::{OdooConfig, OdooDouble};
    use waybill_doubles::{Fault, Match, Times};
    use waybill_log::{AppendBatch, Record};
    use waybill_server::connectors::ConnectorSettings;

    let dir = tempfile::tempdir().unwrap();
    let odoo = OdooDouble::start(OdooConfig::default());
    let partner = odoo.create("res.partner", serde_json::json!({"name": "Azure", "ref": "C0001"}));
    odoo.create("sale.order", serde_json::json!({"name": "SO000001", "partner_id": partner, "state": "sale"}));
    let wms = HttpTarget::start(HttpTargetConfig::new(b"s3cret".to_vec(), |_| Answer::Accepted));
    wms.inject(Match::action("cancel-reservation:SO0001"), Fault::RetryAfter { status: 429, secs: 1 }, Times::Next(1));
    wms.inject(Match::action("cancel-reservation:SO0002"), Fault::Status(500), Times::Next(1));
    std::fs::write(dir.path().join("odoo.key"), "admin").unwrap();
    std::fs::write(dir.path().join("wms.hmac"), "s3cret").unwrap();

    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 2, ..Config::default() };
    cfg.ingest.listen = String::new();
    cfg.control.listen = String::new();
    cfg.metrics.listen = "127.0.0.1:0".into();
    cfg.connectors.insert(
        "odoo".into(),
        ConnectorSettings {
            kind: "odoo".into(),
            url: odoo.url(),
            database: odoo.db().into(),
            login: "admin".into(),
            credentials_file: Some(dir.path().join("odoo.key")),
            poll_interval_ms: 100,
            ..ConnectorSettings::default()
        },
    );
    cfg.connectors.insert(
        "wms".into(),
        ConnectorSettings {
            kind: "http".into(),
            url: wms.command_url(),
            hmac_secret_file: Some(dir.path().join("wms.hmac")),
            breaker_threshold: 1,
            breaker_cool_down_ms: 200,
            backoff_base_ms: 20,
            ..ConnectorSettings::default()
        },
    );
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log.clone(), world::catalog()).unwrap();
    let base = format!("http://{}", node.metrics_addr.expect("metrics port enabled"));
    let records = (0..6)
        .map(|i| {
            let order = format!("SO{i:04}");
            let c = Command {
                meta: CommandMeta {
                    idempotency_key: format!("cancel-reservation:{order}"),
                    saga_id: format!("o2f:{order}"),
                    correlation_key: order.clone(),
                    target: System::Wms,
                    caused_by: "test".into(),
                    issued_at: Timestamp(0),
                },
                body: CommandBody::CancelReservation(OrderOnly { order_ref: order.clone(), reason: "test".into() }),
            };
            Record::keyed(topic::commands(System::Wms), order.into_bytes(), waybill_schema::encode_command(&c).unwrap())
        })
        .collect();
    log.append(AppendBatch { records, positions: Vec::new() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wms.received().len() < 6 {
        assert!(Instant::now() < deadline, "the warehouse did not get every command");
        std::thread::sleep(Duration::from_millis(50));
    }
    let wanted: &[(&str, Option<(&str, &str)>)] = &[
        (names::CONNECTOR_REQUESTS, Some(("outcome", "ok"))),
        (names::CONNECTOR_REQUESTS, Some(("outcome", "throttled"))),
        (names::CONNECTOR_RETRIES, Some(("target", "wms"))),
        (names::CONNECTOR_THROTTLED, Some(("cause", "target"))),
        (names::CONNECTOR_BREAKER_STATE, Some(("target", "wms"))),
        (names::CONNECTOR_BREAKER_OPENS, Some(("target", "wms"))),
        (names::CONNECTOR_UNDELIVERED, Some(("target", "wms"))),
        (names::CONNECTOR_OLDEST_AGE, Some(("target", "wms"))),
        (names::CONNECTOR_POLLED, Some(("model", "sale.order"))),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let by_name = scrape(&base);
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(name, label)| {
                !by_name.get(*name).into_iter().flatten().any(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            })
            .map(|(n, l)| format!("{n}{l:?}"))
            .collect();
        let latency = by_name.contains_key(&format!("{}_count", names::CONNECTOR_LATENCY))
            || by_name.contains_key(names::CONNECTOR_LATENCY);
        if missing.is_empty() && latency {
            break;
        }
        assert!(Instant::now() < deadline, "not on /metrics: {missing:?} (latency histogram: {latency})");
        std::thread::sleep(Duration::from_millis(200));
    }
    node.shutdown();
}
