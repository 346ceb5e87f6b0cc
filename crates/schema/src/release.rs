//! What a deployment of this build would change in the schemas a running system knows,
//! and whether it is safe: `waybill schemas check --against <registry URL | directory>`.
//! Pure: the caller fetches the deployed side (a `schemas/` folder of the last release,
//! or a Confluent-compatible registry) as [`Deployed`] versions.

use std::collections::BTreeMap;
use std::fmt;

use apache_avro::Schema;

use crate::changelog::Entry;
use crate::levels::Levels;
use crate::registry::Registry;

/// One schema version on the deployed side.
#[derive(Debug, Clone)]
pub struct DeployedVersion {
    /// Version number there.
    pub version: u32,
    /// Its schema id there.
    pub id: u32,
    /// The schema.
    pub schema: Schema,
}

/// The deployed side: versions by subject (oldest first), and whether its version
/// numbers and ids are Waybill's own (a `schemas/` folder) or a registry's (which
/// numbers and ids in its own order, so versions are matched by schema).
#[derive(Debug, Clone, Default)]
pub struct Deployed {
    /// Subject → versions, oldest first.
    pub subjects: BTreeMap<String, Vec<DeployedVersion>>,
    /// True for a `schemas/` folder: a version number names the same version here and
    /// there, and ids must agree.
    pub catalog: bool,
}

/// What happens to one schema version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A subject the deployed side does not have.
    NewSubject,
    /// A new version of a subject it has.
    NewVersion,
    /// A version both have under the same number with a different schema (a released
    /// `.avsc` was edited): never safe.
    Edited,
    /// The same version under another id: never safe (ids are written into records).
    IdChanged,
    /// A version (or subject) the deployed side has and this build does not: records
    /// written with it would be unknown to this build.
    Removed,
    /// A version only a registry has (another producer's): listed, not judged.
    OnlyDeployed,
}

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    /// Subject.
    pub subject: String,
    /// What.
    pub kind: ChangeKind,
    /// Version in this build (or on the deployed side for `Removed`/`OnlyDeployed`).
    pub version: u32,
    /// Schema id.
    pub id: u32,
    /// Why it is incompatible; empty when safe.
    pub problems: Vec<String>,
    /// The changelog row of the version, when it has one.
    pub entry: Option<Entry>,
}

impl Change {
    /// Whether deploying this change is unsafe.
    pub fn breaks(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// The report: every change, sorted by subject and version.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Changes.
    pub changes: Vec<Change>,
    /// Subjects compared and found equal.
    pub unchanged: usize,
}

impl Report {
    /// Whether anything in it is unsafe.
    pub fn breaks(&self) -> bool {
        self.changes.iter().any(Change::breaks)
    }
}

/// Compares this build's `registry` (at `levels`, with changelog `entries`) with
/// `deployed`. Only Waybill's subjects (`waybill.*`) of a registry are considered.
pub fn compare(registry: &Registry, levels: &Levels, entries: &[Entry], deployed: &Deployed) -> Report {
    let entry =
        |subject: &str, version: u32| entries.iter().find(|e| e.subject == subject && e.version == version).cloned();
    let mut report = Report::default();
    for subject in registry.full_names() {
        let level = levels.of(subject);
        let ours = registry.versions(subject);
        let theirs: &[DeployedVersion] = deployed.subjects.get(subject).map(Vec::as_slice).unwrap_or(&[]);
        // Schemas a new version is checked against: the deployed ones, then each new one.
        let mut known: Vec<&Schema> = theirs.iter().map(|d| &d.schema).collect();
        let mut any_change = false;
        for s in &ours {
            let form = s.schema().canonical_form();
            let same_number = theirs.iter().find(|d| d.version == s.version());
            let matched = if deployed.catalog {
                same_number.filter(|d| d.schema.canonical_form() == form)
            } else {
                theirs.iter().find(|d| d.schema.canonical_form() == form)
            };
            let change = |kind, problems| Change {
                subject: subject.to_string(),
                kind,
                version: s.version(),
                id: s.id(),
                problems,
                entry: entry(subject, s.version()),
            };
            match (matched, same_number) {
                (Some(d), _) => {
                    if deployed.catalog && d.id != s.id() {
                        any_change = true;
                        report.changes.push(change(
                            ChangeKind::IdChanged,
                            vec![format!(
                                "{subject} v{} has id {} there and {} here; ids are written into every record and never change (schemas/ids.txt is append-only)",
                                s.version(),
                                d.id,
                                s.id()
                            )],
                        ));
                    }
                }
                (None, Some(_)) if deployed.catalog => {
                    any_change = true;
                    report.changes.push(change(
                        ChangeKind::Edited,
                        vec![format!(
                            "{subject} v{} was edited after its release ({}): records written with the released text carry the same id; restore the file and add the change as v{}",
                            s.version(),
                            s.path(),
                            ours.len() + 1
                        )],
                    ));
                }
                (None, _) => {
                    any_change = true;
                    let kind = if theirs.is_empty() { ChangeKind::NewSubject } else { ChangeKind::NewVersion };
                    let problems = crate::compat::check_candidate(subject, level, &known, s.schema());
                    report.changes.push(change(kind, problems));
                    known.push(s.schema());
                }
            }
        }
        for d in theirs {
            let form = d.schema.canonical_form();
            let here = if deployed.catalog {
                ours.iter().any(|s| s.version() == d.version)
            } else {
                ours.iter().any(|s| s.schema().canonical_form() == form)
            };
            if !here {
                any_change = true;
                let (kind, problems) = if deployed.catalog {
                    (
                        ChangeKind::Removed,
                        vec![format!(
                            "{subject} v{} (id {}) is deployed but not in this build: records written with it would be dead letters (unknown schema); versions are never removed",
                            d.version, d.id
                        )],
                    )
                } else {
                    // Another producer's version: this build's reader must read it.
                    let latest = ours.last().expect("a subject has a version");
                    let problems = crate::compat::check_candidate(
                        subject,
                        crate::Level::Backward,
                        &[&d.schema],
                        latest.schema(),
                    )
                    .into_iter()
                    .map(|p| {
                        format!(
                            "the registry holds {subject} version {} (id {}), which this build's v{} cannot read: {p}",
                            d.version,
                            d.id,
                            latest.version()
                        )
                    })
                    .collect();
                    (ChangeKind::OnlyDeployed, problems)
                };
                report.changes.push(Change {
                    subject: subject.to_string(),
                    kind,
                    version: d.version,
                    id: d.id,
                    problems,
                    entry: None,
                });
            }
        }
        if !any_change {
            report.unchanged += 1;
        }
    }
    for (subject, versions) in &deployed.subjects {
        if !subject.starts_with("waybill.") || registry.latest(subject).is_some() {
            continue;
        }
        for d in versions {
            let (kind, problems) = if deployed.catalog {
                (
                    ChangeKind::Removed,
                    vec![format!(
                        "subject {subject} (v{}, id {}) is deployed but not in this build: its records would be dead letters; subjects are never removed",
                        d.version, d.id
                    )],
                )
            } else {
                (ChangeKind::OnlyDeployed, Vec::new())
            };
            report.changes.push(Change {
                subject: subject.clone(),
                kind,
                version: d.version,
                id: d.id,
                problems,
                entry: None,
            });
        }
    }
    report.changes.sort_by(|a, b| (&a.subject, a.version, &a.kind).cmp(&(&b.subject, b.version, &b.kind)));
    report
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            let what = match c.kind {
                ChangeKind::NewSubject => "new subject",
                ChangeKind::NewVersion => "new version",
                ChangeKind::Edited => "EDITED",
                ChangeKind::IdChanged => "ID CHANGED",
                ChangeKind::Removed => "REMOVED",
                ChangeKind::OnlyDeployed => "only deployed",
            };
            let verdict = if c.breaks() {
                "INCOMPATIBLE"
            } else if matches!(c.kind, ChangeKind::OnlyDeployed) {
                "not in this build; readable"
            } else {
                "ok"
            };
            writeln!(f, "{what:<14} {} v{} (id {}): {verdict}", c.subject, c.version, c.id)?;
            if let Some(e) = &c.entry {
                writeln!(
                    f,
                    "{:<14}   why: {}; approved by {}; read from {}, written from {}",
                    "", e.why, e.approved_by, e.first_read, e.first_written
                )?;
            }
            for p in &c.problems {
                writeln!(f, "{:<14}   {p}", "")?;
            }
        }
        let breaking = self.changes.iter().filter(|c| c.breaks()).count();
        let new =
            self.changes.iter().filter(|c| matches!(c.kind, ChangeKind::NewSubject | ChangeKind::NewVersion)).count();
        writeln!(
            f,
            "{new} new schema version(s), {breaking} incompatible change(s), {} subject(s) unchanged: {}",
            self.unchanged,
            if breaking == 0 { "safe to deploy" } else { "NOT safe to deploy" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changelog;

    fn deployed_from(registry: &Registry, catalog: bool, skip: impl Fn(&str, u32) -> bool) -> Deployed {
        let mut d = Deployed { catalog, ..Deployed::default() };
        for s in registry.iter() {
            if skip(s.full_name(), s.version()) {
                continue;
            }
            d.subjects.entry(s.full_name().to_string()).or_default().push(DeployedVersion {
                version: s.version(),
                id: if catalog { s.id() } else { 1000 + s.id() },
                schema: s.schema().clone(),
            });
        }
        for v in d.subjects.values_mut() {
            v.sort_by_key(|x| x.version);
        }
        d
    }

    #[test]
    fn the_same_catalog_changes_nothing_and_a_missing_version_is_new() {
        let r = Registry::embedded();
        let entries = changelog::embedded();
        let same = compare(r, Levels::embedded(), &entries, &deployed_from(r, true, |_, _| false));
        assert!(same.changes.is_empty() && !same.breaks(), "{same}");
        let older = deployed_from(r, true, |s, v| s == "waybill.journal.Checkpoint" && v == 2);
        let report = compare(r, Levels::embedded(), &entries, &older);
        assert_eq!(report.changes.len(), 1, "{report}");
        assert_eq!(report.changes[0].kind, ChangeKind::NewVersion);
        assert!(!report.breaks(), "{report}");
        let text = report.to_string();
        assert!(text.starts_with("new version    waybill.journal.Checkpoint v2 (id 91): ok"), "{text}");
        // A registry numbers and ids in its own order: matched by schema.
        let registry = deployed_from(r, false, |s, _| s == "waybill.event.TimerTick");
        let report = compare(r, Levels::embedded(), &entries, &registry);
        assert_eq!(report.changes.len(), 1, "{report}");
        assert_eq!(report.changes[0].kind, ChangeKind::NewSubject);
    }

    #[test]
    fn an_edited_released_version_is_incompatible() {
        let r = Registry::embedded();
        let mut deployed = deployed_from(r, true, |_, _| false);
        let v = &mut deployed.subjects.get_mut("waybill.journal.Checkpoint").unwrap()[1];
        v.schema = r.version("waybill.journal.Checkpoint", 1).unwrap().schema().clone();
        let report = compare(r, Levels::embedded(), &[], &deployed);
        assert!(report.breaks(), "{report}");
        assert_eq!(report.changes[0].kind, ChangeKind::Edited);
        assert!(report.to_string().contains("NOT safe to deploy"), "{report}");
    }
}
