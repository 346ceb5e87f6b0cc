//! The bookkeeping every saga keeps the same way: which journal events it has applied,
//! which inputs caused them, its open exceptions, and whether it finished.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use waybill_domain::{ExceptionCategory, JournalBody, JournalEvent, SourceRef, Timestamp};

/// Common state of a saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaBook {
    /// Sequence number of the last applied journal event.
    pub seq: i64,
    /// Open exceptions: id → category.
    pub open_exceptions: BTreeMap<String, ExceptionCategory>,
    /// What each open exception is about (the record a retry re-issues the command for).
    /// Absent in states stored before it was kept; the journal fills it on a rebuild.
    #[serde(default)]
    pub subjects: BTreeMap<String, SourceRef>,
    /// Who works each open exception an operator assigned: id → owner. Absent in states
    /// stored before assignments existed; the journal fills it on a rebuild.
    #[serde(default)]
    pub owners: BTreeMap<String, String>,
    /// Exceptions raised so far (numbers new exception ids).
    pub exceptions_raised: u32,
    /// Inbound event ids that produced journal events.
    pub seen: BTreeSet<String>,
    /// When the saga finished.
    pub completed_at: Option<Timestamp>,
    /// When the saga last changed (decision time of its latest journal event): the
    /// watchdog counts a stall from here (see [`crate::watch`]).
    #[serde(default)]
    pub last_at: Option<Timestamp>,
}

impl SagaBook {
    /// Notes `event` and folds the parts every saga shares (exceptions, completion).
    /// Returns false for a copy already applied, which the caller must then ignore.
    pub fn fold(&mut self, event: &JournalEvent) -> bool {
        if event.meta.seq <= self.seq {
            return false;
        }
        self.seq = event.meta.seq;
        self.last_at = Some(event.meta.at);
        self.seen.insert(event.meta.caused_by.clone());
        match &event.body {
            JournalBody::ExceptionRaised(x) => {
                self.exceptions_raised += 1;
                self.open_exceptions.insert(x.exception_id.clone(), x.category);
                self.subjects.insert(x.exception_id.clone(), x.subject.clone());
            }
            JournalBody::ExceptionResolved(x) => {
                self.open_exceptions.remove(&x.exception_id);
                self.subjects.remove(&x.exception_id);
                self.owners.remove(&x.exception_id);
            }
            JournalBody::ExceptionAssigned(x) if self.open_exceptions.contains_key(&x.exception_id) => {
                self.owners.insert(x.exception_id.clone(), x.owner.clone());
            }
            JournalBody::Completed(_) => self.completed_at = Some(event.meta.at),
            _ => {}
        }
        true
    }

    /// True once the saga has finished.
    pub fn is_finished(&self) -> bool {
        self.completed_at.is_some()
    }

    /// Ids of the open exceptions of `category`.
    pub fn open_of(&self, category: ExceptionCategory) -> impl Iterator<Item = &String> {
        self.open_exceptions.iter().filter(move |(_, c)| **c == category).map(|(id, _)| id)
    }
}

/// Why an operator's action on an exception cannot be carried out: the exception is not
/// open in this saga.
pub fn not_open(book: &SagaBook, exception_id: &str) -> String {
    // Ids are `<saga id>/<category>/<n>`, numbered from 1 in the order they were raised.
    let n = exception_id.rsplit('/').next().and_then(|n| n.parse::<u32>().ok());
    match n {
        Some(n) if n >= 1 && n <= book.exceptions_raised => {
            format!("exception {exception_id} is already resolved; nothing to do (see `waybill exceptions list --all`)")
        }
        _ => format!("exception {exception_id} was never raised; check the id with `waybill exceptions list`"),
    }
}

/// The saga id an exception id belongs to: `o2f:SO0042/pick-overdue/1` → `o2f:SO0042`.
pub fn saga_of_exception(exception_id: &str) -> Option<&str> {
    let mut parts = exception_id.rsplitn(3, '/');
    let (_n, _category, saga) = (parts.next()?, parts.next()?, parts.next()?);
    Some(saga).filter(|s| s.contains(':'))
}
