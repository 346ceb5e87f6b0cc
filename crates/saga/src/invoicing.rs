//! Ship-to-invoice: one saga per shipment. Goods issued (or proof of delivery, per
//! customer) → invoice readiness (quantities, prices, tax, credit hold) → a **held
//! posting** when the posting policy says so → approval through the control plane →
//! `PostInvoice` to finance → `InvoicePosted`. One invoice per shipment, ever: the
//! `PostInvoice` command is sent from exactly one state transition, and its idempotency
//! key is the shipment id.
//!
//! Pure: [`start`], [`decide`], [`on_timer`] return decisions; [`Invoicing::apply`] folds.

use serde::{Deserialize, Serialize};
use waybill_domain::command::{CommandBody, InvoiceLine, PostInvoice};
use waybill_domain::event::{CommandFailed, DocumentRejected, EventBody, InboundEvent, InvoicePosted, PostingDecision};
use waybill_domain::journal::{
    DocumentKind, Empty, ExceptionResolved, InvoiceDraft, InvoiceRecorded, PostingHeld, Refusal,
};
use waybill_domain::{ExceptionCategory, JournalBody, JournalEvent, Money, SagaKind, SourceRef, System, Timestamp};

use crate::approval::{self, Posting};
use crate::book::{self, SagaBook};
use crate::decision::{DeadLetterKind, Decision, Outbound};
use crate::outcome;
use crate::policy::PostingPolicy;

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InvoiceStatus {
    /// Not started.
    #[default]
    New,
    /// Waiting for an approver.
    Held,
    /// Sent to finance.
    Requested,
    /// Finance posted it.
    Posted,
    /// An approver rejected it: no posting.
    Rejected,
    /// Finance refused it.
    Refused,
}

/// State of one ship-to-invoice saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoicing {
    /// What every saga keeps: applied seq, causes, open exceptions, completion.
    #[serde(flatten)]
    pub book: SagaBook,
    /// Status.
    pub status: InvoiceStatus,
    /// The invoice as computed from the shipment and the order.
    pub draft: Option<InvoiceDraft>,
    /// The held posting, if the policy held it.
    pub posting: Option<Posting>,
    /// Finance's document number.
    pub invoice_number: Option<String>,
}

impl Invoicing {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::ShipToInvoice;

    /// Saga id of the invoice for `shipment_id`.
    pub fn saga_id(shipment_id: &str) -> String {
        Self::KIND.saga_id(shipment_id)
    }

    /// Posting id of the invoice for `shipment_id`.
    pub fn posting_id(shipment_id: &str) -> String {
        format!("{}{shipment_id}", DocumentKind::Invoice.posting_prefix())
    }

    /// True once finished.
    pub fn is_finished(&self) -> bool {
        self.book.is_finished()
    }

    /// The pending timer (approval SLA), if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match (&self.posting, self.status) {
            (Some(p), InvoiceStatus::Held) if !p.escalated => Some(p.sla_due_at),
            _ => None,
        }
    }

    fn shipment_id(&self) -> &str {
        self.draft.as_ref().map(|d| d.business_key.as_str()).unwrap_or("")
    }

    fn order_ref(&self) -> &str {
        self.draft.as_ref().map(|d| d.order_ref.as_str()).unwrap_or("")
    }

    /// Folds one journal event (copies already applied are ignored).
    pub fn apply(&mut self, event: &JournalEvent) {
        if !self.book.fold(event) {
            return;
        }
        match &event.body {
            JournalBody::InvoiceDrafted(d) => self.draft = Some(d.clone()),
            JournalBody::PostingHeld(h) => {
                self.status = InvoiceStatus::Held;
                self.posting = Some(Posting::held(h));
            }
            JournalBody::PostingApproved(o) => {
                if let Some(p) = &mut self.posting {
                    p.approve(o);
                }
            }
            JournalBody::PostingRejected(o) => {
                if let Some(p) = &mut self.posting {
                    p.reject(o);
                }
                self.status = InvoiceStatus::Rejected;
            }
            JournalBody::PostingEscalated(_) => {
                if let Some(p) = &mut self.posting {
                    p.escalated = true;
                }
            }
            JournalBody::ControlRefused(r) => {
                // Only refused decisions on the posting touch it (not workbench actions).
                if let Some(p) = self.posting.as_mut().filter(|p| p.posting_id == r.posting_id) {
                    p.touched_by.insert(r.actor.clone());
                }
            }
            // A retry sends the refused invoice again.
            JournalBody::ExceptionRetried(_) if self.status == InvoiceStatus::Refused => {
                self.status = InvoiceStatus::Requested;
            }
            JournalBody::InvoiceRequested(_) => self.status = InvoiceStatus::Requested,
            JournalBody::InvoiceRecorded(r) => {
                self.status = InvoiceStatus::Posted;
                self.invoice_number = Some(r.document_number.clone());
            }
            JournalBody::FinanceRefused(_) => self.status = InvoiceStatus::Refused,
            _ => {}
        }
    }
}

/// What starting an invoice may consult.
#[derive(Debug, Clone, Copy)]
pub struct StartContext<'a> {
    /// Posting policy.
    pub policy: &'a PostingPolicy,
    /// Master data.
    pub catalog: &'a crate::Catalog,
    /// Identity that caused the shipment (the requester of a held posting).
    pub requested_by: &'a str,
    /// Decision time.
    pub now: Timestamp,
}

/// Starts the invoice of a shipment: computes it and either holds it for approval or
/// sends it to finance. `draft` lines carry shipped quantities at the order's prices.
pub fn start(s: &Invoicing, draft: InvoiceDraft, ctx: &StartContext<'_>) -> Decision {
    let mut d = Decision::noop();
    if s.status != InvoiceStatus::New || s.draft.is_some() {
        return d; // one invoice per shipment, ever
    }
    let reasons = hold_reasons(&draft, ctx);
    let shipment_id = draft.business_key.clone();
    d.record(JournalBody::InvoiceDrafted(draft.clone()));
    if reasons.is_empty() {
        request_invoice(&mut d, &draft);
    } else {
        d.record(JournalBody::PostingHeld(PostingHeld {
            posting_id: Invoicing::posting_id(&shipment_id),
            document: DocumentKind::Invoice,
            business_key: shipment_id,
            reasons,
            amount: draft.total,
            version: 1,
            requested_by: ctx.requested_by.to_string(),
            sla_due_at: ctx.now.plus_secs(ctx.policy.approval_sla_secs),
            currency: Some(draft.currency.clone()),
            entity: None,
        }));
    }
    d
}

fn hold_reasons(draft: &InvoiceDraft, ctx: &StartContext<'_>) -> Vec<String> {
    let p = ctx.policy;
    let mut reasons = Vec::new();
    if draft.total.0 > p.hold_invoices_above.0 {
        reasons.push(format!("amount {} above the approval limit {}", draft.total, p.hold_invoices_above));
    }
    reasons.extend(p.foreign_currency("invoice", &draft.currency));
    for l in &draft.lines {
        if let Some(list) = ctx.catalog.product(&l.sku).and_then(|x| x.list_price)
            && list.0 > 0
        {
            let variance = (l.unit_price.0 - list.0).abs() as f64 * 100.0 / list.0 as f64;
            if variance > p.price_tolerance_pct {
                reasons.push(format!(
                    "line {}: unit price {} differs {variance:.1}% from list price {} (tolerance {}%)",
                    l.line_no, l.unit_price, list, p.price_tolerance_pct
                ));
            }
        }
        if !ctx.catalog.tax_codes.contains(&l.tax_code) {
            reasons.push(format!("line {}: tax code {:?} is missing or no longer valid", l.line_no, l.tax_code));
        }
    }
    if ctx.catalog.credit_hold.contains(&draft.customer_ref) {
        reasons.push(format!("customer {} is on credit hold", draft.customer_ref));
    }
    if p.hold_first_invoice_to_new_customer && ctx.catalog.new_customers.contains(&draft.customer_ref) {
        reasons.push(format!("customer {} is flagged as new in the master data", draft.customer_ref));
    }
    reasons
}

fn request_invoice(d: &mut Decision, draft: &InvoiceDraft) {
    d.record(JournalBody::InvoiceRequested(Empty {}));
    let o = post_invoice(draft);
    d.send(o.target, o.idempotency_key, o.body);
}

/// The one `PostInvoice` of a shipment: its key is the shipment id, its body the draft.
fn post_invoice(draft: &InvoiceDraft) -> Outbound {
    Outbound {
        target: System::Finance,
        idempotency_key: invoice_key(&draft.business_key),
        body: CommandBody::PostInvoice(PostInvoice {
            order_ref: draft.order_ref.clone(),
            shipment_id: draft.business_key.clone(),
            customer_ref: draft.customer_ref.clone(),
            currency: draft.currency.clone(),
            lines: draft.lines.clone(),
            total: draft.total,
        }),
    }
}

/// What an operator's retry of an exception re-issues: the invoice finance refused, as
/// the same `PostInvoice` (same key, same body) — never a second invoice. An invoice an
/// approver rejected is not retried: that would post it without approval.
pub fn retry(s: &Invoicing, exception_id: &str) -> Result<Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let shipment = s.shipment_id();
    match (category, s.status, &s.draft) {
        (ExceptionCategory::PostingRejected, InvoiceStatus::Refused | InvoiceStatus::Requested, Some(draft)) => {
            Ok(post_invoice(draft))
        }
        (ExceptionCategory::PostingRejected, InvoiceStatus::Rejected, _) => Err(format!(
            "the invoice for shipment {shipment} was rejected by an approver; a retry would post it without approval — correct the order in Odoo and re-invoice, then resolve this exception"
        )),
        (ExceptionCategory::ApprovalOverdue, _, _) => Err(format!(
            "exception {exception_id} waits for an approver, not for a system: decide posting {} (`waybill approvals show {}`)",
            Invoicing::posting_id(shipment),
            Invoicing::posting_id(shipment)
        )),
        _ => Err(format!(
            "exception {exception_id} ({category}) has no command to re-issue in the invoice's current state; resolve it with a note"
        )),
    }
}

/// Decides an inbound event addressed to this invoice.
pub fn decide(s: &Invoicing, event: &InboundEvent, policy: &PostingPolicy) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) || s.draft.is_none() {
        return Decision::noop();
    }
    match &event.body {
        EventBody::PostingApproved(a) => on_approved(s, a, policy),
        EventBody::PostingRejected(r) => on_rejected(s, r, policy),
        EventBody::InvoicePosted(p) => on_posted(s, p),
        EventBody::InvoiceRejected(r) => on_refused(s, r),
        EventBody::CommandFailed(f) => on_command_failed(s, f),
        _ => Decision::noop(),
    }
}

/// The key of the one `PostInvoice` of a shipment.
pub fn invoice_key(shipment_id: &str) -> String {
    format!("invoice:{shipment_id}")
}

/// Rebuilds the `PostInvoice` this saga issued under `key`, exactly as first sent (the
/// draft is the body). `None` when it never issued `key`: the invoice was not sent yet
/// (held, or rejected by an approver) or the key is another shipment's.
pub fn reissue(s: &Invoicing, key: &str) -> Option<Result<Outbound, String>> {
    let draft = s.draft.as_ref()?;
    let sent = matches!(s.status, InvoiceStatus::Requested | InvoiceStatus::Posted | InvoiceStatus::Refused);
    (sent && key == invoice_key(&draft.business_key)).then(|| Ok(post_invoice(draft)))
}

/// Finance refused `PostInvoice` through the connector: exactly a refusal of the invoice
/// (`InvoiceRejected`), so the same exception and the same retry apply.
fn on_command_failed(s: &Invoicing, f: &CommandFailed) -> Decision {
    let order_ref = s.draft.as_ref().map(|d| d.order_ref.as_str()).unwrap_or_default();
    let Some(Ok(issued)) = reissue(s, &f.idempotency_key) else {
        return outcome::never_issued(f, order_ref);
    };
    if let Err(why) = outcome::check_report(f, &issued) {
        return Decision::reject(DeadLetterKind::Rule, why);
    }
    // A report while finance's refusal is open (the same refusal reported twice, or the
    // retried invoice refused again) changes nothing.
    if s.book.open_of(ExceptionCategory::PostingRejected).next().is_some() {
        return Decision::noop();
    }
    on_refused(
        s,
        &DocumentRejected {
            order_ref: order_ref.to_string(),
            business_key: s.shipment_id().to_string(),
            reason: f.reason.trim().to_string(),
        },
    )
}

fn on_approved(s: &Invoicing, a: &PostingDecision, policy: &PostingPolicy) -> Decision {
    let mut d = Decision::noop();
    let Some(posting) = &s.posting else { return d };
    match approval::check(posting, a, policy, true) {
        approval::Verdict::AlreadyDecided => {}
        approval::Verdict::Refuse(_, r) => {
            d.record(JournalBody::ControlRefused(r));
        }
        approval::Verdict::Accept(outcome) => {
            d.record(JournalBody::PostingApproved(outcome));
            for id in s.book.open_of(ExceptionCategory::ApprovalOverdue) {
                d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                    exception_id: id.clone(),
                    resolution: format!("approved by {}", a.actor),
                }));
            }
            request_invoice(&mut d, s.draft.as_ref().expect("checked in decide"));
        }
    }
    d
}

fn on_rejected(s: &Invoicing, r: &PostingDecision, policy: &PostingPolicy) -> Decision {
    let mut d = Decision::noop();
    let Some(posting) = &s.posting else { return d };
    match approval::check(posting, r, policy, false) {
        approval::Verdict::AlreadyDecided => {}
        approval::Verdict::Refuse(_, x) => {
            d.record(JournalBody::ControlRefused(x));
        }
        approval::Verdict::Accept(outcome) => {
            d.record(JournalBody::PostingRejected(outcome));
            d.raise(
                &Invoicing::saga_id(s.shipment_id()),
                s.book.exceptions_raised,
                ExceptionCategory::PostingRejected,
                SourceRef::new(System::Waybill, posting.posting_id.clone()),
                format!(
                    "order {}: invoice for shipment {} was rejected by {}: {}; nothing was posted — correct the order in Odoo and re-invoice",
                    s.order_ref(),
                    s.shipment_id(),
                    r.actor,
                    r.reason
                ),
            );
            d.record(JournalBody::Completed(Empty {}));
        }
    }
    d
}

fn on_posted(s: &Invoicing, p: &InvoicePosted) -> Decision {
    let mut d = Decision::noop();
    if s.status != InvoiceStatus::Requested {
        return d;
    }
    d.record(JournalBody::InvoiceRecorded(InvoiceRecorded {
        document_number: p.invoice_number.clone(),
        amount: p.amount,
    }));
    // Requested with a posting exception open: finance refused it and an operator retried.
    for id in s.book.open_of(ExceptionCategory::PostingRejected) {
        d.record(JournalBody::ExceptionResolved(ExceptionResolved {
            exception_id: id.clone(),
            resolution: format!("invoice {} posted after a retry", p.invoice_number),
        }));
    }
    d.record(JournalBody::Completed(Empty {}));
    d
}

fn on_refused(s: &Invoicing, r: &DocumentRejected) -> Decision {
    let mut d = Decision::noop();
    if s.status != InvoiceStatus::Requested {
        return d;
    }
    d.record(JournalBody::FinanceRefused(Refusal {
        reason: r.reason.clone(),
        business_key: Some(r.business_key.clone()),
    }));
    d.raise(
        &Invoicing::saga_id(s.shipment_id()),
        s.book.exceptions_raised,
        ExceptionCategory::PostingRejected,
        SourceRef::new(System::Finance, s.shipment_id().to_string()),
        format!(
            "order {}: finance refused the invoice for shipment {}: {}; fix it in finance and retry the posting",
            s.order_ref(),
            s.shipment_id(),
            r.reason
        ),
    );
    d
}

/// Fires the approval SLA: a posting held past its SLA raises an escalation.
pub fn on_timer(s: &Invoicing, now: Timestamp) -> Decision {
    let mut d = Decision::noop();
    if let (Some(due), Some(p)) = (s.next_deadline(), &s.posting)
        && now >= due
    {
        d.record(JournalBody::PostingEscalated(waybill_domain::journal::Deadline { due_at: due }));
        d.raise(
            &Invoicing::saga_id(s.shipment_id()),
            s.book.exceptions_raised,
            ExceptionCategory::ApprovalOverdue,
            SourceRef::new(System::Waybill, p.posting_id.clone()),
            format!(
                "order {}: the invoice of shipment {} ({}, held posting {}) has waited {} past its approval SLA; an approver must decide it",
                s.order_ref(),
                s.shipment_id(),
                p.amount,
                p.posting_id,
                crate::health::duration(now.micros_since(due))
            ),
        );
    }
    d
}

/// Invoice lines for a shipment: shipped quantities at the order's prices and taxes.
pub fn draft_for(
    order: &waybill_domain::event::OrderReleased,
    shipment: &waybill_domain::event::GoodsIssued,
) -> InvoiceDraft {
    let lines: Vec<InvoiceLine> = shipment
        .lines
        .iter()
        .filter_map(|sl| {
            let ol = order.lines.iter().find(|l| l.line_no == sl.line_no)?;
            Some(InvoiceLine {
                line_no: sl.line_no,
                sku: sl.sku.clone(),
                quantity: sl.quantity,
                unit_price: ol.unit_price,
                tax_code: ol.tax_code.clone().unwrap_or_default(),
            })
        })
        .collect();
    let total: Money = lines.iter().map(|l| l.unit_price.times(l.quantity)).sum();
    InvoiceDraft {
        order_ref: order.order_ref.clone(),
        business_key: shipment.shipment_id.clone(),
        customer_ref: order.customer_ref.clone(),
        currency: order.currency.clone(),
        lines,
        total,
    }
}

impl crate::saga::Saga for Invoicing {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        Invoicing::apply(self, event)
    }
    fn status(&self) -> String {
        format!("{:?}", self.status).to_lowercase()
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        Invoicing::next_deadline(self)
    }
    fn on_timer(&self, _env: &crate::flow::Env<'_>, now: Timestamp) -> Decision {
        on_timer(self, now)
    }
    fn watchdog(&self) -> Option<crate::watch::Wait> {
        crate::watch::invoice(self)
    }
    fn fire_watchdog(&self, d: &mut Decision, saga_id: &str, now: Timestamp) {
        crate::watch::fire_invoice(d, saga_id, self, now)
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        retry(self, exception_id)
    }
    fn reissue(&self, key: &str) -> Option<Result<Outbound, String>> {
        reissue(self, key)
    }
    fn lifecycle(&self, body: &JournalBody) -> Option<crate::saga::Lifecycle> {
        let fails = matches!(body, JournalBody::PostingRejected(_) | JournalBody::FinanceRefused(_));
        crate::saga::lifecycle(body, matches!(body, JournalBody::InvoiceDrafted(_)), fails)
    }
}
