//! Held postings and the rules every approval decision passes (DESIGN.md invariant 6):
//! the expected version must be current, the identity that requested or last changed a
//! posting cannot approve it (four-eyes), and an approver's role must allow the amount.
//! The control plane checks the same rules for a quick answer; the saga's check is the
//! one that counts, because it runs in order with everything else on the partition.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use waybill_domain::event::PostingDecision;
use waybill_domain::journal::{ControlRefusal, DocumentKind, PostingHeld, PostingOutcome};
use waybill_domain::{Money, Timestamp};

use crate::policy::PostingPolicy;

/// A held posting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    /// `inv:<shipment>` or `cn:<receipt>`.
    pub posting_id: String,
    /// Invoice or credit note.
    pub document: DocumentKind,
    /// Amount, minor units.
    pub amount: Money,
    /// Version; every decision increments it.
    pub version: i64,
    /// Why it was held.
    pub reasons: Vec<String>,
    /// Who requested it.
    pub requested_by: String,
    /// Everyone who requested or changed it (none of them may approve).
    pub touched_by: BTreeSet<String>,
    /// When the approval SLA runs out.
    pub sla_due_at: Timestamp,
    /// The SLA escalation was raised.
    pub escalated: bool,
    /// Approved (`Some(true)`) or rejected (`Some(false)`).
    pub approved: Option<bool>,
    /// Who decided.
    pub decided_by: Option<String>,
}

impl Posting {
    /// A posting as held.
    pub fn held(h: &PostingHeld) -> Self {
        Posting {
            posting_id: h.posting_id.clone(),
            document: h.document,
            amount: h.amount,
            version: h.version,
            reasons: h.reasons.clone(),
            requested_by: h.requested_by.clone(),
            touched_by: BTreeSet::from([h.requested_by.clone()]),
            sla_due_at: h.sla_due_at,
            escalated: false,
            approved: None,
            decided_by: None,
        }
    }

    /// Applies an approval.
    pub fn approve(&mut self, o: &PostingOutcome) {
        self.version = o.version;
        self.approved = Some(true);
        self.decided_by = Some(o.actor.clone());
    }

    /// Applies a rejection.
    pub fn reject(&mut self, o: &PostingOutcome) {
        self.version = o.version;
        self.approved = Some(false);
        self.decided_by = Some(o.actor.clone());
    }
}

/// Why a decision was refused: the control plane maps it to a status code, the saga
/// journals the refusal's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The decision was made on another version of the posting.
    StaleVersion,
    /// The role may not decide held postings at all.
    RoleNotAllowed,
    /// The approver requested or changed the posting (four-eyes).
    FourEyes,
    /// The amount is above the approver's limit.
    AboveLimit,
}

/// The outcome of checking a decision against a posting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: record this outcome.
    Accept(PostingOutcome),
    /// Invalid: record the refusal (audited), change nothing.
    Refuse(RefusalKind, ControlRefusal),
    /// The posting was decided before: nothing to do (approve twice = one posting).
    AlreadyDecided,
}

/// The lowest role whose approval limit covers `amount`, if any (for "ask a …").
pub fn role_that_may_approve(policy: &PostingPolicy, amount: Money) -> Option<&str> {
    const ORDER: [&str; 3] = ["approver", "senior-approver", "admin"];
    policy
        .approval_limits
        .iter()
        .filter(|(_, l)| l.0 >= amount.0)
        .min_by_key(|(r, l)| (l.0, ORDER.iter().position(|o| o == r).unwrap_or(ORDER.len())))
        .map(|(r, _)| r.as_str())
}

/// Checks an approve (`approve = true`) or reject decision. The saga runs it on the
/// posting in its state (the check that counts, in order with everything else on the
/// partition); the control plane runs the same function on the posting as the read
/// models show it, for a quick, clear answer.
pub fn check(posting: &Posting, d: &PostingDecision, policy: &PostingPolicy, approve: bool) -> Verdict {
    let action = if approve { "approve" } else { "reject" };
    let refuse = |kind: RefusalKind, reason: String| {
        Verdict::Refuse(
            kind,
            ControlRefusal {
                posting_id: posting.posting_id.clone(),
                action: action.to_string(),
                actor: d.actor.clone(),
                reason,
            },
        )
    };
    if posting.approved.is_some() {
        return Verdict::AlreadyDecided;
    }
    if d.expected_version != posting.version {
        return refuse(
            RefusalKind::StaleVersion,
            format!(
                "posting {} is at version {}, the decision was made on version {}; reload it and decide again",
                posting.posting_id, posting.version, d.expected_version
            ),
        );
    }
    let Some(limit) = policy.approval_limits.get(&d.role) else {
        let roles: Vec<&str> = policy.approval_limits.keys().map(String::as_str).collect();
        return refuse(
            RefusalKind::RoleNotAllowed,
            format!(
                "role {:?} may not decide held postings under the posting policy (approval_limits lists {}); ask an approver",
                d.role,
                roles.join(", ")
            ),
        );
    };
    if approve {
        if posting.touched_by.contains(&d.actor) {
            return refuse(
                RefusalKind::FourEyes,
                format!(
                    "{} requested or changed posting {} and so cannot approve it (four-eyes); ask another approver",
                    d.actor, posting.posting_id
                ),
            );
        }
        if posting.amount.0 > limit.0 {
            let who = role_that_may_approve(policy, posting.amount).unwrap_or("no role");
            return refuse(
                RefusalKind::AboveLimit,
                format!(
                    "posting {} is {} but role {} may approve up to {}; ask a {who}",
                    posting.posting_id, posting.amount, d.role, limit
                ),
            );
        }
    }
    Verdict::Accept(PostingOutcome {
        posting_id: posting.posting_id.clone(),
        version: posting.version + 1,
        actor: d.actor.clone(),
        role: d.role.clone(),
        reason: d.reason.clone(),
    })
}

/// Who requested a posting that `meta`'s event caused: the acting person or service the
/// event names (authenticated at ingestion), else the source record (`wms:SHP-1`), which
/// no approver's identity can match.
pub fn requester(meta: &waybill_domain::EventMeta) -> String {
    meta.actor.clone().filter(|a| !a.is_empty()).unwrap_or_else(|| meta.source.to_string())
}
