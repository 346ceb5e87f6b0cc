//! `schemas/CHANGELOG.md`: one row per schema version — subject, version, id, why, who
//! approved it, the first release that reads it and the first that writes it. Embedded at
//! compile time; [`check`] says which versions lack a row (the schema tests fail on it,
//! naming the subject) and `waybill schemas check` shows the rows of what a deployment
//! adds.

use std::collections::BTreeMap;

use crate::registry::Registry;

/// The changelog compiled into this build.
pub const EMBEDDED_TEXT: &str = include_str!("../../../schemas/CHANGELOG.md");

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Subject: the record's full name.
    pub subject: String,
    /// Version.
    pub version: u32,
    /// Schema id.
    pub id: u32,
    /// Why the version exists.
    pub why: String,
    /// Who approved it.
    pub approved_by: String,
    /// First release that reads it.
    pub first_read: String,
    /// First release that writes it.
    pub first_written: String,
}

/// The columns, in order.
pub const COLUMNS: [&str; 7] =
    ["subject", "version", "id", "why", "approved by", "first release reading", "first release writing"];

/// Parses the table rows of the changelog (lines starting with `|` after the header);
/// every other line is prose. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<Entry>, Vec<String>> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first().is_some_and(|c| *c == "subject" || c.starts_with("---")) {
            continue;
        }
        let at = format!("schemas/CHANGELOG.md line {}", n + 1);
        let [subject, version, id, why, approved_by, first_read, first_written] = cells[..] else {
            problems.push(format!(
                "{at}: a row has {} cells; expected {} ({})",
                cells.len(),
                COLUMNS.len(),
                COLUMNS.join(" | ")
            ));
            continue;
        };
        let (Ok(version), Ok(id)) = (version.parse::<u32>(), id.parse::<u32>()) else {
            problems.push(format!("{at}: {subject}: version {version:?} and id {id:?} must be numbers"));
            continue;
        };
        for (column, value) in [
            ("why", why),
            ("approved by", approved_by),
            ("first release reading", first_read),
            ("first release writing", first_written),
        ] {
            if value.is_empty() {
                problems.push(format!("{at}: {subject} v{version}: the `{column}` cell is empty; say {}", match column {
                    "why" => "what the version changes and what needs it",
                    "approved by" => "who approved the change (the schema owner; the integration lead for commands and control events)",
                    _ => "which Waybill release (e.g. 0.2.0) first ships it",
                }));
            }
        }
        entries.push(Entry {
            subject: subject.to_string(),
            version,
            id,
            why: why.to_string(),
            approved_by: approved_by.to_string(),
            first_read: first_read.to_string(),
            first_written: first_written.to_string(),
        });
    }
    if problems.is_empty() { Ok(entries) } else { Err(problems) }
}

/// The embedded changelog's rows.
///
/// # Panics
/// If it does not parse; the crate's tests check it.
pub fn embedded() -> Vec<Entry> {
    parse(EMBEDDED_TEXT)
        .unwrap_or_else(|p| panic!("schemas/CHANGELOG.md compiled into waybill-schema is invalid: {}", p.join("; ")))
}

/// What is missing or wrong: a version of `registry` without a row (naming the subject,
/// version and file), a row for a version that does not exist, or a row whose id is not
/// the version's.
pub fn check(registry: &Registry, entries: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rows: BTreeMap<(&str, u32), &Entry> = BTreeMap::new();
    for e in entries {
        if rows.insert((e.subject.as_str(), e.version), e).is_some() {
            problems.push(format!(
                "schemas/CHANGELOG.md lists {} v{} twice; keep one row per version",
                e.subject, e.version
            ));
        }
    }
    for s in registry.iter() {
        match rows.remove(&(s.full_name(), s.version())) {
            None => problems.push(format!(
                "schemas/CHANGELOG.md has no entry for subject {} version {} ({}, id {}): add the row `| {} | {} | {} | <why> | <approved by> | <first release reading> | <first release writing> |`",
                s.full_name(),
                s.version(),
                s.path(),
                s.id(),
                s.full_name(),
                s.version(),
                s.id()
            )),
            Some(e) if e.id != s.id() => problems.push(format!(
                "schemas/CHANGELOG.md gives subject {} version {} id {}, but schemas/ids.txt gives it {}; fix the row",
                s.full_name(),
                s.version(),
                e.id,
                s.id()
            )),
            Some(_) => {}
        }
    }
    for ((subject, version), _) in rows {
        problems.push(format!(
            "schemas/CHANGELOG.md has a row for subject {subject} version {version}, which is not in schemas/ids.txt; remove the row or add the schema"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_version_has_a_changelog_entry_and_every_entry_a_version() {
        let entries = parse(EMBEDDED_TEXT).unwrap_or_else(|p| panic!("{}", p.join("\n")));
        let problems = check(Registry::embedded(), &entries);
        assert!(problems.is_empty(), "schema changelog:\n{}", problems.join("\n"));
    }

    #[test]
    fn a_missing_entry_names_the_subject_and_version() {
        let mut entries = parse(EMBEDDED_TEXT).unwrap();
        entries.retain(|e| !(e.subject == "waybill.journal.Checkpoint" && e.version == 2));
        let problems = check(Registry::embedded(), &entries);
        let expected = "schemas/CHANGELOG.md has no entry for subject waybill.journal.Checkpoint version 2 (schemas/waybill.journal/Checkpoint/v2.avsc, id 91)";
        assert!(problems.iter().any(|p| p.starts_with(expected)), "{problems:?}");
        let err = parse("| a.B | 1 | 7 | why |  | 0.1.0 | 0.1.0 |\n").unwrap_err();
        assert!(err[0].contains("a.B v1") && err[0].contains("approved by"), "{err:?}");
    }
}
