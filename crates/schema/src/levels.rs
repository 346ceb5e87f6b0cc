//! Compatibility levels per subject, from `schemas/compatibility.txt` (embedded at
//! compile time): Confluent's levels and names, so the registry API can serve them and a
//! release manager reads the same words as in a Confluent registry.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use crate::error::{Error, Result};

/// The level file compiled into this build.
pub const EMBEDDED_TEXT: &str = include_str!("../../../schemas/compatibility.txt");

/// A Confluent compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// No check.
    None,
    /// The new version reads data the previous version wrote.
    Backward,
    /// The new version reads data every earlier version wrote.
    BackwardTransitive,
    /// The previous version reads data the new version writes.
    Forward,
    /// Every earlier version reads data the new version writes.
    ForwardTransitive,
    /// Backward and forward, against the previous version.
    Full,
    /// Backward and forward, against every earlier version.
    FullTransitive,
}

impl Level {
    /// Every level, in Confluent's documentation order.
    pub const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    /// Confluent's name, e.g. `BACKWARD_TRANSITIVE`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Whether a new version must read what earlier ones wrote.
    pub const fn backward(self) -> bool {
        matches!(self, Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive)
    }

    /// Whether earlier versions must read what a new one writes.
    pub const fn forward(self) -> bool {
        matches!(self, Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive)
    }

    /// Whether a new version is checked against every earlier one (else the previous).
    pub const fn transitive(self) -> bool {
        matches!(self, Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Level, String> {
        Level::ALL.into_iter().find(|l| l.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            format!("{s:?} is not a compatibility level; use one of {}", Level::ALL.map(Level::as_str).join(", "))
        })
    }
}

/// The level of every subject: a default, namespace patterns (`waybill.command.*`) and
/// single subjects; the most specific wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    default: Level,
    namespaces: BTreeMap<String, Level>,
    subjects: BTreeMap<String, Level>,
}

static EMBEDDED: LazyLock<Levels> = LazyLock::new(|| {
    Levels::parse(EMBEDDED_TEXT)
        .unwrap_or_else(|e| panic!("schemas/compatibility.txt compiled into waybill-schema is invalid: {e}"))
});

impl Levels {
    /// The levels compiled into this build from `schemas/compatibility.txt`.
    ///
    /// # Panics
    /// If the file is invalid; the crate's tests load it.
    pub fn embedded() -> &'static Levels {
        &EMBEDDED
    }

    /// Parses the level file's text (see `schemas/compatibility.txt` for the format).
    pub fn parse(text: &str) -> Result<Levels> {
        let mut default = None;
        let mut namespaces = BTreeMap::new();
        let mut subjects = BTreeMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| {
                Error::Catalog(format!(
                    "schemas/compatibility.txt line {}: {why}: {raw:?}; expected `default <LEVEL>`, `<subject> <LEVEL>` or `<namespace>.* <LEVEL>`",
                    n + 1
                ))
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [what, level] = parts[..] else { return Err(bad("wrong number of words".into())) };
            let level: Level = level.parse().map_err(bad)?;
            let previous = if what == "default" {
                default.replace(level)
            } else if let Some(ns) = what.strip_suffix(".*") {
                namespaces.insert(ns.to_string(), level)
            } else {
                subjects.insert(what.to_string(), level)
            };
            if previous.is_some() {
                return Err(bad(format!("{what} is given a level twice")));
            }
        }
        Ok(Levels { default: default.unwrap_or(Level::BackwardTransitive), namespaces, subjects })
    }

    /// The default level (`GET /config`).
    pub fn default_level(&self) -> Level {
        self.default
    }

    /// The level of `subject`.
    pub fn of(&self, subject: &str) -> Level {
        if let Some(l) = self.subjects.get(subject) {
            return *l;
        }
        let mut ns = subject;
        while let Some((parent, _)) = ns.rsplit_once('.') {
            if let Some(l) = self.namespaces.get(parent) {
                return *l;
            }
            ns = parent;
        }
        self.default
    }

    /// Subjects named on their own line (to check that each exists).
    pub fn named_subjects(&self) -> impl Iterator<Item = &str> {
        self.subjects.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_line_wins() {
        let l = Levels::parse("default BACKWARD\na.b.* FULL\na.b.C NONE\n").unwrap();
        assert_eq!(l.of("a.b.C"), Level::None);
        assert_eq!(l.of("a.b.D"), Level::Full);
        assert_eq!(l.of("a.x.D"), Level::Backward);
        assert_eq!(Levels::parse("").unwrap().default_level(), Level::BackwardTransitive);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = Levels::parse("default SIDEWAYS\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("SIDEWAYS") && err.contains("FULL_TRANSITIVE"), "{err}");
        let err = Levels::parse("a.B FULL\na.B NONE\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("twice"), "{err}");
    }

    #[test]
    fn embedded_levels_make_commands_and_control_events_full() {
        let l = Levels::embedded();
        assert_eq!(l.default_level(), Level::BackwardTransitive);
        assert_eq!(l.of("waybill.command.PostInvoice"), Level::Full);
        assert_eq!(l.of("waybill.event.PostingApproved"), Level::Full);
        assert_eq!(l.of("waybill.event.OrderReleased"), Level::BackwardTransitive);
        assert_eq!(l.of("waybill.journal.Checkpoint"), Level::BackwardTransitive);
    }
}
