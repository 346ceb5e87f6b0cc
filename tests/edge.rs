//! Trust at the edge, over real HTTP and gRPC: only the control plane decides postings,
//! every producer is authenticated and confined to its system and the events that system
//! owns, and four-eyes keeps the person who caused a posting from approving it.
//!
//! A node runs in-process with ingestion and the control plane on loopback ports and one
//! tokens file for people and producers. Orders are driven through ingestion by the
//! producers' own identities until their invoice is held (the customer is new), then the
//! attacks and mistakes a security reviewer would try.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::{InboundEvent, SourceRef, System, topic};
use waybill_log::AppendBatch;
use waybill_saga::catalog::{Catalog, Tracking};
use waybill_saga::coordinator::headers;
use waybill_server::config::{Config, IngestLimits};
use waybill_server::ingest::record_for;
use waybill_server::node::{self, Node};
use waybill_test_util::inbound as b;

const ODOO: &str = "odoo-prod-token-00000001";
const WMS: &str = "wms-prod-token-000000002";
const CARRIER: &str = "carrier-gw-token-0000003";
/// A warehouse lead who posts goods issues and also approves invoices.
const LENA: &str = "lena-wms-approver-000004";
const ALICE: &str = "alice-approver-token-005";

fn tokens(wms_token: &str) -> String {
    format!(
        r#"
[[tokens]]
token = "{ODOO}"
identity = "odoo-prod"
system = "odoo"

[[tokens]]
token = "{wms_token}"
identity = "wms-prod"
system = "wms"

[[tokens]]
token = "{CARRIER}"
identity = "carrier-gw"
system = "carrier"

[[tokens]]
token = "{LENA}"
identity = "lena"
role = "approver"
system = "wms"

[[tokens]]
token = "{ALICE}"
identity = "alice"
role = "approver"
"#
    )
}

fn catalog() -> Catalog {
    let mut c =
        Catalog::default().with_product("PLAIN", "Units", Tracking::None).with_customer("C1").with_tax_code("VAT20");
    c.new_customers.insert("C1".into());
    c
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

/// A response: status, `Retry-After` / `WWW-Authenticate`, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    www_authenticate: Option<String>,
    body: serde_json::Value,
}

struct Harness {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    node: Option<Node>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start(tweak: impl FnOnce(&mut Config, &Path)) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tokens.toml"), tokens(WMS)).unwrap();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = "127.0.0.1:0".into();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = "127.0.0.1:0".into();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        tweak(&mut cfg, &dir);
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let node = Node::start(&cfg, log, catalog()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { _dir: tmp, dir, node: Some(node), rt }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn post_bytes(&self, token: Option<&str>, ctype: &str, body: &[u8]) -> Answer {
        let url = format!("http://{}/v1/events", self.node().ingest_addr.unwrap());
        let mut req = agent().post(&url).header("Content-Type", ctype);
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.send(body).expect("request reaches the server");
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (retry_after, www_authenticate) = (header("retry-after"), header("www-authenticate"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Answer { status, retry_after, www_authenticate, body }
    }

    fn post(&self, token: Option<&str>, e: &InboundEvent) -> Answer {
        self.post_bytes(token, "application/json", &waybill_schema::encode_event_json(e))
    }

    fn post_ok(&self, token: &str, e: &InboundEvent) {
        let a = self.post(Some(token), e);
        assert_eq!(a.status, 202, "{} was not accepted: {}", e.body.name(), a.body);
    }

    fn wait_status(&self, order: &str, status: waybill_projection::OrderStatus) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.node().projections.order(order).unwrap();
            if o.as_ref().is_some_and(|o| o.status >= status) {
                return;
            }
            assert!(Instant::now() < deadline, "order {order} never reached {status}: {o:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Drives `order` through ingestion, each event posted by its system's identity and
    /// the goods issue by `issuer`, until the invoice of shipment `SHP-<order>` is held.
    fn held_posting(&self, order: &str, issuer: &str) -> String {
        use waybill_projection::OrderStatus;
        self.post_ok(ODOO, &released(order));
        self.wait_status(order, OrderStatus::Reserving);
        self.post_ok(WMS, &reserved(order));
        self.wait_status(order, OrderStatus::Reserved);
        self.post_ok(WMS, &accepted(order));
        self.wait_status(order, OrderStatus::Released);
        self.post_ok(WMS, &picked(order));
        self.wait_status(order, OrderStatus::Picked);
        self.post_ok(issuer, &issued(order));
        let posting = format!("inv:SHP-{order}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.node().projections.posting(&posting).unwrap().is_none() {
            assert!(Instant::now() < deadline, "posting {posting} was never held");
            std::thread::sleep(Duration::from_millis(10));
        }
        posting
    }

    fn posting(&self, posting: &str) -> waybill_projection::PostingView {
        self.node().projections.posting(posting).unwrap().unwrap().1
    }

    fn clients(&self, token: &str) -> Clients {
        let opts = ClientOptions {
            server: format!("http://{}", self.node().control_addr().unwrap()),
            token: Some(token.to_string()),
            ..ClientOptions::default()
        };
        self.rt.block_on(client::connect(&opts)).unwrap()
    }

    fn approve(&self, token: &str, posting: &str) -> Result<proto::DecisionResponse, tonic::Status> {
        let version = self.posting(posting).version;
        let req =
            proto::DecisionRequest { posting_id: posting.into(), expected_version: version, reason: "checked".into() };
        self.rt.block_on(self.clients(token).approvals.approve(req)).map(|r| r.into_inner())
    }

    /// Dead letters of `kind`, with their reasons, once there are at least `n`.
    fn dead_letters(&self, kind: &str, n: usize) -> Vec<String> {
        let log = &self.node().log;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut found = Vec::new();
            for p in 0..log.partitions(topic::DLQ).unwrap() as i32 {
                for r in log.read(topic::DLQ, p, 0, 100_000).unwrap() {
                    if r.header(headers::DLQ_KIND) == Some(kind.as_bytes()) {
                        found.push(String::from_utf8_lossy(r.header(headers::DLQ_REASON).unwrap()).into_owned());
                    }
                }
            }
            if found.len() >= n {
                return found;
            }
            assert!(Instant::now() < deadline, "expected {n} dead letters of kind {kind}: {found:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of a counter on `/metrics` with all of `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = format!("http://{}/metrics", self.node().metrics_addr.unwrap());
        let text = agent().get(&url).call().unwrap().body_mut().read_to_string().unwrap();
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

fn released(order: &str) -> InboundEvent {
    b::at_now(b::released(order, vec![b::line(1, "PLAIN", "Units", 3)]))
}

fn reserved(order: &str) -> InboundEvent {
    b::at_now(b::reserved(order, &[(1, 3, 0)]))
}

fn accepted(order: &str) -> InboundEvent {
    b::at_now(b::accepted(order))
}

fn picked(order: &str) -> InboundEvent {
    b::at_now(b::pick(order, &format!("P-{order}"), vec![b::picked(1, "PLAIN", 3)], true))
}

fn issued(order: &str) -> InboundEvent {
    b::at_now(b::issued(order, &format!("SHP-{order}"), &[(1, "PLAIN", 3)]))
}

/// The forged approval of the security report: a `PostingApproved` that names an admin,
/// claiming to come from `source`.
fn forged(order: &str, posting: &str, id: &str, source: System) -> InboundEvent {
    let mut e = b::at_now(b::decision(order, id, posting, 1, "mallory", "admin", true));
    e.meta.source = SourceRef::new(source, "x");
    e
}

#[test]
fn a_forged_approval_is_refused_on_every_way_in_and_the_posting_stays_held() {
    let h = Harness::start(|_, _| {});
    let posting = h.held_posting("SO-F1", WMS);
    assert_eq!(h.posting(&posting).requested_by, "wms-prod", "ingestion stamps the authenticated producer");

    // Without credentials: 401, nothing written.
    let a = h.post(None, &forged("SO-F1", &posting, "forged-0", System::Odoo));
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(a.www_authenticate.is_some_and(|v| v.starts_with("Bearer")));

    // As JSON, from an authenticated producer, whatever source it claims: 403 and a dead letter.
    for (i, (token, source)) in
        [(ODOO, System::Odoo), (ODOO, System::Operator), (WMS, System::Waybill)].iter().enumerate()
    {
        let a = h.post(Some(token), &forged("SO-F1", &posting, &format!("forged-json-{i}"), *source));
        assert_eq!(a.status, 403, "{}", a.body);
        let msg = a.body["error"].as_str().unwrap();
        assert!(msg.contains("only when read from waybill.control"), "{msg}");
        assert!(msg.contains(&format!("{source}:x")), "the reason names the claimed source: {msg}");
    }
    // As Confluent Avro.
    let avro = waybill_schema::encode_event(&forged("SO-F1", &posting, "forged-avro", System::Odoo)).unwrap();
    let a = h.post_bytes(Some(ODOO), "application/vnd.confluent.avro", &avro);
    assert_eq!(a.status, 403, "{}", a.body);
    // Straight onto the inbound topic, as a Kafka producer with write access would.
    let e = forged("SO-F1", &posting, "forged-topic", System::Odoo);
    let record = record_for(&topic::inbound(System::Odoo), &e, waybill_schema::encode_event(&e).unwrap());
    h.node().log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();

    // Every attempt is a visible dead letter; the one from the topic names the topic.
    let reasons = h.dead_letters("forbidden", 5);
    assert!(
        reasons.iter().any(|r| r.contains("forged-topic") && r.contains("arrived on waybill.inbound.odoo")),
        "{reasons:#?}"
    );
    assert!(h.metric("waybill_dead_letters_total", &[("kind", "forbidden")]) >= 5.0);
    assert_eq!(h.metric("waybill_ingest_requests_total", &[("status", "403")]), 4.0);
    assert_eq!(h.metric("waybill_ingest_requests_total", &[("status", "401")]), 1.0);
    // The posting stays held, undecided, and nobody but a person can release it.
    let p = h.posting(&posting);
    assert_eq!((p.state.as_str(), p.decided_by.as_deref()), ("held", None), "{p:?}");
    let ok = h.approve(ALICE, &posting).unwrap();
    assert_eq!((ok.state.as_str(), ok.decided_by.as_str()), ("approved", "alice"));
}

#[test]
fn producers_send_only_as_their_system_and_only_what_it_owns() {
    let h = Harness::start(|cfg, _| {
        cfg.ingest.systems.insert(
            "carrier".into(),
            IngestLimits { max_body_bytes: Some(4096), rate_per_sec: Some(0.01), burst: Some(2) },
        );
    });
    // The warehouse posting an order release (Odoo owns it): 403, dead letter, counter.
    let mut e = released("SO-O1");
    e.meta.source = SourceRef::new(System::Wms, "SO-O1");
    let a = h.post(Some(WMS), &e);
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body["error"].as_str().unwrap().starts_with("system wms does not own OrderReleased (owner: odoo)"));
    let reasons = h.dead_letters("ownership", 1);
    assert!(reasons[0].contains("does not own OrderReleased"), "{reasons:?}");
    assert_eq!(h.metric("waybill_ownership_violations_total", &[("system", "wms"), ("event", "OrderReleased")]), 1.0);
    // The same on the warehouse's inbound topic: the coordinator refuses it the same way.
    let mut e = released("SO-O2");
    e.meta.source = SourceRef::new(System::Wms, "SO-O2");
    let record = record_for(&topic::inbound(System::Wms), &e, waybill_schema::encode_event(&e).unwrap());
    h.node().log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();
    h.dead_letters("ownership", 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.metric("waybill_ownership_violations_total", &[("system", "wms"), ("event", "OrderReleased")]) < 2.0 {
        assert!(Instant::now() < deadline, "the coordinator's refusal is counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(h.node().projections.order("SO-O2").unwrap().is_none(), "nothing was released");

    // A body claiming another system's source, or another actor: 403.
    let a = h.post(Some(WMS), &released("SO-O3"));
    assert_eq!(a.status, 403);
    assert!(
        a.body["error"]
            .as_str()
            .unwrap()
            .contains("wms-prod authenticated as system wms, but the body claims source odoo:SO-O3")
    );
    let mut e = released("SO-O3");
    e.meta.actor = Some("someone-else".into());
    let a = h.post(Some(ODOO), &e);
    assert_eq!(a.status, 403);
    assert!(a.body["error"].as_str().unwrap().contains("acts only as itself"), "{}", a.body);
    // A person without a system cannot post; an unknown token is not authenticated.
    let a = h.post(Some(ALICE), &released("SO-O3"));
    assert_eq!(a.status, 403);
    assert!(a.body["error"].as_str().unwrap().contains("has no system"), "{}", a.body);
    assert_eq!(h.post(Some("no-such-token-000000000"), &released("SO-O3")).status, 401);
    h.post_ok(ODOO, &released("SO-O3"));

    // Limits per system: the body size (413), then the rate (429 with Retry-After).
    let big = vec![b' '; 5000];
    let a = h.post_bytes(Some(CARRIER), "application/json", &big);
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body["error"].as_str().unwrap().contains("limit of 4096 bytes"));
    let a = h.post_bytes(Some(CARRIER), "application/json", b"{}");
    assert_eq!(a.status, 400, "the burst's second request is still let through");
    let a = h.post_bytes(Some(CARRIER), "application/json", b"{}");
    assert_eq!(a.status, 429, "{}", a.body);
    let wait: u64 = a.retry_after.expect("Retry-After").parse().unwrap();
    assert!(wait >= 1, "{wait}");
    // Other systems are not throttled by the carrier's limit.
    h.post_ok(WMS, &reserved("SO-O3"));
    // Dead letters refused over HTTP are counted with the coordinator's kind names.
    assert!(h.metric("waybill_dead_letters_total", &[("kind", "decode")]) >= 1.0);
}

#[test]
fn four_eyes_refuses_the_person_who_caused_the_posting() {
    let h = Harness::start(|_, _| {});
    // Lena, a warehouse lead with an approver role, posts the goods issue herself.
    let posting = h.held_posting("SO-4E", LENA);
    assert_eq!(h.posting(&posting).requested_by, "lena");
    let refused = h.approve(LENA, &posting).unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("lena requested or changed posting inv:SHP-SO-4E"), "{}", refused.message());
    assert_eq!(h.posting(&posting).state, "held");
    let ok = h.approve(ALICE, &posting).unwrap();
    assert_eq!(ok.decided_by, "alice");
}

#[test]
fn a_rotated_token_works_on_ingestion_without_a_restart() {
    let h = Harness::start(|_, _| {});
    h.post_ok(ODOO, &released("SO-T1"));
    h.post_ok(WMS, &reserved("SO-T1"));
    let new_wms = "wms-prod-rotated-token-9";
    // A new modification time even on a coarse-grained file system.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(h.dir.join("tokens.toml"), tokens(new_wms)).unwrap();
    let a = h.post(Some(WMS), &accepted("SO-T1"));
    assert_eq!(a.status, 401, "the old token is gone: {}", a.body);
    assert!(a.body["error"].as_str().unwrap().contains("rotated"), "{}", a.body);
    h.post_ok(new_wms, &accepted("SO-T1"));
}

#[test]
fn anonymous_ingestion_only_on_loopback() {
    // Configuration refuses anonymous posts on any other address.
    let mut cfg = Config::default();
    cfg.ingest.listen = "0.0.0.0:8420".into();
    cfg.ingest.allow_anonymous = true;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("ingest.allow_anonymous") && e.contains("loopback"), "{e}");

    // Listening on every interface without it: a post without credentials is 401.
    let h = Harness::start(|cfg, _| cfg.ingest.listen = "0.0.0.0:0".into());
    let port = h.node().ingest_addr.unwrap().port();
    let url = format!("http://127.0.0.1:{port}/v1/events");
    let mut resp = agent()
        .post(&url)
        .header("Content-Type", "application/json")
        .send(&waybill_schema::encode_event_json(&released("SO-N1"))[..])
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.body_mut().read_to_string().unwrap().contains("Bearer"));
    assert!(h.node().projections.order("SO-N1").unwrap().is_none());

    // On loopback with allow_anonymous (the demo), posts are accepted within the same rules.
    let h = Harness::start(|cfg, _| cfg.ingest.allow_anonymous = true);
    h.post_ok_anonymous(&released("SO-N2"));
    let a = h.post(None, &forged("SO-N2", "inv:SHP-SO-N2", "forged-anon", System::Operator));
    assert_eq!(a.status, 403, "{}", a.body);
    let mut e = released("SO-N3");
    e.meta.source = SourceRef::new(System::Carrier, "SO-N3");
    assert_eq!(h.post(None, &e).status, 403, "ownership holds for anonymous posts too");
}

impl Harness {
    fn post_ok_anonymous(&self, e: &InboundEvent) {
        let a = self.post(None, e);
        assert_eq!(a.status, 202, "{}", a.body);
    }
}

/// Posts `body` as JSON over HTTPS to `addr`, trusting `ca`, with an optional client
/// certificate (PEM files) and bearer token. `Err` when the TLS handshake fails.
fn https_post(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    token: Option<&str>,
    body: &[u8],
) -> Result<(u16, String), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        tls.write_all(body).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        // A server that refuses the client certificate ends the connection here.
        tls.read_to_end(&mut answer).await.map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status =
            text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("no status in {text:?}"))?;
        Ok((status, text))
    })
}

#[test]
fn ingestion_speaks_tls_and_identifies_producers_by_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |sans: Vec<String>, cn: &str, issuer: &CertifiedIssuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        (params.signed_by(&key, issuer).unwrap().pem(), key.serialize_pem())
    };
    let (good, rogue) = (ca("waybill test CA"), ca("rogue CA"));
    let server = leaf(vec!["127.0.0.1".into()], "waybill", &good);
    let client = leaf(vec!["wms-gw.example.com".into()], "wms-gw", &good);
    let bad = leaf(vec!["wms-gw.example.com".into()], "wms-gw", &rogue);
    let h = Harness::start(|cfg, dir| {
        for (name, text) in [
            ("ca.pem", good.pem()),
            ("server.pem", server.0.clone()),
            ("server.key", server.1.clone()),
            ("client.pem", client.0.clone()),
            ("client.key", client.1.clone()),
            ("rogue.pem", bad.0.clone()),
            ("rogue.key", bad.1.clone()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut tokens = std::fs::read_to_string(dir.join("tokens.toml")).unwrap();
        tokens.push_str("\n[[clients]]\nidentity = \"wms-gw\"\nsystem = \"wms\"\n");
        std::fs::write(dir.join("tokens.toml"), tokens).unwrap();
        cfg.ingest.tls_cert = Some(dir.join("server.pem"));
        cfg.ingest.tls_key = Some(dir.join("server.key"));
        cfg.ingest.client_ca = Some(dir.join("ca.pem"));
    });
    let (addr, dir) = (h.node().ingest_addr.unwrap(), h.dir.clone());
    let body = waybill_schema::encode_event_json(&reserved("SO-TLS"));
    let post = |client: Option<&str>, token: Option<&str>| {
        let files = client.map(|c| (dir.join(format!("{c}.pem")), dir.join(format!("{c}.key"))));
        https_post(
            &h.rt,
            addr,
            &dir.join("ca.pem"),
            files.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            token,
            &body,
        )
    };
    // A certificate from another CA never gets a request through.
    let rogue = post(Some("rogue"), None);
    assert!(rogue.is_err(), "{rogue:?}");
    // TLS without a certificate or token: 401; with a token: the token's identity.
    assert_eq!(post(None, None).unwrap().0, 401);
    let (status, text) = post(Some("client"), None).unwrap();
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("waybill.inbound.wms"), "{text}");
    // The certificate's CN is the actor written with the event.
    let log = &h.node().log;
    let stamped = (0..2)
        .flat_map(|p| log.read(&topic::inbound(System::Wms), p, 0, 100).unwrap())
        .map(|r| waybill_schema::decode_event(&r.value).unwrap())
        .any(|e| e.meta.actor.as_deref() == Some("wms-gw"));
    assert!(stamped, "the event names the certificate's identity as its actor");
    // Plain HTTP on the TLS port gets no answer.
    let plain = agent()
        .post(&format!("http://{addr}/v1/events"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {WMS}"))
        .send(&body[..]);
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status().as_u16() >= 400));
}
