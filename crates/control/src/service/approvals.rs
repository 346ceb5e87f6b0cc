//! Held postings: list, show with evidence, approve, reject. A decision is checked at the
//! edge with the saga's own rule ([`waybill_saga::approval::check`]) on the posting as the
//! read models show it, for a quick, clear answer; then it is written to
//! `waybill.control` and the call waits for the saga's verdict, which is the one that
//! counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_domain::event::PostingDecision;
use waybill_domain::{EventBody, EventMeta, InboundEvent, JournalBody, SourceRef, System, Timestamp, topic};
use waybill_log::{AppendBatch, Header, Record};
use waybill_projection::PostingView;
use waybill_saga::approval::{self, RefusalKind};

use super::convert::{document_name, posting_proto};
use super::{Control, blocking, peer_of};
use crate::audit::{AUDIT_TOPIC, EdgeRecord, headers};
use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::proto;
use crate::validate::{PageToken, old_enough};

/// What a decision is checked against: the posting as the read models show it.
#[derive(Debug, Clone)]
struct Snapshot {
    order_ref: String,
    posting_id: String,
    state: String,
    version: i64,
    decided_by: String,
    view: PostingView,
    /// Where the journal record that held the posting is (partition, offset), from the
    /// order's timeline read with the posting (`None` when only its state was wanted).
    held_record: Option<(i32, i64)>,
}

impl Snapshot {
    fn new(order_ref: String, p: PostingView, held_record: Option<(i32, i64)>) -> Snapshot {
        Snapshot {
            order_ref,
            posting_id: p.posting_id.clone(),
            state: p.state.clone(),
            version: p.version,
            decided_by: p.decided_by.clone().unwrap_or_default(),
            view: p,
            held_record,
        }
    }

    /// The posting in the saga's terms, for the saga's own check.
    fn posting(&self) -> approval::Posting {
        let v = &self.view;
        approval::Posting {
            posting_id: v.posting_id.clone(),
            document: v.document,
            amount: v.amount,
            version: v.version,
            reasons: v.reasons.clone(),
            requested_by: v.requested_by.clone(),
            touched_by: v.touched_by.iter().cloned().collect(),
            sla_due_at: v.sla_due_at,
            escalated: v.escalated,
            approved: match v.state.as_str() {
                "approved" => Some(true),
                "rejected" => Some(false),
                _ => None,
            },
            decided_by: v.decided_by.clone(),
        }
    }
}

/// The saga's answer to a decision, read from the journal.
enum Answer {
    /// The saga decided, in the journal record at this offset.
    Decided(waybill_domain::journal::PostingOutcome, i64),
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

/// Every state a posting can be in, for a list of all of them.
const POSTING_STATES: [&str; 3] = ["held", "approved", "rejected"];

/// Which postings a `ListHeldPostings` request asks for: the one place that rule lives.
struct PostingFilter<'a> {
    q: &'a crate::validate::HeldPostingsQuery,
    r: &'a proto::ListHeldPostingsRequest,
    /// `reason_contains`, lowercased.
    needle: String,
    now: Timestamp,
}

impl<'a> PostingFilter<'a> {
    fn new(r: &'a proto::ListHeldPostingsRequest, q: &'a crate::validate::HeldPostingsQuery, now: Timestamp) -> Self {
        PostingFilter { q, r, needle: r.reason_contains.to_lowercase(), now }
    }

    /// Held at `held_at_us`, the posting is as old as the request asks.
    fn old_enough(&self, held_at_us: i64) -> bool {
        old_enough(held_at_us, self.q.min_age_us, self.now)
    }

    /// `p` of order `o` is one the request asks for.
    fn matches(&self, o: &waybill_projection::OrderView, p: &PostingView) -> bool {
        let (q, r) = (self.q, self.r);
        (r.customer.is_empty() || o.customer_ref.as_deref() == Some(r.customer.as_str()))
            && q.entity.as_ref().is_none_or(|e| p.entity.as_ref() == Some(e))
            && q.state.is_none_or(|s| s == p.state)
            && q.document.is_none_or(|d| d == document_name(p.document))
            && (self.needle.is_empty() || p.reasons.iter().any(|x| x.to_lowercase().contains(&self.needle)))
            && self.old_enough(p.held_at.0)
            && (r.min_amount_minor <= 0 || p.amount.0 >= r.min_amount_minor)
            && (r.max_amount_minor <= 0 || p.amount.0 <= r.max_amount_minor)
    }
}

impl Control {
    /// The posting as the read models have it, with where the record that held it is.
    fn snapshot(&self, posting_id: &str) -> Result<Option<Snapshot>> {
        Ok(self.projections.posting_with_timeline(posting_id)?.map(|(order_ref, p, timeline)| {
            let held = format!("posting {} ", p.posting_id);
            let held_record = timeline
                .iter()
                .rev()
                .find(|t| t.event == "PostingHeld" && t.summary.contains(&held))
                .map(|t| (t.partition, t.offset));
            Snapshot::new(order_ref, p, held_record)
        }))
    }

    /// The posting's state now, for a call waiting for its decision to show.
    fn current(&self, posting_id: &str) -> Result<Option<Snapshot>> {
        Ok(self.projections.posting(posting_id)?.map(|(order_ref, p)| Snapshot::new(order_ref, p, None)))
    }

    /// The request is well formed and the posting exists; then the saga's own rule
    /// ([`approval::check`]) on the posting as the read models have it.
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
        let decision = PostingDecision {
            order_ref: p.order_ref.clone(),
            posting_id: p.posting_id.clone(),
            expected_version: r.expected_version,
            actor: who.identity.clone(),
            reason: r.reason.clone(),
            role: who.role.to_string(),
        };
        let wanted = if approve { "approved" } else { "rejected" };
        // Under the limits of the entity that held it, as the saga decides it.
        let policy = &self.policy.for_entity(p.view.entity.as_deref()).posting;
        match approval::check(&p.posting(), &decision, policy, approve) {
            approval::Verdict::Accept(_) => Ok(Verdict::Forward(p)),
            approval::Verdict::AlreadyDecided if p.state == wanted => {
                let msg = format!("posting {} was already {} by {}", p.posting_id, p.state, p.decided_by);
                Ok(Verdict::Already(msg, p))
            }
            approval::Verdict::AlreadyDecided => Err(Error::FailedPrecondition(format!(
                "posting {} was already {} by {} and cannot be {wanted} now",
                p.posting_id, p.state, p.decided_by
            ))),
            approval::Verdict::Refuse(RefusalKind::StaleVersion, x) => {
                Err(Error::FailedPrecondition(format!("{} (`waybill approvals show {}`)", x.reason, p.posting_id)))
            }
            approval::Verdict::Refuse(
                RefusalKind::RoleNotAllowed | RefusalKind::FourEyes | RefusalKind::AboveLimit,
                x,
            ) => Err(Error::PermissionDenied(x.reason)),
        }
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
        let value = crate::audit::encode_edge(&x)?;
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
                actor: Some(who.identity.clone()),
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

        let deadline = Instant::now() + self.decision_timeout;
        // The read models are looked at for a decision the journal does not show (this
        // same decision sent before, which the saga drops as a copy, or another actor's)
        // every few milliseconds, not at every record the partition gets: many concurrent
        // calls wait on one partition, and the saga needs a turn to answer anyway.
        let mut next_look = Instant::now() + Duration::from_millis(25);
        loop {
            let answer = self.saga_answer(
                journal_partition,
                &mut journal_from,
                &before.order_ref,
                &before.posting_id,
                &who.identity,
            )?;
            match answer {
                Some(Answer::Decided(o, at)) => {
                    // Read your writes: the next call (a second approve, a `show`) is
                    // answered from the read models, so wait until they have applied the
                    // journal past the decision (their position moves in the same batch as
                    // the views).
                    loop {
                        let seen = self.projections.applied();
                        let applied = self.projections.checkpoint(topic::JOURNAL, journal_partition)?.unwrap_or(0);
                        if Instant::now() >= deadline || applied > at {
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
            let look = Instant::now() >= next_look;
            if look {
                next_look = Instant::now() + Duration::from_millis(25);
            }
            if look
                && let Some(now) = self.current(&before.posting_id)?
                && (now.state != "held" || now.version > before.version)
            {
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
                        message: format!("posting {} was already {} by {}", now.posting_id, now.state, now.decided_by),
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
    /// on `posting_id` of `order_ref`; advances `from` past what it read.
    fn saga_answer(
        &self,
        partition: i32,
        from: &mut i64,
        order_ref: &str,
        posting_id: &str,
        actor: &str,
    ) -> Result<Option<Answer>> {
        loop {
            let records = self.log.read(topic::JOURNAL, partition, *from, 256)?;
            let Some(last) = records.last() else { return Ok(None) };
            *from = last.offset + 1;
            for r in &records {
                // Only the order's (or purchase order's) journal events: keyed by it, and
                // checkpoints have no saga id. Other calls' answers are not decoded, and
                // every saga that holds postings (invoices, credit notes, vendor bills)
                // answers here.
                if r.key != order_ref.as_bytes() || r.header("waybill.saga-id").is_none() {
                    continue;
                }
                match waybill_schema::decode_journal(&r.value).map(|j| j.body) {
                    Ok(JournalBody::PostingApproved(o) | JournalBody::PostingRejected(o))
                        if o.posting_id == posting_id && o.actor == actor =>
                    {
                        return Ok(Some(Answer::Decided(o, r.offset)));
                    }
                    Ok(JournalBody::ControlRefused(x)) if x.posting_id == posting_id && x.actor == actor => {
                        return Ok(Some(Answer::Refused(x.reason)));
                    }
                    _ => {}
                }
            }
        }
    }

    /// A page of postings, oldest held first (ties by posting id). Walks the projection's
    /// index of postings by state and age from the page token on, reading an order only
    /// for a posting the index offers, and stops once the page and one more posting (to
    /// know there is a next page) are found: a page costs its own rows, not the store.
    fn list_postings(&self, r: &proto::ListHeldPostingsRequest) -> Result<proto::ListHeldPostingsResponse> {
        let q = crate::validate::held_postings(r, &self.policy.entities)?;
        let filter = PostingFilter::new(r, &q, Timestamp::now());
        let after = q.after.as_ref().map(|t| (t.at_us, t.id.as_str()));
        let states: &[&str] = match q.state {
            Some(s) => &[s][..],
            None => &POSTING_STATES[..],
        };
        // The first `page_size + 1` matches of each state after the token; the first
        // `page_size + 1` of them all are among these.
        let mut all = Vec::new();
        for state in states {
            let mut found = 0;
            for hit in self.projections.postings_by_age(state, after) {
                let (held_at_us, posting_id, order_ref) = hit?;
                // The index is by age: from here on every posting is younger still.
                if !filter.old_enough(held_at_us) {
                    break;
                }
                let Some(o) = self.projections.order(&order_ref)? else { continue };
                let Some(p) = o.postings.iter().find(|p| p.posting_id == posting_id) else { continue };
                if filter.matches(&o, p) {
                    all.push(posting_proto!(&o, p));
                    found += 1;
                    if found > q.page_size {
                        break;
                    }
                }
            }
        }
        all.sort_by(|a, b| (a.held_at_us, &a.posting_id).cmp(&(b.held_at_us, &b.posting_id)));
        let more = all.len() > q.page_size;
        all.truncate(q.page_size);
        let next_page_token = match all.last() {
            Some(last) if more => PageToken::new(last.held_at_us, &last.posting_id).encode(),
            _ => String::new(),
        };
        Ok(proto::ListHeldPostingsResponse { postings: all, next_page_token })
    }

    /// The headers of the journal record that held `posting` (its trace context).
    fn posting_held_headers(&self, posting: &Snapshot) -> Vec<Header> {
        let Some((partition, offset)) = posting.held_record else { return Vec::new() };
        match self.log.read(topic::JOURNAL, partition, offset, 1) {
            Ok(mut r) if r.first().is_some_and(|r| r.offset == offset) => r.swap_remove(0).headers,
            _ => Vec::new(),
        }
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
        let (order_lines, document_lines, document_total_minor) = self.evidence(&order, p, &timeline);
        Ok(proto::GetPostingResponse { posting: Some(posting), order_lines, document_lines, document_total_minor })
    }
}

/// The `waybill.v1.Approvals` service.
#[derive(Debug, Clone)]
pub struct ApprovalsService(pub(crate) Arc<Control>);
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
