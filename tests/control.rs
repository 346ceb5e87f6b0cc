//! The gRPC control plane over real gRPC: a node started in-process with the control
//! plane on 127.0.0.1:0, orders driven by appending events until their invoice is held
//! (the customer is listed as new in the master data), then approvals as an approver
//! would make them — and the mistakes they would make: a stale version, approving their
//! own posting, an amount above their limit, no token, a viewer's token, a rotated token,
//! a certificate from the wrong CA. Every attempt must show up in the audit and the log.

#[path = "support/drive.rs"]
mod drive;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::{InboundEvent, System, topic};
use waybill_projection::OrderStatus;
use waybill_server::config::Config;
use waybill_server::node::{self, Node};
use waybill_test_util::inbound::*;

const ALICE: &str = "alice-approver-token-0001";
const BOB: &str = "bob-approver-token-00002";
const SAM: &str = "sam-senior-approver-0003";
const VERA: &str = "vera-viewer-token-000004";
/// The identity that requested the held postings (the warehouse's goods issue).
const WMS: &str = "wms-as-approver-token-05";
const OLGA: &str = "olga-operator-token-0006";

fn tokens(extra: &str) -> String {
    format!(
        r#"
[[tokens]]
token = "{ALICE}"
identity = "alice"
role = "approver"

[[tokens]]
token = "{BOB}"
identity = "bob"
role = "approver"

[[tokens]]
token = "{SAM}"
identity = "sam"
role = "senior-approver"

[[tokens]]
token = "{VERA}"
identity = "vera"
role = "viewer"

[[tokens]]
token = "{OLGA}"
identity = "olga"
role = "operator"
{extra}"#
    )
}

struct Harness {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    node: Option<Node>,
    rt: tokio::runtime::Runtime,
    /// The CA to trust when the control plane speaks TLS.
    ca: Option<PathBuf>,
}

impl Harness {
    fn start(tokens_toml: &str, tweak: impl FnOnce(&mut Config, &Path)) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tokens.toml"), tokens_toml).unwrap();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = String::new();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = "127.0.0.1:0".into();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        tweak(&mut cfg, &dir);
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let node = Node::start(&cfg, log, drive::catalog()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let ca = cfg.control.client_ca.clone();
        Harness { _dir: tmp, dir, node: Some(node), rt, ca }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.node().control_addr().unwrap())
    }

    fn clients(&self, token: Option<&str>) -> Clients {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let opts = ClientOptions {
            server: self.url(scheme),
            token: token.map(str::to_string),
            ca_cert: self.ca.clone(),
            ..ClientOptions::default()
        };
        self.rt.block_on(client::connect(&opts)).unwrap()
    }

    /// Appends `e` to its inbound topic, stamped with the current time as a source system
    /// would send it (the node's timers run on the wall clock).
    fn append(&self, e: InboundEvent) {
        drive::append(self.node(), e)
    }

    fn wait_status(&self, order: &str, status: OrderStatus) {
        drive::wait_status(self.node(), order, status)
    }

    /// Drives `order` to a held invoice for shipment `SHP-<order>` of `units` × `price`.
    fn held_posting(&self, order: &str, units: i64, price: i64) -> String {
        drive::held_posting(self.node(), order, units, price)
    }

    fn approve(
        &self,
        token: Option<&str>,
        posting: &str,
        version: i64,
    ) -> Result<proto::DecisionResponse, tonic::Status> {
        let mut c = self.clients(token);
        let req = proto::DecisionRequest {
            posting_id: posting.into(),
            expected_version: version,
            reason: "checked the evidence".into(),
        };
        self.rt.block_on(c.approvals.approve(req)).map(|r| r.into_inner())
    }

    fn reject(
        &self,
        token: Option<&str>,
        posting: &str,
        version: i64,
        reason: &str,
    ) -> Result<proto::DecisionResponse, tonic::Status> {
        let mut c = self.clients(token);
        let req =
            proto::DecisionRequest { posting_id: posting.into(), expected_version: version, reason: reason.into() };
        self.rt.block_on(c.approvals.reject(req)).map(|r| r.into_inner())
    }

    /// The audit entries of `posting`, once `n` of them have an outcome other than pending.
    fn audit(&self, posting: &str, n: usize) -> Vec<proto::AuditEntry> {
        let mut c = self.clients(Some(VERA));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let req = proto::ListAuditRequest { posting_id: posting.into(), actor: String::new(), limit: 0 };
            let entries = self.rt.block_on(c.audit.list_audit(req)).unwrap().into_inner().entries;
            if entries.iter().filter(|e| e.outcome != "pending").count() >= n {
                return entries;
            }
            assert!(Instant::now() < deadline, "expected {n} decided audit entries for {posting}: {entries:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records of `topic` whose value or headers mention `needle`.
    fn log_records(&self, t: &str, needle: &str) -> usize {
        drive::log_records(self.node(), t, needle)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

fn posting_version(h: &Harness, posting: &str) -> i64 {
    h.node().projections.posting(posting).unwrap().unwrap().1.version
}

#[test]
fn approve_reject_and_double_approve_over_grpc() {
    let h = Harness::start(&tokens(""), |_, _| {});
    let a = h.held_posting("SO-A1", 3, 1250);
    let r = h.held_posting("SO-R1", 2, 1250);

    // The held posting, with its evidence, as an approver sees it.
    let mut viewer = h.clients(Some(VERA));
    let list =
        h.rt.block_on(viewer.approvals.list_held_postings(proto::ListHeldPostingsRequest {
            reason_contains: "customer c1".into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(list.postings.iter().map(|p| p.posting_id.as_str()).collect::<Vec<_>>(), [a.as_str(), r.as_str()]);
    let page =
        h.rt.block_on(
            viewer.approvals.list_held_postings(proto::ListHeldPostingsRequest { page_size: 1, ..Default::default() }),
        )
        .unwrap()
        .into_inner();
    assert_eq!(page.postings.len(), 1);
    let next =
        h.rt.block_on(viewer.approvals.list_held_postings(proto::ListHeldPostingsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(next.postings[0].posting_id, r);
    assert!(next.next_page_token.is_empty());
    let shown =
        h.rt.block_on(viewer.approvals.get_posting(proto::GetPostingRequest { posting_id: a.clone() }))
            .unwrap()
            .into_inner();
    let p = shown.posting.unwrap();
    assert_eq!((p.version, p.state.as_str(), p.amount_minor, p.customer.as_str()), (1, "held", 3750, "C1"));
    assert!(p.reasons.iter().any(|x| x.contains("new") && x.contains("C1")), "{:?}", p.reasons);
    assert_eq!(shown.order_lines[0].unit_price_minor, 1250);
    assert_eq!(shown.order_lines[0].shipped_milli, 3000);
    assert_eq!(shown.document_lines[0].total_minor, 3750);

    // Approve: the saga decides, the answer carries the new version.
    let ok = h.approve(Some(ALICE), &a, 1).unwrap();
    assert_eq!((ok.state.as_str(), ok.version, ok.already_decided), ("approved", 2, false), "{ok:?}");
    assert_eq!(ok.decided_by, "alice");
    assert!(ok.event_id.starts_with("control:inv:SHP-SO-A1:v1:approve:alice"), "{ok:?}");
    // The invoice goes to finance exactly once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.log_records(&topic::commands(System::Finance), "SHP-SO-A1") == 0 {
        assert!(Instant::now() < deadline, "no PostInvoice after the approval");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Approve twice = one posting; the second call says who approved it.
    let again = h.approve(Some(BOB), &a, 1).unwrap();
    assert!(again.already_decided, "{again:?}");
    assert!(again.message.contains("already approved by alice"), "{}", again.message);
    // Rejecting an approved posting is refused.
    let e = h.reject(Some(BOB), &a, 2, "too late").unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already approved by alice"), "{}", e.message());

    // Reject: needs a reason; then the posting is rejected and nothing is posted.
    let e = h.reject(Some(BOB), &r, 1, " ").unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let rej = h.reject(Some(BOB), &r, 1, "wrong price on line 1").unwrap();
    assert_eq!((rej.state.as_str(), rej.version), ("rejected", 2), "{rej:?}");
    let e = h.approve(Some(ALICE), &r, 2).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let mut q = h.clients(Some(VERA));
    let xs =
        h.rt.block_on(q.queries.list_exceptions(proto::ListExceptionsRequest {
            category: "posting-rejected".into(),
            open_only: true,
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert!(xs.exceptions.iter().any(|x| x.message.contains("wrong price on line 1")), "{xs:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.log_records(&topic::commands(System::Finance), "SHP-SO-R1"), 0, "a rejected invoice is never posted");
    assert_eq!(h.log_records(&topic::commands(System::Finance), "SHP-SO-A1"), 1, "approve twice = one posting");

    // Queries: the order with its timeline, and lineage.
    let order =
        h.rt.block_on(q.queries.get_order(proto::GetOrderRequest { order_ref: "SO-A1".into() }))
            .unwrap()
            .into_inner()
            .order
            .unwrap();
    assert!(order.timeline.iter().any(|t| t.event == "PostingApproved"), "{:?}", order.timeline);
    let e = h.rt.block_on(q.queries.get_order(proto::GetOrderRequest { order_ref: "SO-NOPE".into() })).unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let lineage =
        h.rt.block_on(q.queries.get_lineage(proto::GetLineageRequest { source_ref: "odoo:SO-A1".into() }))
            .unwrap()
            .into_inner();
    assert!(!lineage.entries.is_empty());

    // Every attempt is audited with who, from where and how it ended; and is in the log.
    let audit = h.audit(&a, 3);
    let outcomes: Vec<(&str, &str, &str)> =
        audit.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.outcome.as_str())).collect();
    assert!(outcomes.contains(&("alice", "approve", "approved")), "{outcomes:?}");
    assert!(outcomes.contains(&("bob", "approve", "already-decided")), "{outcomes:?}");
    assert!(outcomes.contains(&("bob", "reject", "refused")), "{outcomes:?}");
    assert!(audit.iter().all(|e| e.peer.starts_with("127.0.0.1:")), "{audit:?}");
    let audit = h.audit(&r, 3);
    assert!(audit.iter().any(|e| e.actor == "bob" && e.outcome == "rejected"), "{audit:?}");
    assert_eq!(h.log_records(topic::CONTROL, "control:inv:SHP-SO-A1:v1:approve:alice"), 1);
    assert_eq!(h.log_records(topic::CONTROL, "control:inv:SHP-SO-R1:v1:reject:bob"), 1);
    assert_eq!(
        h.log_records(waybill_control::audit::AUDIT_TOPIC, "SHP-SO-A1"),
        2,
        "already-decided and refused attempts"
    );

    // The audit is a projection of the log: rebuilt from scratch it says the same.
    let before = h.node().control.as_ref().unwrap().audit().list(None, None, 1000).unwrap();
    let fresh = waybill_control::audit::AuditStore::open(&h.dir.join("audit-rebuilt")).unwrap();
    fresh.catch_up(h.node().log.as_ref()).unwrap();
    assert_eq!(fresh.list(None, None, 1000).unwrap(), before);
}

#[test]
fn stale_version_four_eyes_and_approval_limits_are_refused_clearly() {
    let extra = format!("\n[[tokens]]\ntoken = \"{WMS}\"\nidentity = \"wms:SO-4E\"\nrole = \"approver\"\n");
    let h = Harness::start(&tokens(&extra), |_, _| {});
    let small = h.held_posting("SO-4E", 1, 1250);
    // 12,000.00: above the approver limit (10,000.00) of the default posting policy.
    let big = h.held_posting("SO-BIG", 1, 12_000_00);

    // Stale version: both versions are named.
    let e = h.approve(Some(ALICE), &small, 7).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("version 1") && e.message().contains("version 7"), "{}", e.message());

    // Four-eyes: the identity that requested the posting may not approve it.
    let requested_by = h.node().projections.posting(&small).unwrap().unwrap().1.requested_by;
    assert_eq!(requested_by, "wms:SO-4E");
    let e = h.approve(Some(WMS), &small, 1).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("four-eyes"), "{}", e.message());

    // Above the approver's limit: says which role can.
    let e = h.approve(Some(ALICE), &big, 1).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("up to 10000.00") && e.message().contains("senior-approver"), "{}", e.message());
    assert_eq!(posting_version(&h, &big), 1, "nothing changed");
    let ok = h.approve(Some(SAM), &big, 1).unwrap();
    assert_eq!((ok.state.as_str(), ok.version), ("approved", 2));

    // Unknown posting.
    let e = h.approve(Some(ALICE), "inv:NOPE", 1).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Refused attempts never reached the saga, and are audited and in the log.
    assert_eq!(posting_version(&h, &small), 1);
    let audit = h.audit(&small, 2);
    assert_eq!(audit.len(), 2, "{audit:#?}");
    assert!(audit.iter().all(|e| e.outcome == "refused" && e.topic == waybill_control::audit::AUDIT_TOPIC));
    assert!(audit.iter().any(|e| e.actor == "wms:SO-4E" && e.detail.contains("PermissionDenied")), "{audit:#?}");
    let audit = h.audit(&big, 2);
    assert!(audit.iter().any(|e| e.actor == "alice" && e.outcome == "refused"), "{audit:#?}");
    assert!(
        audit.iter().any(|e| e.actor == "sam" && e.role == "senior-approver" && e.outcome == "approved"),
        "{audit:#?}"
    );
    assert_eq!(h.log_records(waybill_control::audit::AUDIT_TOPIC, "SHP-SO-4E"), 2);
}

#[test]
fn missing_credentials_and_low_roles_are_refused() {
    let h = Harness::start(&tokens(""), |_, _| {});
    let p = h.held_posting("SO-AUTH", 1, 1250);

    let e = h.approve(None, &p, 1).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("Bearer"), "{}", e.message());
    let e = h.approve(Some("not-a-token-anyone-issued"), &p, 1).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut anon = h.clients(None);
    let e = h.rt.block_on(anon.queries.list_exceptions(proto::ListExceptionsRequest::default())).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // A viewer may look but not approve.
    let e = h.approve(Some(VERA), &p, 1).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("approver") && e.message().contains("vera has role viewer"), "{}", e.message());
    let mut viewer = h.clients(Some(VERA));
    assert!(h.rt.block_on(viewer.queries.list_exceptions(proto::ListExceptionsRequest::default())).is_ok());
    assert_eq!(posting_version(&h, &p), 1);
    let audit = h.audit(&p, 1);
    assert_eq!(
        audit.len(),
        1,
        "unauthenticated calls have no identity to audit; the viewer's attempt is audited: {audit:#?}"
    );
    assert_eq!((audit[0].actor.as_str(), audit[0].outcome.as_str()), ("vera", "refused"));

    // Health and reflection answer like any gRPC server's.
    let channel = h.rt.block_on(tonic::transport::Endpoint::from_shared(h.url("http")).unwrap().connect()).unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    // Like a probe: ready once every partition is restored and turning.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = h
            .rt
            .block_on(health.check(tonic_health::pb::HealthCheckRequest { service: "waybill.v1.Approvals".into() }))
            .unwrap()
            .into_inner();
        if status.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "the control plane never reported SERVING: {status:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tokens_rotate_without_restart() {
    let h = Harness::start(&tokens(""), |_, _| {});
    let p = h.held_posting("SO-ROT", 1, 1250);
    let mut c = h.clients(Some(ALICE));
    assert!(h.rt.block_on(c.queries.list_exceptions(proto::ListExceptionsRequest::default())).is_ok());

    // Rotate alice's token: the old one stops working, the new one works, no restart.
    let rotated = tokens("").replace(ALICE, "alice-rotated-token-0099");
    std::fs::write(h.dir.join("tokens.toml"), rotated).unwrap();
    let e = h.approve(Some(ALICE), &p, 1).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let ok = h.approve(Some("alice-rotated-token-0099"), &p, 1).unwrap();
    assert_eq!((ok.state.as_str(), ok.decided_by.as_str()), ("approved", "alice"));
}

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    rogue_client: (String, String),
}

fn pki() -> Pki {
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
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let good = ca("waybill test CA");
    let rogue = ca("rogue CA");
    Pki {
        ca_pem: good.pem(),
        server: leaf(vec!["127.0.0.1".into()], "waybill", &good),
        client: leaf(vec!["billing.example.com".into()], "billing-service", &good),
        rogue_client: leaf(vec!["billing.example.com".into()], "billing-service", &rogue),
    }
}

#[test]
fn mutual_tls_identifies_clients_and_refuses_bad_certificates() {
    let pki = pki();
    let extra = "\n[[clients]]\nidentity = \"billing-service\"\nrole = \"approver\"\n";
    let h = Harness::start(&tokens(extra), |cfg, dir| {
        for (name, text) in [
            ("ca.pem", &pki.ca_pem),
            ("server.pem", &pki.server.0),
            ("server.key", &pki.server.1),
            ("client.pem", &pki.client.0),
            ("client.key", &pki.client.1),
            ("rogue.pem", &pki.rogue_client.0),
            ("rogue.key", &pki.rogue_client.1),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        cfg.control.tls_cert = Some(dir.join("server.pem"));
        cfg.control.tls_key = Some(dir.join("server.key"));
        cfg.control.client_ca = Some(dir.join("ca.pem"));
    });
    let p = h.held_posting("SO-TLS", 1, 1250);
    let opts = |cert: Option<&str>, token: Option<&str>| ClientOptions {
        server: h.url("https"),
        token: token.map(str::to_string),
        ca_cert: Some(h.dir.join("ca.pem")),
        client_cert: cert.map(|c| h.dir.join(format!("{c}.pem"))),
        client_key: cert.map(|c| h.dir.join(format!("{c}.key"))),
    };
    let decide = |o: ClientOptions| {
        h.rt.block_on(async {
            let mut c = client::connect(&o).await?;
            let req = proto::DecisionRequest { posting_id: p.clone(), expected_version: 1, reason: "ok".into() };
            c.approvals
                .approve(req)
                .await
                .map(|r| r.into_inner())
                .map_err(|s| waybill_control::Error::Internal(format!("{:?}: {}", s.code(), s.message())))
        })
    };

    // A certificate from another CA never gets through the handshake, even with a
    // valid token.
    let e = decide(opts(Some("rogue"), Some(ALICE))).unwrap_err().to_string();
    eprintln!("rogue certificate: {e}");
    // (The connection is cut during or right after the handshake: `transport error` or
    // `Cancelled`, depending on timing; never a handler's answer.)
    assert!(!e.contains("Unauthenticated") && !e.contains("PermissionDenied"), "refused by TLS, not by a handler: {e}");
    assert_eq!(posting_version(&h, &p), 1);
    // Over TLS without a certificate and without a token: unauthenticated.
    let e = decide(opts(None, None)).unwrap_err().to_string();
    assert!(e.contains("Unauthenticated"), "{e}");
    // The trusted certificate's CN is the identity; its role comes from [[clients]].
    let ok = decide(opts(Some("client"), None)).unwrap();
    assert_eq!((ok.state.as_str(), ok.decided_by.as_str()), ("approved", "billing-service"));
    let audit = h.audit(&p, 1);
    assert!(audit.iter().any(|e| e.actor == "billing-service" && e.outcome == "approved"), "{audit:#?}");
}

impl Harness {
    /// The exceptions of `order` (open and resolved), once `ready` holds for them.
    fn exceptions_of(&self, order: &str, ready: impl Fn(&[proto::Exception]) -> bool) -> Vec<proto::Exception> {
        let mut c = self.clients(Some(VERA));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all = self
                .rt
                .block_on(c.queries.list_exceptions(proto::ListExceptionsRequest { limit: 1000, ..Default::default() }))
                .unwrap()
                .into_inner()
                .exceptions;
            let mine: Vec<proto::Exception> = all.into_iter().filter(|x| x.order_ref == order).collect();
            if ready(&mine) {
                return mine;
            }
            assert!(Instant::now() < deadline, "exceptions of {order} never got ready: {mine:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assign(
        &self,
        token: &str,
        exception_id: &str,
        owner: &str,
    ) -> Result<proto::ExceptionActionResponse, tonic::Status> {
        let mut c = self.clients(Some(token));
        let req = proto::AssignExceptionRequest {
            exception_id: exception_id.into(),
            owner: owner.into(),
            note: "yours until the warehouse answers".into(),
        };
        self.rt.block_on(c.workbench.assign_exception(req)).map(|r| r.into_inner())
    }

    fn list_exceptions(&self, req: proto::ListExceptionsRequest) -> proto::ListExceptionsResponse {
        let mut c = self.clients(Some(VERA));
        self.rt.block_on(c.queries.list_exceptions(req)).unwrap().into_inner()
    }

    fn exception_action(
        &self,
        token: &str,
        exception_id: &str,
        note: &str,
        retry: bool,
    ) -> Result<proto::ExceptionActionResponse, tonic::Status> {
        let mut c = self.clients(Some(token));
        let req = proto::ExceptionActionRequest { exception_id: exception_id.into(), note: note.into() };
        let call = async {
            if retry { c.workbench.retry_exception(req).await } else { c.workbench.resolve_exception(req).await }
        };
        self.rt.block_on(call).map(|r| r.into_inner())
    }

    fn replay(&self, token: &str, saga: &str, dry_run: bool) -> Result<proto::ReplayResponse, tonic::Status> {
        let mut c = self.clients(Some(token));
        let req = proto::ReplayRequest { saga_id: saga.into(), note: "after the carrier outage".into() };
        let call =
            async { if dry_run { c.workbench.dry_run_replay(req).await } else { c.workbench.replay(req).await } };
        self.rt.block_on(call).map(|r| r.into_inner())
    }

    /// Commands with idempotency key `key` in `waybill.commands.<system>`, decoded.
    fn commands_with_key(&self, system: System, key: &str) -> Vec<waybill_domain::Command> {
        drive::commands_with_key(self.node(), system, key)
    }

    /// The end offsets of every topic the sagas read or write, except `waybill.audit`.
    fn saga_topic_ends(&self) -> Vec<(String, i32, i64)> {
        let log = &self.node().log;
        let mut topics = topic::coordinator_inputs();
        topics.push(topic::JOURNAL.into());
        topics.push(topic::DLQ.into());
        topics.extend(topic::command_topics());
        let mut out = Vec::new();
        for t in topics {
            for p in 0..log.partitions(&t).unwrap() as i32 {
                out.push((t.clone(), p, log.end_offset(&t, p).unwrap()));
            }
        }
        out
    }
}

#[test]
fn workbench_retry_and_resolve_over_grpc() {
    let h = Harness::start(&tokens(""), |cfg, _| cfg.policy.fulfillment.pick_timeout_secs = 0.2);
    // Released to the warehouse, never picked: the pick becomes overdue.
    h.append(released("SO-W1", vec![line(1, "PLAIN", "Units", 2)]));
    h.wait_status("SO-W1", OrderStatus::Reserving);
    h.append(reserved("SO-W1", &[(1, 2, 0)]));
    let xs = h.exceptions_of("SO-W1", |xs| xs.iter().any(|x| x.category == "pick-overdue"));
    let id = xs.iter().find(|x| x.category == "pick-overdue").unwrap().exception_id.clone();
    assert_eq!(id, "o2f:SO-W1/pick-overdue/1");

    // A viewer may look but not act.
    let e = h.exception_action(VERA, &id, "", true).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Retry: the release goes out again with the same idempotency key and the same body.
    let r = h.exception_action(OLGA, &id, "warehouse lost the wave", true).unwrap();
    assert_eq!((r.outcome.as_str(), r.idempotency_key.as_str()), ("retried", "release:SO-W1"), "{r:?}");
    assert!(r.exception.as_ref().is_some_and(|x| x.resolved_at_us == 0), "a retry leaves it open: {r:?}");
    let sent = h.commands_with_key(System::Wms, "release:SO-W1");
    assert_eq!(sent.len(), 2, "the original release and its retry");
    assert_eq!(sent[0].body, sent[1].body, "a retry never sends a different command for the key");

    // Resolve needs a note; with one it closes the exception; twice is refused.
    let e = h.exception_action(OLGA, &id, " ", false).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let r = h.exception_action(OLGA, &id, "picked by hand, warehouse confirmed", false).unwrap();
    assert_eq!(r.outcome, "resolved", "{r:?}");
    // Read your writes: the list shows it resolved, with the note.
    let mut viewer = h.clients(Some(VERA));
    let all =
        h.rt.block_on(viewer.queries.list_exceptions(proto::ListExceptionsRequest::default()))
            .unwrap()
            .into_inner()
            .exceptions;
    let x = all.iter().find(|x| x.exception_id == id).unwrap();
    assert!(x.resolved_at_us > 0 && x.resolution.contains("picked by hand"), "{x:?}");
    let open =
        h.rt.block_on(
            viewer.queries.list_exceptions(proto::ListExceptionsRequest { open_only: true, ..Default::default() }),
        )
        .unwrap()
        .into_inner()
        .exceptions;
    assert!(open.iter().all(|x| x.exception_id != id));
    let e = h.exception_action(OLGA, &id, "again", false).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already resolved"), "{}", e.message());
    let e = h.exception_action(OLGA, &id, "", true).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = h.exception_action(OLGA, "o2f:SO-W1/pick-overdue/7", "", true).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Every attempt is audited: who, what, from where, how it ended.
    let audit = h.audit(&id, 6);
    let outcome = |action: &str, outcome: &str| {
        audit.iter().filter(|e| e.action == action && e.outcome == outcome && !e.peer.is_empty()).count()
    };
    assert_eq!(outcome("retry", "retried"), 1, "{audit:#?}");
    assert_eq!(outcome("resolve", "resolved"), 1, "{audit:#?}");
    assert_eq!(outcome("retry", "refused"), 2, "the viewer's and the retry of a resolved one: {audit:#?}");
    assert_eq!(outcome("resolve", "refused"), 2, "no note, and twice: {audit:#?}");
    let resolved = audit.iter().find(|e| e.outcome == "resolved").unwrap();
    assert_eq!((resolved.actor.as_str(), resolved.role.as_str()), ("olga", "operator"));
    assert_eq!(resolved.topic, topic::CONTROL);
    // Both actions are events in the log, consumed by the saga.
    assert_eq!(h.log_records(topic::CONTROL, &id), 2);
}

#[test]
fn workbench_assign_lists_by_owner_and_customer_and_survives_a_rebuild() {
    let mut h = Harness::start(&tokens(""), |cfg, _| cfg.policy.fulfillment.pick_timeout_secs = 0.2);
    for order in ["SO-A1", "SO-A2"] {
        h.append(released(order, vec![line(1, "PLAIN", "Units", 2)]));
        h.wait_status(order, OrderStatus::Reserving);
        h.append(reserved(order, &[(1, 2, 0)]));
    }
    let id = |order: &str| {
        let xs = h.exceptions_of(order, |xs| xs.iter().any(|x| x.category == "pick-overdue"));
        xs.into_iter().find(|x| x.category == "pick-overdue").unwrap()
    };
    let (a1, a2) = (id("SO-A1"), id("SO-A2"));
    // In business terms: which order's pick, how late, at which warehouse.
    assert!(a1.message.starts_with("Pick for SO-A1 is ") && a1.message.contains(" overdue at warehouse "), "{a1:?}");
    assert_eq!((a1.customer.as_str(), a1.owner.as_str(), a1.assigned_at_us), ("C1", "", 0), "{a1:?}");
    let (a1, a2) = (a1.exception_id, a2.exception_id);

    // A viewer may not assign; an operator may; a blank owner is refused at the edge.
    let e = h.assign(VERA, &a1, "wh-leads").unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = h.assign(OLGA, &a1, "  ").unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let r = h.assign(OLGA, &a1, "wh-leads").unwrap();
    assert_eq!((r.action.as_str(), r.outcome.as_str()), ("assign", "assigned"), "{r:?}");
    assert_eq!(r.message, format!("exception {a1} assigned to wh-leads"));
    let x = r.exception.as_ref().unwrap();
    assert!(x.owner == "wh-leads" && x.assigned_at_us > 0 && x.resolved_at_us == 0, "read your writes: {x:?}");
    // Again to the same owner: nothing changes, nothing is sent to the saga.
    let again = h.assign(OLGA, &a1, "wh-leads").unwrap();
    assert_eq!(again.outcome, "unchanged", "{again:?}");
    assert!(again.event_id.is_empty());
    assert_eq!(again.exception.as_ref().unwrap().assigned_at_us, x.assigned_at_us);
    // Reassignment to someone else.
    let r = h.assign(OLGA, &a1, "olga").unwrap();
    assert_eq!(r.message, format!("exception {a1} reassigned from wh-leads to olga"));

    // The list filters by owner (`-`: unassigned) and by customer, and pages.
    let owned = |owner: &str| {
        let req = proto::ListExceptionsRequest { owner: owner.into(), open_only: true, ..Default::default() };
        h.list_exceptions(req).exceptions.into_iter().map(|x| x.exception_id).collect::<Vec<_>>()
    };
    assert_eq!(owned("olga"), std::slice::from_ref(&a1));
    assert!(owned("wh-leads").is_empty());
    assert!(owned("-").contains(&a2) && !owned("-").contains(&a1));
    let of_customer = |customer: &str| {
        let req = proto::ListExceptionsRequest { customer: customer.into(), ..Default::default() };
        h.list_exceptions(req).exceptions.into_iter().map(|x| x.exception_id).collect::<Vec<_>>()
    };
    let c1 = of_customer("C1");
    assert!(c1.contains(&a1) && c1.contains(&a2), "{c1:?}");
    assert!(of_customer("C9").is_empty());
    let page = |token: &str| {
        let req = proto::ListExceptionsRequest {
            customer: "C1".into(),
            page_size: 1,
            page_token: token.into(),
            ..Default::default()
        };
        h.list_exceptions(req)
    };
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let p = page(&token);
        assert!(p.exceptions.len() <= 1);
        seen.extend(p.exceptions.into_iter().map(|x| x.exception_id));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
    }
    assert_eq!(seen, c1, "pages of one cover the list once, in order");

    // A resolved exception cannot be assigned.
    h.exception_action(OLGA, &a2, "picked by hand", false).unwrap();
    let e = h.assign(OLGA, &a2, "wh-leads").unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("already resolved"), "{}", e.message());

    // The audit has every attempt, with actor and role.
    let audit = h.audit(&a1, 5);
    let outcome =
        |action: &str, outcome: &str| audit.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(outcome("assign", "assigned"), 2, "{audit:#?}");
    assert_eq!(outcome("assign", "unchanged"), 1, "{audit:#?}");
    assert_eq!(outcome("assign", "refused"), 2, "the viewer's and the blank owner: {audit:#?}");
    let assigned = audit.iter().find(|e| e.outcome == "assigned" && e.detail.contains("(was wh-leads)")).unwrap();
    assert_eq!((assigned.actor.as_str(), assigned.role.as_str()), ("olga", "operator"), "{assigned:?}");
    assert_eq!(assigned.topic, topic::CONTROL);
    assert!(assigned.reason.starts_with("to olga"), "{assigned:?}");
    assert_eq!(h.log_records(topic::CONTROL, &a1), 2, "two assignments reached the saga");

    // Rebuilt from the log, the read models know the owner.
    let before = h.node().projections.exception(&a1).unwrap().unwrap();
    assert_eq!(before.owner.as_deref(), Some("olga"));
    h.node.take().unwrap().shutdown();
    let data = h.dir.join("data");
    std::fs::remove_dir_all(data.join("projections")).unwrap();
    let mut cfg = Config { data_dir: data.clone(), partitions: 2, ..Config::default() };
    cfg.log.fsync = "never".into();
    node::rebuild_projections(&cfg).unwrap();
    let store = waybill_projection::ProjectionStore::open(data.join("projections")).unwrap();
    assert_eq!(store.exception(&a1).unwrap().unwrap(), before);
}

#[test]
fn workbench_replay_dry_run_writes_nothing_then_replay_recovers_a_dead_letter() {
    let h = Harness::start(&tokens(""), |_, _| {});
    let order = "SO-W2";
    h.append(released(order, vec![line(1, "PLAIN", "Units", 1)]));
    h.wait_status(order, OrderStatus::Reserving);
    h.append(reserved(order, &[(1, 1, 0)]));
    h.wait_status(order, OrderStatus::Reserved);
    h.append(pick(order, "P-W2", vec![picked(1, "PLAIN", 1)], true));
    h.wait_status(order, OrderStatus::Picked);
    // The carrier's booking overtakes the goods issue: dead-lettered, a bad-input exception.
    h.append(booked(order, "SHP-W2"));
    let xs = h.exceptions_of(order, |xs| xs.iter().any(|x| x.category == "bad-input"));
    let dead = xs.iter().find(|x| x.category == "bad-input").unwrap().exception_id.clone();
    h.append(issued(order, "SHP-W2", &[(1, "PLAIN", 1)]));
    h.wait_status(order, OrderStatus::Shipped);
    // Let the sagas settle (the invoice of the shipment is held for approval).
    let posting = "inv:SHP-W2";
    let deadline = Instant::now() + Duration::from_secs(20);
    while h.node().projections.posting(posting).unwrap().is_none() {
        assert!(Instant::now() < deadline, "posting {posting} was never held");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Dry run, as a viewer: says what would change, writes nothing the sagas read or write.
    let before = h.saga_topic_ends();
    let dry = h.replay(VERA, &format!("o2f:{order}"), true).unwrap();
    assert!(dry.dry_run);
    assert!(dry.inputs.iter().any(|i| i.dead_letter == dead && i.event == "CarrierBooked"), "{dry:#?}");
    let keys: Vec<&str> = dry.commands.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["confirm-shipment:SHP-W2"], "{dry:#?}");
    assert!(dry.journal.iter().any(|j| j.event == "CarrierAssigned"), "{dry:#?}");
    assert_eq!(dry.applied, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(h.saga_topic_ends(), before, "a dry run writes nothing to the saga's topics");
    assert_eq!(h.node().projections.order(order).unwrap().unwrap().shipments[0].carrier, None);
    // ... but it is audited.
    let audit = h.audit(&format!("o2f:{order}"), 1);
    assert!(audit.iter().any(|e| e.action == "replay-dry-run" && e.outcome == "dry-run" && e.actor == "vera"));

    // The real replay needs an operator.
    let e = h.replay(VERA, order, false).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = h.replay(OLGA, "o2f:SO-NOPE", false).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let done = h.replay(OLGA, &format!("o2f:{order}"), false).unwrap();
    assert!(!done.dry_run && !done.event_id.is_empty());
    let keys: Vec<&str> = done.commands.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(keys, ["confirm-shipment:SHP-W2"], "{done:#?}");
    assert_eq!(done.commands[0].command, "ConfirmShipment");
    assert_eq!(h.commands_with_key(System::Odoo, "confirm-shipment:SHP-W2").len(), 1);
    // Read your writes: the order has its carrier and the dead letter is closed.
    let o = h.node().projections.order(order).unwrap().unwrap();
    assert_eq!(o.shipments[0].carrier.as_deref(), Some("DHL"));
    let x = h.node().projections.exception(&dead).unwrap().unwrap();
    assert!(x.resolved_at.is_some(), "{x:?}");
    let audit = h.audit(&format!("o2f:{order}"), 2);
    assert!(audit.iter().any(|e| e.action == "replay" && e.outcome == "replayed" && e.actor == "olga"), "{audit:#?}");

    // Replaying again changes nothing.
    let again = h.replay(VERA, order, true).unwrap();
    assert!(again.commands.is_empty() && again.applied == 0, "{again:#?}");
}

/// The CLI against the same server: `waybill exceptions list|retry|resolve|assign` and
/// `waybill saga replay`, as tables and as JSON.
#[test]
fn workbench_cli_prints_tables_and_json() {
    let h = Harness::start(&tokens(""), |cfg, _| cfg.policy.fulfillment.pick_timeout_secs = 0.2);
    h.append(released("SO-W3", vec![line(1, "PLAIN", "Units", 1)]));
    h.wait_status("SO-W3", OrderStatus::Reserving);
    h.append(reserved("SO-W3", &[(1, 1, 0)]));
    let xs = h.exceptions_of("SO-W3", |xs| xs.iter().any(|x| x.category == "pick-overdue"));
    let id = xs.iter().find(|x| x.category == "pick-overdue").unwrap().exception_id.clone();
    let server = h.url("http");
    let waybill = |token: &str, args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
            .args(args)
            .args(["--server", server.as_str(), "--token", token])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = waybill(VERA, &["exceptions", "list", "--open", "--category", "pick-overdue"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("EXCEPTION") && out.contains(&id), "{out}");

    let (ok, _, err) = waybill(VERA, &["exceptions", "retry", &id]);
    assert!(!ok && err.contains("PermissionDenied"), "{err}");

    let (ok, out, err) = waybill(OLGA, &["exceptions", "retry", &id, "--note", "lost wave", "--output", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["outcome"].as_str(), v["idempotency_key"].as_str()), (Some("retried"), Some("release:SO-W3")), "{v}");

    // Assign, then list by owner and by customer.
    let (ok, _, err) = waybill(OLGA, &["exceptions", "assign", &id]);
    assert!(!ok && err.contains("--owner"), "clap asks for the owner: {err}");
    let (ok, _, err) = waybill(VERA, &["exceptions", "assign", &id, "--owner", "wh-leads"]);
    assert!(!ok && err.contains("PermissionDenied"), "{err}");
    let (ok, out, err) = waybill(OLGA, &["exceptions", "assign", &id, "--owner", "wh-leads", "--note", "chase W1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("exception {id} assigned to wh-leads")) && out.contains("owner      wh-leads"),
        "{out}"
    );
    let (ok, out, err) = waybill(VERA, &["exceptions", "list", "--open", "--owner", "wh-leads"]);
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap_or_default();
    assert!(header.contains("CUSTOMER") && header.contains("OWNER"), "{out}");
    let row = out.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id} listed: {out}"));
    assert!(row.contains("wh-leads") && row.contains(" C1 "), "{row}");
    let (ok, out, _) = waybill(VERA, &["exceptions", "list", "--owner", "nobody"]);
    assert!(ok && !out.contains(&id) && out.contains("0 exceptions"), "{out}");
    let (ok, out, err) = waybill(VERA, &["exceptions", "list", "--customer", "C1", "--output", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed = v["exceptions"].as_array().unwrap();
    assert!(listed.iter().any(|x| x["exception_id"] == id.as_str() && x["owner"] == "wh-leads"), "{v}");
    assert!(listed.iter().all(|x| x["customer"] == "C1"), "{v}");

    let (ok, out, err) = waybill(VERA, &["saga", "replay", "o2f:SO-W3", "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("dry run:") && out.contains("OrderReleased") && out.contains("SagaReplayed"), "{out}");

    let (ok, _, err) = waybill(OLGA, &["exceptions", "resolve", &id]);
    assert!(!ok && err.contains("--note"), "clap asks for the note: {err}");
    let (ok, out, err) = waybill(OLGA, &["exceptions", "resolve", &id, "--note", "picked by hand"]);
    assert!(ok, "{err}");
    assert!(out.contains("resolved by olga (operator): picked by hand"), "{out}");
    let (ok, _, err) = waybill(OLGA, &["exceptions", "resolve", &id, "--note", "again"]);
    assert!(!ok && err.contains("FailedPrecondition") && err.contains("already resolved"), "{err}");
}

#[test]
fn watch_order_streams_each_change_and_ends_at_the_end_state() {
    let h = Harness::start(&tokens(""), |_, _| {});
    let mut viewer = h.clients(Some(VERA));
    // Watched before the order exists: the stream waits for it.
    let req = proto::WatchOrderRequest { order_ref: "SO-WATCH".into(), timeout_ms: 20_000 };
    let mut stream = h.rt.block_on(viewer.queries.watch_order(req)).unwrap().into_inner();
    h.append(released("SO-WATCH", vec![line(1, "PLAIN", "Units", 2)]));
    h.wait_status("SO-WATCH", OrderStatus::Reserving);
    h.append(reserved("SO-WATCH", &[(1, 2, 0)]));
    h.wait_status("SO-WATCH", OrderStatus::Released);
    h.append(pick("SO-WATCH", "P-WATCH", vec![picked(1, "PLAIN", 2)], true));
    h.wait_status("SO-WATCH", OrderStatus::Picked);
    h.append(issued("SO-WATCH", "SHP-WATCH", &[(1, "PLAIN", 2)]));
    h.wait_status("SO-WATCH", OrderStatus::Shipped);
    h.append(delivered("SO-WATCH", "SHP-WATCH"));

    let mut seen = Vec::new();
    while let Some(u) = h.rt.block_on(stream.message()).unwrap() {
        assert_eq!(u.order_ref, "SO-WATCH");
        seen.push((u.status.clone(), u.end));
    }
    assert_eq!(seen.last(), Some(&("completed".to_string(), true)), "the stream ends with the end state: {seen:?}");
    assert!(seen[..seen.len() - 1].iter().all(|(_, end)| !end), "{seen:?}");
    assert!(seen.iter().any(|(s, _)| s == "released"), "each change is sent: {seen:?}");

    // An ended order: one update, then the end of the stream.
    let req = proto::WatchOrderRequest { order_ref: "SO-WATCH".into(), timeout_ms: 0 };
    let mut again = h.rt.block_on(viewer.queries.watch_order(req)).unwrap().into_inner();
    let first = h.rt.block_on(again.message()).unwrap().unwrap();
    assert_eq!((first.status.as_str(), first.end), ("completed", true));
    assert!(h.rt.block_on(again.message()).unwrap().is_none());

    // An order that never ends within the deadline: DEADLINE_EXCEEDED, saying where it stands.
    h.append(released("SO-STUCK", vec![line(1, "PLAIN", "Units", 1)]));
    let req = proto::WatchOrderRequest { order_ref: "SO-STUCK".into(), timeout_ms: 300 };
    let mut stuck = h.rt.block_on(viewer.queries.watch_order(req)).unwrap().into_inner();
    let e = loop {
        match h.rt.block_on(stuck.message()) {
            Ok(Some(u)) => assert!(!u.end, "{u:?}"),
            Ok(None) => panic!("the stream ended without an end state or an error"),
            Err(e) => break e,
        }
    };
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("SO-STUCK") && e.message().contains("timeout_ms"), "{}", e.message());

    // Viewer at least, and a name.
    let mut anon = h.clients(None);
    let req = proto::WatchOrderRequest { order_ref: "SO-WATCH".into(), timeout_ms: 0 };
    assert_eq!(h.rt.block_on(anon.queries.watch_order(req)).unwrap_err().code(), Code::Unauthenticated);
    let req = proto::WatchOrderRequest { order_ref: " ".into(), timeout_ms: 0 };
    assert_eq!(h.rt.block_on(viewer.queries.watch_order(req)).unwrap_err().code(), Code::InvalidArgument);
}

/// The demo's two companies on the templates `deploy/entities/` ships: `acme-fr` (EUR, an
/// approver signs up to 10,000.00) is the default, `acme-us` (USD, up to 3,000.00).
fn two_entities(cfg: &mut Config, dir: &Path) {
    let templates = dir.join("entities");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join("fr.toml"), include_str!("../deploy/entities/fr.toml")).unwrap();
    std::fs::write(templates.join("us.toml"), include_str!("../deploy/entities/us.toml")).unwrap();
    let file = dir.join("waybill.toml");
    std::fs::write(
        &file,
        r#"
[entities]
default = "acme-fr"
template_dir = "entities"

[entities.companies.acme-fr]
name = "Acme Distribution SAS"
template = "fr"

[entities.companies.acme-us]
name = "Acme Distribution Inc."
template = "us"
bank_accounts = ["US-026009593-4410012345"]
"#,
    )
    .unwrap();
    // Read as `waybill serve --config` reads it: the templates relative to the file.
    let loaded = Config::load(Some(&file), figment::Figment::new()).unwrap();
    cfg.entities = loaded.entities;
    cfg.policy.entities = loaded.policy.entities;
}

#[test]
fn two_entities_side_by_side_each_with_its_approval_limits_and_its_own_queues() {
    let h = Harness::start(&tokens(""), two_entities);
    let us = Some(("acme-us", "USD", "US-SALES"));
    // 6,000.00 EUR at acme-fr and 3,500.00 USD at acme-us, both held (customer C1 is new).
    let fr_posting = h.held_posting("SO-FR", 1, 6_000_00);
    let us_posting = drive::held_posting_of(h.node(), "SO-US", 1, 3_500_00, us);
    // An acme-us order with a French tax code is held for its master data.
    let mut bad = drive::released_by("SO-US-TAX", 1, 10_00, us);
    if let waybill_domain::EventBody::OrderReleased(o) = &mut bad.body {
        o.lines[0].tax_code = Some("VAT20".into());
    }
    h.append(bad);
    h.wait_status("SO-US-TAX", OrderStatus::OnHold);

    let mut c = h.clients(Some(VERA));
    let list = |c: &mut Clients, entity: &str| {
        let req = proto::ListHeldPostingsRequest { entity: entity.into(), ..Default::default() };
        h.rt.block_on(c.approvals.list_held_postings(req))
    };
    let all = list(&mut c, "").unwrap().into_inner().postings;
    assert_eq!(all.len(), 2, "{all:#?}");
    let only_us = list(&mut c, "acme-us").unwrap().into_inner().postings;
    assert_eq!(only_us.iter().map(|p| p.posting_id.as_str()).collect::<Vec<_>>(), [us_posting.as_str()]);
    assert_eq!((only_us[0].entity.as_str(), only_us[0].currency.as_str()), ("acme-us", "USD"));
    assert!(only_us[0].reasons.iter().any(|r| r.contains("above the approval limit 2500.00")), "{only_us:#?}");
    let only_fr = list(&mut c, "acme-fr").unwrap().into_inner().postings;
    assert_eq!(only_fr.iter().map(|p| p.posting_id.as_str()).collect::<Vec<_>>(), [fr_posting.as_str()]);
    assert_eq!((only_fr[0].entity.as_str(), only_fr[0].currency.as_str()), ("acme-fr", "EUR"));
    let e = list(&mut c, "acme-de").unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("use one of acme-fr, acme-us"), "{}", e.message());

    // The exception queue filters the same way.
    let exceptions = |c: &mut Clients, entity: &str| {
        let req = proto::ListExceptionsRequest { entity: entity.into(), open_only: true, ..Default::default() };
        h.rt.block_on(c.queries.list_exceptions(req)).unwrap().into_inner().exceptions
    };
    let us_open = exceptions(&mut c, "acme-us");
    assert!(!us_open.is_empty() && us_open.iter().all(|x| x.entity == "acme-us"), "{us_open:#?}");
    assert!(
        us_open
            .iter()
            .any(|x| x.order_ref == "SO-US-TAX" && x.message.contains("not one of entity acme-us's tax codes")),
        "{us_open:#?}"
    );
    assert!(exceptions(&mut c, "acme-fr").iter().all(|x| x.entity == "acme-fr" && x.order_ref != "SO-US-TAX"));

    // An approver signs 6,000.00 EUR at acme-fr but not 3,500.00 USD at acme-us, whose
    // approvers sign up to 3,000.00; a senior approver can.
    let e = h.approve(Some(ALICE), &us_posting, 1).unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("up to 3000.00") && e.message().contains("senior-approver"), "{}", e.message());
    assert_eq!(h.approve(Some(ALICE), &fr_posting, 1).unwrap().state, "approved");
    assert_eq!(h.approve(Some(SAM), &us_posting, 1).unwrap().state, "approved");
}
