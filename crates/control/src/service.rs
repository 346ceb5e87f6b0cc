//! The gRPC services: approvals, queries, audit. Every handler authenticates, checks the
//! role, then answers from the projections (queries) or writes a control event and waits
//! for the saga's verdict (decisions). Blocking work (sled, the log) runs on tokio's
//! blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_domain::event::PostingDecision;
use waybill_domain::journal::DocumentKind;
use waybill_domain::{EventBody, EventMeta, InboundEvent, JournalBody, Money, SourceRef, System, Timestamp, topic};
use waybill_log::{AppendBatch, EventLog, Header, Record};
use waybill_projection::{OrderView, ProjectionStore};

use crate::audit::{AUDIT_TOPIC, AuditStore, EdgeRecord, headers};
use crate::auth::{Authenticator, Principal, Role};
use crate::error::{Error, Result};
use crate::proto;
use crate::validate::{PageToken, old_enough};

/// Everything the services need.
#[derive(Debug)]
pub struct Control {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) projections: Arc<ProjectionStore>,
    pub(crate) audit: Arc<AuditStore>,
    pub(crate) auth: Authenticator,
    /// Highest amount each role may approve (the posting policy's `approval_limits`).
    pub(crate) limits: BTreeMap<String, Money>,
    pub(crate) decision_timeout: Duration,
    /// Master data, for dry-run replays (the saga's pure decisions consult it).
    pub(crate) catalog: Arc<waybill_saga::Catalog>,
    /// The sagas' policy, for dry-run replays.
    pub(crate) policy: waybill_saga::Policy,
}

/// `invoice` / `credit-note`.
fn document_name(d: DocumentKind) -> &'static str {
    match d {
        DocumentKind::Invoice => "invoice",
        DocumentKind::CreditNote => "credit-note",
    }
}

/// A posting view of the projections as a proto message (a macro because the
/// projection crate does not export the posting view's type name).
macro_rules! posting_proto {
    ($order:expr, $p:expr) => {{
        let (o, p): (&OrderView, _) = ($order, $p);
        proto::Posting {
            posting_id: p.posting_id.clone(),
            order_ref: o.order_ref.clone(),
            saga_id: p.saga_id.clone(),
            document: document_name(p.document).to_string(),
            business_key: p.business_key.clone(),
            reasons: p.reasons.clone(),
            amount_minor: p.amount.0,
            amount: p.amount.to_string(),
            currency: o.currency.clone().unwrap_or_default(),
            customer: o.customer_ref.clone().unwrap_or_default(),
            version: p.version,
            state: p.state.clone(),
            requested_by: p.requested_by.clone(),
            held_at_us: p.held_at.0,
            sla_due_at_us: p.sla_due_at.0,
            escalated: p.escalated,
            decided_by: p.decided_by.clone().unwrap_or_default(),
            decided_role: p.decided_role.clone().unwrap_or_default(),
            decision_reason: p.decision_reason.clone().unwrap_or_default(),
            decided_at_us: p.decided_at.map(|t| t.0).unwrap_or_default(),
            refusals: p.refusals.clone(),
        }
    }};
}

/// What a decision is checked against.
#[derive(Debug, Clone)]
struct Snapshot {
    order_ref: String,
    posting_id: String,
    state: String,
    version: i64,
    amount: Money,
    requested_by: String,
    decided_by: String,
    refusals: Vec<String>,
}

/// The saga's answer to a decision, read from the journal.
enum Answer {
    Decided(waybill_domain::journal::PostingOutcome),
    Refused(String),
}

/// One approve/reject call: who, from where, what.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    who: &'a Principal,
    peer: &'a str,
    r: &'a proto::DecisionRequest,
    approve: bool,
}

enum Verdict {
    /// Decided this way before: answer without writing to the saga.
    Already(String, Snapshot),
    /// Send it to the saga.
    Forward(Snapshot),
}

impl Control {
    fn snapshot(&self, posting_id: &str) -> Result<Option<Snapshot>> {
        Ok(self.projections.posting(posting_id)?.map(|(order_ref, p)| Snapshot {
            order_ref,
            posting_id: p.posting_id.clone(),
            state: p.state.clone(),
            version: p.version,
            amount: p.amount,
            requested_by: p.requested_by.clone(),
            decided_by: p.decided_by.clone().unwrap_or_default(),
            refusals: p.refusals.clone(),
        }))
    }

    /// The checks the saga will make, made early for a clear answer.
    fn check(
        &self,
        who: &Principal,
        r: &proto::DecisionRequest,
        approve: bool,
        snap: Option<Snapshot>,
    ) -> Result<Verdict> {
        who.require(Role::Approver, if approve { "approving a held posting" } else { "rejecting a held posting" })?;
        crate::validate::decision(r, approve)?;
        let Some(p) = snap else {
            return Err(Error::NotFound(format!(
                "posting {} does not exist; list held postings with `waybill approvals list`",
                r.posting_id
            )));
        };
        let wanted = if approve { "approved" } else { "rejected" };
        match p.state.as_str() {
            "held" => {}
            s if s == wanted => {
                let msg = format!("posting {} was already {s} by {}", p.posting_id, p.decided_by);
                return Ok(Verdict::Already(msg, p));
            }
            s => {
                return Err(Error::FailedPrecondition(format!(
                    "posting {} was already {s} by {} and cannot be {wanted} now",
                    p.posting_id, p.decided_by
                )));
            }
        }
        if r.expected_version != p.version {
            return Err(Error::FailedPrecondition(format!(
                "posting {} is at version {}, the request names version {}; reload it (`waybill approvals show {}`) and decide again",
                p.posting_id, p.version, r.expected_version, p.posting_id
            )));
        }
        let Some(limit) = self.limits.get(who.role.as_str()) else {
            return Err(Error::PermissionDenied(format!(
                "role {} may not decide held postings under the posting policy (approval_limits lists {}); ask an approver",
                who.role,
                self.limits.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        };
        if approve {
            let touched = p.requested_by == who.identity
                || p.refusals.iter().any(|x| {
                    x.starts_with(&format!("approve by {}: ", who.identity))
                        || x.starts_with(&format!("reject by {}: ", who.identity))
                });
            if touched {
                return Err(Error::PermissionDenied(format!(
                    "{} requested or changed posting {} and so cannot approve it (four-eyes); ask another approver",
                    who.identity, p.posting_id
                )));
            }
            if p.amount.0 > limit.0 {
                let who_can = self
                    .limits
                    .iter()
                    .filter(|(_, l)| l.0 >= p.amount.0)
                    .min_by_key(|(r, l)| (l.0, r.parse::<Role>().map(|r| r as u8).unwrap_or(u8::MAX)))
                    .map(|(r, _)| r.clone())
                    .unwrap_or_else(|| "no role".into());
                return Err(Error::PermissionDenied(format!(
                    "posting {} is {} but role {} may approve up to {}; ask a {who_can}",
                    p.posting_id, p.amount, who.role, limit
                )));
            }
        }
        Ok(Verdict::Forward(p))
    }

    /// Writes an attempt the control plane answered itself to `waybill.audit`.
    fn record_edge(&self, a: &Attempt<'_>, order_ref: &str, outcome: &str, detail: &str) -> Result<()> {
        let Attempt { who, peer, r, approve } = *a;
        let x = EdgeRecord {
            at_us: Timestamp::now().0,
            actor: who.identity.clone(),
            role: who.role.to_string(),
            peer: peer.to_string(),
            action: if approve { "approve" } else { "reject" }.into(),
            posting_id: r.posting_id.clone(),
            order_ref: order_ref.to_string(),
            expected_version: r.expected_version,
            reason: r.reason.clone(),
            outcome: outcome.into(),
            detail: detail.into(),
        };
        let key = if order_ref.is_empty() { r.posting_id.clone() } else { order_ref.to_string() };
        let value =
            serde_json::to_vec(&x).map_err(|e| Error::Internal(format!("cannot encode an audit record: {e}")))?;
        let record = Record::keyed(AUDIT_TOPIC, key.into_bytes(), value)
            .with_header(headers::ACTOR, who.identity.as_bytes().to_vec())
            .with_header(headers::ROLE, who.role.as_str().as_bytes().to_vec())
            .with_header(headers::PEER, peer.as_bytes().to_vec());
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        Ok(())
    }

    /// Approve (`approve = true`) or reject, as `who` calling from `peer`.
    pub(crate) fn decide(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::DecisionRequest,
        approve: bool,
    ) -> Result<proto::DecisionResponse> {
        let snap = if r.posting_id.is_empty() { None } else { self.snapshot(&r.posting_id)? };
        let order_ref = snap.as_ref().map(|s| s.order_ref.clone()).unwrap_or_default();
        match self.check(who, r, approve, snap) {
            Err(e) => {
                let detail = format!("{:?}: {e}", e.code());
                self.record_edge(&Attempt { who, peer, r, approve }, &order_ref, "refused", &detail)?;
                tracing::info!(waybill.actor = %who.identity, waybill.posting.id = %r.posting_id, error = %e, "control decision refused");
                Err(e)
            }
            Ok(Verdict::Already(message, p)) => {
                self.record_edge(&Attempt { who, peer, r, approve }, &order_ref, "already-decided", &message)?;
                Ok(proto::DecisionResponse {
                    posting_id: p.posting_id,
                    state: p.state,
                    version: p.version,
                    already_decided: true,
                    message,
                    event_id: String::new(),
                    decided_by: p.decided_by,
                })
            }
            Ok(Verdict::Forward(p)) => self.forward(who, peer, r, approve, p),
        }
    }

    fn forward(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::DecisionRequest,
        approve: bool,
        before: Snapshot,
    ) -> Result<proto::DecisionResponse> {
        let action = if approve { "approve" } else { "reject" };
        let event_id = format!("control:{}:v{}:{action}:{}", before.posting_id, r.expected_version, who.identity);
        let decision = PostingDecision {
            order_ref: before.order_ref.clone(),
            posting_id: before.posting_id.clone(),
            expected_version: r.expected_version,
            actor: who.identity.clone(),
            reason: r.reason.clone(),
            role: who.role.to_string(),
        };
        let event = InboundEvent {
            meta: EventMeta {
                event_id: event_id.clone(),
                source: SourceRef::new(System::Operator, who.identity.clone()),
                correlation_key: before.order_ref.clone(),
                occurred_at: Timestamp::now(),
            },
            body: if approve { EventBody::PostingApproved(decision) } else { EventBody::PostingRejected(decision) },
        };
        let value = waybill_schema::encode_event(&event)
            .map_err(|e| Error::Internal(format!("cannot encode the control event: {e}")))?;
        // The decision joins the trace of the posting: its PostingHeld journal record
        // carries the trace context of the decision that held it.
        let held_headers = self.posting_held_headers(&before);
        let span = tracing::info_span!(
            target: waybill_telemetry::SPAN_TARGET,
            "waybill.control.decide",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "waybill.v1.Approvals",
            rpc.method = if approve { "Approve" } else { "Reject" },
            waybill.posting.id = %before.posting_id,
            waybill.order.ref = %before.order_ref,
        );
        waybill_telemetry::continue_trace(&span, held_headers.iter().map(|h| (h.key.as_str(), h.value.as_slice())));
        let _entered = span.enter();
        let trace =
            waybill_telemetry::outgoing(&span, held_headers.iter().map(|h| (h.key.as_str(), h.value.as_slice())));
        // As ingestion writes inbound records (key = correlation key, event-id header),
        // plus who, in which role and from where.
        let mut record = Record {
            topic: topic::CONTROL.to_string(),
            partition: None,
            key: before.order_ref.as_bytes().to_vec(),
            headers: vec![
                Header { key: headers::EVENT_ID.into(), value: event_id.as_bytes().to_vec() },
                Header { key: headers::ACTOR.into(), value: who.identity.as_bytes().to_vec() },
                Header { key: headers::ROLE.into(), value: who.role.as_str().as_bytes().to_vec() },
                Header { key: headers::PEER.into(), value: peer.as_bytes().to_vec() },
            ],
            value,
        };
        if let Some(t) = &trace {
            record.headers.extend(t.pairs().map(|(k, v)| Header { key: k.into(), value: v }));
        }
        // The saga answers in the journal partition of the order (topics are
        // co-partitioned): watch it from here, so the answer is seen the moment it is
        // written rather than when the read models catch up.
        let journal_partition =
            waybill_log::partition_for(before.order_ref.as_bytes(), self.log.partitions(topic::JOURNAL)?);
        let mut journal_from = self.log.end_offset(topic::JOURNAL, journal_partition)?;
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        tracing::info!(waybill.actor = %who.identity, waybill.posting.id = %before.posting_id, waybill.event.id = %event_id, "control decision sent to the saga");

        let mine = [format!("approve by {}: ", who.identity), format!("reject by {}: ", who.identity)];
        let deadline = Instant::now() + self.decision_timeout;
        loop {
            match self.saga_answer(journal_partition, &mut journal_from, &before.posting_id, &who.identity)? {
                Some(Answer::Decided(o)) => {
                    // Read your writes: the next call (a second approve, a `show`) is
                    // answered from the read models, so wait until they have the decision.
                    loop {
                        let seen = self.projections.applied();
                        if Instant::now() >= deadline
                            || self.snapshot(&before.posting_id)?.is_some_and(|now| now.version >= o.version)
                        {
                            break;
                        }
                        self.projections.wait_for_apply(seen, Duration::from_millis(20));
                    }
                    let state = if approve { "approved" } else { "rejected" }.to_string();
                    return Ok(proto::DecisionResponse {
                        message: format!("posting {} {} by {} (version {})", o.posting_id, state, o.actor, o.version),
                        posting_id: o.posting_id,
                        state,
                        version: o.version,
                        already_decided: false,
                        event_id,
                        decided_by: o.actor,
                    });
                }
                Some(Answer::Refused(reason)) => {
                    return Err(Error::FailedPrecondition(format!("the saga refused the decision: {reason}")));
                }
                None => {}
            }
            if let Some(now) = self.snapshot(&before.posting_id)? {
                if now.state != "held" || now.version > before.version {
                    let same = now.state == if approve { "approved" } else { "rejected" };
                    if same && now.decided_by == who.identity {
                        return Ok(proto::DecisionResponse {
                            message: format!(
                                "posting {} {} by {} (version {})",
                                now.posting_id, now.state, now.decided_by, now.version
                            ),
                            posting_id: now.posting_id,
                            state: now.state,
                            version: now.version,
                            already_decided: false,
                            event_id,
                            decided_by: now.decided_by,
                        });
                    }
                    if same {
                        return Ok(proto::DecisionResponse {
                            message: format!(
                                "posting {} was already {} by {}",
                                now.posting_id, now.state, now.decided_by
                            ),
                            posting_id: now.posting_id,
                            state: now.state,
                            version: now.version,
                            already_decided: true,
                            event_id,
                            decided_by: now.decided_by,
                        });
                    }
                    return Err(Error::FailedPrecondition(format!(
                        "posting {} was {} by {} in the meantime (version {})",
                        now.posting_id, now.state, now.decided_by, now.version
                    )));
                }
                if let Some(x) = now
                    .refusals
                    .get(before.refusals.len()..)
                    .unwrap_or_default()
                    .iter()
                    .find(|x| mine.iter().any(|m| x.starts_with(m.as_str())))
                {
                    return Err(Error::FailedPrecondition(format!("the saga refused the decision: {x}")));
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Pending(format!(
                    "decision {event_id} is in the log but the saga has not answered within {} s; check `waybill approvals show {}` before trying again",
                    self.decision_timeout.as_secs_f64(),
                    before.posting_id
                )));
            }
            // Wakes as soon as the journal partition grows.
            self.log.wait_for(topic::JOURNAL, journal_partition, journal_from, Duration::from_millis(50))?;
        }
    }

    /// Reads the journal partition from `from` for the saga's answer to `actor`'s decision
    /// on `posting_id`; advances `from` past what it read.
    fn saga_answer(&self, partition: i32, from: &mut i64, posting_id: &str, actor: &str) -> Result<Option<Answer>> {
        loop {
            let records = self.log.read(topic::JOURNAL, partition, *from, 256)?;
            let Some(last) = records.last() else { return Ok(None) };
            *from = last.offset + 1;
            for r in &records {
                // Only journal events (checkpoints have no saga id) of sagas that hold postings.
                let Some(saga) = r.header("waybill.saga-id") else { continue };
                if !(saga.starts_with(b"s2i:") || saga.starts_with(b"ret:")) {
                    continue;
                }
                match waybill_schema::decode_journal(&r.value).map(|j| j.body) {
                    Ok(JournalBody::PostingApproved(o) | JournalBody::PostingRejected(o))
                        if o.posting_id == posting_id && o.actor == actor =>
                    {
                        return Ok(Some(Answer::Decided(o)));
                    }
                    Ok(JournalBody::ControlRefused(x)) if x.posting_id == posting_id && x.actor == actor => {
                        return Ok(Some(Answer::Refused(x.reason)));
                    }
                    _ => {}
                }
            }
        }
    }

    fn list_postings(&self, r: &proto::ListHeldPostingsRequest) -> Result<proto::ListHeldPostingsResponse> {
        let q = crate::validate::held_postings(r)?;
        let needle = r.reason_contains.to_lowercase();
        let now = Timestamp::now();
        let mut all = Vec::new();
        for o in self.projections.orders(None, usize::MAX)? {
            if !r.customer.is_empty() && o.customer_ref.as_deref() != Some(r.customer.as_str()) {
                continue;
            }
            for p in &o.postings {
                if q.state.is_some_and(|s| s != p.state)
                    || q.document.is_some_and(|d| d != document_name(p.document))
                    || (!needle.is_empty() && !p.reasons.iter().any(|x| x.to_lowercase().contains(&needle)))
                    || !old_enough(p.held_at.0, q.min_age_us, now)
                {
                    continue;
                }
                all.push(posting_proto!(&o, p));
            }
        }
        all.sort_by(|a, b| (a.held_at_us, &a.posting_id).cmp(&(b.held_at_us, &b.posting_id)));
        let start = match &q.after {
            None => 0,
            Some(t) => all.partition_point(|p| (p.held_at_us, p.posting_id.as_str()) <= (t.at_us, t.id.as_str())),
        };
        let page: Vec<proto::Posting> = all.iter().skip(start).take(q.page_size).cloned().collect();
        let next_page_token = match page.last() {
            Some(last) if start + page.len() < all.len() => PageToken::new(last.held_at_us, &last.posting_id).encode(),
            _ => String::new(),
        };
        Ok(proto::ListHeldPostingsResponse { postings: page, next_page_token })
    }

    /// The headers of the journal record that held `posting` (its trace context).
    fn posting_held_headers(&self, posting: &Snapshot) -> Vec<Header> {
        let Ok(timeline) = self.projections.timeline(&posting.order_ref) else { return Vec::new() };
        let Some(t) = timeline
            .iter()
            .rev()
            .find(|t| t.event == "PostingHeld" && t.summary.contains(&format!("posting {} ", posting.posting_id)))
        else {
            return Vec::new();
        };
        match self.log.read(topic::JOURNAL, t.partition, t.offset, 1) {
            Ok(mut r) if !r.is_empty() => r.swap_remove(0).headers,
            _ => Vec::new(),
        }
    }

    /// Reads and decodes the journal event a timeline entry points at.
    fn journal_at(&self, partition: i32, offset: i64) -> Option<JournalBody> {
        let r = self.log.read(topic::JOURNAL, partition, offset, 1).ok()?.into_iter().next()?;
        waybill_schema::decode_journal(&r.value).ok().map(|j| j.body)
    }

    fn get_posting(&self, posting_id: &str) -> Result<proto::GetPostingResponse> {
        let not_found = || {
            Error::NotFound(format!(
                "posting {posting_id} does not exist; list held postings with `waybill approvals list`"
            ))
        };
        let (order_ref, _) = self.projections.posting(posting_id)?.ok_or_else(not_found)?;
        let order = self.projections.order(&order_ref)?.ok_or_else(not_found)?;
        let p = order.postings.iter().find(|p| p.posting_id == posting_id).ok_or_else(not_found)?;
        let posting = posting_proto!(&order, p);
        let timeline = self.projections.timeline(&order_ref)?;
        // Order prices and the drafted document are in journal records the timeline
        // points at (the order view keeps quantities only).
        let released = timeline.iter().filter(|t| t.event == "OrderAccepted").find_map(|t| {
            match self.journal_at(t.partition, t.offset) {
                Some(JournalBody::OrderAccepted(o)) => Some(o),
                _ => None,
            }
        });
        let mut document_lines = Vec::new();
        let mut document_total_minor = 0;
        for t in timeline
            .iter()
            .filter(|t| t.saga_id == p.saga_id && (t.event == "InvoiceDrafted" || t.event == "CreditNoteDrafted"))
        {
            let (lines, total) = match self.journal_at(t.partition, t.offset) {
                Some(JournalBody::InvoiceDrafted(d)) if d.business_key == p.business_key => (d.lines, d.total),
                Some(JournalBody::CreditNoteDrafted(d)) if d.receipt_id == p.business_key => (d.lines, d.total),
                _ => continue,
            };
            document_total_minor = total.0;
            document_lines = lines
                .iter()
                .map(|l| proto::DocumentLine {
                    line_no: l.line_no,
                    sku: l.sku.clone(),
                    quantity_milli: l.quantity.0,
                    quantity: l.quantity.to_string(),
                    unit_price_minor: l.unit_price.0,
                    tax_code: l.tax_code.clone(),
                    total_minor: l.unit_price.times(l.quantity).0,
                })
                .collect();
        }
        let order_lines = order_lines(&order, released.as_ref());
        Ok(proto::GetPostingResponse { posting: Some(posting), order_lines, document_lines, document_total_minor })
    }

    fn get_order(&self, order_ref: &str) -> Result<proto::GetOrderResponse> {
        let o = self.projections.order(order_ref)?.ok_or_else(|| {
            Error::NotFound(format!("order {order_ref} is not known; use the Odoo sale order name (SO0042)"))
        })?;
        let timeline = self.projections.timeline(order_ref)?;
        let released = timeline.iter().filter(|t| t.event == "OrderAccepted").find_map(|t| {
            match self.journal_at(t.partition, t.offset) {
                Some(JournalBody::OrderAccepted(o)) => Some(o),
                _ => None,
            }
        });
        let order = proto::Order {
            order_ref: o.order_ref.clone(),
            status: o.status.to_string(),
            customer: o.customer_ref.clone().unwrap_or_default(),
            ship_to: o.ship_to.clone().unwrap_or_default(),
            currency: o.currency.clone().unwrap_or_default(),
            client_order_ref: o.client_order_ref.clone().unwrap_or_default(),
            lines: order_lines(&o, released.as_ref()),
            shipments: o
                .shipments
                .iter()
                .map(|s| proto::Shipment {
                    shipment_id: s.shipment_id.clone(),
                    shipped_at_us: s.shipped_at.map(|t| t.0).unwrap_or_default(),
                    quantity_milli: s.quantity.0,
                    packages: s.packages,
                    carrier: s.carrier.clone().unwrap_or_default(),
                    tracking_ref: s.tracking_ref.clone().unwrap_or_default(),
                    delivered: s.delivered,
                })
                .collect(),
            problems: o.problems.clone(),
            open_exceptions: o.open_exceptions,
            postings: o.postings.iter().map(|p| posting_proto!(&o, p)).collect(),
            documents: o
                .documents
                .iter()
                .map(|d| proto::Document {
                    kind: document_name(d.kind).into(),
                    business_key: d.business_key.clone(),
                    number: d.number.clone(),
                    amount_minor: d.amount.0,
                    at_us: d.at.0,
                })
                .collect(),
            timeline: timeline
                .iter()
                .map(|t| proto::TimelineEntry {
                    at_us: t.at.0,
                    saga_id: t.saga_id.clone(),
                    seq: t.seq,
                    event: t.event.clone(),
                    summary: t.summary.clone(),
                })
                .collect(),
            first_event_at_us: o.first_event_at.0,
            last_event_at_us: o.last_event_at.0,
            cancel_reason: o.cancel_reason.clone().unwrap_or_default(),
        };
        Ok(proto::GetOrderResponse { order: Some(order) })
    }

    fn lineage(&self, source_ref: &str) -> Result<proto::GetLineageResponse> {
        crate::validate::source_ref(source_ref)?;
        let entries = self.projections.lineage(source_ref)?;
        if entries.is_empty() {
            return Err(Error::NotFound(format!(
                "nothing in Waybill is related to {source_ref}; check the system prefix and the id"
            )));
        }
        Ok(proto::GetLineageResponse {
            entries: entries
                .into_iter()
                .map(|e| proto::LineageEntry {
                    kind: match e.kind {
                        waybill_projection::LinkKind::Journal => "journal",
                        waybill_projection::LinkKind::Command => "command",
                        waybill_projection::LinkKind::DeadLetter => "dead-letter",
                    }
                    .into(),
                    id: e.id,
                    name: e.name,
                    topic: e.topic,
                    partition: e.partition,
                    offset: e.offset,
                    at_us: e.at.0,
                })
                .collect(),
        })
    }

    fn exceptions(&self, r: &proto::ListExceptionsRequest) -> Result<proto::ListExceptionsResponse> {
        let q = crate::validate::exceptions(r)?;
        let now = Timestamp::now();
        let exceptions = self
            .projections
            .exceptions(q.open_only, q.category)?
            .into_iter()
            .filter(|x| q.min_age_us.is_none() || x.raised_at.is_some_and(|t| old_enough(t.0, q.min_age_us, now)))
            .take(q.limit)
            .map(crate::workbench::exception_proto)
            .collect();
        Ok(proto::ListExceptionsResponse { exceptions })
    }

    fn list_audit(&self, r: &proto::ListAuditRequest) -> Result<proto::ListAuditResponse> {
        let limit = crate::validate::audit_limit(r.limit);
        let entries = self
            .audit
            .list(
                (!r.posting_id.is_empty()).then_some(r.posting_id.as_str()),
                (!r.actor.is_empty()).then_some(r.actor.as_str()),
                limit,
            )?
            .into_iter()
            .map(|e| proto::AuditEntry {
                event_id: e.event_id,
                at_us: e.at_us,
                actor: e.actor,
                role: e.role,
                peer: e.peer,
                action: e.action,
                posting_id: e.posting_id,
                order_ref: e.order_ref,
                expected_version: e.expected_version,
                reason: e.reason,
                outcome: e.outcome,
                detail: e.detail,
                topic: e.topic,
            })
            .collect();
        Ok(proto::ListAuditResponse { entries })
    }
}

fn order_lines(o: &OrderView, released: Option<&waybill_domain::event::OrderReleased>) -> Vec<proto::OrderLine> {
    o.lines
        .iter()
        .map(|l| {
            let ol = released.and_then(|r| r.lines.iter().find(|x| x.line_no == l.line_no));
            proto::OrderLine {
                line_no: l.line_no,
                sku: l.sku.clone(),
                uom: l.uom.clone(),
                warehouse: l.warehouse.clone(),
                ordered_milli: l.ordered.0,
                shipped_milli: l.shipped.0,
                ordered: l.ordered.to_string(),
                shipped: l.shipped.to_string(),
                reserved_milli: l.reserved.0,
                short_milli: l.short.0,
                picked_milli: l.picked.0,
                unit_price_minor: ol.map(|x| x.unit_price.0).unwrap_or_default(),
                tax_code: ol.and_then(|x| x.tax_code.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

/// Runs `f` on the blocking pool; errors become statuses in [`Error`]'s one mapping.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<tonic::Response<T>, tonic::Status> {
    let out = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("control task failed: {e}")))
        .and_then(|r| r);
    out.map(tonic::Response::new).map_err(tonic::Status::from)
}

pub(crate) fn peer_of<T>(r: &tonic::Request<T>) -> String {
    r.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into())
}

impl Control {
    /// Authenticates the caller without a role check (the role check of an audited
    /// action is part of the action).
    pub(crate) fn authenticate_only<T>(&self, r: &tonic::Request<T>) -> Result<Principal, tonic::Status> {
        Ok(self.auth.authenticate(r).inspect_err(|e| {
            tracing::warn!(peer = %peer_of(r), error = %e, "control call not authenticated");
        })?)
    }

    fn authenticate<T>(&self, r: &tonic::Request<T>, needed: Role, what: &str) -> Result<Principal, tonic::Status> {
        let who = self.auth.authenticate(r).inspect_err(|e| {
            tracing::warn!(peer = %peer_of(r), error = %e, "control call not authenticated");
        })?;
        who.require(needed, what)?;
        Ok(who)
    }
}

/// The `waybill.v1.Approvals` service.
#[derive(Debug, Clone)]
pub struct ApprovalsService(pub(crate) Arc<Control>);
/// The `waybill.v1.Queries` service.
#[derive(Debug, Clone)]
pub struct QueriesService(pub(crate) Arc<Control>);
/// The `waybill.v1.Audit` service.
#[derive(Debug, Clone)]
pub struct AuditService(pub(crate) Arc<Control>);

impl ApprovalsService {
    async fn decision(
        &self,
        request: tonic::Request<proto::DecisionRequest>,
        approve: bool,
    ) -> Result<tonic::Response<proto::DecisionResponse>, tonic::Status> {
        // Authentication only: the role check is part of the audited decision.
        let who = self.0.auth.authenticate(&request).inspect_err(|e| {
            tracing::warn!(peer = %peer_of(&request), error = %e, "control call not authenticated");
        })?;
        let peer = peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        blocking(move || c.decide(&who, &peer, &r, approve)).await
    }
}

#[tonic::async_trait]
impl proto::approvals_server::Approvals for ApprovalsService {
    async fn list_held_postings(
        &self,
        request: tonic::Request<proto::ListHeldPostingsRequest>,
    ) -> Result<tonic::Response<proto::ListHeldPostingsResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "listing postings")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.list_postings(&r)).await
    }

    async fn get_posting(
        &self,
        request: tonic::Request<proto::GetPostingRequest>,
    ) -> Result<tonic::Response<proto::GetPostingResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading a posting")?;
        let c = self.0.clone();
        let id = request.into_inner().posting_id;
        blocking(move || c.get_posting(&id)).await
    }

    async fn approve(
        &self,
        request: tonic::Request<proto::DecisionRequest>,
    ) -> Result<tonic::Response<proto::DecisionResponse>, tonic::Status> {
        self.decision(request, true).await
    }

    async fn reject(
        &self,
        request: tonic::Request<proto::DecisionRequest>,
    ) -> Result<tonic::Response<proto::DecisionResponse>, tonic::Status> {
        self.decision(request, false).await
    }
}

#[tonic::async_trait]
impl proto::queries_server::Queries for QueriesService {
    async fn get_order(
        &self,
        request: tonic::Request<proto::GetOrderRequest>,
    ) -> Result<tonic::Response<proto::GetOrderResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading an order")?;
        let c = self.0.clone();
        let id = request.into_inner().order_ref;
        blocking(move || c.get_order(&id)).await
    }

    async fn get_lineage(
        &self,
        request: tonic::Request<proto::GetLineageRequest>,
    ) -> Result<tonic::Response<proto::GetLineageResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading lineage")?;
        let c = self.0.clone();
        let id = request.into_inner().source_ref;
        blocking(move || c.lineage(&id)).await
    }

    async fn list_exceptions(
        &self,
        request: tonic::Request<proto::ListExceptionsRequest>,
    ) -> Result<tonic::Response<proto::ListExceptionsResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "listing exceptions")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.exceptions(&r)).await
    }
}

#[tonic::async_trait]
impl proto::audit_server::Audit for AuditService {
    async fn list_audit(
        &self,
        request: tonic::Request<proto::ListAuditRequest>,
    ) -> Result<tonic::Response<proto::ListAuditResponse>, tonic::Status> {
        self.0.authenticate(&request, Role::Viewer, "reading the audit")?;
        let c = self.0.clone();
        let r = request.into_inner();
        blocking(move || c.list_audit(&r)).await
    }
}
