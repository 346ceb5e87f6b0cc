//! The demo as `make run` runs it: Waybill between the Odoo double and the HTTP doubles of
//! the warehouse, carrier and finance, talking to them only through its connectors and
//! its authenticated ingestion endpoint, over real HTTP on loopback. Every order must
//! reach an end state, and — counted in the doubles — every order exists once in Odoo,
//! every shipment's delivery was validated once with what it carried, and finance carried
//! out every posting once.

use std::collections::{BTreeMap, BTreeSet};

use clap::Parser;
use serde_json::json;
use waybill_domain::{CommandBody, topic};
use waybill_log::EventLog;
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions};
use waybill_projection::OrderStatus;
use waybill_server::demo::{self, DemoOptions, world};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    demo: DemoOptions,
}

fn commands(log: &dyn EventLog, t: &str) -> Vec<waybill_domain::Command> {
    read_all(log, t).iter().map(|v| waybill_schema::decode_command(v).unwrap()).collect()
}

#[test]
fn through_the_connectors_every_order_ends_and_each_system_did_each_thing_once() {
    const ORDERS: usize = 80;
    let dir = tempfile::tempdir().unwrap();
    let argv = ["demo", "--quiet", "--orders", "80", "--rate", "40", "--control-listen", "", "--metrics-listen", ""];
    let mut argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    argv.extend(["--timeout".into(), "240".into(), "--data-dir".into(), dir.path().display().to_string()]);
    let (summary, stage) = demo::run_keeping_doubles(&Args::parse_from(argv).demo).expect("the demo runs");
    let stage = stage.expect("the default demo runs through the doubles");

    // Every order reached an end state, none waits on anyone.
    assert!(summary.finished, "{summary}");
    let ended: u64 = [OrderStatus::Completed, OrderStatus::Backordered, OrderStatus::Cancelled, OrderStatus::OnHold]
        .iter()
        .map(|s| summary.by_status.get(s).copied().unwrap_or(0))
        .sum();
    assert_eq!(ended, ORDERS as u64, "{summary}");
    assert!(
        summary.by_status.get(&OrderStatus::Cancelled).is_some_and(|n| *n > 0),
        "some orders cancelled in Odoo: {summary}"
    );
    assert!(summary.invoices_posted > 0, "{summary}");
    // Only the injected garbage and the orders with bad master data are dead letters:
    // every system posted as itself, with its own token.
    let mix = world::Mix::default();
    let bad_master = (0..ORDERS).filter(|i| world::fate(42, *i, &mix).bad_master_data).count() as u64;
    assert_eq!(summary.dead_letters, summary.injected_bad_records + bad_master, "{summary}");
    let names: BTreeSet<&str> = summary.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["carrier", "finance", "odoo", "wms"]), "{summary}");
    assert!(summary.connectors.iter().all(|c| c.requests > 0 && c.delivered > 0), "{summary}");

    // Two companies side by side, each under its own template's currency and limits: an
    // American order is one of acme-us in USD, and Odoo has it under that company.
    let lines: BTreeMap<&str, &demo::summary::EntityLine> =
        summary.entities.iter().map(|e| (e.code.as_str(), e)).collect();
    let (fr, us) = (lines["acme-fr"], lines["acme-us"]);
    assert_eq!((fr.currency.as_str(), us.currency.as_str()), ("EUR", "USD"), "{summary}");
    assert_eq!((fr.approver_limit.0, us.approver_limit.0), (10_000_00, 3_000_00), "{summary}");
    assert_eq!((fr.hold_invoices_above.0, us.hold_invoices_above.0), (5_000_00, 2_500_00), "{summary}");
    let american = (0..ORDERS).filter(|i| demo::entities::of_order(42, *i).code == "acme-us").count() as u64;
    assert_eq!((fr.orders, us.orders), (ORDERS as u64 - american, american), "{summary}");
    assert!(fr.completed > 0 && us.completed > 0 && fr.invoices_posted > 0 && us.invoices_posted > 0, "{summary}");
    for o in stage.odoo.records("sale.order") {
        let n: usize = o["name"].as_str().unwrap().trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap();
        let company = o["company_id"].as_i64().or_else(|| o["company_id"][0].as_i64());
        assert_eq!(company, Some(demo::entities::of_order(42, n - 1).odoo_company_id), "{o}");
    }

    // Each order exists once in Odoo.
    for i in 0..ORDERS {
        let name = world::order_ref(i);
        assert_eq!(stage.odoo.count("sale.order", &[("name", &name)]), 1, "{name} in Odoo");
    }

    let log = EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions::default()).expect("the log opens");
    // Each shipment's delivery was validated once: one done delivery per tracking
    // reference, as many as shipments confirmed, each validated by one call — except for
    // orders the customer cancelled in Odoo before the confirmation got there.
    let cancelled_in_odoo = |order: &str| stage.odoo.count("sale.order", &[("name", order), ("state", "cancel")]) == 1;
    let mut confirmed = 0;
    for c in commands(&log, &topic::commands(waybill_domain::System::Odoo)) {
        let CommandBody::ConfirmShipment(s) = c.body else { continue };
        if cancelled_in_odoo(&s.order_ref) {
            continue;
        }
        confirmed += 1;
        let done = json!([
            ["carrier_tracking_ref", "=", s.tracking_ref],
            ["state", "=", "done"],
            ["picking_type_code", "=", "outgoing"]
        ]);
        assert_eq!(stage.odoo.count_where("stock.picking", done), 1, "delivery of {}", s.shipment_id);
    }
    assert!(confirmed > ORDERS / 2, "shipments confirmed in Odoo: {confirmed}");
    // Each purchase order exists once in Odoo; each receipt was validated there once (its
    // id is the done receipt's reference), and each receipt sent back returned once.
    let purchases = ORDERS.div_ceil(mix.purchase_every);
    for j in 0..purchases {
        let name = waybill_server::demo::purchasing::po_ref(j);
        assert_eq!(stage.odoo.count("purchase.order", &[("name", &name)]), 1, "{name} in Odoo");
    }
    let (mut receipts, mut returns) = (0, 0);
    for c in commands(&log, &topic::commands(waybill_domain::System::Odoo)) {
        match c.body {
            CommandBody::ValidateReceipt(r) => {
                receipts += 1;
                let done = json!([
                    ["carrier_tracking_ref", "=", r.receipt_id],
                    ["state", "=", "done"],
                    ["picking_type_code", "=", "incoming"]
                ]);
                assert_eq!(stage.odoo.count_where("stock.picking", done), 1, "receipt {}", r.receipt_id);
            }
            CommandBody::ReturnToVendor(_) => returns += 1,
            _ => {}
        }
    }
    assert!(receipts >= purchases, "receipts validated in Odoo: {receipts}");
    // Every purchase order completed, or waits for an approver (a bill held by the
    // three-way match) or for whoever works its exception.
    let b = &summary.purchasing;
    assert_eq!(b.orders, purchases as u64, "{summary}");
    assert_eq!(b.completed + b.awaiting_approval + b.open_with_exception, b.orders, "{summary}");
    assert!(b.bills_posted > 0 && b.receipts >= b.orders, "{summary}");
    // The bank's statements pay the invoices: every line applied to invoices or as a charge
    // was posted by finance once (the finance check below counts each key once), the
    // payers nobody knows are queued.
    let c = &summary.cash;
    assert!(c.statements > 0 && c.applied > 0 && c.unmatched > 0, "{summary}");
    assert_eq!(c.posted, c.applied, "{summary}");
    let all_done = json!([["state", "=", "done"], ["picking_type_code", "=", "outgoing"]]);
    assert_eq!(stage.odoo.count_where("stock.picking", all_done), confirmed + returns, "deliveries and returns");
    // …with what was shipped: no sale line delivered above what was ordered, also when an
    // order has a product on two lines.
    for l in stage.odoo.records("sale.order.line") {
        let (ordered, delivered) = (l["product_uom_qty"].as_f64().unwrap(), l["qty_delivered"].as_f64().unwrap());
        assert!(delivered <= ordered + 1e-9, "delivered {delivered} of {ordered}: {l}");
    }
    let validations = stage.odoo.requests().iter().filter(|r| r.method.as_deref() == Some("button_validate")).count();
    assert_eq!(validations, confirmed + receipts + returns, "one button_validate per delivery, receipt and return");

    // Finance carried out each posting once: one distinct command per idempotency key, and
    // exactly the keys Waybill issued.
    let finance = commands(&log, &topic::commands(waybill_domain::System::Finance));
    let issued: BTreeSet<String> = finance.iter().map(|c| c.meta.idempotency_key.clone()).collect();
    let mut carried_out: BTreeMap<String, usize> = BTreeMap::new();
    for r in stage.systems.finance.received() {
        *carried_out.entry(r.key).or_default() += 1;
    }
    assert!(carried_out.values().all(|n| *n == 1), "{carried_out:?}");
    assert_eq!(carried_out.keys().cloned().collect::<BTreeSet<_>>(), issued);
    let invoices = finance
        .iter()
        .filter(|c| matches!(c.body, CommandBody::PostInvoice(_)))
        .map(|c| &c.meta.idempotency_key)
        .collect::<BTreeSet<_>>()
        .len() as u64;
    assert!(invoices >= summary.invoices_posted && summary.invoices_posted > 0, "{summary}");

    // Stock reconciliation at the end of the run: the units the warehouse lost halfway are
    // found, and so is every unit of a shipment the warehouse issued for an order already
    // cancelled (goods gone that Waybill did not book as shipped: each such shipment is a
    // LATE_CANCELLATION); nothing else differs.
    let r = summary.reconciliation.as_ref().expect("the connected demo reconciles stock");
    assert_eq!(r.compared, world::PRODUCTS, "{summary}");
    assert!(r.unsettled.is_empty(), "the warehouse is quiet at the end: {summary}");
    let journaled: BTreeSet<String> = read_all(&log, topic::JOURNAL)
        .into_iter()
        // The journal topic also carries the coordinator's checkpoints.
        .filter_map(|v| match waybill_schema::decode_journal(&v).ok()?.body {
            waybill_domain::JournalBody::ShipmentRecorded(g) => Some(g.shipment_id),
            _ => None,
        })
        .collect();
    let mut unbooked: BTreeMap<String, i64> = BTreeMap::new();
    for v in read_all(&log, &topic::inbound(waybill_domain::System::Wms)) {
        let Ok(e) = waybill_schema::decode_event(&v) else { continue };
        if let waybill_domain::EventBody::GoodsIssued(g) = e.body
            && !journaled.contains(&g.shipment_id)
        {
            for l in g.lines {
                *unbooked.entry(l.sku).or_default() -= l.quantity.0;
            }
        }
    }
    let (lost_sku, lost_units) = demo::stock::DRIFT;
    *unbooked.entry(lost_sku.to_string()).or_default() -= lost_units * 1000;
    unbooked.retain(|_, d| *d != 0);
    let found: BTreeMap<String, i64> = r.findings.iter().map(|f| (f.sku.clone(), f.difference.0)).collect();
    assert_eq!(found, unbooked, "{summary}");
}

/// Every record's value of `t`, all partitions.
fn read_all(log: &dyn EventLog, t: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in 0..log.partitions(t).unwrap() as i32 {
        let mut from = 0;
        loop {
            let batch = log.read(t, p, from, 4096).unwrap();
            let Some(last) = batch.last() else { break };
            from = last.offset + 1;
            out.extend(batch.iter().map(|r| r.value.clone()));
        }
    }
    out
}
