//! Finding orders by state and age over real gRPC and with the CLI: `ListOrders` /
//! `waybill order list --state S --older-than D`, as an operator hunting for orders that
//! sit in a state would use them — paged, oldest first, refused without credentials.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tonic::Code;
use waybill_control::client::{self, ClientOptions, Clients};
use waybill_control::proto;
use waybill_domain::event::*;
use waybill_domain::{EventMeta, InboundEvent, Money, Qty, SourceRef, System, Timestamp};
use waybill_log::AppendBatch;
use waybill_projection::OrderStatus;
use waybill_saga::catalog::{Catalog, Tracking};
use waybill_server::config::Config;
use waybill_server::ingest::{inbound_topic, record_for};
use waybill_server::node::{self, Node};

const VERA: &str = "vera-viewer-token-000004";

struct Harness {
    _dir: tempfile::TempDir,
    node: Option<Node>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir: PathBuf = tmp.path().to_path_buf();
        let tokens = format!("[[tokens]]\ntoken = \"{VERA}\"\nidentity = \"vera\"\nrole = \"viewer\"\n");
        std::fs::write(dir.join("tokens.toml"), tokens).unwrap();
        let mut cfg = Config { data_dir: dir.join("data"), partitions: 2, ..Config::default() };
        cfg.log.fsync = "never".into();
        cfg.ingest.listen = String::new();
        cfg.control.listen = "127.0.0.1:0".into();
        cfg.metrics.listen = String::new();
        cfg.control.tokens_file = Some(dir.join("tokens.toml"));
        cfg.validate().unwrap();
        let log = node::open_log(&cfg).unwrap();
        let catalog = Catalog::default()
            .with_product("PLAIN", "Units", Tracking::None)
            .with_customer("C1")
            .with_tax_code("VAT20");
        let node = Node::start(&cfg, log, catalog).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Harness { _dir: tmp, node: Some(node), rt }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    fn url(&self) -> String {
        format!("http://{}", self.node().control_addr().unwrap())
    }

    fn clients(&self, token: Option<&str>) -> Clients {
        let opts = ClientOptions { server: self.url(), token: token.map(str::to_string), ..ClientOptions::default() };
        self.rt.block_on(client::connect(&opts)).unwrap()
    }

    fn send(&self, order: &str, id: &str, system: System, body: EventBody) {
        let e = InboundEvent {
            meta: EventMeta {
                event_id: format!("{id}:{order}"),
                source: SourceRef::new(system, order),
                correlation_key: order.to_string(),
                occurred_at: Timestamp::now(),
                actor: None,
            },
            body,
        };
        let value = waybill_schema::encode_event(&e).unwrap();
        let record = record_for(&inbound_topic(&e), &e, value);
        self.node().log.append(AppendBatch { records: vec![record], positions: vec![] }).unwrap();
    }

    fn wait_status(&self, order: &str, status: OrderStatus) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.node().projections.order(order).unwrap();
            if o.as_ref().is_some_and(|o| o.status == status) {
                return;
            }
            assert!(Instant::now() < deadline, "order {order} never reached {status}: {o:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Releases `order` (one line of `units`) and, when `pick` is given, reserves it in
    /// full and confirms a complete pick of that many units.
    fn order(&self, order: &str, units: i64, pick: Option<i64>) {
        self.send(
            order,
            "odoo:release",
            System::Odoo,
            EventBody::OrderReleased(OrderReleased {
                order_ref: order.into(),
                customer_ref: "C1".into(),
                ship_to: "C1-SHIP".into(),
                currency: "EUR".into(),
                client_order_ref: None,
                lines: vec![OrderLine {
                    line_no: 1,
                    sku: "PLAIN".into(),
                    uom: "Units".into(),
                    quantity: Qty::units(units),
                    unit_price: Money(1250),
                    tax_code: Some("VAT20".into()),
                    requested_date: Timestamp(0),
                    warehouse: "WH1".into(),
                }],
                company: None,
            }),
        );
        self.wait_status(order, OrderStatus::Reserving);
        let Some(picked) = pick else { return };
        self.send(
            order,
            "wms:reserved",
            System::Wms,
            EventBody::StockReserved(StockReserved {
                order_ref: order.into(),
                lines: vec![LineReservation { line_no: 1, reserved: Qty::units(units), short: Qty::ZERO }],
            }),
        );
        self.wait_status(order, OrderStatus::Released);
        self.send(
            order,
            "wms:pick",
            System::Wms,
            EventBody::PickConfirmed(PickConfirmed {
                order_ref: order.into(),
                pick_id: format!("P-{order}"),
                lines: vec![PickedLine {
                    line_no: 1,
                    sku: "PLAIN".into(),
                    quantity: Qty::units(picked),
                    lots: vec![],
                    serials: vec![],
                    bin: "A-01".into(),
                }],
                complete: true,
            }),
        );
    }

    fn list(
        &self,
        token: Option<&str>,
        req: proto::ListOrdersRequest,
    ) -> Result<proto::ListOrdersResponse, tonic::Status> {
        let mut c = self.clients(token);
        self.rt.block_on(c.queries.list_orders(req)).map(|r| r.into_inner())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(n) = self.node.take() {
            n.shutdown();
        }
    }
}

fn refs(r: &proto::ListOrdersResponse) -> Vec<&str> {
    r.orders.iter().map(|o| o.order_ref.as_str()).collect()
}

#[test]
fn list_orders_by_state_and_age_over_grpc_and_the_cli() {
    let h = Harness::start();
    // Two orders picked and waiting for their goods issue, one waiting for its
    // reservation, and one the warehouse picked empty (it ends backordered).
    h.order("SO-A", 2, Some(2));
    h.wait_status("SO-A", OrderStatus::Picked);
    h.order("SO-B", 1, None);
    h.order("SO-C", 3, Some(3));
    h.wait_status("SO-C", OrderStatus::Picked);
    h.order("SO-D", 1, Some(0));
    h.wait_status("SO-D", OrderStatus::Backordered);

    let picked = |page_size, page_token: &str| proto::ListOrdersRequest {
        state: "picked".into(),
        older_than_seconds: 0,
        page_size,
        page_token: page_token.into(),
    };
    let all = h.list(Some(VERA), picked(0, "")).unwrap();
    assert_eq!(refs(&all), ["SO-A", "SO-C"], "oldest change first");
    assert_eq!(all.orders[0].status, "picked");
    assert_eq!(all.orders[0].customer, "C1");
    assert!(all.orders[0].last_event_at_us <= all.orders[1].last_event_at_us);
    assert!(all.next_page_token.is_empty());

    // One per page.
    let first = h.list(Some(VERA), picked(1, "")).unwrap();
    assert_eq!(refs(&first), ["SO-A"]);
    assert!(!first.next_page_token.is_empty());
    let second = h.list(Some(VERA), picked(1, &first.next_page_token)).unwrap();
    assert_eq!(refs(&second), ["SO-C"]);
    assert!(second.next_page_token.is_empty(), "the last page says so");

    // Nothing has sat there for an hour yet.
    let old = h.list(Some(VERA), proto::ListOrdersRequest { older_than_seconds: 3600, ..picked(0, "") }).unwrap();
    assert!(old.orders.is_empty(), "{old:?}");
    // Every state, and the empty pick ended the order.
    let every = h.list(Some(VERA), proto::ListOrdersRequest::default()).unwrap();
    assert_eq!(refs(&every), ["SO-A", "SO-B", "SO-C", "SO-D"]);
    let backordered =
        h.list(Some(VERA), proto::ListOrdersRequest { state: "backordered".into(), ..Default::default() }).unwrap();
    assert_eq!(refs(&backordered), ["SO-D"]);

    // Mistakes are answered with what to do.
    let e = h.list(Some(VERA), proto::ListOrdersRequest { state: "stuck".into(), ..Default::default() }).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("picked") && e.message().contains("reserving"), "{}", e.message());
    let e = h.list(Some(VERA), picked(1, "garbage")).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("start again without it"), "{}", e.message());
    let e = h.list(None, picked(0, "")).unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // The CLI.
    let server = h.url();
    let waybill = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_waybill"))
            .args(args)
            .args(["--server", server.as_str(), "--token", VERA])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = waybill(&["order", "list", "--state", "picked", "--older-than", "0"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("ORDER") && out.contains("SO-A") && out.contains("SO-C") && !out.contains("SO-B"), "{out}");
    let (ok, out, err) = waybill(&["order", "list", "--state", "picked", "--older-than", "1h"]);
    assert!(ok, "{err}");
    assert!(!out.contains("SO-A"), "{out}");
    let (ok, out, err) = waybill(&["order", "list", "--state", "picked", "--page-size", "1", "--output", "json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["orders"][0]["order_ref"].as_str(), Some("SO-A"), "{v}");
    assert!(v["next_page_token"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    let (ok, _, err) = waybill(&["order", "list", "--older-than", "4 weeks"]);
    assert!(!ok && err.contains("s, m, h or d"), "{err}");
}
