//! Property tests of the pure saga core (DESIGN.md invariants 3 and 5):
//! - replaying the journal (any prefix, with duplicates) reproduces the live state;
//! - no event sequence — with duplicates, redeliveries, double approvals and
//!   interleaving across orders — produces two release-to-warehouse commands for one
//!   order, two invoices for one shipment, two credit notes for one return receipt, or
//!   any idempotency key twice;
//! - operators' retries, resolutions and replays on top of any such sequence never issue
//!   two distinct commands for one idempotency key (a retry re-sends the same command).

mod fixtures;

use std::collections::{BTreeMap, HashMap};

use fixtures::*;
use proptest::prelude::*;
use waybill_domain::event::ReplayInput;
use waybill_domain::{CommandBody, InboundEvent, JournalEvent, Timestamp};
use waybill_saga::decision::Cause;
use waybill_saga::flow::{Env, OrderFlow, ReplayRecord, replay, step, tick};
use waybill_saga::{Catalog, Policy};

/// A causal script of one order's events, as systems would send them.
fn script(
    order: &str,
    qty: i64,
    short: i64,
    partial: bool,
    shipments: usize,
    cancel_at: Option<usize>,
) -> Vec<InboundEvent> {
    let reserved_qty = qty - short;
    let mut v =
        vec![released(order, vec![line(1, "PLAIN", "Units", qty)]), reserved(order, &[(1, reserved_qty, short)])];
    if reserved_qty > 0 {
        v.push(accepted(order));
        if partial && reserved_qty > 1 {
            v.push(pick(order, &format!("{order}-P1"), vec![picked(1, "PLAIN", 1)], false));
            v.push(pick(order, &format!("{order}-P2"), vec![picked(1, "PLAIN", reserved_qty - 1)], true));
        } else {
            v.push(pick(order, &format!("{order}-P1"), vec![picked(1, "PLAIN", reserved_qty)], true));
        }
        let n = shipments.min(reserved_qty as usize).max(1);
        let mut left = reserved_qty;
        for i in 0..n {
            let q = if i + 1 == n { left } else { 1 };
            left -= q;
            let sh = format!("{order}-SH{i}");
            v.push(issued(order, &sh, &[(1, "PLAIN", q)]));
            // Approvals (a no-op unless the invoice is held), a double approval, a late
            // rejection, then finance's answer.
            let posting = format!("inv:{sh}");
            v.push(decision(order, &format!("{sh}-a1"), &posting, 1, "alice", "approver", true));
            v.push(decision(order, &format!("{sh}-a2"), &posting, 2, "bob", "approver", true));
            v.push(decision(order, &format!("{sh}-r1"), &posting, 2, "carol", "approver", false));
            v.push(booked(order, &sh));
            v.push(delivered(order, &sh));
            v.push(invoice_posted(order, &sh, &format!("INV-{sh}")));
        }
        // A return of one unit, received (possibly twice under two receipt ids), credited.
        let rma_id = format!("{order}-RMA");
        v.push(rma(order, &rma_id, &[(1, "PLAIN", 1)]));
        let rc = format!("{rma_id}-RC1");
        v.push(received(
            order,
            &rma_id,
            &rc,
            vec![returned(1, "PLAIN", 1, waybill_domain::event::ItemCondition::Restock, &[])],
        ));
        v.push(decision(order, &format!("{rc}-a1"), &format!("cn:{rc}"), 1, "alice", "approver", true));
        v.push(credit_issued(order, &rc));
        let rc2 = format!("{rma_id}-RC2");
        v.push(received(
            order,
            &rma_id,
            &rc2,
            vec![returned(1, "PLAIN", 1, waybill_domain::event::ItemCondition::Scrap, &[])],
        ));
    }
    if let Some(at) = cancel_at {
        let at = at.min(v.len());
        v.insert(at.max(1), cancelled(order));
    }
    v
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // test data, built once
enum Op {
    Event(InboundEvent),
    Tick(i64),
}

fn arb_world() -> impl Strategy<Value = (bool, Vec<Op>)> {
    (any::<bool>(), arb_run())
}

fn arb_run() -> impl Strategy<Value = Vec<Op>> {
    let order = (1i64..6, 0i64..3, any::<bool>(), 1usize..3, proptest::option::weighted(0.3, 0usize..12));
    (proptest::collection::vec(order, 1..4), proptest::collection::vec((any::<u16>(), any::<u16>(), 0u8..4), 0..30))
        .prop_map(|(orders, noise)| {
            let scripts: Vec<Vec<InboundEvent>> = orders
                .iter()
                .enumerate()
                .map(|(i, (q, s, p, n, c))| script(&format!("SO{i}"), *q, (*s).min(*q), *p, *n, *c))
                .collect();
            // Interleave the scripts (keeping each order's causal order).
            let mut cursors = vec![0usize; scripts.len()];
            let mut ops = Vec::new();
            let mut k = 0usize;
            let mut emitted: Vec<InboundEvent> = Vec::new();
            let mut noise = noise.into_iter();
            loop {
                let live: Vec<usize> = (0..scripts.len()).filter(|i| cursors[*i] < scripts[*i].len()).collect();
                if live.is_empty() {
                    break;
                }
                let (a, b, kind) = noise.next().unwrap_or((k as u16, 0, 3));
                let i = live[a as usize % live.len()];
                let e = scripts[i][cursors[i]].clone();
                cursors[i] += 1;
                ops.push(Op::Event(e.clone()));
                emitted.push(e);
                match kind {
                    // Redeliver something already sent.
                    0 => ops.push(Op::Event(emitted[b as usize % emitted.len()].clone())),
                    // The same business event under a new message id.
                    1 => {
                        let mut again = emitted[b as usize % emitted.len()].clone();
                        again.meta.event_id.push_str(":resent");
                        ops.push(Op::Event(again));
                    }
                    // Time passes (timers may fire).
                    2 => ops.push(Op::Tick(b as i64 * 1_000_000)),
                    _ => {}
                }
                k += 1;
            }
            ops
        })
}

struct World {
    flows: HashMap<String, OrderFlow>,
    journal: Vec<JournalEvent>,
    commands: Vec<waybill_domain::Command>,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
}

impl World {
    fn new(held: bool) -> Self {
        let mut policy = Policy::default();
        policy.fulfillment.pick_timeout_secs = 30.0;
        policy.posting.approval_sla_secs = 45.0;
        let mut catalog = catalog();
        if held {
            // Every first invoice and every credit note waits for an approver.
            catalog.new_customers.insert("C1".into());
            policy.posting.hold_credit_notes_above = waybill_domain::Money(0);
        }
        World { flows: HashMap::new(), journal: vec![], commands: vec![], catalog, policy, now: Timestamp(0) }
    }

    fn run(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Event(e) => {
                    let key = e.meta.correlation_key.clone();
                    let flow = self.flows.entry(key.clone()).or_insert_with(|| OrderFlow::new(key));
                    let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
                    let s = step(flow, e, &Env { catalog: &self.catalog, policy: &self.policy }, &cause);
                    self.journal.extend(s.journal);
                    self.commands.extend(s.commands);
                }
                Op::Tick(us) => {
                    self.now = Timestamp(self.now.0 + us);
                    let mut keys: Vec<String> = self.flows.keys().cloned().collect();
                    keys.sort();
                    for key in keys {
                        let flow = self.flows.get_mut(&key).unwrap();
                        let cause = Cause { id: format!("timer:{key}"), input: None, at: self.now };
                        let s = tick(flow, &cause);
                        self.journal.extend(s.journal);
                        self.commands.extend(s.commands);
                    }
                }
            }
        }
    }
}

fn fold(journal: &[JournalEvent]) -> BTreeMap<String, OrderFlow> {
    let mut flows: BTreeMap<String, OrderFlow> = BTreeMap::new();
    for e in journal {
        let key = e.meta.correlation_key.clone();
        flows.entry(key.clone()).or_insert_with(|| OrderFlow::new(key)).apply(e);
    }
    flows
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_journal_reproduces_the_state((held, ops) in arb_world()) {
        let mut w = World::new(held);
        w.run(&ops);
        let live: BTreeMap<String, OrderFlow> = w
            .flows
            .iter()
            .filter(|(_, f)| f.fulfillment.book.seq > 0 || !f.invoices.is_empty() || !f.returns.is_empty())
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        prop_assert_eq!(&fold(&w.journal), &live);
        // Every record applied twice (a reader that sees duplicates) changes nothing.
        let doubled: Vec<JournalEvent> = w.journal.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        prop_assert_eq!(&fold(&doubled), &live);
        // Any prefix replays to the state the live run had at that point: folding a
        // prefix and then the rest equals folding everything.
        let cut = w.journal.len() / 2;
        let mut flows = fold(&w.journal[..cut]);
        for e in &w.journal[cut..] {
            let key = e.meta.correlation_key.clone();
            flows.entry(key.clone()).or_insert_with(|| OrderFlow::new(key)).apply(e);
        }
        prop_assert_eq!(&flows, &live);
    }

    #[test]
    fn no_sequence_releases_an_order_twice_or_repeats_a_command((held, ops) in arb_world()) {
        let mut w = World::new(held);
        w.run(&ops);
        let mut releases: BTreeMap<String, usize> = BTreeMap::new();
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        for c in &w.commands {
            if let CommandBody::ReleaseToWarehouse(r) = &c.body {
                *releases.entry(r.order_ref.clone()).or_default() += 1;
            }
            *keys.entry(c.meta.idempotency_key.clone()).or_default() += 1;
        }
        prop_assert!(releases.values().all(|n| *n == 1), "releases per order: {:?}", releases);
        let mut invoices: BTreeMap<String, usize> = BTreeMap::new();
        let mut credits: BTreeMap<String, usize> = BTreeMap::new();
        for c in &w.commands {
            match &c.body {
                CommandBody::PostInvoice(p) => *invoices.entry(p.shipment_id.clone()).or_default() += 1,
                CommandBody::IssueCreditNote(n) => *credits.entry(n.receipt_id.clone()).or_default() += 1,
                _ => {}
            }
        }
        prop_assert!(invoices.values().all(|n| *n == 1), "invoices per shipment: {:?}", invoices);
        prop_assert!(credits.values().all(|n| *n == 1), "credit notes per receipt: {:?}", credits);
        prop_assert!(keys.values().all(|n| *n == 1), "idempotency keys: {:?}", keys);
        // Journal ids (saga id, seq) are unique and dense per saga.
        let mut seqs: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for e in &w.journal {
            seqs.entry(e.meta.saga_id.clone()).or_default().push(e.meta.seq);
        }
        for (saga, s) in seqs {
            let want: Vec<i64> = (1..=s.len() as i64).collect();
            prop_assert_eq!(s, want, "saga {}", saga);
        }
    }
}

impl World {
    /// Every open exception of every order, as (order, exception id), sorted.
    fn open_exceptions(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = Vec::new();
        for (key, f) in &self.flows {
            let books = std::iter::once(&f.fulfillment.book)
                .chain(f.invoices.values().map(|i| &i.book))
                .chain(f.returns.values().map(|r| &r.book));
            for b in books {
                v.extend(b.open_exceptions.keys().map(|id| (key.clone(), id.clone())));
            }
        }
        v.sort();
        v
    }

    /// Replays `events` (those of order `key`) as an operator would.
    fn replay(&mut self, key: &str, request: &str, events: &[InboundEvent]) {
        let Some(flow) = self.flows.get_mut(key) else { return };
        let records: Vec<ReplayRecord> = events
            .iter()
            .zip(0..)
            .map(|(e, offset)| ReplayRecord {
                input: ReplayInput { topic: "waybill.inbound.odoo".into(), partition: 0, offset, dead_letter: None },
                event: Ok(e.clone()),
            })
            .collect();
        let cause = Cause { id: request.to_string(), input: None, at: self.now };
        let env = Env { catalog: &self.catalog, policy: &self.policy };
        let s = replay(flow, request, &fixtures::replay_request(key, request), &records, &env, &cause);
        self.journal.extend(s.journal);
        self.commands.extend(s.commands);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn retries_and_replays_never_issue_two_distinct_commands_for_one_key(
        (held, ops) in arb_world(),
        actions in proptest::collection::vec((any::<u16>(), 0u8..5), 0..24),
    ) {
        let mut w = World::new(held);
        w.run(&ops);
        let events: Vec<InboundEvent> =
            ops.iter().filter_map(|o| if let Op::Event(e) = o { Some(e.clone()) } else { None }).collect();
        for (i, (pick, kind)) in actions.iter().enumerate() {
            let open = w.open_exceptions();
            match kind {
                0 | 1 if !open.is_empty() => {
                    let (order, id) = &open[*pick as usize % open.len()];
                    let e = if *kind == 0 {
                        fixtures::retry(order, &format!("control:retry:{i}"), id)
                    } else {
                        fixtures::resolve(order, &format!("control:resolve:{i}"), id, "handled")
                    };
                    w.run(&[Op::Event(e)]);
                }
                // Finance refuses an invoice it was sent (a retryable exception).
                4 => {
                    let mut sent: Vec<(String, String)> = w
                        .flows
                        .iter()
                        .flat_map(|(k, f)| f.invoices.keys().map(move |s| (k.clone(), s.clone())))
                        .collect();
                    sent.sort();
                    if let Some((order, shipment)) = sent.get(*pick as usize % sent.len().max(1)) {
                        w.run(&[Op::Event(fixtures::invoice_refused(order, shipment, &format!("closed {i}")))]);
                    }
                }
                // A retry of whatever was open before: may be resolved by now.
                2 if !open.is_empty() => {
                    let (order, id) = &open[(*pick as usize / 7) % open.len()];
                    w.run(&[Op::Event(fixtures::retry(order, &format!("control:retry:{i}"), id))]);
                }
                _ => {
                    let mut keys: Vec<String> = w.flows.keys().cloned().collect();
                    keys.sort();
                    if keys.is_empty() {
                        continue;
                    }
                    let key = keys[*pick as usize % keys.len()].clone();
                    let mine: Vec<InboundEvent> =
                        events.iter().filter(|e| e.meta.correlation_key == key).cloned().collect();
                    let before = w.commands.len();
                    w.replay(&key, &format!("control:replay:{i}"), &mine);
                    // Every event of the order was stepped already: a replay issues nothing.
                    prop_assert_eq!(w.commands.len(), before, "replay of {} issued commands", key);
                }
            }
        }
        let mut by_key: BTreeMap<String, &waybill_domain::Command> = BTreeMap::new();
        for c in &w.commands {
            if let Some(first) = by_key.get(&c.meta.idempotency_key) {
                prop_assert_eq!(&first.body, &c.body, "two distinct commands for {}", c.meta.idempotency_key);
            } else {
                by_key.insert(c.meta.idempotency_key.clone(), c);
            }
        }
        // The journal, with the operators' actions, still folds to the live state.
        let live: BTreeMap<String, OrderFlow> = w
            .flows
            .iter()
            .filter(|(_, f)| f.fulfillment.book.seq > 0 || !f.invoices.is_empty() || !f.returns.is_empty())
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        prop_assert_eq!(&fold(&w.journal), &live);
    }
}
