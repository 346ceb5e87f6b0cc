//! Property tests of procure-to-receive (DESIGN.md invariants 3, 5 and 10). Random
//! interleavings of one purchase order's events — redeliveries, notices after their
//! receipts, partial, over- and damaged receipts, a second receipt of a notice line,
//! bills before their goods, bills reusing a number, bills off the order's prices,
//! approvals and rejections, cancellations, finance refusals, the order closed early or
//! never, timers — with the systems answering each command at a random later point:
//! - no idempotency key is issued twice, so no receipt is posted twice and no supplier
//!   invoice billed twice; no notice line is posted by two receipts that both stand;
//! - folding the journal (with duplicates) rebuilds the live state;
//! - once every answer is in, the order closed and every held bill decided, nothing
//!   stalls silently: the saga has finished, or a timer or an open exception watches it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use waybill_domain::{CommandBody, InboundEvent, Timestamp};
use waybill_saga::decision::Cause;
use waybill_saga::flow::{self, Env, Flow};
use waybill_saga::procurement::{BillStatus, PurchaseFlow};
use waybill_saga::{Catalog, Policy};
use waybill_test_util::inbound::{OCCURRED_AT, decision};
use waybill_test_util::purchase::*;

const PO: &str = "P00007";
const SKUS: [&str; 3] = ["WIDGET", "BOLT", "NUT"];

/// A receipt line: (order line, units, damaged, notice line).
type GotLine = (usize, i64, i64, Option<i32>);
/// A bill line: (order line, units, price change in percent).
type BilledLine = (usize, i64, i8);

/// One purchase order's world: the order, notices, receipts, bills, cancellations.
#[derive(Debug, Clone)]
struct World {
    /// (units, unit price) per order line 1..=n.
    lines: Vec<(i64, i64)>,
    /// Notices: per notice, (order line, units) per notice line.
    notices: Vec<Vec<(usize, i64)>>,
    /// Receipts: optional notice index, and (order line, units, damaged, notice line) per line.
    receipts: Vec<(Option<usize>, Vec<GotLine>)>,
    /// Bills: number, and (order line, units, price change in percent) per line.
    bills: Vec<(u8, Vec<BilledLine>)>,
    /// Receipts cancelled (indices).
    cancels: Vec<usize>,
    /// Approvals: (bill number, approve, by bob rather than alice, version).
    decisions: Vec<(u8, bool, bool, i64)>,
    close: bool,
    refuse_bills: bool,
    /// Shuffle and redelivery choices.
    order: Vec<u16>,
    redeliver: Vec<u16>,
    answer_lag: Vec<u8>,
}

fn arb_world() -> impl Strategy<Value = World> {
    let lines = proptest::collection::vec((1i64..20, 100i64..2000), 1..4);
    lines
        .prop_flat_map(|lines| {
            let n = lines.len();
            let notice = proptest::collection::vec((0..n, 1i64..25), 1..3);
            let receipt_line = (0..n, 0i64..25, 0i64..3, proptest::option::of(1i32..3));
            let receipt = (proptest::option::of(0usize..2), proptest::collection::vec(receipt_line, 1..3));
            let bill = (0u8..3, proptest::collection::vec((0..n, 1i64..25, -6i8..7), 1..3));
            (
                Just(lines),
                proptest::collection::vec(notice, 0..3),
                proptest::collection::vec(receipt, 1..4),
                proptest::collection::vec(bill, 0..4),
                proptest::collection::vec(0usize..4, 0..2),
                proptest::collection::vec((0u8..3, any::<bool>(), any::<bool>(), 1i64..3), 0..4),
                (any::<bool>(), proptest::bool::weighted(0.2)),
                (
                    proptest::collection::vec(any::<u16>(), 40),
                    proptest::collection::vec(any::<u16>(), 0..6),
                    proptest::collection::vec(any::<u8>(), 40),
                ),
            )
        })
        .prop_map(
            |(
                lines,
                notices,
                receipts,
                bills,
                cancels,
                decisions,
                (close, refuse_bills),
                (order, redeliver, answer_lag),
            )| {
                World {
                    lines,
                    notices,
                    receipts,
                    bills,
                    cancels,
                    decisions,
                    close,
                    refuse_bills,
                    order,
                    redeliver,
                    answer_lag,
                }
            },
        )
}

fn line_no(i: usize) -> i32 {
    i as i32 + 1
}

/// The events the systems send on their own (answers to commands come later).
fn events(w: &World) -> Vec<InboundEvent> {
    let order_lines: Vec<(i32, &str, i64, i64)> =
        w.lines.iter().enumerate().map(|(i, (u, p))| (line_no(i), SKUS[i], *u, *p)).collect();
    let mut v = vec![confirmed(PO, &order_lines)];
    for (k, lines) in w.notices.iter().enumerate() {
        let lines: Vec<(i32, i32, &str, i64, &[&str])> =
            lines.iter().enumerate().map(|(a, (l, u))| (a as i32 + 1, line_no(*l), SKUS[*l], *u, &[][..])).collect();
        v.push(notice(PO, &format!("ASN-{k}"), &lines));
    }
    for (k, (asn, lines)) in w.receipts.iter().enumerate() {
        let asn = asn.filter(|a| *a < w.notices.len()).map(|a| format!("ASN-{a}"));
        let lines =
            lines.iter().map(|(l, u, d, a)| got(line_no(*l), a.filter(|_| asn.is_some()), SKUS[*l], *u, *d)).collect();
        v.push(receipt(PO, &format!("R{k}"), asn.as_deref(), lines));
    }
    for (number, lines) in &w.bills {
        let lines: Vec<(i32, &str, i64, i64)> = lines
            .iter()
            .map(|(l, u, pct)| (line_no(*l), SKUS[*l], *u, w.lines[*l].1 * (100 + *pct as i64) / 100))
            .collect();
        v.push(bill(PO, &format!("B{number}"), &lines));
    }
    for c in &w.cancels {
        v.push(receipt_cancelled(PO, &format!("R{}", c % w.receipts.len())));
    }
    for (k, (number, approve, bob, version)) in w.decisions.iter().enumerate() {
        let who = if *bob { "bob" } else { "alice" };
        v.push(decision(&key(PO), &format!("d{k}"), &format!("bill:B{number}"), *version, who, "approver", *approve));
    }
    if w.close {
        v.push(closed(PO));
    }
    v
}

/// What the system a command went to answers.
fn answer(cmd: &waybill_domain::Command, refuse_bills: bool, refused: &mut BTreeSet<String>) -> Option<InboundEvent> {
    match &cmd.body {
        CommandBody::ValidateReceipt(r) => Some(validated(PO, &r.receipt_id)),
        CommandBody::PostVendorBill(b) if refuse_bills && refused.insert(b.bill_number.clone()) => {
            Some(bill_refused(PO, &b.bill_number, "period closed"))
        }
        CommandBody::PostVendorBill(b) => Some(bill_posted(PO, &b.bill_number, b.amount)),
        CommandBody::IssueVendorCreditNote(c) => Some(vendor_credited(PO, &c.receipt_id, c.amount)),
        _ => None,
    }
}

struct Run {
    flow: PurchaseFlow,
    catalog: Catalog,
    policy: Policy,
    now: Timestamp,
    journal: Vec<waybill_domain::JournalEvent>,
    commands: Vec<waybill_domain::Command>,
}

impl Run {
    fn send(&mut self, e: &InboundEvent) -> Vec<waybill_domain::Command> {
        let cause = Cause { id: e.meta.event_id.clone(), input: None, at: self.now };
        let s = flow::step(&mut self.flow, e, &Env::new(&self.catalog, &self.policy), &cause);
        self.journal.extend(s.journal);
        self.commands.extend(s.commands.iter().cloned());
        s.commands
    }
    fn tick(&mut self, days: f64) {
        self.now = self.now.plus_secs(days * 86_400.0);
        let cause = Cause { id: format!("timer:{}", self.now.0), input: None, at: self.now };
        let s = flow::tick(&mut self.flow, &Env::new(&self.catalog, &self.policy), &cause);
        self.journal.extend(s.journal);
        self.commands.extend(s.commands);
    }
}

fn run(w: &World) -> Run {
    let mut r = Run {
        flow: PurchaseFlow::create(&key(PO)),
        catalog: Catalog::default(),
        policy: Policy::default(),
        now: OCCURRED_AT,
        journal: Vec::new(),
        commands: Vec::new(),
    };
    // Shuffle (the order is usually confirmed first, but not always), then redeliver some.
    let mut queue = events(w);
    let first = queue.remove(0);
    let mut keyed: Vec<(u16, InboundEvent)> =
        queue.into_iter().enumerate().map(|(i, e)| (w.order[i % w.order.len()], e)).collect();
    keyed.sort_by_key(|(k, _)| *k);
    let mut queue: Vec<InboundEvent> = keyed.into_iter().map(|(_, e)| e).collect();
    let at = if w.order[0].is_multiple_of(8) { (w.order[1] as usize) % (queue.len() + 1) } else { 0 };
    queue.insert(at, first);
    for (k, d) in w.redeliver.iter().enumerate() {
        let e = queue[*d as usize % queue.len()].clone();
        let at = (d.wrapping_mul(31) as usize + k) % (queue.len() + 1);
        queue.insert(at, e);
    }
    let mut refused = BTreeSet::new();
    let mut i = 0;
    let mut lag = 0;
    while i < queue.len() {
        let e = queue[i].clone();
        for cmd in r.send(&e) {
            if let Some(a) = answer(&cmd, w.refuse_bills, &mut refused) {
                lag += 1;
                let later = i + 1 + w.answer_lag[lag % w.answer_lag.len()] as usize % 4;
                queue.insert(later.min(queue.len()), a);
            }
        }
        if i % 5 == 4 {
            r.tick(0.5);
        }
        i += 1;
    }
    r
}

/// Brings the order to rest: the order closed, every held bill decided by a senior
/// approver, refused bills retried, every answer in, and every timer fired.
fn settle(r: &mut Run) {
    let mut n = 0;
    let mut refused = BTreeSet::new();
    for round in 0..6 {
        n += 1;
        let mut pending: Vec<InboundEvent> = vec![closed(PO)];
        let held: Vec<(String, i64)> = r
            .flow
            .procurement
            .bills
            .values()
            .filter(|b| b.status == BillStatus::Held)
            .filter_map(|b| b.posting.as_ref().map(|p| (p.posting_id.clone(), p.version)))
            .collect();
        for (k, (posting, version)) in held.into_iter().enumerate() {
            pending.push(decision(
                &key(PO),
                &format!("s{round}-{k}"),
                &posting,
                version,
                "carol",
                "senior-approver",
                true,
            ));
        }
        let open: Vec<String> = r.flow.procurement.book.open_exceptions.keys().cloned().collect();
        for (k, x) in open.into_iter().enumerate() {
            pending.push(waybill_test_util::inbound::retry(&key(PO), &format!("rt{round}-{k}-{n}"), &x));
        }
        while let Some(e) = pending.pop() {
            for cmd in r.send(&e) {
                if let Some(a) = answer(&cmd, false, &mut refused) {
                    pending.push(a);
                }
            }
        }
        r.tick(20.0);
    }
}

fn check_keys(r: &Run) -> Result<(), TestCaseError> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &r.commands {
        *seen.entry(c.meta.idempotency_key.as_str()).or_default() += 1;
    }
    Ok(())
        .and_then(|()| {
            // Retries re-send a refused command under its own key: that is the one
            // repeat allowed, and it must be the same command.
            let mut bodies: BTreeMap<&str, &CommandBody> = BTreeMap::new();
            for c in &r.commands {
                if let Some(b) = bodies.insert(&c.meta.idempotency_key, &c.body) {
                    prop_assert_eq!(b, &c.body, "two commands under {}", c.meta.idempotency_key);
                }
            }
            Ok(())
        })
        .and_then(|()| {
            // A notice line is posted once by the receipts that stand.
            let returned: BTreeSet<&str> = r
                .commands
                .iter()
                .filter_map(|c| match &c.body {
                    CommandBody::ReturnToVendor(p) => Some(p.receipt_id.as_str()),
                    _ => None,
                })
                .collect();
            let mut posted: BTreeMap<(String, i32), Vec<&str>> = BTreeMap::new();
            for c in &r.commands {
                if let CommandBody::ValidateReceipt(p) = &c.body
                    && !returned.contains(p.receipt_id.as_str())
                {
                    let asn = r.flow.procurement.receipts[&p.receipt_id].receipt.asn_id.clone();
                    for l in &p.lines {
                        if let (Some(a), Some(n)) = (&asn, l.asn_line_no) {
                            posted.entry((a.clone(), n)).or_default().push(&p.receipt_id);
                        }
                    }
                }
            }
            for (line, receipts) in posted {
                let distinct: BTreeSet<&&str> = receipts.iter().collect();
                prop_assert!(distinct.len() <= 1, "notice line {line:?} posted by standing receipts {receipts:?}");
            }
            // One posting per supplier invoice.
            let mut bills: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for c in &r.commands {
                if let CommandBody::PostVendorBill(b) = &c.body {
                    bills.entry(&b.bill_number).or_default().insert(&c.meta.idempotency_key);
                }
            }
            for (number, keys) in bills {
                prop_assert_eq!(keys.len(), 1, "bill {} posted under {:?}", number, keys);
            }
            Ok(())
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_receipt_or_bill_is_posted_twice_and_no_key_repeats(w in arb_world()) {
        let r = run(&w);
        check_keys(&r)?;
        // Without operators' retries, every key is issued once.
        let mut keys = BTreeSet::new();
        for c in &r.commands {
            prop_assert!(keys.insert(c.meta.idempotency_key.clone()), "{} issued twice", c.meta.idempotency_key);
        }
    }

    #[test]
    fn the_journal_rebuilds_the_state(w in arb_world()) {
        let r = run(&w);
        let mut rebuilt = PurchaseFlow::create(&key(PO));
        for e in &r.journal {
            flow::apply(&mut rebuilt, e);
            flow::apply(&mut rebuilt, e);
        }
        prop_assert_eq!(rebuilt, r.flow);
    }

    #[test]
    fn at_rest_nothing_stalls_silently(w in arb_world()) {
        let mut r = run(&w);
        settle(&mut r);
        check_keys(&r)?;
        prop_assert!(flow::stalls(&r.flow).is_empty(), "stalled: {:?}\n{:#?}", flow::stalls(&r.flow), r.flow.procurement);
        if r.flow.procurement.order.is_some() && r.flow.procurement.book.open_exceptions.is_empty() {
            prop_assert!(flow::is_finished(&r.flow) || flow::next_deadline(&r.flow).is_some(),
                "neither finished nor watched: {:#?}", r.flow.procurement);
        }
    }
}
