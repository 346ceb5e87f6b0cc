//! The demo's summary: orders by state, exceptions, postings, dead letters, throughput,
//! and what each connector did.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use waybill_domain::ExceptionCategory;
use waybill_domain::journal::DocumentKind;
use waybill_projection::{OrderStatus, ProjectionStore};

use waybill_saga::reconcile::run::Report;

use super::DemoOptions;
use crate::node::Node;
use crate::reconcile::StockJob;

/// The outcome of a demo run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Orders in the run.
    pub orders: usize,
    /// Partitions.
    pub partitions: u32,
    /// Orders per state.
    pub by_status: BTreeMap<OrderStatus, u64>,
    /// Orders not in an end state that have an open exception (waiting for someone).
    pub waiting_with_exception: u64,
    /// Orders neither in an end state nor with an open exception: stalled silently
    /// (should be none), as `order (status)`.
    pub stalled: Vec<String>,
    /// Exceptions raised, by category: (raised, still open).
    pub exceptions: BTreeMap<ExceptionCategory, (u64, u64)>,
    /// Records in the dead-letter topic.
    pub dead_letters: u64,
    /// Undecodable records the demo injected.
    pub injected_bad_records: u64,
    /// Saga latency (accepted → completed), milliseconds: p50, p99.
    pub latency_ms: (f64, f64),
    /// Inbound events processed by the coordinator.
    pub events: u64,
    /// Commands issued.
    pub commands: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Where the data is, when kept.
    pub data_dir: Option<PathBuf>,
    /// Did every order reach an end state or get an open exception?
    pub finished: bool,
    /// Invoices posted by finance.
    pub invoices_posted: u64,
    /// Credit notes issued by finance.
    pub credit_notes_issued: u64,
    /// Held postings still waiting for an approver: (invoices, credit notes).
    pub held: (u64, u64),
    /// A few held posting ids, to try the approval commands on.
    pub held_examples: Vec<String>,
    /// One line per connector (none with `--in-process`).
    pub connectors: Vec<ConnectorLine>,
    /// Procure-to-receive.
    pub purchasing: Purchasing,
    /// Cash application.
    pub cash: Cash,
    /// The stock reconciliation at the end of the run (none with `--in-process`).
    pub reconciliation: Option<Report>,
    /// The legal entities, side by side (filled by the run, which knows them).
    pub entities: Vec<EntityLine>,
}

/// What one legal entity did in the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityLine {
    /// Its code.
    pub code: String,
    /// Its currency.
    pub currency: String,
    /// An approver's limit under its policy.
    pub approver_limit: waybill_domain::Money,
    /// Invoices above this are held.
    pub hold_invoices_above: waybill_domain::Money,
    /// Sale orders.
    pub orders: u64,
    /// Of which completed.
    pub completed: u64,
    /// Invoices posted by finance.
    pub invoices_posted: u64,
    /// Postings held for an approver (any state), all in its currency.
    pub held: u64,
    /// Open exceptions of its records.
    pub open_exceptions: u64,
}

impl EntityLine {
    /// One line per configured entity, from the projections.
    pub(super) fn of(p: &ProjectionStore, entities: &waybill_saga::Entities) -> anyhow::Result<Vec<Self>> {
        let mut lines: BTreeMap<String, EntityLine> = entities
            .iter()
            .map(|e| {
                let line = EntityLine {
                    code: e.code.clone(),
                    currency: e.currency.clone(),
                    approver_limit: e.policy.posting.approval_limits.get("approver").copied().unwrap_or_default(),
                    hold_invoices_above: e.policy.posting.hold_invoices_above,
                    ..EntityLine::default()
                };
                (e.code.clone(), line)
            })
            .collect();
        for o in p.orders(None, usize::MAX)? {
            let Some(l) = o.entity.as_ref().and_then(|e| lines.get_mut(e)) else { continue };
            l.orders += 1;
            l.completed += u64::from(o.status == OrderStatus::Completed);
            l.invoices_posted += o.documents.iter().filter(|d| d.kind == DocumentKind::Invoice).count() as u64;
        }
        for (_, x) in p.postings(None)? {
            if let Some(l) = x.entity.as_ref().and_then(|e| lines.get_mut(e)) {
                l.held += 1;
            }
        }
        for x in p.exceptions(true, None)? {
            if let Some(l) = x.entity.as_ref().and_then(|e| lines.get_mut(e)) {
                l.open_exceptions += 1;
            }
        }
        Ok(lines.into_values().collect())
    }
}

/// What cash application did in the run (from the projections' statement records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cash {
    /// Bank statements imported.
    pub statements: u64,
    /// Of which every line is posted or handled.
    pub completed: u64,
    /// Lines applied (to invoices, or as charges) and sent to finance.
    pub applied: u64,
    /// Lines finance posted.
    pub posted: u64,
    /// Lines nobody could apply safely (`UNMATCHED_PAYMENT`).
    pub unmatched: u64,
}

impl Cash {
    fn of(p: &ProjectionStore) -> anyhow::Result<Self> {
        let mut s = Cash::default();
        for (_, timeline) in p.statements()? {
            s.statements += 1;
            let count = |event: &str| timeline.iter().filter(|t| t.event == event).count() as u64;
            if timeline.last().is_some_and(|t| t.event == "Completed") {
                s.completed += 1;
            }
            s.applied += count("LineApplied");
            s.posted += count("LineRecorded");
            s.unmatched += timeline
                .iter()
                .filter(|t| t.event == "ExceptionRaised" && t.summary.contains("unmatched-payment"))
                .count() as u64;
        }
        Ok(s)
    }
}

/// What procure-to-receive did in the run (from the projections' purchase records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purchasing {
    /// Purchase orders confirmed.
    pub orders: u64,
    /// Completed: received (or closed), validated in Odoo, billed.
    pub completed: u64,
    /// Not completed, a bill held for an approver.
    pub awaiting_approval: u64,
    /// Not completed, with an open exception (a receipt mismatch, a refused bill...).
    pub open_with_exception: u64,
    /// Not completed, waiting for goods, a bill or an answer (a timer watches each).
    pub waiting: u64,
    /// Receipts recorded and sent to Odoo.
    pub receipts: u64,
    /// Receipts cancelled, returned to the supplier.
    pub receipts_returned: u64,
    /// Vendor bills posted by finance.
    pub bills_posted: u64,
    /// Vendor bills held by the three-way match: (all, still waiting for an approver).
    pub bills_held: (u64, u64),
    /// Vendor credit notes issued for returned receipts.
    pub vendor_credits: u64,
}

impl Purchasing {
    fn of(p: &ProjectionStore) -> anyhow::Result<Self> {
        let mut s = Purchasing::default();
        for (view, timeline) in p.purchase_orders()? {
            s.orders += 1;
            let count = |event: &str| timeline.iter().filter(|t| t.event == event).count() as u64;
            let completed = timeline.last().is_some_and(|t| t.event == "Completed");
            if completed {
                s.completed += 1;
            } else if view.postings.iter().any(|p| p.state == "held") {
                s.awaiting_approval += 1;
            } else if view.open_exceptions > 0 {
                s.open_with_exception += 1;
            } else {
                s.waiting += 1;
            }
            s.receipts += count("ReceiptRecorded");
            s.receipts_returned += count("ReceiptReversed");
            s.vendor_credits += count("VendorCreditRecorded");
            s.bills_posted += view.documents.iter().filter(|d| d.kind == DocumentKind::VendorBill).count() as u64;
            for b in view.postings.iter().filter(|x| x.document == DocumentKind::VendorBill) {
                s.bills_held.0 += 1;
                if b.state == "held" {
                    s.bills_held.1 += 1;
                }
            }
        }
        Ok(s)
    }
}

/// What one connector did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorLine {
    /// Its name (the target system).
    pub name: String,
    /// Calls made to the target.
    pub requests: u64,
    /// Retries after transient failures.
    pub retries: u64,
    /// Times a call was held back by the throttle or a `429`.
    pub throttled: u64,
    /// Times the circuit breaker opened.
    pub breaker_opens: u64,
    /// Commands whose outcome is durable.
    pub delivered: u64,
    /// Commands reported failed to their saga.
    pub failed: u64,
    /// p99 call latency, milliseconds.
    pub p99_ms: f64,
}

impl ConnectorLine {
    /// The figures of a running connector.
    pub fn of(r: &waybill_connect::Running) -> Self {
        let s = r.target().stats();
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ConnectorLine {
            name: r.name().to_string(),
            requests: n(&s.requests),
            retries: n(&s.retries),
            throttled: n(&s.throttled),
            breaker_opens: n(&s.breaker_opens),
            delivered: n(&s.delivered),
            failed: n(&s.failed),
            p99_ms: s.latency_quantile(0.99).map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        }
    }
}

/// End states of the order-to-fulfillment saga in the demo: completed, backordered,
/// cancelled, or on hold for a master-data fix.
pub(super) fn is_end_state(s: OrderStatus) -> bool {
    waybill_control::service::is_end_state(s)
}

/// Orders in an end state (cheap: the projections' counters).
pub(super) fn ended(p: &ProjectionStore) -> anyhow::Result<u64> {
    Ok(p.order_counts_by_status()?.iter().filter(|(s, _)| is_end_state(*s)).map(|(_, n)| *n).sum())
}

/// Orders not in an end state, split into those with an open exception (someone has been
/// told) and those without (stalled silently; DESIGN.md invariant 10 says there are none).
pub(super) fn waiting(p: &ProjectionStore) -> anyhow::Result<(u64, Vec<String>)> {
    let mut flagged = 0;
    let mut silent = Vec::new();
    for s in OrderStatus::ALL.into_iter().filter(|s| !is_end_state(*s)) {
        for o in p.orders_by_age(Some(s), None, None, usize::MAX)? {
            if o.open_exceptions > 0 {
                flagged += 1;
            } else {
                silent.push(format!("{} ({})", o.order_ref, o.status));
            }
        }
    }
    Ok((flagged, silent))
}

/// Runs the end-of-run stock reconciliation and waits (up to 10 s) until its findings
/// are open exceptions in the projections.
pub(super) fn reconcile_at_end(job: &StockJob, node: &Node) -> anyhow::Result<Report> {
    let report = job
        .run(waybill_domain::Timestamp::now())
        .map_err(|e| anyhow::anyhow!("the reconciliation at the end of the run failed: {e}"))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let open = || {
        node.projections.exceptions(true, Some(ExceptionCategory::ReconciliationMismatch)).map(|x| x.len()).unwrap_or(0)
    };
    while open() < report.findings.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(report)
}

/// The summary of a run of `opts` on `node`.
pub(super) fn summarize(
    opts: &DemoOptions,
    node: &Node,
    injected_bad_records: u64,
    elapsed: Duration,
    finished: bool,
    data_dir: Option<PathBuf>,
    reconciliation: Option<Report>,
) -> anyhow::Result<Summary> {
    let p = &node.projections;
    let by_status: BTreeMap<OrderStatus, u64> = p.order_counts_by_status()?.into_iter().collect();
    let (waiting_with_exception, stalled) = waiting(p)?;
    let mut exceptions: BTreeMap<ExceptionCategory, (u64, u64)> = BTreeMap::new();
    let mut dead_letters = 0;
    for x in p.exceptions(false, None)? {
        let e = exceptions.entry(x.category).or_default();
        e.0 += 1;
        if x.is_open() {
            e.1 += 1;
        }
        if x.dead_letter_kind.is_some() {
            dead_letters += 1;
        }
    }
    let mut invoices_posted = 0;
    let mut credit_notes_issued = 0;
    for o in p.orders(None, usize::MAX)? {
        for d in &o.documents {
            match d.kind {
                waybill_domain::journal::DocumentKind::Invoice => invoices_posted += 1,
                waybill_domain::journal::DocumentKind::CreditNote => credit_notes_issued += 1,
                // Vendor bills belong to purchase orders, which are not in the order list.
                waybill_domain::journal::DocumentKind::VendorBill => {}
            }
        }
    }
    let held_postings = p.postings(Some("held"))?;
    let held = (
        held_postings.iter().filter(|(_, x)| x.document == waybill_domain::journal::DocumentKind::Invoice).count()
            as u64,
        held_postings.iter().filter(|(_, x)| x.document == waybill_domain::journal::DocumentKind::CreditNote).count()
            as u64,
    );
    let held_examples = held_postings
        .iter()
        .take(3)
        .map(|(_, x)| {
            let currency = x.currency.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
            let entity = x.entity.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
            format!("{} ({}{currency}{entity}, {})", x.posting_id, x.amount, x.reasons.join("; "))
        })
        .collect();
    let mut latencies: Vec<f64> = p
        .orders(Some(OrderStatus::Completed), usize::MAX)?
        .into_iter()
        .filter_map(|o| o.completed_at.map(|c| c.micros_since(o.first_event_at) as f64 / 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() { 0.0 } else { latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] }
    };
    Ok(Summary {
        orders: opts.orders,
        partitions: opts.partitions,
        by_status,
        waiting_with_exception,
        stalled,
        exceptions,
        dead_letters,
        injected_bad_records,
        latency_ms: (pct(0.5), pct(0.99)),
        events: node.stats.inputs.load(Ordering::Relaxed),
        commands: node.stats.commands.load(Ordering::Relaxed),
        elapsed,
        data_dir,
        finished,
        invoices_posted,
        credit_notes_issued,
        held,
        held_examples,
        connectors: node
            .connectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .running()
            .iter()
            .map(|r| ConnectorLine::of(r))
            .collect(),
        purchasing: Purchasing::of(p)?,
        cash: Cash::of(p)?,
        reconciliation,
        entities: Vec::new(),
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(f, "Waybill demo: {} orders on {} partitions, {:.1} s", self.orders, self.partitions, secs)?;
        if !self.finished {
            writeln!(f, "WARNING: not every order reached an end state or an open exception before the timeout")?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "orders by state", "count")?;
        writeln!(f, "  {:-<34} {:->10}", "", "")?;
        for (s, n) in self.by_status.iter().filter(|(_, n)| **n > 0) {
            let label = match s {
                OrderStatus::Completed => "completed (delivered)",
                OrderStatus::Backordered => "ended entirely backordered",
                OrderStatus::Cancelled => "cancelled, compensated",
                OrderStatus::OnHold => "on hold: master data to fix",
                other => other.as_str(),
            };
            writeln!(f, "  {:<34} {:>10}", label, n)?;
        }
        writeln!(f, "  {:<34} {:>10}", "in flight, an exception open", self.waiting_with_exception)?;
        writeln!(f, "  {:<34} {:>10}", "in flight, stalled silently", self.stalled.len())?;
        for x in self.stalled.iter().take(5) {
            writeln!(f, "    stalled: {x}")?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10} {:>10}", "exceptions by category", "raised", "open")?;
        writeln!(f, "  {:-<34} {:->10} {:->10}", "", "", "")?;
        for (c, (raised, open)) in &self.exceptions {
            writeln!(f, "  {:<34} {:>10} {:>10}", c.as_str(), raised, open)?;
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "invoices posted", self.invoices_posted)?;
        writeln!(f, "  {:<34} {:>10}", "invoices held for approval", self.held.0)?;
        writeln!(f, "  {:<34} {:>10}", "credit notes issued", self.credit_notes_issued)?;
        writeln!(f, "  {:<34} {:>10}", "credit notes held for approval", self.held.1)?;
        for x in &self.held_examples {
            writeln!(f, "    held: {x}")?;
        }
        if !self.entities.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "  {:<10} {:>4} {:>12} {:>12} {:>7} {:>9} {:>8} {:>5} {:>9}",
                "entity", "cur", "approver to", "hold above", "orders", "completed", "invoiced", "held", "open exc"
            )?;
            writeln!(
                f,
                "  {:-<10} {:->4} {:->12} {:->12} {:->7} {:->9} {:->8} {:->5} {:->9}",
                "", "", "", "", "", "", "", "", ""
            )?;
            for e in &self.entities {
                writeln!(
                    f,
                    "  {:<10} {:>4} {:>12} {:>12} {:>7} {:>9} {:>8} {:>5} {:>9}",
                    e.code,
                    e.currency,
                    e.approver_limit.to_string(),
                    e.hold_invoices_above.to_string(),
                    e.orders,
                    e.completed,
                    e.invoices_posted,
                    e.held,
                    e.open_exceptions
                )?;
            }
        }
        let b = &self.purchasing;
        if b.orders > 0 {
            writeln!(f)?;
            writeln!(f, "  {:<34} {:>10}", "purchase orders (procure-to-receive)", b.orders)?;
            writeln!(f, "  {:-<34} {:->10}", "", "")?;
            writeln!(f, "  {:<34} {:>10}", "completed: received, billed", b.completed)?;
            writeln!(f, "  {:<34} {:>10}", "open, a bill awaits an approver", b.awaiting_approval)?;
            writeln!(f, "  {:<34} {:>10}", "open, an exception open", b.open_with_exception)?;
            writeln!(f, "  {:<34} {:>10}", "open, waiting (watched)", b.waiting)?;
            writeln!(f, "  {:<34} {:>10}", "receipts recorded, sent to Odoo", b.receipts)?;
            writeln!(f, "  {:<34} {:>10}", "receipts returned to supplier", b.receipts_returned)?;
            writeln!(f, "  {:<34} {:>10}", "vendor bills posted", b.bills_posted)?;
            writeln!(f, "  {:<34} {:>10}", "bills held: three-way match", b.bills_held.0)?;
            writeln!(f, "  {:<34} {:>10}", "  of which still waiting", b.bills_held.1)?;
            writeln!(f, "  {:<34} {:>10}", "vendor credit notes", b.vendor_credits)?;
        }
        let c = &self.cash;
        if c.statements > 0 {
            writeln!(f)?;
            writeln!(f, "  {:<34} {:>10}", "bank statements (cash application)", c.statements)?;
            writeln!(f, "  {:-<34} {:->10}", "", "")?;
            writeln!(f, "  {:<34} {:>10}", "completed: every line booked", c.completed)?;
            writeln!(f, "  {:<34} {:>10}", "lines applied, sent to finance", c.applied)?;
            writeln!(f, "  {:<34} {:>10}", "  of which posted", c.posted)?;
            writeln!(f, "  {:<34} {:>10}", "lines queued: unmatched payment", c.unmatched)?;
        }
        if let Some(r) = &self.reconciliation {
            writeln!(f)?;
            writeln!(f, "  {:<34} {:>10}", "stock reconciliation (end of run)", r.run_id)?;
            writeln!(f, "  {:-<34} {:->10}", "", "")?;
            writeln!(f, "  {:<34} {:>10}", "products compared with the WMS", r.compared)?;
            writeln!(f, "  {:<34} {:>10}", "  in agreement", r.agreed)?;
            writeln!(f, "  {:<34} {:>10}", "  moving, left for the next run", r.unsettled.len())?;
            writeln!(f, "  {:<34} {:>10}", "findings: reconciliation-mismatch", r.findings.len())?;
            for x in &r.findings {
                writeln!(
                    f,
                    "    {}: the warehouse has {}, Waybill expects {} ({}); last at the warehouse: {}",
                    x.sku,
                    x.on_hand,
                    x.expected,
                    x.difference,
                    x.wms_last_movement.as_deref().unwrap_or("none")
                )?;
            }
        }
        writeln!(f)?;
        writeln!(f, "  {:<34} {:>10}", "dead-letter records", self.dead_letters)?;
        writeln!(f, "  {:<34} {:>10}", "  of which injected garbage", self.injected_bad_records)?;
        writeln!(f, "  {:<34} {:>10}", "commands issued", self.commands)?;
        writeln!(f, "  {:<34} {:>10}", "inbound events processed", self.events)?;
        writeln!(f, "  {:<34} {:>10.0}", "events/s", self.events as f64 / secs.max(1e-9))?;
        writeln!(f, "  {:<34} {:>10.0}", "saga latency p50 (ms)", self.latency_ms.0)?;
        writeln!(f, "  {:<34} {:>10.0}", "saga latency p99 (ms)", self.latency_ms.1)?;
        if !self.connectors.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "  {:<10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>8}",
                "connector", "requests", "delivered", "retries", "throttled", "breaker", "failed", "p99 ms"
            )?;
            writeln!(f, "  {:-<10} {:->9} {:->9} {:->8} {:->9} {:->9} {:->7} {:->8}", "", "", "", "", "", "", "", "")?;
            for c in &self.connectors {
                writeln!(
                    f,
                    "  {:<10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7} {:>8.1}",
                    c.name, c.requests, c.delivered, c.retries, c.throttled, c.breaker_opens, c.failed, c.p99_ms
                )?;
            }
        }
        if let Some(d) = &self.data_dir {
            writeln!(f)?;
            writeln!(f, "  data kept in {}", d.display())?;
        }
        Ok(())
    }
}
