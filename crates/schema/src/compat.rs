//! Schema evolution rules: each subject's versions must be compatible at the subject's
//! level ([`Level`], from `schemas/compatibility.txt`), as a Confluent schema registry
//! would enforce it. The default, backward transitive, means every version reads data
//! written by every earlier one; `FULL` adds that the previous version reads what the new
//! one writes.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use crate::levels::{Level, Levels};
use crate::registry::{Registry, expand};

/// Checks that `versions` (oldest first: `versions[0]` is v1) are backward transitive
/// compatible: each version can read data written with every earlier one.
///
/// Returns one message per failing pair, naming the record, the two versions and what
/// apache-avro found (for instance the reader field without a default).
pub fn check_backward_transitive(versions: &[Schema]) -> Result<(), Vec<String>> {
    let subject = versions.first().map(display_name).unwrap_or_default();
    check_level(&subject, Level::BackwardTransitive, versions)
}

/// Checks that `versions` of `subject` (oldest first) keep `level`: each version
/// against the previous one, or every earlier one for a transitive level.
pub fn check_level(subject: &str, level: Level, versions: &[Schema]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut expanded = Vec::with_capacity(versions.len());
    for (i, schema) in versions.iter().enumerate() {
        match expand(schema) {
            Ok(s) => expanded.push(s),
            Err(e) => {
                problems.push(format!("{subject} v{}: {e}", i + 1));
                return Err(problems);
            }
        }
    }
    for (n, new) in expanded.iter().enumerate().skip(1) {
        let from = if level.transitive() { 0 } else { n - 1 };
        for (o, old) in expanded.iter().enumerate().take(n).skip(from) {
            problems.extend(pair_problems(subject, level, (n + 1, new), (o + 1, old)));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// What is wrong with a candidate schema (not yet a version) for `subject`, whose
/// versions so far are `existing` (oldest first), at `level`: the candidate against the
/// latest version, or every version for a transitive level. Empty when compatible.
pub fn check_candidate(subject: &str, level: Level, existing: &[&Schema], candidate: &Schema) -> Vec<String> {
    let candidate = match expand(candidate) {
        Ok(s) => s,
        Err(e) => return vec![format!("{subject} (candidate): {e}")],
    };
    let n = existing.len() + 1;
    let from = if level.transitive() { 0 } else { existing.len().saturating_sub(1) };
    let mut problems = Vec::new();
    for (o, old) in existing.iter().enumerate().skip(from) {
        match expand(old) {
            Ok(old) => problems.extend(pair_problems(subject, level, (n, &candidate), (o + 1, &old))),
            Err(e) => problems.push(format!("{subject} v{}: {e}", o + 1)),
        }
    }
    problems
}

/// Whether `new` (version `n`) and `old` (version `o`) keep `level`; both expanded.
fn pair_problems(subject: &str, level: Level, (n, new): (usize, &Schema), (o, old): (usize, &Schema)) -> Vec<String> {
    let mut problems = Vec::new();
    if level.backward()
        && let Err(e) = SchemaCompatibility::can_read(old, new)
    {
        problems.push(format!(
            "{subject} v{n} cannot read data written with v{o}: {}; give new fields a default and never change a field's type, remove a field without default or remove an enum symbol (level {level})",
            with_causes(&e)
        ));
    }
    if level.forward()
        && let Err(e) = SchemaCompatibility::can_read(new, old)
    {
        problems.push(format!(
            "{subject} v{o} cannot read data written with v{n}: {}; at level {level} readers of older versions must read new data, so remove only fields that have a default, never change a field's type and add no enum symbol unless the enum has a default",
            with_causes(&e)
        ));
    }
    problems
}

/// Runs [`check_level`] over every subject in `registry`, each at its level in `levels`.
pub fn check_registry_levels(registry: &Registry, levels: &Levels) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for name in registry.full_names() {
        let versions: Vec<Schema> = registry.versions(name).iter().map(|s| s.schema().clone()).collect();
        if let Err(mut p) = check_level(name, levels.of(name), &versions) {
            problems.append(&mut p);
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Runs [`check_level`] over every subject in `registry` at the levels compiled into this
/// build (`schemas/compatibility.txt`).
pub fn check_registry(registry: &Registry) -> Result<(), Vec<String>> {
    check_registry_levels(registry, Levels::embedded())
}

/// `e` followed by its causes: apache-avro names only the outermost field in
/// `FieldTypeMismatch` and puts the nested field in the source.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn display_name(schema: &Schema) -> String {
    schema.name().map_or_else(|| "schema".to_string(), |n| n.fullname(None))
}
