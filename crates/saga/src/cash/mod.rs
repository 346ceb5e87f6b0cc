//! Cash application: one saga per bank statement (`cash:<statement>`), keyed
//! `stmt:<statement>`.
//!
//! A statement arrives with the receivables open at its import (`StatementReceived`,
//! from the bank's importer): the input holds everything the decision reads, so deciding
//! it again decides the same. Each line is applied by the matcher of `waybill-bank`
//! (by reference, then customer and amount, then a combination of the customer's
//! invoices, then within tolerance) and sent to finance as one journal entry
//! (`stmt-line:<statement>#<line>`), a bank or gateway charge as an expense entry; a line
//! nobody can apply safely raises `UNMATCHED_PAYMENT` with the reason and the candidate
//! invoices, for someone to apply by hand. An operator applies such a line through the
//! control plane ([`by_hand`]: the invoices it pays and the customer whose account keeps
//! the rest, checked against the statement), and the saga sends its one journal entry. The
//! same statement imported again changes nothing; the same statement id with another file
//! is refused. The saga completes when every line is posted or handled by hand.

pub mod by_hand;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use waybill_bank::matching::{self, Outcome, Tolerance};
use waybill_bank::record;
use waybill_domain::cash::{StatementEntry, StatementLinePosted, StatementReceived};
use waybill_domain::event::{CommandFailed, EventBody};
use waybill_domain::journal::{Deadline, Empty, ExceptionResolved, Refusal};
use waybill_domain::{
    CommandBody, ExceptionCategory, InboundEvent, JournalBody, JournalEvent, Money, SagaKind, SourceRef, System,
    Timestamp,
};

use crate::book::{self, SagaBook};
use crate::decision::{Cause, DeadLetterKind, Decision, Outbound};
use crate::flow::{Env, Flow, Step, commit, reject};
use crate::outcome;
use crate::saga::{Lifecycle, Saga};
use crate::watch::{self, Described, Wait};

/// Where a statement line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineStatus {
    /// Its journal entry was sent to finance.
    Sent,
    /// Finance posted it.
    Posted,
    /// Finance refused it: an operator retries it once fixed.
    Refused,
    /// Nobody could apply it safely: `UNMATCHED_PAYMENT` is open.
    Queued,
    /// Booked by hand: its exception (unmatched, or refused by finance) was resolved.
    Handled,
}

/// One statement line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Its journal entry, when it was applied.
    pub entry: Option<StatementEntry>,
    /// Status.
    pub status: LineStatus,
    /// Finance's entry number, once posted.
    pub entry_number: Option<String>,
}

/// State of one cash-application saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CashApplication {
    /// What every saga keeps: applied seq, causes, open exceptions, completion.
    #[serde(flatten)]
    pub book: SagaBook,
    /// The statement as imported, with the receivables open then.
    pub statement: Option<Box<StatementReceived>>,
    /// Lines, by line id.
    pub lines: BTreeMap<String, Line>,
    /// When the lines are applied, while the statement waits for a scheduled window
    /// (`[policy.cash] schedule`); `None` once applied, or when applied on import.
    #[serde(default)]
    pub window_at: Option<Timestamp>,
}

/// The idempotency key of a line's journal entry: one per statement line, ever.
pub fn entry_key(statement_key: &str, line_id: &str) -> String {
    format!("stmt-line:{statement_key}#{line_id}")
}

impl CashApplication {
    /// Saga kind.
    pub const KIND: SagaKind = SagaKind::CashApplication;

    /// Saga id of a statement's saga.
    pub fn saga_id(statement_key: &str) -> String {
        Self::KIND.saga_id(statement_key)
    }

    fn key(&self) -> &str {
        self.statement.as_ref().map_or("", |s| s.statement_key.as_str())
    }

    fn id(&self) -> String {
        Self::saga_id(self.key())
    }

    /// Folds one journal event (copies already applied are ignored).
    pub fn apply(&mut self, event: &JournalEvent) {
        // The subject of an exception being resolved, before the book forgets it.
        let resolved = match &event.body {
            JournalBody::ExceptionResolved(r) => self.book.subjects.get(&r.exception_id).cloned(),
            _ => None,
        };
        if !self.book.fold(event) {
            return;
        }
        match &event.body {
            JournalBody::StatementOpened(s) => self.statement = Some(s.clone()),
            JournalBody::ApplicationScheduled(w) => self.window_at = Some(w.due_at),
            // The window's decision applies every line (or completes an empty statement).
            JournalBody::Completed(_) => self.window_at = None,
            JournalBody::LineApplied(e) => {
                self.window_at = None;
                let line = Line { entry: Some(e.clone()), status: LineStatus::Sent, entry_number: None };
                self.lines.insert(e.line_id.clone(), line);
            }
            // The window's statement could not be applied: someone is told, the window is done.
            JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::BadInput => self.window_at = None,
            JournalBody::ExceptionRaised(x) if x.category == ExceptionCategory::UnmatchedPayment => {
                self.window_at = None;
                let line = Line { entry: None, status: LineStatus::Queued, entry_number: None };
                self.lines.insert(x.subject.id.clone(), line);
            }
            // An unmatched line, or one finance refused, resolved by hand is handled: the
            // operator booked it in finance themselves.
            JournalBody::ExceptionResolved(_) => {
                let line = resolved.and_then(|s| self.lines.get_mut(&s.id));
                if let Some(l) = line.filter(|l| matches!(l.status, LineStatus::Queued | LineStatus::Refused)) {
                    l.status = LineStatus::Handled;
                }
            }
            JournalBody::LineRecorded(p) => {
                if let Some(l) = self.lines.get_mut(&p.line_id) {
                    l.status = LineStatus::Posted;
                    l.entry_number = Some(p.entry_number.clone());
                }
            }
            JournalBody::FinanceRefused(r) => {
                let line = r.business_key.as_ref().and_then(|k| self.lines.get_mut(k));
                if let Some(l) = line.filter(|l| l.status == LineStatus::Sent) {
                    l.status = LineStatus::Refused;
                }
            }
            JournalBody::ExceptionRetried(x) => {
                let key = self.key().to_string();
                if let Some(l) = self
                    .lines
                    .iter_mut()
                    .find(|(id, l)| l.status == LineStatus::Refused && entry_key(&key, id) == x.idempotency_key)
                    .map(|(_, l)| l)
                {
                    l.status = LineStatus::Sent;
                }
            }
            _ => {}
        }
    }

    fn sent(&self) -> Vec<&str> {
        self.lines.iter().filter(|(_, l)| l.status == LineStatus::Sent).map(|(id, _)| id.as_str()).collect()
    }

    fn is_done(&self) -> bool {
        self.statement.is_some()
            && self.window_at.is_none()
            && self.lines.values().all(|l| matches!(l.status, LineStatus::Posted | LineStatus::Handled))
    }
}

pub(crate) fn post(entry: &StatementEntry) -> Outbound {
    Outbound {
        target: System::Finance,
        idempotency_key: entry_key(&entry.statement_key, &entry.line_id),
        body: CommandBody::PostStatementLine(entry.clone()),
    }
}

/// Rebuilds the journal entry this saga sent under `key`, exactly as first sent.
pub fn reissue(s: &CashApplication, key: &str) -> Option<Result<Outbound, String>> {
    s.lines
        .values()
        .filter_map(|l| l.entry.as_ref())
        .find(|e| entry_key(&e.statement_key, &e.line_id) == key)
        .map(|e| Ok(post(e)))
}

/// What an operator's retry re-issues: the journal entry finance refused, as first sent.
/// An unmatched line is applied by hand, not retried.
pub fn retry(s: &CashApplication, exception_id: &str) -> Result<Outbound, String> {
    let Some(category) = s.book.open_exceptions.get(exception_id) else {
        return Err(book::not_open(&s.book, exception_id));
    };
    let subject = s.book.subjects.get(exception_id).map(|x| x.id.clone()).unwrap_or_default();
    match category {
        ExceptionCategory::PostingRejected | ExceptionCategory::DeliveryFailed => {
            let line = s.lines.get(&subject).and_then(|l| l.entry.as_ref());
            let key = line.map(|e| entry_key(&e.statement_key, &e.line_id)).unwrap_or(subject.clone());
            reissue(s, &key).unwrap_or_else(|| {
                Err(format!("exception {exception_id} names {subject:?}, whose entry this saga never sent; resolve it with a note"))
            })
        }
        ExceptionCategory::UnmatchedPayment => Err(format!(
            "exception {exception_id} has no entry to re-issue: apply line {subject} by hand (`waybill exceptions assign-line {exception_id} --invoice NUMBER=AMOUNT --note ...`), or book it in finance and resolve this exception with a note saying how"
        )),
        other => Err(format!(
            "exception {exception_id} ({other}) has no command to re-issue; fix the cause and resolve it with a note"
        )),
    }
}

impl Saga for CashApplication {
    fn kind(&self) -> SagaKind {
        Self::KIND
    }
    fn book(&self) -> &SagaBook {
        &self.book
    }
    fn apply(&mut self, event: &JournalEvent) {
        CashApplication::apply(self, event)
    }
    fn is_started(&self) -> bool {
        self.statement.is_some()
    }
    fn status(&self) -> String {
        match (self.book.is_finished(), self.window_at) {
            (true, _) => "completed".to_string(),
            (false, Some(at)) => format!("waiting for the window at {}", at.civil()),
            (false, None) => "applying".to_string(),
        }
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        self.window_at
    }
    /// The scheduled window: the lines of a statement imported before it are applied now,
    /// under the policy in force now.
    fn on_timer(&self, env: &Env<'_>, now: Timestamp) -> Decision {
        match (&self.statement, self.window_at) {
            (Some(r), Some(at)) if now >= at => apply_lines(self, r, env),
            _ => Decision::noop(),
        }
    }
    fn watchdog(&self) -> Option<Wait> {
        let since = watch::unwatched(&self.book, None)?;
        (!self.sent().is_empty()).then(|| watch::wait(since, watch::Step::FinanceAnswer))
    }
    fn fire_watchdog(&self, d: &mut Decision, saga_id: &str, now: Timestamp) {
        if self.watchdog().is_some_and(|w| now >= w.due_at) {
            let sent = self.sent();
            let statement = self.statement.as_ref().map_or(String::new(), |s| s.statement_id.clone());
            let x = Described {
                saga: format!("bank statement {statement}"),
                waiting_for: format!("finance's answer to the journal entries of line(s) {}", sent.join(", ")),
                chase: "chase finance",
                subject: SourceRef::new(System::Finance, sent.first().map_or(statement, |l| l.to_string())),
            };
            watch::raise(d, saga_id, &self.book, x, now);
        }
    }
    fn retry(&self, exception_id: &str) -> Result<Outbound, String> {
        retry(self, exception_id)
    }
    fn reissue(&self, key: &str) -> Option<Result<Outbound, String>> {
        reissue(self, key)
    }
    fn lifecycle(&self, body: &JournalBody) -> Option<Lifecycle> {
        crate::saga::lifecycle(body, matches!(body, JournalBody::StatementOpened(_)), false)
    }
    /// Completes the statement once every line is posted or handled by hand, whatever
    /// decision got it there (an answer from finance, an operator's resolution).
    fn settle(&self, _key: &str, decision: &mut Decision) {
        outcome::close_answered(decision, &self.book, |j| match j {
            JournalBody::LineRecorded(p) => Some(entry_key(&p.statement_key, &p.line_id)),
            _ => None,
        });
        if self.book.is_finished() || decision.journal.iter().any(|j| matches!(j, JournalBody::Completed(_))) {
            return;
        }
        if crate::saga::folded(self, &self.id(), decision, Timestamp(0)).is_done() {
            decision.record(JournalBody::Completed(Empty {}));
        }
    }
}

/// The flow of one bank statement: its cash-application saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementFlow {
    /// The correlation key, `stmt:<statement>`.
    pub key: String,
    /// The saga.
    pub cash: CashApplication,
}

/// The one saga of a statement's flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement;

impl StatementFlow {
    fn statement_key(&self) -> &str {
        self.key.strip_prefix(waybill_domain::cash::KEY_PREFIX).unwrap_or(&self.key)
    }
}

impl Flow for StatementFlow {
    type Target = Statement;

    const FAMILY: &'static str = "bank statement";

    fn owns(key: &str) -> bool {
        key.starts_with(waybill_domain::cash::KEY_PREFIX)
    }
    fn create(key: &str) -> Self {
        StatementFlow { key: key.to_string(), cash: CashApplication::default() }
    }
    fn key(&self) -> &str {
        &self.key
    }

    fn entity(&self) -> Option<&str> {
        self.cash.statement.as_ref().and_then(|s| s.entity.as_deref())
    }
    fn targets(&self) -> Vec<Statement> {
        vec![Statement]
    }
    fn saga_id(&self, _target: &Statement) -> String {
        CashApplication::saga_id(self.statement_key())
    }
    fn saga(&self, _target: &Statement) -> Option<&dyn Saga> {
        Some(&self.cash)
    }
    fn saga_mut(&mut self, _target: &Statement) -> &mut dyn Saga {
        &mut self.cash
    }
    fn target_of(&self, saga_id: &str) -> Option<Statement> {
        (saga_id == CashApplication::saga_id(self.statement_key())).then_some(Statement)
    }
    fn target_of_event(&self, event: &JournalEvent) -> Option<Statement> {
        (event.meta.kind == SagaKind::CashApplication).then_some(Statement)
    }
    fn home(&self) -> Statement {
        Statement
    }
    fn takes_actions(&self) -> bool {
        self.cash.statement.is_some()
    }
    fn not_begun(&self) -> Option<String> {
        self.cash
            .statement
            .is_none()
            .then(|| format!("bank statement {:?}, which Waybill has not seen imported", self.statement_key()))
    }
    fn route(&mut self, event: &InboundEvent, env: &Env<'_>, cause: &Cause, out: &mut Step) {
        let d = decide(&self.cash, self.statement_key(), event, env, cause.at);
        commit(self, &Statement, d, cause, out);
    }
}

/// The matcher's tolerance from the policy.
fn tolerance(env: &Env<'_>) -> Tolerance {
    let p = &env.policy.cash;
    Tolerance { absolute: p.write_off_up_to, basis_points: p.write_off_basis_points }
}

fn decide(s: &CashApplication, statement_key: &str, event: &InboundEvent, env: &Env<'_>, now: Timestamp) -> Decision {
    if s.book.seen.contains(&event.meta.event_id) {
        return Decision::noop();
    }
    // An operator's action: refused (and audited) as `ControlRefused`, never dead-lettered.
    if let EventBody::StatementLineAssignRequested(a) = &event.body {
        return by_hand::decide(s, a);
    }
    let named = match &event.body {
        EventBody::StatementReceived(r) => Some(r.statement_key.as_str()),
        EventBody::StatementLinePosted(p) => Some(p.statement_key.as_str()),
        EventBody::StatementLineRejected(r) => Some(r.statement_key.as_str()),
        _ => None,
    };
    if let Some(named) = named.filter(|n| *n != statement_key) {
        return reject(format!(
            "{} names statement {named:?} but is keyed {:?}; key it stmt:{named}",
            event.body.name(),
            event.meta.correlation_key
        ));
    }
    if s.statement.is_none() && !matches!(event.body, EventBody::StatementReceived(_)) {
        return reject(format!(
            "{} for bank statement {statement_key:?}, which Waybill has not seen imported; import the statement first, then replay this record",
            event.body.name()
        ));
    }
    match &event.body {
        EventBody::StatementReceived(r) => on_statement(s, r, env, now),
        EventBody::StatementLinePosted(p) => on_posted(s, p),
        EventBody::StatementLineRejected(r) => on_refused(s, &r.line_id, &r.reason),
        EventBody::CommandFailed(f) => on_command_failed(s, f),
        other => reject(format!(
            "{} keyed {:?}, which is a bank statement's key; only cash-application events belong to it",
            other.name(),
            event.meta.correlation_key
        )),
    }
}

/// A statement: applied line by line, once. The same statement again (same checksum)
/// is a redelivery; another file under the same statement id is refused.
fn on_statement(s: &CashApplication, r: &StatementReceived, env: &Env<'_>, now: Timestamp) -> Decision {
    // The entity whose account this is (one rule, `Entities::of_statement`); `step` has
    // scoped `env` to it, so its write-off tolerance applies.
    if let Err(why) = env.entities.of_statement(r.entity.as_deref(), &r.account) {
        return reject(format!("statement {}: {why}", r.statement_id));
    }
    if let Some(known) = &s.statement {
        if known.checksum == r.checksum {
            return Decision::noop();
        }
        return reject(format!(
            "statement {} of account {} was imported before from another file (checksum {} then, {} now); a corrected statement needs its own id — ask the bank",
            r.statement_id, r.account, known.checksum, r.checksum
        ));
    }
    let mut ids = BTreeSet::new();
    if let Some(dup) = r.lines.iter().find(|l| !ids.insert(l.line_id.as_str())) {
        return reject(format!(
            "statement {} has line {} twice; each line needs its own id (one journal entry per line)",
            r.statement_id, dup.line_id
        ));
    }
    if let Err(e) = matching::match_lines(&record::lines(r), &record::open_invoices(r), &tolerance(env)) {
        return reject(format!("statement {}: the open items cannot be matched against: {e}", r.statement_id));
    }
    let opened = StatementReceived { entity: env.entity_code(), ..r.clone() };
    // In scheduled windows the lines wait for the first window after the import, which
    // the logged time of the import decides (a replay computes the same window).
    let window = env.policy.cash.applied_at(now);
    if window > now {
        let mut d = Decision::noop();
        d.record(JournalBody::StatementOpened(Box::new(opened)));
        d.record(JournalBody::ApplicationScheduled(Deadline { due_at: window }));
        return d;
    }
    let mut d = apply_lines(s, &opened, env);
    d.journal.insert(0, JournalBody::StatementOpened(Box::new(opened)));
    d
}

/// Applies every line of statement `r`: matched lines and charges are sent to finance,
/// the others queued as `UNMATCHED_PAYMENT`; an empty statement is complete.
fn apply_lines(s: &CashApplication, r: &StatementReceived, env: &Env<'_>) -> Decision {
    let mut d = Decision::noop();
    let matches = match matching::match_lines(&record::lines(r), &record::open_invoices(r), &tolerance(env)) {
        Ok(m) => m,
        // Checked on import; the open items are part of the imported record.
        Err(e) => {
            d.raise(
                &CashApplication::saga_id(&r.statement_key),
                s.book.exceptions_raised,
                ExceptionCategory::BadInput,
                SourceRef::new(System::Bank, r.statement_id.clone()),
                format!("statement {}: the open items cannot be matched against: {e}; book its lines in finance and resolve this exception with a note", r.statement_id),
            );
            return d;
        }
    };
    if r.lines.is_empty() && s.window_at.is_some() {
        d.record(JournalBody::Completed(Empty {}));
    }
    for (line, m) in r.lines.iter().zip(&matches) {
        let entry = match &m.outcome {
            Outcome::Matched(x) => record::matched_entry(&r.statement_key, line, x),
            Outcome::Charge { amount } => record::charge_entry(&r.statement_key, line, *amount),
            Outcome::Queued(q) => {
                let payer = line.counterparty.as_deref().map(|p| format!(" from {p}")).unwrap_or_default();
                let candidates = if q.candidates.is_empty() {
                    String::new()
                } else {
                    format!(" (candidates: {})", q.candidates.join(", "))
                };
                d.raise(
                    &CashApplication::saga_id(&r.statement_key),
                    s.book.exceptions_raised,
                    ExceptionCategory::UnmatchedPayment,
                    SourceRef::new(System::Bank, line.line_id.clone()),
                    format!(
                        "statement {} line {}: {} {}{payer}: {}{candidates}; apply it by hand to the invoices it pays (`waybill exceptions assign-line`, or Apply on the workbench), or book it in finance and resolve this exception with a note saying how",
                        r.statement_id, line.line_id, line.amount, line.currency, q.reason
                    ),
                );
                continue;
            }
        };
        d.record(JournalBody::LineApplied(entry.clone()));
        let o = post(&entry);
        d.send(o.target, o.idempotency_key, o.body);
    }
    d
}

fn on_posted(s: &CashApplication, p: &StatementLinePosted) -> Decision {
    let mut d = Decision::noop();
    let Some(line) = s.lines.get(&p.line_id).filter(|l| l.entry.is_some()) else {
        return reject(format!(
            "finance posted line {} of statement {}, which Waybill never sent; check the line id",
            p.line_id, p.statement_key
        ));
    };
    if !matches!(line.status, LineStatus::Sent | LineStatus::Refused) {
        return d; // posted before: a redelivery
    }
    d.record(JournalBody::LineRecorded(p.clone()));
    let subject = SourceRef::new(System::Finance, p.line_id.clone());
    for id in s.book.open_of(ExceptionCategory::PostingRejected) {
        if s.book.subjects.get(id) == Some(&subject) {
            d.record(JournalBody::ExceptionResolved(ExceptionResolved {
                exception_id: id.clone(),
                resolution: format!("line {} posted as {} after a retry", p.line_id, p.entry_number),
            }));
        }
    }
    d
}

fn on_refused(s: &CashApplication, line_id: &str, reason: &str) -> Decision {
    let mut d = Decision::noop();
    let Some(line) = s.lines.get(line_id).filter(|l| l.entry.is_some()) else {
        return reject(format!("finance refused line {line_id} of statement {}, which Waybill never sent", s.key()));
    };
    if line.status != LineStatus::Sent {
        return d;
    }
    d.record(JournalBody::FinanceRefused(Refusal {
        reason: reason.to_string(),
        business_key: Some(line_id.to_string()),
    }));
    let amount = line.entry.as_ref().map_or(Money(0), |e| e.amount);
    d.raise(
        &s.id(),
        s.book.exceptions_raised,
        ExceptionCategory::PostingRejected,
        SourceRef::new(System::Finance, line_id.to_string()),
        format!(
            "finance refused the journal entry of statement line {line_id} ({amount}): {}; fix it in finance and retry the posting",
            reason.trim()
        ),
    );
    d
}

fn on_command_failed(s: &CashApplication, f: &CommandFailed) -> Decision {
    let Some(rebuilt) = reissue(s, &f.idempotency_key) else {
        return outcome::never_issued(f, s.key());
    };
    if let Err(why) = rebuilt.as_ref().map(|o| outcome::check_report(f, o)).unwrap_or(Ok(())) {
        return Decision::reject(DeadLetterKind::Rule, why);
    }
    let line = s.lines.iter().find(|(id, _)| entry_key(s.key(), id) == f.idempotency_key).map(|(id, _)| id.clone());
    match line {
        Some(id) => on_refused(s, &id, &f.reason),
        None => outcome::never_issued(f, s.key()),
    }
}
