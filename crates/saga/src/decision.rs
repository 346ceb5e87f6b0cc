//! What a saga decides for one input: journal events to record, commands to send, and
//! whether the input itself belongs in the dead-letter topic. Pure data.

use waybill_domain::journal::{ExceptionRaised, JournalMeta};
use waybill_domain::{
    Command, CommandBody, CommandMeta, ExceptionCategory, JournalBody, JournalEvent, SagaKind, SourceRef, System,
    Timestamp,
};

/// A command to send, before its common fields are filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Target system.
    pub target: System,
    /// Deterministic idempotency key derived from business keys.
    pub idempotency_key: String,
    /// The command.
    pub body: CommandBody,
}

/// Why an input goes to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The bytes could not be decoded.
    Decode,
    /// The schema id is not in the registry.
    UnknownSchema,
    /// The event decoded but breaks a business rule.
    Rule,
    /// A control event (approval, rejection, workbench action) anywhere but
    /// `waybill.control`, a business event on `waybill.control`, or a body whose claimed
    /// source is not the authenticated caller's system.
    Forbidden,
    /// A system sent an event type it is not the system of record for.
    Ownership,
}

impl DeadLetterKind {
    /// The kind of a record that did not decode: `unknown-schema` when its schema id is
    /// not in the registry, else `decode`.
    pub fn of_decode_error(e: &waybill_schema::Error) -> Self {
        if matches!(e, waybill_schema::Error::UnknownSchemaId { .. }) {
            DeadLetterKind::UnknownSchema
        } else {
            DeadLetterKind::Decode
        }
    }

    /// Header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Decode => "decode",
            DeadLetterKind::UnknownSchema => "unknown-schema",
            DeadLetterKind::Rule => "rule",
            DeadLetterKind::Forbidden => "forbidden",
            DeadLetterKind::Ownership => "ownership",
        }
    }
}

/// An input rejected to the dead-letter topic, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Kind.
    pub kind: DeadLetterKind,
    /// What is wrong and what to do.
    pub reason: String,
}

/// The outcome of deciding one input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Journal events, in order.
    pub journal: Vec<JournalBody>,
    /// Commands, in order.
    pub commands: Vec<Outbound>,
    /// Whether the input also goes to the dead-letter topic.
    pub dead_letter: Option<DeadLetter>,
}

impl Decision {
    /// Nothing to do (a duplicate, or an event with no effect in this state).
    pub fn noop() -> Self {
        Decision::default()
    }

    /// Reject the input to the dead-letter topic.
    pub fn reject(kind: DeadLetterKind, reason: impl Into<String>) -> Self {
        Decision { dead_letter: Some(DeadLetter { kind, reason: reason.into() }), ..Decision::default() }
    }

    /// True when the decision changes nothing.
    pub fn is_noop(&self) -> bool {
        self.journal.is_empty() && self.commands.is_empty() && self.dead_letter.is_none()
    }

    /// Records a journal event.
    pub fn record(&mut self, body: JournalBody) -> &mut Self {
        self.journal.push(body);
        self
    }

    /// Sends a command.
    pub fn send(&mut self, target: System, idempotency_key: impl Into<String>, body: CommandBody) -> &mut Self {
        self.commands.push(Outbound { target, idempotency_key: idempotency_key.into(), body });
        self
    }

    /// Raises an exception numbered after the saga's `raised_so_far` exceptions.
    pub fn raise(
        &mut self,
        saga_id: &str,
        raised_so_far: u32,
        category: ExceptionCategory,
        subject: SourceRef,
        message: impl Into<String>,
    ) -> &mut Self {
        let n = raised_so_far as usize
            + 1
            + self.journal.iter().filter(|j| matches!(j, JournalBody::ExceptionRaised(_))).count();
        self.journal.push(JournalBody::ExceptionRaised(ExceptionRaised {
            exception_id: format!("{saga_id}/{category}/{n}"),
            category,
            message: message.into(),
            subject,
            entity: None,
        }));
        self
    }
}

/// What caused a decision, for the records' common fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Inbound event id, or `timer:<name>@<due>` for timers.
    pub id: String,
    /// Where the input was read, if from a topic.
    pub input: Option<waybill_domain::journal::InputPosition>,
    /// Decision time.
    pub at: Timestamp,
}

/// Gives journal events their sequence numbers and commands their common fields.
/// `last_seq` is the saga's sequence number before this decision.
pub fn materialize(
    kind: SagaKind,
    saga_id: &str,
    correlation_key: &str,
    last_seq: i64,
    decision: &Decision,
    cause: &Cause,
) -> (Vec<JournalEvent>, Vec<Command>) {
    let journal = decision
        .journal
        .iter()
        .enumerate()
        .map(|(i, body)| JournalEvent {
            meta: JournalMeta {
                saga_id: saga_id.to_string(),
                kind,
                seq: last_seq + 1 + i as i64,
                correlation_key: correlation_key.to_string(),
                caused_by: cause.id.clone(),
                input: cause.input.clone(),
                at: cause.at,
            },
            body: body.clone(),
        })
        .collect();
    let commands = decision
        .commands
        .iter()
        .map(|o| Command {
            meta: CommandMeta {
                idempotency_key: o.idempotency_key.clone(),
                saga_id: saga_id.to_string(),
                correlation_key: correlation_key.to_string(),
                target: o.target,
                caused_by: cause.id.clone(),
                issued_at: cause.at,
            },
            body: o.body.clone(),
        })
        .collect();
    (journal, commands)
}
