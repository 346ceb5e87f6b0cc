//! Procure-to-receive through a running node and its gRPC control plane: a purchase order
//! received over its tolerance and billed above its price, as the warehouse and finance
//! would send it. The receipt goes to Odoo once, the receipt mismatch reads in the
//! supplier's terms and is worked like any exception, the bill waits in the approval
//! inbox as a vendor bill and is posted once an approver (not its requester) approves
//! it, and a dry-run replay of the purchase order's saga shows it would change nothing.

#[path = "support/drive.rs"]
mod drive;

use std::time::{Duration, Instant};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::{CommandBody, InboundEvent, System};
use waybill_server::config::Config;
use waybill_server::node::{self, Node};
use waybill_test_util::purchase::*;

const ALICE: &str = "alice-approver-token-0001";
const OLGA: &str = "olga-operator-token-0006";
const FINANCE: &str = "finance-clerk-token-00007";
const PO: &str = "P00031";

const TOKENS: &str = r#"
[[tokens]]
token = "alice-approver-token-0001"
identity = "alice"
role = "approver"

[[tokens]]
token = "olga-operator-token-0006"
identity = "olga"
role = "operator"

[[tokens]]
token = "finance-clerk-token-00007"
identity = "finance:po:P00031"
role = "approver"
"#;

struct Harness {
    _dir: tempfile::TempDir,
    node: Option<Node>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = String::new();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = String::new();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let node = Node::start(&cfg, log, drive::catalog()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { _dir: tmp, node: Some(node), rt }
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

    fn send(&self, e: InboundEvent) {
        drive::append(self.node(), e)
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

#[test]
fn a_purchase_order_is_received_once_its_mismatch_worked_and_its_held_bill_approved_over_grpc() {
    let h = Harness::start();
    h.send(confirmed(PO, &[(1, "WIDGET", 100, 850)]));
    h.send(notice(PO, "ASN-31", &[(1, 1, "WIDGET", 100, &[])]));
    // 120 arrive against 100 ordered and announced.
    h.send(receipt(PO, "RCV-31", Some("ASN-31"), vec![got(1, Some(1), "WIDGET", 120, 0)]));
    h.wait("the receipt sent to Odoo", || {
        !drive::commands_with_key(h.node(), System::Odoo, "receipt:RCV-31").is_empty()
    });

    // The mismatch is an exception of the purchase order, in the supplier's terms.
    let mut viewer = h.clients(OLGA);
    let id = "p2r:P00031/receipt-mismatch/1";
    h.wait("the receipt mismatch", || h.node().projections.exception(id).unwrap().is_some());
    let x = h.node().projections.exception(id).unwrap().unwrap();
    assert_eq!(x.order_ref.as_deref(), Some("po:P00031"));
    assert!(x.message.contains("120 received against 100 ordered (tolerance 5 %)"), "{}", x.message);
    assert!(x.message.contains("ASN-31 line 1 announced 100 WIDGET, 120 arrived"), "{}", x.message);
    let listed =
        h.rt.block_on(viewer.queries.list_exceptions(proto::ListExceptionsRequest {
            category: "receipt-mismatch".into(),
            open_only: true,
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(listed.exceptions.iter().map(|e| e.exception_id.as_str()).collect::<Vec<_>>(), [id]);

    // Odoo validates the receipt; the supplier bills the 120 at 6 % above the order's price.
    h.send(validated(PO, "RCV-31"));
    h.send(bill(PO, "AF-31", &[(1, "WIDGET", 120, 901)]));
    let posting = "bill:AF-31";
    h.wait("the held bill", || h.node().projections.posting(posting).unwrap().is_some());
    let inbox =
        h.rt.block_on(viewer.approvals.list_held_postings(proto::ListHeldPostingsRequest {
            document: "vendor-bill".into(),
            ..Default::default()
        }))
        .unwrap()
        .into_inner();
    assert_eq!(inbox.postings.len(), 1, "{inbox:?}");
    let p = &inbox.postings[0];
    assert_eq!((p.posting_id.as_str(), p.document.as_str(), p.amount_minor), (posting, "vendor-bill", 108_120));
    assert_eq!(p.order_ref, "po:P00031");
    assert_eq!(p.reasons, ["line 1 WIDGET: unit price 9.01 is 6.0 % above the order's 8.50 (tolerance 2 %)"]);
    // The approver sees the three sides of the match: ordered at 8.50, 120 received, 120
    // billed at 9.01.
    let shown =
        h.rt.block_on(viewer.approvals.get_posting(proto::GetPostingRequest { posting_id: posting.into() }))
            .unwrap()
            .into_inner();
    let o = &shown.order_lines;
    assert_eq!(o.len(), 1, "{shown:?}");
    assert_eq!(
        (o[0].sku.as_str(), o[0].ordered_milli, o[0].shipped_milli, o[0].unit_price_minor),
        ("WIDGET", 100_000, 120_000, 850)
    );
    let d = &shown.document_lines;
    assert_eq!(d.len(), 1, "{shown:?}");
    assert_eq!(
        (d[0].line_no, d[0].quantity_milli, d[0].unit_price_minor, d[0].total_minor),
        (1, 120_000, 901, 108_120)
    );
    assert_eq!(shown.document_total_minor, 108_120);

    // The CLI lists it under its document too, and only it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["approvals", "list", "--document", "vendor-bill", "--server"])
        .arg(format!("http://{}", h.node().control_addr().unwrap()))
        .args(["--token", OLGA])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && listed.contains(posting) && listed.contains("po:P00031"), "{listed}");

    // The identity that entered the bill may not approve it; an approver may.
    let mut clerk = h.clients(FINANCE);
    let req = |token_reason: &str| proto::DecisionRequest {
        posting_id: posting.into(),
        expected_version: 1,
        reason: token_reason.into(),
    };
    let err = h.rt.block_on(clerk.approvals.approve(req("mine"))).unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("four-eyes"), "{}", err.message());
    let mut alice = h.clients(ALICE);
    let ok = h.rt.block_on(alice.approvals.approve(req("price increase agreed with Acme"))).unwrap().into_inner();
    assert_eq!((ok.state.as_str(), ok.version), ("approved", 2), "{ok:?}");
    let key = format!("bill:{SUPPLIER}/AF-31");
    h.wait("the bill sent to finance", || !drive::commands_with_key(h.node(), System::Finance, &key).is_empty());
    let sent = drive::commands_with_key(h.node(), System::Finance, &key);
    assert_eq!(sent.len(), 1);
    assert!(matches!(&sent[0].body, CommandBody::PostVendorBill(b) if b.amount.0 == 108_120));

    // The operator settles the over-delivery with the supplier and resolves the mismatch.
    let mut olga = h.clients(OLGA);
    let resolved =
        h.rt.block_on(olga.workbench.resolve_exception(proto::ExceptionActionRequest {
            exception_id: id.into(),
            note: "supplier credits the extra 20".into(),
        }))
        .unwrap()
        .into_inner();
    assert!(!resolved.event_id.is_empty(), "{resolved:?}");
    h.wait("the resolution", || h.node().projections.exception(id).unwrap().is_some_and(|x| !x.is_open()));

    // A dry-run replay of the purchase order's saga changes nothing.
    let dry =
        h.rt.block_on(
            olga.workbench.dry_run_replay(proto::ReplayRequest { saga_id: "p2r:P00031".into(), note: String::new() }),
        )
        .unwrap()
        .into_inner();
    assert_eq!((dry.order_ref.as_str(), dry.saga_id.as_str(), dry.applied), ("po:P00031", "p2r:P00031", 0), "{dry:?}");
    assert!(dry.commands.is_empty(), "{dry:?}");

    // Finance posts it: the purchase order completes; it is no sale order.
    h.send(bill_posted(PO, "AF-31", waybill_domain::Money(108_120)));
    h.wait("completion", || {
        h.node().projections.timeline("po:P00031").unwrap().last().is_some_and(|t| t.event == "Completed")
    });
    assert!(h.node().projections.orders(None, 100).unwrap().is_empty(), "purchase orders are not listed as orders");
    assert_eq!(h.node().projections.purchase_orders().unwrap().len(), 1);
}
