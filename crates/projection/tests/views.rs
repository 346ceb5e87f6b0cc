//! Each view, built from hand-made journal events, commands and dead letters.

mod common;

use common::*;
use waybill_domain::journal::{ExceptionAssigned, ExceptionRaised, ExceptionResolved};
use waybill_domain::{ExceptionCategory, JournalBody, Qty, SagaKind, SourceRef, System, topic};
use waybill_projection::{Input, LinkKind, OrderStatus, Positioned, ProjectionStore};

fn journal_inputs(events: Vec<waybill_domain::JournalEvent>) -> Vec<Positioned> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| Positioned::new(topic::JOURNAL, 0, i as i64, Input::Journal(e)))
        .collect()
}

fn count(counts: &[(OrderStatus, u64)], s: OrderStatus) -> u64 {
    counts.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n)
}

#[test]
fn a_fulfilled_order_shows_its_lines_shipment_and_timeline() {
    let (_dir, store) = temp_store();
    // Order 1: 2 lines, reserved in full, completes.
    let events = fulfillment(1);
    let n_events = events.len();
    let stats = store.apply(&journal_inputs(events)).unwrap();
    assert_eq!(stats.applied, n_events);

    let o = store.order("SO00001").unwrap().expect("order view");
    assert_eq!(o.status, OrderStatus::Completed);
    assert_eq!(o.customer_ref.as_deref(), Some("C1"));
    assert_eq!(o.lines.len(), 2);
    for (line, (no, sku, wh, units)) in o.lines.iter().zip(lines_of(1)) {
        assert_eq!((line.line_no, line.sku.as_str(), line.warehouse.as_str()), (no, sku, wh));
        assert_eq!(line.ordered, Qty::units(units));
        assert_eq!(line.reserved, Qty::units(units));
        assert_eq!(line.short, Qty::ZERO);
        assert_eq!(line.picked, Qty::units(units));
        assert_eq!(line.shipped, Qty::units(units));
    }
    let s = o.shipment("SHP-SO00001").expect("shipment");
    assert_eq!(s.carrier.as_deref(), Some("DHL"));
    assert_eq!(s.tracking_ref.as_deref(), Some("TRK000001"));
    assert!(s.delivered);
    assert_eq!(s.signed_by.as_deref(), Some("J. Doe"));
    assert_eq!(s.packages, 1);
    assert_eq!(o.wms_order_id.as_deref(), Some("W-SO00001"));
    assert_eq!(o.open_exceptions, 0);
    assert_eq!(o.first_event_at, ts(4));
    assert_eq!(o.completed_at, Some(o.last_event_at));
    assert_eq!(o.sagas.len(), 1);
    assert_eq!(o.sagas[0].last_seq, n_events as i64);

    let tl = store.timeline("SO00001").unwrap();
    assert_eq!(tl.len(), n_events);
    assert!(tl.windows(2).all(|w| w[0].seq < w[1].seq), "timeline in seq order");
    assert_eq!(tl[0].event, "OrderAccepted");
    assert_eq!(tl[0].summary, "order SO00001 accepted for customer C1: 2 lines, 5 units");
    assert_eq!(tl.last().unwrap().summary, "order-to-fulfillment saga completed");
    assert!(tl.iter().any(|e| e.summary == "carrier DHL took shipment SHP-SO00001, tracking TRK000001"));

    let counts = store.order_counts_by_status().unwrap();
    assert_eq!(count(&counts, OrderStatus::Completed), 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1, "one order, counted once");
}

#[test]
fn statuses_follow_the_saga_step_by_step() {
    let (_dir, store) = temp_store();
    let events = fulfillment(1);
    let want = [
        OrderStatus::Accepted,
        OrderStatus::Reserving,
        OrderStatus::Reserved,
        OrderStatus::Released,
        OrderStatus::Released,
        OrderStatus::Picked,
        OrderStatus::Shipped,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Completed,
    ];
    for (i, (p, status)) in journal_inputs(events).into_iter().zip(want).enumerate() {
        store.apply(std::slice::from_ref(&p)).unwrap();
        assert_eq!(store.order("SO00001").unwrap().unwrap().status, status, "after event {}", i + 1);
        let counts = store.order_counts_by_status().unwrap();
        assert_eq!(count(&counts, status), 1);
        assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 1);
    }
    // A cancelled order (n % 7 == 3).
    store
        .apply(
            &journal_inputs(fulfillment(3))
                .into_iter()
                .map(|mut p| {
                    p.position.partition = 1;
                    p
                })
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let o = store.order("SO00003").unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Cancelled);
    assert_eq!(o.cancel_reason.as_deref(), Some("customer changed their mind"));
    assert_eq!(store.lineage("waybill:unreserve:SO00003").unwrap().len(), 1, "compensation key is indexed");
}

#[test]
fn short_allocation_raises_an_exception_until_it_is_resolved() {
    let (_dir, store) = temp_store();
    // Order 5: short by one unit on its first line, exception raised, not resolved.
    store.apply(&journal_inputs(fulfillment(5))).unwrap();
    let o = store.order("SO00005").unwrap().unwrap();
    assert_eq!(o.open_exceptions, 1);
    assert_eq!(o.lines[0].short, Qty::units(1));
    assert_eq!(o.lines[0].backordered, Qty::units(1));

    let open = store.exceptions(true, Some(ExceptionCategory::StockShortage)).unwrap();
    assert_eq!(open.len(), 1);
    let x = &open[0];
    assert_eq!(x.exception_id, "o2f:SO00005/stock-shortage/1");
    assert_eq!(x.subject, Some(SourceRef::new(System::Odoo, "SO00005")));
    assert_eq!(x.saga_id.as_deref(), Some("o2f:SO00005"));
    assert_eq!(x.order_ref.as_deref(), Some("SO00005"));
    assert!(x.raised_at.is_some() && x.resolved_at.is_none());
    assert!(store.exceptions(true, Some(ExceptionCategory::MasterData)).unwrap().is_empty());
    let counts = store.exception_counts_by_category().unwrap();
    assert_eq!(counts.iter().find(|(c, _)| *c == ExceptionCategory::StockShortage).unwrap().1, 1);

    // An operator resolves it.
    let resolve = ev(
        "SO00005",
        SagaKind::OrderToFulfillment,
        100,
        500,
        JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: "o2f:SO00005/stock-shortage/1".into(),
            resolution: "customer accepted the backorder".into(),
        }),
    );
    store.apply(&[Positioned::new(topic::JOURNAL, 0, 1000, Input::Journal(resolve))]).unwrap();
    assert!(store.exceptions(true, None).unwrap().is_empty());
    let all = store.exceptions(false, None).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].resolution.as_deref(), Some("customer accepted the backorder"));
    assert_eq!(all[0].resolved_at, Some(ts(500)));
    assert_eq!(store.order("SO00005").unwrap().unwrap().open_exceptions, 0);
    assert!(store.exception_counts_by_category().unwrap().iter().all(|(_, n)| *n == 0));
}

#[test]
fn an_assignment_names_the_owner_and_the_exception_knows_its_customer() {
    let (_dir, store) = temp_store();
    let mut inputs = journal_inputs(fulfillment(5));
    let assign = |seq: i64, minutes: i64, owner: &str, previous: Option<&str>| {
        ev(
            "SO00005",
            SagaKind::OrderToFulfillment,
            seq,
            minutes,
            JournalBody::ExceptionAssigned(ExceptionAssigned {
                exception_id: "o2f:SO00005/stock-shortage/1".into(),
                owner: owner.into(),
                previous_owner: previous.map(str::to_string),
                actor: "olga".into(),
                role: "operator".into(),
                note: String::new(),
            }),
        )
    };
    let n = inputs.len() as i64;
    inputs.push(Positioned::new(topic::JOURNAL, 0, n, Input::Journal(assign(100, 400, "wh-leads", None))));
    inputs.push(Positioned::new(topic::JOURNAL, 0, n + 1, Input::Journal(assign(101, 450, "olga", Some("wh-leads")))));
    store.apply(&inputs).unwrap();
    let x = store.exception("o2f:SO00005/stock-shortage/1").unwrap().unwrap();
    assert_eq!((x.owner.as_deref(), x.assigned_at), (Some("olga"), Some(ts(450))));
    assert_eq!(x.customer.as_deref(), Some("C5"), "the order's customer, from the order view");
    assert!(x.is_open(), "an assignment does not close the exception");
    let tl = store.timeline("SO00005").unwrap();
    assert_eq!(
        tl.last().unwrap().summary,
        "exception o2f:SO00005/stock-shortage/1 assigned to olga (was wh-leads) by olga (operator)"
    );

    // The same records applied again, in another store: the same view (rebuildable).
    let (_dir2, again) = temp_store();
    again.apply(&inputs).unwrap();
    assert_eq!(again.exception("o2f:SO00005/stock-shortage/1").unwrap().unwrap(), x);
    assert_eq!(again.dump().unwrap(), store.dump().unwrap());
}

#[test]
fn dead_letters_become_bad_input_exceptions() {
    let (_dir, store) = temp_store();
    let d = dead_letter(Some("SO00042"), 17, "cannot decode PickConfirmed: missing field bin", 1);
    let stats = store
        .apply(&[
            Positioned::new(topic::DLQ, 0, 0, Input::DeadLetter(d.clone())),
            // The coordinator re-wrote the same dead letter after a crash.
            Positioned::new(topic::DLQ, 0, 1, Input::DeadLetter(d)),
        ])
        .unwrap();
    assert_eq!((stats.applied, stats.duplicates), (1, 1));
    let x = store.exception("dlq:waybill.inbound.wms:0:17").unwrap().expect("dead-letter exception");
    assert_eq!(x.category, ExceptionCategory::BadInput);
    assert_eq!(x.message, "cannot decode PickConfirmed: missing field bin");
    assert_eq!(x.subject, Some(SourceRef::new(System::Odoo, "SO00042")));
    assert_eq!(x.dead_letter_kind.as_deref(), Some("decode"));
    assert_eq!(x.saga_id, None);
    assert_eq!(store.exceptions(true, Some(ExceptionCategory::BadInput)).unwrap().len(), 1);
    let l = store.lineage("odoo:SO00042").unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].kind, l[0].topic.as_str(), l[0].offset), (LinkKind::DeadLetter, topic::DLQ, 0));
}

#[test]
fn lineage_links_source_refs_to_journal_events_and_commands() {
    let (_dir, store) = temp_store();
    let mut s = Scenario::default();
    for e in fulfillment(2) {
        s.journal(e);
    }
    for c in commands(2) {
        s.command(c);
    }
    store.apply(&s.sequential()).unwrap();

    let order = store.lineage("odoo:SO00002").unwrap();
    let journal = order.iter().filter(|l| l.kind == LinkKind::Journal).count();
    let commands = order.iter().filter(|l| l.kind == LinkKind::Command).count();
    assert_eq!((journal, commands), (fulfillment(2).len(), 5));
    assert!(order.iter().any(|l| l.id == "o2f:SO00002#1" && l.name == "OrderAccepted"));

    let ship: Vec<String> = store.lineage("wms:SHP-SO00002").unwrap().into_iter().map(|l| l.name).collect();
    for name in
        ["ShipmentRecorded", "CarrierAssigned", "DeliveryConfirmed", "BookCarrier", "ConfirmShipment", "PostInvoice"]
    {
        assert!(ship.iter().any(|n| n == name), "wms:SHP-SO00002 lineage lacks {name}: {ship:?}");
    }
    let release = store.lineage("waybill:release:SO00002").unwrap();
    assert_eq!(release.len(), 1);
    assert_eq!(release[0].topic, topic::commands(System::Wms));
    assert_eq!(release[0].name, "ReleaseToWarehouse");
    assert!(store.lineage("odoo:SO0000").unwrap().is_empty(), "a prefix of a ref matches nothing");
}

#[test]
fn exception_subjects_are_indexed_in_lineage() {
    let (_dir, store) = temp_store();
    let raise = ev(
        "SO9",
        SagaKind::OrderToFulfillment,
        1,
        0,
        JournalBody::ExceptionRaised(ExceptionRaised {
            exception_id: "o2f:SO9/pick-mismatch/1".into(),
            category: ExceptionCategory::PickMismatch,
            message: "pick PK-1 has an unknown line 99".into(),
            subject: SourceRef::new(System::Wms, "PK-1"),
            entity: None,
        }),
    );
    store.apply(&[Positioned::new(topic::JOURNAL, 0, 0, Input::Journal(raise))]).unwrap();
    let l = store.lineage("wms:PK-1").unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].id, "o2f:SO9#1");
}

#[test]
fn stock_positions_sum_over_orders() {
    let (_dir, store) = temp_store();
    let mut s = Scenario::default();
    for n in 1..=20 {
        for e in fulfillment(n) {
            s.journal(e);
        }
    }
    store.apply(&s.sequential()).unwrap();
    let all = store.stock_all().unwrap();
    assert!(!all.is_empty());
    // Expected sums straight from the generator.
    let mut ordered = std::collections::BTreeMap::<(String, String), i64>::new();
    for n in 1..=20 {
        for (_, sku, wh, units) in lines_of(n) {
            *ordered.entry((wh.to_string(), sku.to_string())).or_default() += units;
        }
    }
    assert_eq!(all.len(), ordered.len());
    for p in &all {
        assert_eq!(p.ordered, Qty::units(ordered[&(p.warehouse.clone(), p.sku.clone())]), "{p:?}");
        assert!(p.shipped <= p.picked && p.picked <= p.reserved, "{p:?}");
    }
    let a = store.stock("WH1", "SKU-A").unwrap().unwrap();
    assert_eq!((a.warehouse.as_str(), a.sku.as_str()), ("WH1", "SKU-A"));
    let short: Qty = all.iter().map(|p| p.short).sum();
    assert_eq!(short, Qty::units(4), "orders 5, 10, 15, 20 are one unit short");
}

#[test]
fn duplicates_are_dropped_and_rereads_ignored() {
    let (_dir, store) = temp_store();
    let events = fulfillment(1);
    let first = events[0].clone();
    let mut inputs = journal_inputs(events);
    let n = inputs.len() as i64;
    // A copy of an applied journal event at a later offset (producer retry after a crash).
    inputs.push(Positioned::new(topic::JOURNAL, 0, n, Input::Journal(first)));
    let cmds = commands(1);
    let wms = topic::commands(System::Wms);
    inputs.push(Positioned::new(&wms, 0, 0, Input::Command(cmds[0].clone())));
    inputs.push(Positioned::new(&wms, 0, 1, Input::Command(cmds[0].clone())));
    let stats = store.apply(&inputs).unwrap();
    assert_eq!(stats.duplicates, 2);
    assert_eq!(stats.applied, n as usize + 1);

    let o = store.order("SO00001").unwrap().unwrap();
    assert_eq!(o.lines[0].ordered, Qty::units(lines_of(1)[0].3), "ordered not counted twice");
    assert_eq!(store.timeline("SO00001").unwrap().len(), n as usize);
    let ordered: Qty = store.stock_all().unwrap().iter().map(|p| p.ordered).sum();
    assert_eq!(ordered, Qty::units(5));
    assert_eq!(store.lineage("waybill:reserve:SO00001").unwrap().len(), 1);

    // Handing the same records in again (a re-read after a crash) changes nothing.
    let before = store.dump().unwrap();
    let again = store.apply(&inputs).unwrap();
    assert_eq!(again.already_applied, inputs.len());
    assert_eq!(store.dump().unwrap(), before);
    assert_eq!(store.checkpoint(topic::JOURNAL, 0).unwrap(), Some(n + 1));
    assert_eq!(store.checkpoint(&wms, 0).unwrap(), Some(2));
    assert_eq!(store.checkpoint(&wms, 1).unwrap(), None);
}

#[test]
fn checkpoint_and_update_survive_a_reopen_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection");
    {
        let store = ProjectionStore::open(&path).unwrap();
        store.apply(&journal_inputs(fulfillment(1))).unwrap();
        // No flush: sled's own recovery must bring back the batch as a whole.
    }
    let store = ProjectionStore::open(&path).unwrap();
    assert_eq!(store.checkpoint(topic::JOURNAL, 0).unwrap(), Some(fulfillment(1).len() as i64));
    assert_eq!(store.order("SO00001").unwrap().unwrap().status, OrderStatus::Completed);
    let cps = store.checkpoints().unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!((cps[0].topic.as_str(), cps[0].partition), (topic::JOURNAL, 0));
}

#[test]
fn clear_removes_everything_and_the_store_stays_usable() {
    let (_dir, store) = temp_store();
    let s = scenario(30);
    store.apply(&s.sequential()).unwrap();
    let full = store.dump().unwrap();
    store.clear().unwrap();
    assert_eq!(store.dump().unwrap().len(), 1, "only the layout mark is left");
    assert_eq!(store.checkpoint(topic::JOURNAL, 0).unwrap(), None);
    store.apply(&s.sequential()).unwrap();
    assert_eq!(store.dump().unwrap(), full);
}

#[test]
fn orders_can_be_listed_by_status() {
    let (_dir, store) = temp_store();
    store.apply(&scenario(21).sequential()).unwrap();
    let cancelled = store.orders(Some(OrderStatus::Cancelled), 100).unwrap();
    assert_eq!(cancelled.iter().map(|o| o.order_ref.as_str()).collect::<Vec<_>>(), ["SO00003", "SO00010", "SO00017"]);
    assert_eq!(store.orders(None, 5).unwrap().len(), 5);
    let counts = store.order_counts_by_status().unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 21);
    assert_eq!(count(&counts, OrderStatus::Cancelled), 3);
}

#[test]
fn orders_by_age_lists_a_status_longest_unchanged_first_pages_and_follows_changes() {
    let (_dir, store) = temp_store();
    // Orders 1, 2 and 4 stop after their reservation request (last change at minutes
    // 7, 8 and 10); order 6 runs to completion; the rest of order 1 comes last.
    let (o1, o2, o4, o6) = (fulfillment(1), fulfillment(2), fulfillment(4), fulfillment(6));
    let mut events: Vec<_> = o1[..2].to_vec();
    events.extend(o2[..2].iter().cloned());
    events.extend(o4[..2].iter().cloned());
    events.extend(o6.iter().cloned());
    let first = events.len();
    events.extend(o1[2..].iter().cloned());
    let inputs = journal_inputs(events);
    store.apply(&inputs[..first]).unwrap();

    let refs = |v: Vec<waybill_projection::OrderView>| v.into_iter().map(|o| o.order_ref).collect::<Vec<_>>();
    let ids = |xs: &[&String]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (r1, r2, r4, r6) = (order_ref(1), order_ref(2), order_ref(4), order_ref(6));
    let reserving = Some(OrderStatus::Reserving);
    assert_eq!(refs(store.orders_by_age(reserving, None, None, 10).unwrap()), ids(&[&r1, &r2, &r4]));
    // Unchanged since minute 8 or earlier.
    assert_eq!(refs(store.orders_by_age(reserving, Some(ts(8)), None, 10).unwrap()), ids(&[&r1, &r2]));
    // Pages: two, then what follows the last of them.
    let page = store.orders_by_age(reserving, None, None, 2).unwrap();
    let last = page.last().unwrap().clone();
    assert_eq!(refs(page), ids(&[&r1, &r2]));
    let next = store.orders_by_age(reserving, None, Some((last.last_event_at, &last.order_ref)), 2).unwrap();
    assert_eq!(refs(next), ids(&[&r4]));
    // Every status: the completed order's latest change is the most recent.
    assert_eq!(refs(store.orders_by_age(None, None, None, 10).unwrap()), ids(&[&r1, &r2, &r4, &r6]));

    // Order 1 moves on: it leaves the reserving list and the index holds one entry per order.
    store.apply(&inputs[first..]).unwrap();
    assert_eq!(refs(store.orders_by_age(reserving, None, None, 10).unwrap()), ids(&[&r2, &r4]));
    assert_eq!(store.order(&r1).unwrap().unwrap().status, OrderStatus::Completed);
    let completed = Some(OrderStatus::Completed);
    assert_eq!(refs(store.orders_by_age(completed, None, None, 10).unwrap()), ids(&[&r1, &r6]));
    let entries = store.dump().unwrap().into_iter().filter(|(k, _)| k.starts_with(b"oa/")).count();
    assert_eq!(entries, 4);
}

#[test]
fn refused_commands_and_targets_that_are_down_are_listed_with_the_other_exceptions() {
    let (_dir, store) = temp_store();
    store.apply(&journal_inputs(fulfillment(1))).unwrap();
    let refused = ExceptionRaised {
        exception_id: "o2f:SO00001/delivery-failed/1".into(),
        category: ExceptionCategory::DeliveryFailed,
        message: "Odoo refused ConfirmShipment for SO00001 (shipment SHP-SO00001): ValidationError; fix it in Odoo, then retry the exception".into(),
        subject: SourceRef::new(System::Waybill, "confirm-shipment:SHP-SO00001"),
        entity: None,
    };
    let down = ExceptionRaised {
        exception_id: "tgt:odoo/target-unavailable/1".into(),
        category: ExceptionCategory::TargetUnavailable,
        message: "Odoo has not answered since 2026-01-01 10:42 UTC (connection refused)".into(),
        subject: SourceRef::new(System::Waybill, "waybill.commands.odoo"),
        entity: None,
    };
    let n = fulfillment(1).len() as i64;
    let mut events =
        vec![ev("SO00001", SagaKind::OrderToFulfillment, n + 1, 90, JournalBody::ExceptionRaised(refused))];
    events.push(ev("odoo", SagaKind::TargetHealth, 1, 91, JournalBody::ExceptionRaised(down)));
    events[1].meta.correlation_key = "target:odoo".into();
    let inputs: Vec<Positioned> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| Positioned::new(topic::JOURNAL, 0, 1000 + i as i64, Input::Journal(e)))
        .collect();
    let before = store.order_counts_by_status().unwrap();
    store.apply(&inputs).unwrap();

    let open = store.exceptions(true, None).unwrap();
    let x = open.iter().find(|x| x.category == ExceptionCategory::DeliveryFailed).expect("delivery failure listed");
    assert_eq!(x.saga_id.as_deref(), Some("o2f:SO00001"));
    assert_eq!(x.order_ref.as_deref(), Some("SO00001"));
    assert!(x.message.starts_with("Odoo refused ConfirmShipment for SO00001"));
    assert_eq!(store.lineage("waybill:confirm-shipment:SHP-SO00001").unwrap().len(), 1, "the command's lineage has it");
    let t = store.exceptions(true, Some(ExceptionCategory::TargetUnavailable)).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].saga_id.as_deref(), Some("tgt:odoo"));
    // The control plane keys a workbench action by this: the target's key.
    assert_eq!(t[0].order_ref.as_deref(), Some("target:odoo"));
    let counts = store.exception_counts_by_category().unwrap();
    assert_eq!(counts.iter().find(|(c, _)| *c == ExceptionCategory::TargetUnavailable).unwrap().1, 1);
    assert_eq!(store.order("SO00001").unwrap().unwrap().open_exceptions, 1);
    // The target is no order: not listed, not counted by status; its timeline is kept.
    assert!(store.orders(None, 100).unwrap().iter().all(|o| o.order_ref != "target:odoo"));
    assert!(store.orders_by_age(None, None, None, 100).unwrap().iter().all(|o| o.order_ref != "target:odoo"));
    assert_eq!(store.order_counts_by_status().unwrap(), before);
    assert_eq!(store.timeline("target:odoo").unwrap().len(), 1);
}

/// A retired flow leaves the projection whole — its record, its place in the lists and
/// counts, its exceptions — and a later incarnation of the key starts a new record whose
/// sagas count from 1 again, exactly as the coordinator forgets and begins the flow.
#[test]
fn a_retired_flow_leaves_the_views_and_a_new_incarnation_starts_afresh() {
    use waybill_domain::journal::FlowRetired;
    let retire = |n: usize, seq: i64| {
        let order = format!("SO{n:05}");
        ev(
            &order,
            SagaKind::OrderToFulfillment,
            seq,
            90_000,
            JournalBody::FlowRetired(FlowRetired { finished_at: ts(600), retention_secs: 400 * 86_400 }),
        )
    };
    let (first, second) = (fulfillment(1), fulfillment(5));
    let mut events = first.clone();
    events.push(retire(1, first.len() as i64 + 1));
    events.extend(second.clone());
    events.push(retire(5, second.len() as i64 + 1));
    let inputs = journal_inputs(events);

    let (_dir, store) = temp_store();
    store.apply(&inputs).unwrap();
    for order in ["SO00001", "SO00005"] {
        assert!(store.order(order).unwrap().is_none(), "{order} is gone");
        assert!(store.timeline(order).unwrap().is_empty());
    }
    assert!(store.order_counts_by_status().unwrap().iter().all(|(_, n)| *n == 0), "counted nowhere");
    assert!(store.orders_by_age(None, None, None, 10).unwrap().is_empty(), "listed nowhere");
    assert!(store.exceptions(false, None).unwrap().is_empty(), "its exceptions went with it");
    assert!(store.exception_counts_by_category().unwrap().iter().all(|(_, n)| *n == 0));

    // Event by event gives the same as one batch.
    let (_dir2, stepwise) = temp_store();
    for p in &inputs {
        stepwise.apply(std::slice::from_ref(p)).unwrap();
    }
    assert!(stepwise.order("SO00005").unwrap().is_none());
    assert!(stepwise.exceptions(false, None).unwrap().is_empty());
    assert!(stepwise.order_counts_by_status().unwrap().iter().all(|(_, n)| *n == 0));

    // The key begins again: its events are applied, not taken for copies.
    let again: Vec<Positioned> = first
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| Positioned::new(topic::JOURNAL, 0, 10_000 + i as i64, Input::Journal(e)))
        .collect();
    let stats = store.apply(&again).unwrap();
    assert_eq!(stats.applied, first.len());
    let o = store.order("SO00001").unwrap().expect("a new record");
    assert_eq!(o.status, OrderStatus::Completed);
    assert_eq!(o.sagas[0].last_seq, first.len() as i64);
    assert_eq!(store.timeline("SO00001").unwrap().len(), first.len());
    assert_eq!(count(&store.order_counts_by_status().unwrap(), OrderStatus::Completed), 1);
}
