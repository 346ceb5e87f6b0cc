//! The exception workbench: retry an exception's failed step, resolve an exception with a
//! note, assign an exception to an owner who works it, replay an order's inbound events
//! (with a dry run first).
//!
//! Like approvals, every action is checked here for a quick, clear answer (role, unknown
//! or resolved exception, missing note or owner), then written to `waybill.control` keyed by the
//! order, decided by the saga that owns it — the authority — and the call waits for the
//! saga's verdict in the journal and for the read models to have it (read your writes).
//! Attempts answered here go to `waybill.audit`.
//!
//! A dry-run replay is computed here, read-only: the order's sagas are rebuilt from their
//! journal events (the timeline points at them), the records to replay are gathered
//! (every inbound record a journal event cites, and every dead letter of the order), and
//! the saga crate's pure [`waybill_saga::flow::replay`] runs on that copy. Nothing is
//! written but the dry run's audit record.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use waybill_domain::event::{ExceptionAction, ExceptionAssignment, ReplayInput, ReplayRequest};
use waybill_domain::{
    EventBody, EventMeta, InboundEvent, JournalBody, JournalEvent, SourceRef, System, Timestamp, topic,
};
use waybill_log::{AppendBatch, Header, Record};
use waybill_projection::{ExceptionView, LinkKind};
use waybill_saga::AnyFlow;
use waybill_saga::decision::Cause;
use waybill_saga::flow::{Env, ReplayRecord};

use crate::audit::{AUDIT_TOPIC, EdgeRecord, headers};
use crate::auth::{Principal, Role};
use crate::error::{Error, Result};
use crate::proto;
use crate::service::Control;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A request id unique to this call (time, process, counter).
pub(crate) fn request_id() -> String {
    format!("{:x}-{:x}-{}", Timestamp::now().0, std::process::id(), REQUESTS.fetch_add(1, Ordering::Relaxed))
}

/// One workbench call: who, from where, what, on what.
pub(crate) struct Call<'a> {
    pub(crate) who: &'a Principal,
    pub(crate) peer: &'a str,
    pub(crate) action: &'static str,
    pub(crate) target: &'a str,
    pub(crate) order_ref: String,
    pub(crate) note: &'a str,
}

/// A saga's answer to a workbench action on one exception.
pub(crate) enum Verdict {
    /// Retried: the idempotency key of the re-issued command.
    Retried(String),
    /// Resolved: the resolution.
    Resolved(String),
    /// Assigned: the new owner.
    Assigned(String),
    /// Refused: why.
    Refused(String),
}

/// The order's sagas as their journal describes them, and the records to replay.
struct Plan {
    order_ref: String,
    saga_id: String,
    flow: AnyFlow,
    records: Vec<ReplayRecord>,
}

pub(crate) fn exception_proto(x: ExceptionView) -> proto::Exception {
    proto::Exception {
        exception_id: x.exception_id,
        category: x.category.as_str().into(),
        message: x.message,
        subject: x.subject.map(|s| s.to_string()).unwrap_or_default(),
        saga_id: x.saga_id.unwrap_or_default(),
        order_ref: x.order_ref.unwrap_or_default(),
        raised_at_us: x.raised_at.map(|t| t.0).unwrap_or_default(),
        resolved_at_us: x.resolved_at.map(|t| t.0).unwrap_or_default(),
        resolution: x.resolution.unwrap_or_default(),
        owner: x.owner.unwrap_or_default(),
        customer: x.customer.unwrap_or_default(),
        assigned_at_us: x.assigned_at.map(|t| t.0).unwrap_or_default(),
        entity: x.entity.unwrap_or_default(),
    }
}

fn timeline_entry(e: &JournalEvent) -> proto::TimelineEntry {
    proto::TimelineEntry {
        at_us: e.meta.at.0,
        saga_id: e.meta.saga_id.clone(),
        seq: e.meta.seq,
        event: e.body.name().into(),
        summary: waybill_projection::summarize(e),
    }
}

fn command_preview(c: &waybill_domain::Command) -> proto::PreviewCommand {
    proto::PreviewCommand {
        idempotency_key: c.meta.idempotency_key.clone(),
        command: c.body.name().into(),
        target: c.meta.target.to_string(),
        saga_id: c.meta.saga_id.clone(),
    }
}

impl Control {
    /// Writes a workbench attempt the control plane answered itself to `waybill.audit`.
    pub(crate) fn record_workbench_edge(&self, c: &Call<'_>, outcome: &str, detail: &str) -> Result<()> {
        let x = EdgeRecord {
            at_us: Timestamp::now().0,
            actor: c.who.identity.clone(),
            role: c.who.role.to_string(),
            peer: c.peer.to_string(),
            action: c.action.into(),
            posting_id: c.target.to_string(),
            order_ref: c.order_ref.clone(),
            expected_version: 0,
            reason: c.note.to_string(),
            outcome: outcome.into(),
            detail: detail.into(),
        };
        let key = if c.order_ref.is_empty() { c.target.to_string() } else { c.order_ref.clone() };
        let value = crate::audit::encode_edge(&x)?;
        let record = Record::keyed(AUDIT_TOPIC, key.into_bytes(), value)
            .with_header(headers::ACTOR, c.who.identity.as_bytes().to_vec())
            .with_header(headers::ROLE, c.who.role.as_str().as_bytes().to_vec())
            .with_header(headers::PEER, c.peer.as_bytes().to_vec());
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        Ok(())
    }

    /// Audits an edge refusal and returns the error.
    pub(crate) fn refuse_at_edge<T>(&self, c: &Call<'_>, e: Error) -> Result<T> {
        let detail = format!("{:?}: {e}", e.code());
        self.record_workbench_edge(c, "refused", &detail)?;
        tracing::info!(waybill.actor = %c.who.identity, action = c.action, target = %c.target, error = %e, "workbench action refused");
        Err(e)
    }

    /// Appends a control event for the order's partition; returns the journal partition
    /// and the offset to watch the saga's answer from.
    fn send_control(&self, event: &InboundEvent, who: &Principal, peer: &str) -> Result<(i32, i64)> {
        let order_ref = &event.meta.correlation_key;
        let value = waybill_schema::encode_event(event)
            .map_err(|e| Error::Internal(format!("cannot encode the control event: {e}")))?;
        let record = Record {
            topic: topic::CONTROL.to_string(),
            partition: None,
            key: order_ref.as_bytes().to_vec(),
            headers: vec![
                Header { key: headers::EVENT_ID.into(), value: event.meta.event_id.as_bytes().to_vec() },
                Header { key: headers::ACTOR.into(), value: who.identity.as_bytes().to_vec() },
                Header { key: headers::ROLE.into(), value: who.role.as_str().as_bytes().to_vec() },
                Header { key: headers::PEER.into(), value: peer.as_bytes().to_vec() },
            ],
            value,
        };
        let partition = waybill_log::partition_for(order_ref.as_bytes(), self.log.partitions(topic::JOURNAL)?);
        let from = self.log.end_offset(topic::JOURNAL, partition)?;
        self.log.append(AppendBatch { records: vec![record], positions: vec![] })?;
        tracing::info!(waybill.actor = %who.identity, waybill.event.id = %event.meta.event_id, waybill.order.ref = %order_ref, "workbench action sent to the saga");
        Ok((partition, from))
    }

    /// Reads the journal partition from `from` until `found` picks the saga's answer, the
    /// journal offset it was read at; `None` once `deadline` passes.
    fn watch_journal<T>(
        &self,
        partition: i32,
        mut from: i64,
        deadline: Instant,
        mut found: impl FnMut(&JournalEvent) -> Option<T>,
    ) -> Result<Option<(T, i64)>> {
        loop {
            let records = self.log.read(topic::JOURNAL, partition, from, 256)?;
            if let Some(last) = records.last() {
                from = last.offset + 1;
                for r in &records {
                    // Checkpoints carry no saga id.
                    if r.header("waybill.saga-id").is_none() {
                        continue;
                    }
                    if let Ok(e) = waybill_schema::decode_journal(&r.value)
                        && let Some(t) = found(&e)
                    {
                        return Ok(Some((t, r.offset)));
                    }
                }
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.log.wait_for(topic::JOURNAL, partition, from, Duration::from_millis(50))?;
        }
    }

    /// Read your writes: waits (until `deadline`) for the read models to have applied the
    /// journal up to `offset`.
    pub(crate) fn await_projection(&self, partition: i32, offset: i64, deadline: Instant) -> Result<()> {
        loop {
            let seen = self.projections.applied();
            if Instant::now() >= deadline
                || self.projections.checkpoint(topic::JOURNAL, partition)?.is_some_and(|next| next > offset)
            {
                return Ok(());
            }
            self.projections.wait_for_apply(seen, Duration::from_millis(20));
        }
    }

    /// Retry (`retry = true`) or resolve an exception, as `who` calling from `peer`.
    pub(crate) fn exception_action(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::ExceptionActionRequest,
        retry: bool,
    ) -> Result<proto::ExceptionActionResponse> {
        let action = if retry { "retry" } else { "resolve" };
        let view = if r.exception_id.is_empty() { None } else { self.projections.exception(&r.exception_id)? };
        let call = Call {
            who,
            peer,
            action,
            target: &r.exception_id,
            order_ref: view.as_ref().and_then(|v| v.order_ref.clone()).unwrap_or_default(),
            note: &r.note,
        };
        let checked = who
            .require(Role::Operator, if retry { "retrying an exception" } else { "resolving an exception" })
            .and_then(|()| check_exception(r, retry, view));
        match checked {
            Err(e) => self.refuse_at_edge(&call, e),
            Ok((order_ref, _)) => self.forward_exception(&call, &order_ref, r, retry),
        }
    }

    fn forward_exception(
        &self,
        call: &Call<'_>,
        order_ref: &str,
        r: &proto::ExceptionActionRequest,
        retry: bool,
    ) -> Result<proto::ExceptionActionResponse> {
        let who = call.who;
        let request_id = request_id();
        let event_id = format!("control:{}:{}:{request_id}", call.action, r.exception_id);
        let a = ExceptionAction {
            order_ref: order_ref.to_string(),
            exception_id: r.exception_id.clone(),
            actor: who.identity.clone(),
            role: who.role.to_string(),
            peer: call.peer.to_string(),
            request_id,
            note: r.note.trim().to_string(),
        };
        let event = InboundEvent {
            meta: EventMeta {
                event_id: event_id.clone(),
                source: SourceRef::new(System::Operator, who.identity.clone()),
                correlation_key: order_ref.to_string(),
                occurred_at: Timestamp::now(),
                actor: Some(who.identity.clone()),
            },
            body: if retry { EventBody::ExceptionRetryRequested(a) } else { EventBody::ExceptionResolveRequested(a) },
        };
        let (answer, partition, offset, deadline) = self.await_verdict(call, &event)?;
        let (outcome, message, idempotency_key) = match answer {
            Verdict::Refused(reason) => {
                return Err(Error::FailedPrecondition(format!("the saga refused the {}: {reason}", call.action)));
            }
            Verdict::Retried(key) => (
                "retried",
                format!("exception {}: command {key} re-issued with its original idempotency key", r.exception_id),
                key,
            ),
            Verdict::Resolved(resolution) => {
                ("resolved", format!("exception {} {resolution}", r.exception_id), String::new())
            }
            Verdict::Assigned(owner) => {
                return Err(Error::Internal(format!(
                    "the saga answered the {} of exception {} with an assignment to {owner}",
                    call.action, r.exception_id
                )));
            }
        };
        self.await_projection(partition, offset, deadline)?;
        Ok(proto::ExceptionActionResponse {
            exception_id: r.exception_id.clone(),
            action: call.action.into(),
            outcome: outcome.into(),
            message,
            event_id,
            idempotency_key,
            exception: self.projections.exception(&r.exception_id)?.map(exception_proto),
        })
    }

    /// Sends a workbench action on one exception to its saga and waits for the saga's
    /// verdict in the journal (a journal event caused by the action's event id). Returns
    /// the verdict, the journal partition and offset it was read at, and the call's
    /// deadline; `Error::Pending` when the saga has not answered in time.
    pub(crate) fn await_verdict(&self, call: &Call<'_>, event: &InboundEvent) -> Result<(Verdict, i32, i64, Instant)> {
        let event_id = &event.meta.event_id;
        let deadline = Instant::now() + self.decision_timeout;
        let (partition, from) = self.send_control(event, call.who, call.peer)?;
        let answer = self.watch_journal(partition, from, deadline, |e| {
            if &e.meta.caused_by != event_id {
                return None;
            }
            match &e.body {
                JournalBody::ExceptionRetried(x) => Some(Verdict::Retried(x.idempotency_key.clone())),
                JournalBody::ExceptionResolved(x) => Some(Verdict::Resolved(x.resolution.clone())),
                JournalBody::ExceptionAssigned(x) => Some(Verdict::Assigned(x.owner.clone())),
                JournalBody::ControlRefused(x) => Some(Verdict::Refused(x.reason.clone())),
                _ => None,
            }
        })?;
        let Some((answer, offset)) = answer else {
            return Err(Error::Pending(format!(
                "{} {event_id} is in the log but the saga has not answered within {} s; check `waybill exceptions list --all` before trying again",
                call.action,
                self.decision_timeout.as_secs_f64()
            )));
        };
        Ok((answer, partition, offset, deadline))
    }

    /// Assign an exception to an owner, as `who` calling from `peer`. Assigning it to the
    /// owner it has already is answered here (`unchanged`, audited) without troubling the
    /// saga; the saga treats such a repeat as a no-op too.
    pub(crate) fn assign_exception(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::AssignExceptionRequest,
    ) -> Result<proto::ExceptionActionResponse> {
        let view = if r.exception_id.is_empty() { None } else { self.projections.exception(&r.exception_id)? };
        let owner = r.owner.trim();
        let note = r.note.trim();
        // The audit's reason names the owner asked for.
        let reason = if note.is_empty() { format!("to {owner}") } else { format!("to {owner}: {note}") };
        let call = Call {
            who,
            peer,
            action: "assign",
            target: &r.exception_id,
            order_ref: view.as_ref().and_then(|v| v.order_ref.clone()).unwrap_or_default(),
            note: &reason,
        };
        let checked = who
            .require(Role::Operator, "assigning an exception")
            .and_then(|()| crate::validate::exception_assignment(r))
            .and_then(|()| check_open(&r.exception_id, view));
        let (order_ref, x) = match checked {
            Err(e) => return self.refuse_at_edge(&call, e),
            Ok(found) => found,
        };
        if x.owner.as_deref() == Some(owner) {
            let message = format!("exception {} is assigned to {owner} already; nothing changed", r.exception_id);
            self.record_workbench_edge(&call, "unchanged", &message)?;
            return Ok(proto::ExceptionActionResponse {
                exception_id: r.exception_id.clone(),
                action: call.action.into(),
                outcome: "unchanged".into(),
                message,
                event_id: String::new(),
                idempotency_key: String::new(),
                exception: Some(exception_proto(x)),
            });
        }
        let request_id = request_id();
        let event_id = format!("control:assign:{}:{request_id}", r.exception_id);
        let a = ExceptionAssignment {
            order_ref: order_ref.clone(),
            exception_id: r.exception_id.clone(),
            owner: owner.to_string(),
            actor: who.identity.clone(),
            role: who.role.to_string(),
            peer: peer.to_string(),
            request_id,
            note: note.to_string(),
        };
        let event = InboundEvent {
            meta: EventMeta {
                event_id: event_id.clone(),
                source: SourceRef::new(System::Operator, who.identity.clone()),
                correlation_key: order_ref,
                occurred_at: Timestamp::now(),
                actor: Some(who.identity.clone()),
            },
            body: EventBody::ExceptionAssignRequested(a),
        };
        let (answer, partition, offset, deadline) = self.await_verdict(&call, &event)?;
        let message = match answer {
            Verdict::Assigned(owner) => match x.owner.as_deref() {
                Some(before) => format!("exception {} reassigned from {before} to {owner}", r.exception_id),
                None => format!("exception {} assigned to {owner}", r.exception_id),
            },
            Verdict::Refused(reason) => {
                return Err(Error::FailedPrecondition(format!("the saga refused the assignment: {reason}")));
            }
            Verdict::Retried(_) | Verdict::Resolved(_) => {
                return Err(Error::Internal(format!(
                    "the saga answered the assignment of exception {} with another action; check `waybill order show`",
                    r.exception_id
                )));
            }
        };
        self.await_projection(partition, offset, deadline)?;
        Ok(proto::ExceptionActionResponse {
            exception_id: r.exception_id.clone(),
            action: call.action.into(),
            outcome: "assigned".into(),
            message,
            event_id,
            idempotency_key: String::new(),
            exception: self.projections.exception(&r.exception_id)?.map(exception_proto),
        })
    }

    /// The order a saga id (or an order name) belongs to.
    fn order_of(&self, saga_or_order: &str) -> Result<Option<String>> {
        if let Some(order) = saga_or_order.strip_prefix("o2f:") {
            return Ok(self.projections.order(order)?.map(|o| o.order_ref));
        }
        // A purchase order's saga is keyed by its purchase order.
        if let Some(po) = saga_or_order.strip_prefix("p2r:") {
            let key = waybill_domain::purchase::correlation_key(po);
            return Ok(self.projections.order(&key)?.map(|o| o.order_ref));
        }
        if saga_or_order.starts_with("s2i:") || saga_or_order.starts_with("ret:") {
            return Ok(self
                .projections
                .orders(None, usize::MAX)?
                .into_iter()
                .find(|o| o.saga(saga_or_order).is_some())
                .map(|o| o.order_ref));
        }
        Ok(self.projections.order(saga_or_order)?.map(|o| o.order_ref))
    }

    /// The journal events of a correlation key, in order, read where its timeline points.
    pub(crate) fn journal_of(&self, key: &str) -> Result<Vec<JournalEvent>> {
        let mut out = Vec::new();
        for t in self.projections.timeline(key)? {
            let r = self.log.read(topic::JOURNAL, t.partition, t.offset, 1)?;
            let Some(r) = r.into_iter().find(|r| r.offset == t.offset) else { continue };
            let e = waybill_schema::decode_journal(&r.value).map_err(|e| {
                Error::Internal(format!("journal record {}@{} of {key} cannot be decoded: {e}", t.partition, t.offset))
            })?;
            out.push(e);
        }
        Ok(out)
    }

    /// Rebuilds the order's sagas from their journal events and gathers the records to
    /// replay: every inbound record a journal event of the order cites, and every dead
    /// letter of the order, in the order they were appended.
    fn plan_replay(&self, saga_or_order: &str) -> Result<Plan> {
        crate::validate::replay_target(saga_or_order)?;
        let Some(order_ref) = self.order_of(saga_or_order)? else {
            return Err(Error::NotFound(format!(
                "{saga_or_order} is not a saga or order Waybill knows; find it with `waybill order show <order>`"
            )));
        };
        let mut flow = AnyFlow::new(&order_ref);
        // Named by its key (an order, `po:<name>`): the flow's home saga.
        let saga_id = if saga_or_order == order_ref { flow.home_saga_id() } else { saga_or_order.to_string() };
        let inbound: BTreeSet<String> = topic::INBOUND_SYSTEMS.iter().map(|s| topic::inbound(*s)).collect();
        // position → the dead-letter exception it would close
        let mut positions: BTreeMap<(String, i32, i64), Option<String>> = BTreeMap::new();
        for e in self.journal_of(&order_ref)? {
            if let Some(i) = e.meta.input.as_ref().filter(|i| inbound.contains(&i.topic)) {
                positions.entry((i.topic.clone(), i.partition, i.offset)).or_default();
            }
            flow.apply(&e);
        }
        for l in self.projections.lineage(&format!("odoo:{order_ref}"))? {
            if l.kind != LinkKind::DeadLetter {
                continue;
            }
            // `dlq:<topic>:<partition>:<offset>` of the original record.
            let mut parts = l.id.rsplitn(3, ':');
            let (Some(offset), Some(partition), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (Some(topic), Ok(partition), Ok(offset)) =
                (rest.strip_prefix("dlq:"), partition.parse::<i32>(), offset.parse::<i64>())
            else {
                continue;
            };
            if !inbound.contains(topic) {
                continue;
            }
            let open = self.projections.exception(&l.id)?.is_some_and(|x| x.is_open());
            let slot = positions.entry((topic.to_string(), partition, offset)).or_default();
            if open {
                *slot = Some(l.id.clone());
            }
        }
        let order: Vec<String> = topic::coordinator_inputs();
        let mut records = Vec::new();
        for ((t, p, o), dead_letter) in positions {
            let stored = self.log.read(&t, p, o, 1)?.into_iter().find(|r| r.offset == o);
            let (at, event) = match stored {
                None => (i64::MAX, Err("no record at this offset (removed by retention?)".to_string())),
                Some(r) => (r.timestamp_ms, waybill_schema::decode_event(&r.value).map_err(|e| e.to_string())),
            };
            let rank = order.iter().position(|x| *x == t).unwrap_or(usize::MAX);
            records.push((
                at,
                rank,
                ReplayRecord { input: ReplayInput { topic: t, partition: p, offset: o, dead_letter }, event },
            ));
        }
        // As the coordinator merges its inputs: append time, then topic order.
        records.sort_by_key(|r| (r.0, r.1, r.2.input.offset));
        Ok(Plan { order_ref, saga_id, flow, records: records.into_iter().map(|(_, _, r)| r).collect() })
    }

    /// Replays (or, with `dry_run`, previews replaying) the inbound events of the order
    /// `r.saga_id` names.
    pub(crate) fn replay(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::ReplayRequest,
        dry_run: bool,
    ) -> Result<proto::ReplayResponse> {
        let action = if dry_run { "replay-dry-run" } else { "replay" };
        let call = Call { who, peer, action, target: &r.saga_id, order_ref: String::new(), note: &r.note };
        let needed = if dry_run { Role::Viewer } else { Role::Operator };
        let plan = who
            .require(needed, if dry_run { "previewing a replay" } else { "replaying a saga's events" })
            .and_then(|()| self.plan_replay(&r.saga_id));
        let plan = match plan {
            Ok(p) => p,
            Err(e) => return self.refuse_at_edge(&call, e),
        };
        // From here on the audit names the saga the target resolved to.
        let call = Call { target: &plan.saga_id, order_ref: plan.order_ref.clone(), ..call };
        let request_id = request_id();
        let event_id = format!("control:{action}:{}:{request_id}", plan.saga_id);
        let request = ReplayRequest {
            order_ref: plan.order_ref.clone(),
            saga_id: plan.saga_id.clone(),
            actor: who.identity.clone(),
            role: who.role.to_string(),
            peer: peer.to_string(),
            request_id,
            note: r.note.trim().to_string(),
            inputs: plan.records.iter().map(|x| x.input.clone()).collect(),
        };
        let inputs: Vec<proto::ReplayedInput> = plan
            .records
            .iter()
            .map(|x| proto::ReplayedInput {
                topic: x.input.topic.clone(),
                partition: x.input.partition,
                offset: x.input.offset,
                event_id: x.event.as_ref().map(|e| e.meta.event_id.clone()).unwrap_or_default(),
                event: x.event.as_ref().map(|e| e.body.name().to_string()).unwrap_or_default(),
                dead_letter: x.input.dead_letter.clone().unwrap_or_default(),
            })
            .collect();
        if dry_run {
            let mut copy = plan.flow.clone();
            let env = Env::new(&self.catalog, &self.policy);
            let cause = Cause { id: event_id.clone(), input: None, at: Timestamp::now() };
            let step = copy.replay(&event_id, &request, &plan.records, &env, &cause);
            let (applied, refused) = outcome_of(&step.journal, &event_id);
            let detail = format!(
                "would apply {applied} of {} records, write {} journal events and issue commands [{}]",
                plan.records.len(),
                step.journal.len(),
                step.commands.iter().map(|c| c.meta.idempotency_key.as_str()).collect::<Vec<_>>().join(", ")
            );
            self.record_workbench_edge(&call, "dry-run", &detail)?;
            return Ok(proto::ReplayResponse {
                order_ref: plan.order_ref,
                saga_id: plan.saga_id,
                dry_run: true,
                inputs,
                journal: step.journal.iter().map(timeline_entry).collect(),
                commands: step.commands.iter().map(command_preview).collect(),
                refused,
                applied,
                event_id: String::new(),
                message: format!("dry run: {detail}; nothing was written to the saga"),
            });
        }
        // The commands as the saga will issue them (the same pure replay, on a copy), to
        // name the commands its answer lists by key.
        let preview: BTreeMap<String, proto::PreviewCommand> = {
            let mut copy = plan.flow.clone();
            let env = Env::new(&self.catalog, &self.policy);
            let cause = Cause { id: event_id.clone(), input: None, at: Timestamp::now() };
            let step = copy.replay(&event_id, &request, &plan.records, &env, &cause);
            step.commands.iter().map(|c| (c.meta.idempotency_key.clone(), command_preview(c))).collect()
        };
        let replayed: BTreeSet<String> =
            plan.records.iter().filter_map(|x| x.event.as_ref().ok().map(|e| e.meta.event_id.clone())).collect();
        let event = InboundEvent {
            meta: EventMeta {
                event_id: event_id.clone(),
                source: SourceRef::new(System::Operator, who.identity.clone()),
                correlation_key: plan.order_ref.clone(),
                occurred_at: Timestamp::now(),
                actor: Some(who.identity.clone()),
            },
            body: EventBody::SagaReplayRequested(Box::new(request)),
        };
        let deadline = Instant::now() + self.decision_timeout;
        let (partition, from) = self.send_control(&event, who, peer)?;
        let mut written = Vec::new();
        let done = self.watch_journal(partition, from, deadline, |e| {
            if e.meta.correlation_key != plan.order_ref {
                return None;
            }
            if e.meta.caused_by == event_id {
                written.push(e.clone());
                return matches!(e.body, JournalBody::SagaReplayed(_)).then_some(());
            }
            if replayed.contains(&e.meta.caused_by) {
                written.push(e.clone());
            }
            None
        })?;
        let Some(((), offset)) = done else {
            return Err(Error::Pending(format!(
                "replay {event_id} is in the log but the saga has not answered within {} s; check `waybill order show {}` before trying again",
                self.decision_timeout.as_secs_f64(),
                plan.order_ref
            )));
        };
        self.await_projection(partition, offset, deadline)?;
        let (applied, refused) = outcome_of(&written, &event_id);
        // The commands the saga issued, as its SagaReplayed event lists them.
        let keys: Vec<String> = written
            .iter()
            .find_map(|e| match &e.body {
                JournalBody::SagaReplayed(x) if e.meta.caused_by == event_id => Some(x.commands.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let commands = keys
            .iter()
            .map(|k| {
                preview.get(k).cloned().unwrap_or_else(|| proto::PreviewCommand {
                    idempotency_key: k.clone(),
                    ..proto::PreviewCommand::default()
                })
            })
            .collect();
        Ok(proto::ReplayResponse {
            order_ref: plan.order_ref.clone(),
            saga_id: plan.saga_id,
            dry_run: false,
            inputs,
            journal: written.iter().map(timeline_entry).collect(),
            commands,
            message: format!(
                "replayed {} records of order {}: {applied} applied, {} commands issued, {} still refused",
                plan.records.len(),
                plan.order_ref,
                keys.len(),
                refused.len()
            ),
            refused,
            applied,
            event_id,
        })
    }
}

/// Applied count and refusals from the `SagaReplayed` event caused by `request`.
fn outcome_of(journal: &[JournalEvent], request: &str) -> (u32, Vec<String>) {
    journal
        .iter()
        .find_map(|e| match &e.body {
            JournalBody::SagaReplayed(x) if e.meta.caused_by == request => {
                Some((x.applied.max(0) as u32, x.refused.clone()))
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// The checks the saga will make on a retry or resolution, made early for a clear answer.
/// Returns the exception's order.
fn check_exception(
    r: &proto::ExceptionActionRequest,
    retry: bool,
    view: Option<ExceptionView>,
) -> Result<(String, ExceptionView)> {
    crate::validate::exception_action(r, retry)?;
    check_open(&r.exception_id, view)
}

/// The checks on the exception itself that every action on it makes early: it exists,
/// is open, and belongs to a saga of an order. Returns the exception's order.
pub(crate) fn check_open(exception_id: &str, view: Option<ExceptionView>) -> Result<(String, ExceptionView)> {
    let Some(x) = view.filter(|x| x.raised_at.is_some()) else {
        return Err(Error::NotFound(format!(
            "exception {exception_id} does not exist; list exceptions with `waybill exceptions list`"
        )));
    };
    if x.resolved_at.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "exception {} is already resolved ({}); nothing to do",
            x.exception_id,
            x.resolution.clone().unwrap_or_default()
        )));
    }
    let Some(order_ref) = x.order_ref.clone() else {
        return Err(Error::FailedPrecondition(format!(
            "exception {} names no order, so no saga can act on it; fix the record at its source and use `waybill dlq replay`",
            x.exception_id
        )));
    };
    if x.saga_id.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "exception {} is a dead letter, not a saga's exception; it closes when a replay applies the record: `waybill saga replay {order_ref} --dry-run`, then without --dry-run",
            x.exception_id
        )));
    }
    Ok((order_ref, x))
}

/// The `waybill.v1.Workbench` service.
#[derive(Debug, Clone)]
pub struct WorkbenchService(pub(crate) std::sync::Arc<Control>);

impl WorkbenchService {
    async fn exception_action(
        &self,
        request: tonic::Request<proto::ExceptionActionRequest>,
        retry: bool,
    ) -> Result<tonic::Response<proto::ExceptionActionResponse>, tonic::Status> {
        // Authentication only: the role check is part of the audited action.
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.exception_action(&who, &peer, &r, retry)).await
    }

    async fn replay(
        &self,
        request: tonic::Request<proto::ReplayRequest>,
        dry_run: bool,
    ) -> Result<tonic::Response<proto::ReplayResponse>, tonic::Status> {
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.replay(&who, &peer, &r, dry_run)).await
    }
}

#[tonic::async_trait]
impl proto::workbench_server::Workbench for WorkbenchService {
    async fn retry_exception(
        &self,
        request: tonic::Request<proto::ExceptionActionRequest>,
    ) -> Result<tonic::Response<proto::ExceptionActionResponse>, tonic::Status> {
        self.exception_action(request, true).await
    }

    async fn resolve_exception(
        &self,
        request: tonic::Request<proto::ExceptionActionRequest>,
    ) -> Result<tonic::Response<proto::ExceptionActionResponse>, tonic::Status> {
        self.exception_action(request, false).await
    }

    async fn assign_exception(
        &self,
        request: tonic::Request<proto::AssignExceptionRequest>,
    ) -> Result<tonic::Response<proto::ExceptionActionResponse>, tonic::Status> {
        // Authentication only: the role check is part of the audited action.
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.assign_exception(&who, &peer, &r)).await
    }

    async fn assign_statement_line(
        &self,
        request: tonic::Request<proto::AssignStatementLineRequest>,
    ) -> Result<tonic::Response<proto::ExceptionActionResponse>, tonic::Status> {
        // Authentication only: the role check is part of the audited action.
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.assign_statement_line(&who, &peer, &r)).await
    }

    async fn dry_run_replay(
        &self,
        request: tonic::Request<proto::ReplayRequest>,
    ) -> Result<tonic::Response<proto::ReplayResponse>, tonic::Status> {
        self.replay(request, true).await
    }

    async fn replay(
        &self,
        request: tonic::Request<proto::ReplayRequest>,
    ) -> Result<tonic::Response<proto::ReplayResponse>, tonic::Status> {
        WorkbenchService::replay(self, request, false).await
    }

    async fn list_dead_letters(
        &self,
        request: tonic::Request<proto::ListDeadLettersRequest>,
    ) -> Result<tonic::Response<proto::ListDeadLettersResponse>, tonic::Status> {
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.list_dead_letters(&who, &peer, &r)).await
    }

    async fn replay_dead_letters(
        &self,
        request: tonic::Request<proto::ReplayDeadLettersRequest>,
    ) -> Result<tonic::Response<proto::ReplayDeadLettersResponse>, tonic::Status> {
        let who = self.0.authenticate_only(&request)?;
        let peer = crate::service::peer_of(&request);
        let r = request.into_inner();
        let c = self.0.clone();
        crate::service::blocking(move || c.replay_dead_letters(&who, &peer, &r)).await
    }
}

/// Most dead letters one `ListDeadLetters` answer carries.
const MAX_DEAD_LETTERS: usize = 1000;

impl Control {
    /// `ListDeadLetters`: operator; the listing is audited (dead letters hold business
    /// data).
    fn list_dead_letters(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::ListDeadLettersRequest,
    ) -> Result<proto::ListDeadLettersResponse> {
        let c = Call { who, peer, action: "dlq-list", target: topic::DLQ, order_ref: String::new(), note: &r.matching };
        if let Err(e) = who.require(Role::Operator, "list dead letters") {
            return self.refuse_at_edge(&c, e);
        }
        let limit = match r.limit as usize {
            0 => MAX_DEAD_LETTERS,
            n => n.min(MAX_DEAD_LETTERS),
        };
        let all: Vec<_> = crate::dead_letters::list(self.log.as_ref())?
            .into_iter()
            .filter(|d| r.matching.is_empty() || d.reason.contains(&r.matching))
            .collect();
        let total = all.len() as u64;
        let dead_letters = all
            .into_iter()
            .take(limit)
            .map(|d| proto::DeadLetter {
                partition: d.partition,
                offset: d.offset,
                kind: d.kind,
                reason: d.reason,
                source_topic: d.source_topic,
                caller: d.caller.unwrap_or_default(),
                key: d.record.key.clone(),
                value: d.record.value.clone(),
                headers: d
                    .record
                    .headers
                    .iter()
                    .map(|h| proto::RecordHeader { key: h.key.clone(), value: h.value.clone() })
                    .collect(),
                timestamp_ms: d.record.timestamp_ms,
            })
            .collect();
        self.record_workbench_edge(&c, "listed", &format!("{total} dead letters"))?;
        Ok(proto::ListDeadLettersResponse { dead_letters, total })
    }

    /// `ReplayDeadLetters`: operator, audited with the count.
    fn replay_dead_letters(
        &self,
        who: &Principal,
        peer: &str,
        r: &proto::ReplayDeadLettersRequest,
    ) -> Result<proto::ReplayDeadLettersResponse> {
        let note = if r.note.is_empty() { r.matching.as_str() } else { r.note.as_str() };
        let c = Call { who, peer, action: "dlq-replay", target: topic::DLQ, order_ref: String::new(), note };
        if let Err(e) = who.require(Role::Operator, "replay dead letters") {
            return self.refuse_at_edge(&c, e);
        }
        let matching = (!r.matching.is_empty()).then_some(r.matching.as_str());
        let n = crate::dead_letters::replay(self.log.as_ref(), matching)?;
        let detail = match matching {
            Some(m) => format!("{n} dead letters replayed (reason containing {m:?})"),
            None => format!("{n} dead letters replayed"),
        };
        self.record_workbench_edge(&c, "replayed", &detail)?;
        tracing::info!(waybill.actor = %who.identity, replayed = n, "dead letters replayed through the control plane");
        Ok(proto::ReplayDeadLettersResponse { replayed: n as u64 })
    }
}
