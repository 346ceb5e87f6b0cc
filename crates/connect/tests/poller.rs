//! The Odoo poller against the Odoo double: confirmed and cancelled orders come in once,
//! across restarts, including a change committed late with an older `write_date`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use waybill_connect::client::Timeouts;
use waybill_connect::odoo::poller::{Poller, PollerConfig};
use waybill_connect::odoo::{Odoo, Protocol};
use waybill_connect::secret::SecretFile;
use waybill_connect::target::{Limits, Target};
use waybill_domain::{EventBody, InboundEvent, System, topic};
use waybill_doubles::odoo::{OdooConfig, OdooDouble};
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};

fn poller(double: &OdooDouble, log: &Arc<dyn EventLog>, dir: &std::path::Path) -> Poller {
    let key = dir.join("key");
    std::fs::write(&key, "admin").unwrap();
    let odoo = Odoo::new(
        &double.url(),
        double.db(),
        Protocol::JsonRpc { login: "admin".into() },
        Arc::new(SecretFile::open(&key).unwrap()),
        Timeouts { connect: Duration::from_secs(1), call: Duration::from_secs(5) },
    );
    let limits = Limits {
        rate: 0.0,
        burst: 1,
        breaker_threshold: 5,
        breaker_cool_down: Duration::from_secs(1),
        unavailable_after: Duration::from_secs(60),
    };
    let cfg = PollerConfig {
        connector: "odoo".into(),
        interval: Duration::from_millis(50),
        page: 3,
        overlap: Duration::from_secs(5),
        warehouse: "WH-MAIN".into(),
        companies: Default::default(),
    };
    Poller::new(cfg, Arc::new(odoo), Arc::new(Target::new("odoo", limits)), log.clone()).unwrap()
}

fn drain(p: &mut Poller) {
    while p.poll().unwrap() > 0 {}
}

fn events(log: &Arc<dyn EventLog>) -> Vec<InboundEvent> {
    let t = topic::inbound(System::Odoo);
    (0..2)
        .flat_map(|p| log.read(&t, p, 0, 100_000).unwrap())
        .map(|r| waybill_schema::decode_event(&r.value).unwrap())
        .collect()
}

fn order(double: &OdooDouble, name: &str, product: i64, partner: i64) -> i64 {
    double.create(
        "sale.order",
        json!({"name": name, "partner_id": partner, "client_order_ref": format!("PO-{name}"),
               "order_line": [[0, 0, {"product_id": product, "product_uom_qty": 3.0, "price_unit": 12.5}]]}),
    )
}

fn rpc(double: &OdooDouble, model: &str, method: &str, ids: &[i64], kwargs: serde_json::Value) {
    let body = json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {"service": "object", "method": "execute_kw",
        "args": [double.db(), 2, "admin", model, method, [ids], kwargs]}});
    let mut resp = ureq::post(format!("{}/jsonrpc", double.url()))
        .header("Content-Type", "application/json")
        .send(body.to_string().as_bytes())
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&resp.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(v.get("error").is_none(), "{v}");
}

/// A log with the poller's topics, and an Odoo double.
fn setup() -> (tempfile::TempDir, Arc<dyn EventLog>, OdooDouble) {
    let dir = tempfile::tempdir().unwrap();
    let options = EmbeddedOptions { fsync: FsyncPolicy::Never, ..EmbeddedOptions::default() };
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(&dir.path().join("log"), options).unwrap());
    log.ensure_topic(&topic::inbound(System::Odoo), 2).unwrap();
    log.ensure_topic(topic::CONNECT_STATE, 1).unwrap();
    (dir, log, OdooDouble::start(OdooConfig::default()))
}

#[test]
fn orders_come_in_once_across_restarts_and_a_late_commit_inside_the_overlap_is_not_skipped() {
    let (dir, log, double) = setup();
    double.freeze_clock("2026-12-01 10:00:00");
    let partner = double.create("res.partner", json!({"name": "Azure", "ref": "C0001"}));
    let product = double.create("product.product", json!({"default_code": "BOLT-M8", "name": "Bolt", "type": "consu"}));
    let mut ids = Vec::new();
    for i in 1..=7 {
        let id = order(&double, &format!("SO{i:06}"), product, partner);
        rpc(&double, "sale.order", "action_confirm", &[id], json!({}));
        double.advance(Duration::from_secs(1));
        ids.push(id);
    }
    let draft = order(&double, "SO000099", product, partner);
    let mut p = poller(&double, &log, dir.path());
    drain(&mut p);
    let first = events(&log);
    assert_eq!(first.len(), 7, "seven confirmed orders, in pages of three; the draft is not released");
    let so1 = first.iter().find(|e| e.meta.correlation_key == "SO000001").unwrap();
    assert_eq!(so1.meta.event_id, "odoo:release:SO000001");
    let EventBody::OrderReleased(r) = &so1.body else { panic!("{so1:?}") };
    assert_eq!(r.lines.len(), 1);
    assert_eq!(
        (r.customer_ref.as_str(), r.lines[0].sku.as_str(), r.lines[0].quantity.0, r.lines[0].unit_price.0),
        ("C0001", "BOLT-M8", 3000, 1250)
    );
    assert_eq!(r.client_order_ref.as_deref(), Some("PO-SO000001"));

    // A restart: nothing new, nothing again.
    drop(p);
    let mut p = poller(&double, &log, dir.path());
    drain(&mut p);
    assert_eq!(events(&log).len(), 7);

    // New changes: one cancellation, one confirmation, and one committed late with a
    // write_date before the cursor (inside the overlap).
    double.advance(Duration::from_secs(1));
    rpc(&double, "sale.order", "action_cancel", &[ids[0]], json!({"context": {"disable_cancel_warning": true}}));
    double.advance(Duration::from_secs(1));
    rpc(&double, "sale.order", "action_confirm", &[draft], json!({}));
    drain(&mut p);
    double.freeze_clock("2026-12-01 10:00:05");
    let late = order(&double, "SO000100", product, partner);
    rpc(&double, "sale.order", "action_confirm", &[late], json!({}));
    drop(p);
    let mut p = poller(&double, &log, dir.path());
    drain(&mut p);
    drain(&mut p);
    let all = events(&log);
    let ids: Vec<&str> = all.iter().map(|e| e.meta.event_id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no event twice: {ids:?}");
    for want in ["odoo:cancel:SO000001", "odoo:release:SO000099", "odoo:release:SO000100"] {
        assert!(ids.contains(&want), "{want} missing from {ids:?}");
    }
    assert_eq!(all.len(), 10);
}

#[test]
fn a_cancellation_in_the_same_second_as_the_confirmation_is_not_lost() {
    let (dir, log, double) = setup();
    // Odoo's write_date has whole seconds; the clock stands still.
    double.freeze_clock("2026-12-01 10:00:00");
    let partner = double.create("res.partner", json!({"name": "Azure", "ref": "C0001"}));
    let product = double.create("product.product", json!({"default_code": "BOLT-M8", "name": "Bolt", "type": "consu"}));
    let id = order(&double, "SO000001", product, partner);
    rpc(&double, "sale.order", "action_confirm", &[id], json!({}));
    let mut p = poller(&double, &log, dir.path());
    drain(&mut p);
    rpc(&double, "sale.order", "action_cancel", &[id], json!({"context": {"disable_cancel_warning": true}}));
    drain(&mut p);
    drop(p);
    let mut p = poller(&double, &log, dir.path());
    drain(&mut p);
    let ids: Vec<String> = events(&log).into_iter().map(|e| e.meta.event_id).collect();
    assert_eq!(ids, ["odoo:release:SO000001", "odoo:cancel:SO000001"], "both, once each, in order");
}
