//! Waybill through its connectors, as a separate `waybill serve` process, against the
//! doubles of Odoo (JSON-RPC 17.0, also finance in Odoo Accounting), the warehouse and the
//! carrier, running here in the test: orders are confirmed in Odoo, the warehouse and the
//! carrier answer at once or later through authenticated ingestion, and the process is
//! SIGKILLed at random moments. Counted in the doubles by natural key, nothing is done
//! twice: one validated delivery per shipment, one invoice per shipment, one credit note
//! per return receipt, one validated receipt per purchase order the buyer confirmed in
//! Odoo and the warehouse received.

#[path = "support/proc.rs"]
#[allow(dead_code)] // shared with other test binaries; not every helper is used here
mod proc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use waybill_domain::event::*;
use waybill_domain::{EventBody, EventMeta, InboundEvent, Qty, SourceRef, System, Timestamp};

use proc::{Proc, free_port};

/// Warnings and errors the process logged, then its last lines.
fn trouble(p: &Proc) -> String {
    let all = p.output();
    let lines: Vec<&str> = all.lines().collect();
    let warn: Vec<&str> = lines.iter().copied().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    format!("{}\n...\n{}", warn.join("\n"), lines[lines.len().saturating_sub(20)..].join("\n"))
}

use waybill_doubles::http_target::{Answer, HttpTarget, HttpTargetConfig, Received};
use waybill_doubles::odoo::{OdooConfig, OdooDouble};
use waybill_doubles::{Fault, Match, Times};

const BIN: &str = env!("CARGO_BIN_EXE_waybill");
const HMAC: &str = "shared-hmac-secret";

/// Products of the demo catalog (`serve --demo-catalog`): untracked, lot-tracked (kg),
/// serial-tracked.
const PRODUCTS: [(&str, &str, &str); 3] =
    [("SKU-0000", "Units", "none"), ("SKU-0001", "kg", "lot"), ("SKU-0003", "Units", "serial")];

/// Events the warehouse, the carrier and Odoo send later, through ingestion — per order in
/// the order they were scheduled, as a real system's outbox would: a post that fails
/// (Waybill is down) holds back the order's later events until it goes through.
#[derive(Default)]
struct Later {
    due: Mutex<Vec<(u64, Instant, &'static str, InboundEvent)>>,
    seq: std::sync::atomic::AtomicU64,
    refused: Mutex<Vec<String>>,
}

impl Later {
    fn after(&self, ms: u64, token: &'static str, e: InboundEvent) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.due.lock().unwrap().push((seq, Instant::now() + Duration::from_millis(ms), token, e));
    }

    /// The next event to post: due, and the first still pending for its order.
    fn next(&self) -> Option<(u64, Instant, &'static str, InboundEvent)> {
        let mut all = self.due.lock().unwrap();
        let now = Instant::now();
        let first_of = |key: &str, all: &[(u64, Instant, &str, InboundEvent)]| {
            all.iter().filter(|x| x.3.meta.correlation_key == key).map(|x| x.0).min()
        };
        let i = (0..all.len())
            .filter(|&i| all[i].1 <= now && first_of(&all[i].3.meta.correlation_key, &all) == Some(all[i].0))
            .min_by_key(|&i| all[i].0)?;
        Some(all.swap_remove(i))
    }
}

fn event(id: String, system: System, order: &str, body: EventBody) -> InboundEvent {
    InboundEvent {
        meta: EventMeta {
            event_id: id.clone(),
            source: SourceRef::new(system, id),
            correlation_key: order.into(),
            occurred_at: Timestamp::now(),
            actor: None,
        },
        body,
    }
}

fn json_of(e: &InboundEvent) -> Value {
    serde_json::from_slice(&waybill_schema::encode_event_json(e)).unwrap()
}

/// The order's lines as the command carries them: (line_no, sku, quantity).
fn lines_of(r: &Received) -> (String, Vec<(i32, String, i64)>) {
    let data = &r.json.as_ref().expect("JSON commands")["data"];
    let order = data["order_ref"].as_str().unwrap().to_string();
    let lines = data["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line_no"].as_i64().unwrap() as i32,
                l["sku"].as_str().unwrap().to_string(),
                l["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    (order, lines)
}

fn shipped(order: &str, lines: &[(i32, String, i64)]) -> Vec<ShippedLine> {
    lines
        .iter()
        .map(|(no, sku, q)| {
            let tracking = PRODUCTS.iter().find(|p| p.0 == sku).map(|p| p.2).unwrap_or("none");
            ShippedLine {
                line_no: *no,
                sku: sku.clone(),
                quantity: Qty(*q),
                lots: if tracking == "lot" {
                    vec![LotQty { lot: format!("LOT-{order}"), quantity: Qty(*q) }]
                } else {
                    vec![]
                },
                serials: if tracking == "serial" {
                    (0..q / 1000).map(|s| format!("SN-{order}-{no}-{s}")).collect()
                } else {
                    vec![]
                },
            }
        })
        .collect()
}

fn warehouse(later: Arc<Later>) -> impl Fn(&Received) -> Answer + Send + Sync + 'static {
    move |r: &Received| {
        if r.key.starts_with("reserve:") {
            let (order, lines) = lines_of(r);
            let lines = lines
                .iter()
                .map(|(no, _, q)| LineReservation { line_no: *no, reserved: Qty(*q), short: Qty::ZERO })
                .collect();
            let e = event(
                format!("wms:reserved:{order}"),
                System::Wms,
                &order,
                EventBody::StockReserved(StockReserved { order_ref: order.clone(), lines }),
            );
            return Answer::ok(json!({"events": [json_of(&e)]}));
        }
        if r.key.starts_with("release:") {
            let (order, lines) = lines_of(r);
            let shipped = shipped(&order, &lines);
            let picked = shipped
                .iter()
                .map(|s| PickedLine {
                    line_no: s.line_no,
                    sku: s.sku.clone(),
                    quantity: s.quantity,
                    lots: s.lots.clone(),
                    serials: s.serials.clone(),
                    bin: "B01".into(),
                })
                .collect();
            let pick = PickConfirmed {
                order_ref: order.clone(),
                pick_id: format!("PK-{order}"),
                lines: picked,
                complete: true,
            };
            later.after(
                30,
                "wms-token-0123456789abcdef",
                event(format!("wms:pick:{order}"), System::Wms, &order, EventBody::PickConfirmed(pick)),
            );
            let issued = GoodsIssued {
                order_ref: order.clone(),
                shipment_id: format!("SHP-{order}"),
                lines: shipped,
                packages: vec![Package { package_id: format!("PKG-{order}"), weight_grams: 900 }],
            };
            later.after(
                60,
                "wms-token-0123456789abcdef",
                event(format!("wms:issued:{order}"), System::Wms, &order, EventBody::GoodsIssued(issued)),
            );
            let e = event(
                format!("wms:accepted:{order}"),
                System::Wms,
                &order,
                EventBody::ReleasedToWarehouse(ReleasedToWarehouse {
                    order_ref: order.clone(),
                    wms_order_id: format!("W-{order}"),
                }),
            );
            return Answer::ok(json!({"events": [json_of(&e)]}));
        }
        Answer::Accepted
    }
}

fn carrier(later: Arc<Later>) -> impl Fn(&Received) -> Answer + Send + Sync + 'static {
    move |r: &Received| {
        let data = &r.json.as_ref().unwrap()["data"];
        let order = data["order_ref"].as_str().unwrap().to_string();
        let shipment = data["shipment_id"].as_str().unwrap().to_string();
        let booked = CarrierBooked {
            order_ref: order.clone(),
            shipment_id: shipment.clone(),
            carrier: "DHL".into(),
            tracking_ref: format!("1Z-{order}"),
        };
        let delivered =
            Delivered { order_ref: order.clone(), shipment_id: shipment.clone(), signed_by: Some("reception".into()) };
        later.after(
            50,
            "carrier-token-0123456789abcdef",
            event(format!("carrier:pod:{shipment}"), System::Carrier, &order, EventBody::Delivered(delivered)),
        );
        let e = event(format!("carrier:booked:{shipment}"), System::Carrier, &order, EventBody::CarrierBooked(booked));
        Answer::ok(json!({"events": [json_of(&e)]}))
    }
}

/// Posts what is due to ingestion; a post that fails (Waybill is down) is tried again.
fn poster(later: Arc<Later>, url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        while !stop.load(Ordering::Relaxed) {
            while let Some((seq, _, token, e)) = later.next() {
                let body = waybill_schema::encode_event_json(&e);
                let sent = agent
                    .post(&url)
                    .header("Authorization", format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(&body[..]);
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(mut r) if r.status().as_u16() < 500 && r.status().as_u16() != 429 => {
                        let text = r.body_mut().read_to_string().unwrap_or_default();
                        later.refused.lock().unwrap().push(format!("{}: {} {text}", e.meta.event_id, r.status()));
                    }
                    _ => {
                        // Down: the same place in the order's queue, tried again shortly.
                        later.due.lock().unwrap().push((seq, Instant::now() + Duration::from_millis(100), token, e));
                        break;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

struct Rig {
    odoo: OdooDouble,
    wms: HttpTarget,
    carrier: HttpTarget,
    later: Arc<Later>,
    dir: tempfile::TempDir,
    config: PathBuf,
    ingest: String,
    control: String,
    stop: Arc<AtomicBool>,
    poster: Option<std::thread::JoinHandle<()>>,
}

fn rpc(odoo: &OdooDouble, model: &str, method: &str, args: Value, kwargs: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
        "args": [odoo.db(), 2, "admin", model, method, args, kwargs]}});
    let mut resp = ureq::post(format!("{}/jsonrpc", odoo.url()))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let v: Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(v.get("error").is_none(), "{v}");
    v["result"].clone()
}

impl Rig {
    fn new() -> Rig {
        let later = Arc::new(Later::default());
        let odoo = OdooDouble::start(OdooConfig::default());
        let tax = odoo.create("account.tax", json!({"name": "VAT20", "amount": 20.0}));
        odoo.create("res.partner", json!({"name": "Customer 1", "ref": "C0001"}));
        odoo.create("res.partner", json!({"name": "Customer 1, delivery", "ref": "C0001-SHIP"}));
        for (code, uom, tracking) in PRODUCTS {
            let uom = odoo.create("uom.uom", json!({"name": uom}));
            let p = odoo.create(
                "product.product",
                json!({"default_code": code, "name": code, "tracking": tracking, "type": "consu"}),
            );
            let _ = (uom, p);
        }
        let _ = tax;
        let wms = HttpTarget::start(HttpTargetConfig::new(HMAC.as_bytes().to_vec(), warehouse(later.clone())));
        let carrier = HttpTarget::start(HttpTargetConfig::new(HMAC.as_bytes().to_vec(), carrier(later.clone())));
        let dir = tempfile::tempdir().unwrap();
        let ingest = format!("127.0.0.1:{}", free_port());
        let control = format!("127.0.0.1:{}", free_port());
        let config = write_config(dir.path(), &odoo, &wms, &carrier, &ingest, &control);
        let stop = Arc::new(AtomicBool::new(false));
        let poster = Some(poster(later.clone(), format!("http://{ingest}/v1/events"), stop.clone()));
        Rig { odoo, wms, carrier, later, dir, config, ingest, control, stop, poster }
    }

    /// Confirms order `name` in Odoo: 3 units, 1.5 kg (lot), 2 serials; small enough that
    /// no invoice is held for approval.
    fn confirm_order(&self, name: &str) {
        let id_of = |model: &str, field: &str, value: &str| -> i64 {
            self.odoo.records(model).iter().find(|r| r[field] == json!(value)).unwrap()["id"].as_i64().unwrap()
        };
        let tax = id_of("account.tax", "name", "VAT20");
        let lines: Vec<Value> = [("SKU-0000", "Units", 3.0), ("SKU-0001", "kg", 1.5), ("SKU-0003", "Units", 2.0)]
            .iter()
            .map(|(code, uom, qty)| {
                json!([0, 0, {"product_id": id_of("product.product", "default_code", code), "product_uom_qty": qty,
                    "price_unit": 4.0, "product_uom": id_of("uom.uom", "name", uom), "tax_id": [tax]}])
            })
            .collect();
        let order = rpc(
            &self.odoo,
            "sale.order",
            "create",
            json!([{"name": name, "partner_id": id_of("res.partner", "ref", "C0001"),
                    "partner_shipping_id": id_of("res.partner", "ref", "C0001-SHIP"), "order_line": lines}]),
            json!({}),
        );
        let id = order.as_i64().or_else(|| order[0].as_i64()).unwrap();
        rpc(&self.odoo, "sale.order", "action_confirm", json!([[id]]), json!({}));
    }

    /// The buyer confirms purchase order `name` in Odoo: 10 × SKU-0000 from vendor V-KILL.
    fn confirm_purchase(&self, name: &str) {
        let id_of = |model: &str, field: &str, value: &str| -> Option<i64> {
            self.odoo.records(model).iter().find(|r| r[field] == json!(value)).and_then(|r| r["id"].as_i64())
        };
        let vendor = id_of("res.partner", "ref", "V-KILL").unwrap_or_else(|| {
            let v = rpc(
                &self.odoo,
                "res.partner",
                "create",
                json!([{"name": "Kill Supplies", "ref": "V-KILL"}]),
                json!({}),
            );
            v.as_i64().or_else(|| v[0].as_i64()).unwrap()
        });
        let product = id_of("product.product", "default_code", "SKU-0000").unwrap();
        let order = rpc(
            &self.odoo,
            "purchase.order",
            "create",
            json!([{"name": name, "partner_id": vendor,
                    "order_line": [[0, 0, {"product_id": product, "product_qty": 10.0, "price_unit": 2.5}]]}]),
            json!({}),
        );
        let id = order.as_i64().or_else(|| order[0].as_i64()).unwrap();
        rpc(&self.odoo, "purchase.order", "button_confirm", json!([[id]]), json!({}));
    }

    fn spawn(&self) -> Proc {
        let mut c = Command::new(BIN);
        c.args(["serve", "--demo-catalog", "--config"]).arg(&self.config).env("RUST_LOG", "info");
        let p = Proc::spawn(c);
        // Ready once ingestion and the control plane answer (the node opens ingestion
        // first, so ingestion alone does not say the control plane listens yet).
        let deadline = Instant::now() + Duration::from_secs(30);
        for addr in [&self.ingest, &self.control] {
            while std::net::TcpStream::connect(addr.as_str()).is_err() {
                assert!(Instant::now() < deadline, "waybill serve did not start:\n{}", trouble(&p));
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        p
    }

    /// The CLI against the running server's control plane, as the operator, when it
    /// answers (`None` while the server is down or the call fails).
    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(BIN)
            .args(args)
            .args(["--server", &format!("http://{}", self.control), "--token", "operator-token-0123456789abcdef"])
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The CLI against the running server's control plane, as the operator.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .args(["--server", &format!("http://{}", self.control), "--token", "operator-token-0123456789abcdef"])
            .output()
            .unwrap();
        assert!(out.status.success(), "waybill {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn count(&self, model: &str, keys: &[(&str, &str)]) -> usize {
        self.odoo.count(model, keys)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.poster.take() {
            let _ = p.join();
        }
    }
}

fn write_config(
    dir: &Path,
    odoo: &OdooDouble,
    wms: &HttpTarget,
    carrier: &HttpTarget,
    ingest: &str,
    control: &str,
) -> PathBuf {
    std::fs::write(dir.join("odoo.key"), "admin\n").unwrap();
    std::fs::write(dir.join("hmac"), HMAC).unwrap();
    std::fs::write(
        dir.join("tokens.toml"),
        r#"
[[tokens]]
token = "wms-token-0123456789abcdef"
identity = "wms-prod"
system = "wms"

[[tokens]]
token = "carrier-token-0123456789abcdef"
identity = "carrier-prod"
system = "carrier"

[[tokens]]
token = "odoo-token-0123456789abcdef"
identity = "odoo-webhooks"
system = "odoo"

[[tokens]]
token = "operator-token-0123456789abcdef"
identity = "ops-anna"
role = "operator"
"#,
    )
    .unwrap();
    let odoo_connector = |system: &str| {
        format!(
            "kind = \"odoo\"\nsystem = \"{system}\"\nurl = {:?}\nversion = \"17.0\"\ndatabase = {:?}\nlogin = \"admin\"\ncredentials_file = {:?}\nrate = 20\nburst = 5\npoll_interval_ms = 150\nbackoff_base_ms = 50\nbreaker_cool_down_ms = 500\ntimeout_ms = 5000\n",
            odoo.url(),
            odoo.db(),
            dir.join("odoo.key")
        )
    };
    let http = |t: &HttpTarget| {
        format!(
            "kind = \"http\"\nurl = {:?}\nhmac_secret_file = {:?}\nrate = 100\nburst = 50\nbackoff_base_ms = 50\nbreaker_cool_down_ms = 500\ntimeout_ms = 5000\n",
            t.command_url(),
            dir.join("hmac")
        )
    };
    let toml = format!(
        "data_dir = {:?}\npartitions = 2\n[ingest]\nlisten = {ingest:?}\n[control]\nlisten = {control:?}\ntokens_file = {:?}\n[metrics]\nlisten = \"\"\n[policy.fulfillment]\npick_timeout_secs = 120.0\n[connectors.odoo]\n{}[connectors.finance]\n{}[connectors.wms]\n{}[connectors.carrier]\n{}",
        dir.join("data"),
        dir.join("tokens.toml"),
        odoo_connector("odoo"),
        odoo_connector("finance"),
        http(wms),
        http(carrier)
    );
    let path = dir.join("waybill.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Everything the orders should have led to, counted in the doubles.
/// Each purchase order's receipt validated in Odoo exactly once.
fn received(rig: &Rig, purchases: &[String]) -> Result<(), String> {
    for po in purchases {
        let done = rig.count(
            "stock.picking",
            &[("carrier_tracking_ref", &format!("RCV-{po}")), ("picking_type_code", "incoming"), ("state", "done")],
        );
        if done != 1 {
            return Err(format!("{po}: {done} validated receipts"));
        }
    }
    Ok(())
}

/// Once Waybill has a purchase order (its Odoo poller read it), the warehouse receives it.
fn receive(rig: &Rig, purchases: &[String], sent: &mut std::collections::BTreeSet<String>) {
    for po in purchases {
        let known = rig.try_cli(&["order", "show", &format!("po:{po}")]).is_some_and(|o| o.contains("PurchaseOpened"));
        if sent.contains(po) || !known {
            continue;
        }
        sent.insert(po.clone());
        let lines = vec![waybill_test_util::purchase::got(10, None, "SKU-0000", 10, 0)];
        let e = waybill_test_util::purchase::receipt(po, &format!("RCV-{po}"), None, lines);
        rig.later.after(50, "wms-token-0123456789abcdef", e);
    }
}

fn settled(rig: &Rig, orders: &[String], returned: &[String]) -> Result<(), String> {
    for o in orders {
        let ship = format!("SHP-{o}");
        let validated = rig
            .count("stock.picking", &[("origin", o), ("state", "done"), ("carrier_tracking_ref", &format!("1Z-{o}"))]);
        let invoices = rig.count("account.move", &[("ref", &ship), ("move_type", "out_invoice"), ("state", "posted")]);
        if validated != 1 || invoices != 1 {
            return Err(format!("{o}: {validated} validated deliveries, {invoices} posted invoices"));
        }
    }
    for o in returned {
        let credits = rig
            .count("account.move", &[("ref", &format!("RCV-{o}")), ("move_type", "out_refund"), ("state", "posted")]);
        if credits != 1 {
            return Err(format!("{o}: {credits} posted credit notes"));
        }
    }
    Ok(())
}

/// Some time after an order's invoice is posted in Odoo (the customer has it), the
/// customer sends one unit back: Odoo's webhook authorises the return, the warehouse
/// receives it. (A receipt before Waybill recorded the invoice would be refused, rightly:
/// there is nothing to credit yet.)
fn returns(rig: &Rig, returned: &[String], sent: &mut std::collections::BTreeSet<String>) {
    for o in returned {
        if sent.contains(o) || rig.count("account.move", &[("ref", &format!("SHP-{o}")), ("state", "posted")]) == 0 {
            continue;
        }
        sent.insert(o.clone());
        let rma = format!("RMA-{o}");
        let line = RmaLine { line_no: 10, sku: "SKU-0000".into(), quantity: Qty::units(1) };
        let auth = ReturnAuthorized {
            order_ref: o.clone(),
            rma_id: rma.clone(),
            reason: "wrong size".into(),
            lines: vec![line],
        };
        rig.later.after(
            3000,
            "odoo-token-0123456789abcdef",
            event(format!("odoo:rma:{rma}"), System::Odoo, o, EventBody::ReturnAuthorized(auth)),
        );
        let received = ReturnReceived {
            order_ref: o.clone(),
            rma_id: rma.clone(),
            receipt_id: format!("RCV-{o}"),
            lines: vec![ReturnedLine {
                line_no: 10,
                sku: "SKU-0000".into(),
                quantity: Qty::units(1),
                condition: ItemCondition::Restock,
                lots: vec![],
                serials: vec![],
            }],
        };
        rig.later.after(
            3150,
            "wms-token-0123456789abcdef",
            event(format!("wms:receipt:RCV-{o}"), System::Wms, o, EventBody::ReturnReceived(received)),
        );
    }
}

#[test]
fn sigkilled_at_random_moments_waybill_creates_nothing_twice_in_odoo_or_at_the_warehouse() {
    const ORDERS: usize = 40;
    let rig = Rig::new();
    let orders: Vec<String> = (1..=ORDERS).map(|i| format!("SO{i:06}")).collect();
    let purchases: Vec<String> = (1..=6).map(|i| format!("P{i:05}")).collect();
    let returned: Vec<String> = orders.iter().step_by(4).cloned().collect();
    // Two deliveries and two invoices whose answer is lost after Odoo committed them.
    rig.odoo.inject(Match::call("stock.picking", "button_validate"), Fault::CommitThenDrop, Times::Next(2));
    rig.odoo.inject(Match::call("account.move", "action_post"), Fault::CommitThenDrop, Times::Next(2));
    for o in &orders {
        rig.confirm_order(o);
    }
    for po in &purchases {
        rig.confirm_purchase(po);
    }
    rig.odoo.clear_requests(); // from here on, only Waybill calls Odoo
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut sent = std::collections::BTreeSet::new();
    let mut bought = std::collections::BTreeSet::new();
    let mut proc = rig.spawn();
    let mut kills = 0;
    let mut kills_mid_run = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_kill = Instant::now();
    let mut next_kill = Duration::from_millis(rng.u64(600..1800));
    loop {
        returns(&rig, &returned, &mut sent);
        receive(&rig, &purchases, &mut bought);
        if kills < 6 && last_kill.elapsed() >= next_kill {
            if settled(&rig, &orders, &returned).is_err() || received(&rig, &purchases).is_err() {
                kills_mid_run += 1;
            }
            proc.kill();
            kills += 1;
            proc = rig.spawn();
            last_kill = Instant::now();
            next_kill = Duration::from_millis(rng.u64(600..1800));
            continue;
        }
        if kills >= 6 && settled(&rig, &orders, &returned).is_ok() && received(&rig, &purchases).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let refunds: Vec<Value> = rig
                .odoo
                .records("account.move")
                .into_iter()
                .filter(|m| m["move_type"] == json!("out_refund"))
                .collect();
            panic!(
                "not settled after {kills} kills: {:?} {:?}\nrefunds: {refunds:?}\nrefused by ingestion: {:?}\n{}",
                settled(&rig, &orders, &returned),
                received(&rig, &purchases),
                rig.later.refused.lock().unwrap(),
                trouble(&proc)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let anything still in flight land, then count again: exactly once each.
    std::thread::sleep(Duration::from_secs(2));
    settled(&rig, &orders, &returned).unwrap();
    received(&rig, &purchases).unwrap();
    assert_eq!(
        rig.count("stock.picking", &[("picking_type_code", "incoming"), ("state", "done")]),
        purchases.len(),
        "one validated receipt per purchase order"
    );
    assert!(kills_mid_run >= 5, "only {kills_mid_run} of the {kills} kills came while work was outstanding");
    assert_eq!(
        rig.count("account.move", &[("move_type", "out_invoice")]),
        ORDERS,
        "one invoice per shipment, no drafts left over"
    );
    assert_eq!(
        rig.count("account.move", &[("move_type", "out_refund")]),
        returned.len(),
        "one credit note per receipt"
    );
    assert_eq!(rig.count("stock.picking", &[("picking_type_code", "outgoing"), ("state", "done")]), ORDERS);
    for target in [&rig.wms, &rig.carrier] {
        let keys: Vec<String> = target.received().into_iter().map(|r| r.key).collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            keys.len(),
            "each command carried out once at the target (repeats were answered from its key table)"
        );
    }
    assert_eq!(rig.wms.received().iter().filter(|r| r.key.starts_with("release:")).count(), ORDERS);
    // Two connectors reach this Odoo (odoo and finance), each at 20 calls/s with a burst of
    // 5 (plus one login each), counted from the last restart: a restarted process starts
    // with full buckets. The bucket bounds when calls start; arrivals can bunch by the calls
    // in flight (concurrency 4 per connector).
    let requests: Vec<_> = rig.odoo.requests().into_iter().filter(|r| r.at >= last_kill).collect();
    assert!(requests.len() > 40, "the last process did enough work to measure: {}", requests.len());
    for w in [0.5_f64, 1.0, 2.0] {
        let max = waybill_doubles::max_in_window(&requests, Duration::from_secs_f64(w));
        let allowed = 2.0 * (5.0 + 20.0 * w) + 2.0 + 2.0 * 4.0;
        assert!(max as f64 <= allowed, "{max} requests reached Odoo in a {w} s window; the buckets allow {allowed}");
    }
    assert!(rig.later.refused.lock().unwrap().is_empty(), "ingestion refused: {:?}", rig.later.refused.lock().unwrap());
    let _ = &rig.dir;
}

#[test]
fn an_odoo_refusal_is_an_exception_in_odoo_s_words_and_the_retry_with_the_same_key_posts_once() {
    let rig = Rig::new();
    rig.odoo.fail_validation("account.move", "action_post", "The fiscal period 2026-12 is locked for posting.");
    rig.confirm_order("SO000001");
    let _proc = rig.spawn();
    let deadline = Instant::now() + Duration::from_secs(60);
    let exception = loop {
        let list: Value =
            serde_json::from_str(&rig.cli(&["exceptions", "list", "--open", "--output", "json"])).unwrap();
        let found = list["exceptions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["category"] == json!("posting-rejected"))
            .cloned();
        if let Some(x) = found {
            break x;
        }
        assert!(Instant::now() < deadline, "no exception for Odoo's refusal: {list}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let message = exception["message"].as_str().unwrap();
    assert!(message.contains("The fiscal period 2026-12 is locked for posting."), "in Odoo's words: {message}");
    assert_eq!(rig.count("account.move", &[("ref", "SHP-SO000001"), ("state", "posted")]), 0);

    // Finance unlocks the period; the operator retries.
    rig.odoo.clear_faults();
    let id = exception["exception_id"].as_str().unwrap();
    rig.cli(&["exceptions", "retry", id, "--note", "period unlocked by finance"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.count("account.move", &[("ref", "SHP-SO000001"), ("state", "posted")]) == 0 {
        assert!(Instant::now() < deadline, "the retried invoice was not posted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        rig.count("account.move", &[("ref", "SHP-SO000001"), ("move_type", "out_invoice")]),
        1,
        "the draft of the refused attempt was posted, not a second invoice"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list: Value =
            serde_json::from_str(&rig.cli(&["exceptions", "list", "--open", "--output", "json"])).unwrap();
        if list["exceptions"].as_array().into_iter().flatten().all(|x| x["exception_id"] != json!(id)) {
            break;
        }
        assert!(Instant::now() < deadline, "the exception stayed open after the invoice was posted: {list}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The warehouse is down for 20 s while an order waits on it: the connector's breaker
/// opens, one `TARGET_UNAVAILABLE` exception is raised for the warehouse (not one per
/// command), and when it is back the reservation is delivered once and the exception
/// closes.
#[test]
fn a_warehouse_down_for_twenty_seconds_is_one_exception_closed_on_recovery() {
    use waybill_domain::journal::ExceptionCategory;
    use waybill_server::config::Config;
    use waybill_server::connectors::ConnectorSettings;
    use waybill_server::node::{self, Node};

    let later = Arc::new(Later::default());
    let wms = HttpTarget::start(HttpTargetConfig::new(HMAC.as_bytes().to_vec(), warehouse(later)));
    wms.down(waybill_doubles::DownMode::Refuse);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac"), HMAC).unwrap();
    let mut cfg = Config { data_dir: dir.path().join("data"), partitions: 2, ..Config::default() };
    cfg.ingest.listen = "127.0.0.1:0".into();
    cfg.ingest.allow_anonymous = true;
    cfg.control.listen = String::new();
    cfg.metrics.listen = String::new();
    cfg.connectors.insert(
        "wms".into(),
        ConnectorSettings {
            kind: "http".into(),
            url: wms.command_url(),
            hmac_secret_file: Some(dir.path().join("hmac")),
            breaker_threshold: 3,
            breaker_cool_down_ms: 1000,
            unavailable_after_secs: 5,
            ..ConnectorSettings::default()
        },
    );
    let log = node::open_log(&cfg).unwrap();
    let node = Node::start(&cfg, log, waybill_server::demo::world::catalog()).unwrap();
    let down_at = Instant::now();
    let release = OrderReleased {
        order_ref: "SO000001".into(),
        customer_ref: "C0001".into(),
        ship_to: "C0001-SHIP".into(),
        currency: "EUR".into(),
        client_order_ref: None,
        lines: vec![OrderLine {
            line_no: 10,
            sku: "SKU-0000".into(),
            uom: "Units".into(),
            quantity: Qty::units(2),
            unit_price: waybill_domain::Money(400),
            tax_code: Some("VAT20".into()),
            requested_date: Timestamp::now(),
            warehouse: "WH-MAIN".into(),
        }],
        company: None,
    };
    let e = event("odoo:release:SO000001".into(), System::Odoo, "SO000001", EventBody::OrderReleased(release));
    let resp = ureq::post(format!("http://{}/v1/events", node.ingest_addr.unwrap()))
        .header("Content-Type", "application/json")
        .send(&waybill_schema::encode_event_json(&e)[..])
        .unwrap();
    assert!(resp.status().is_success());
    let outages = || node.projections.exceptions(false, Some(ExceptionCategory::TargetUnavailable)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while outages().is_empty() {
        assert!(Instant::now() < deadline, "no TARGET_UNAVAILABLE exception");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(20).saturating_sub(down_at.elapsed()));
    let open = outages();
    assert_eq!(open.len(), 1, "one exception for the warehouse, not one per command: {open:?}");
    assert!(open[0].resolved_at.is_none());
    assert!(open[0].message.contains("waybill.commands.wms"), "{}", open[0].message);
    assert!(wms.received().is_empty());

    wms.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while outages()[0].resolved_at.is_none() {
        assert!(Instant::now() < deadline, "the exception stayed open after the warehouse came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while wms.command("release:SO000001").is_none() {
        assert!(Instant::now() < deadline, "the order did not go on once the warehouse was back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(outages().len(), 1);
    assert_eq!(wms.duplicates(), 0, "the waiting reservation was delivered once");
    assert_eq!(wms.received().iter().filter(|r| r.key == "reserve:SO000001").count(), 1);
    node.shutdown();
}
