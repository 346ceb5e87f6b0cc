//! Schema evolution rules: every version of a record must read data written by every
//! earlier version (Avro "backward transitive" compatibility, as a Confluent schema
//! registry would enforce it).

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;

use crate::registry::{Registry, expand};

/// Checks that `versions` (oldest first: `versions[0]` is v1) are backward transitive
/// compatible: each version can read data written with every earlier one.
///
/// Returns one message per failing pair, naming the record, the two versions and what
/// apache-avro found (for instance the reader field without a default).
pub fn check_backward_transitive(versions: &[Schema]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut expanded = Vec::with_capacity(versions.len());
    for (i, schema) in versions.iter().enumerate() {
        match expand(schema) {
            Ok(s) => expanded.push(s),
            Err(e) => {
                problems.push(format!("{} v{}: {e}", display_name(schema), i + 1));
                return Err(problems);
            }
        }
    }
    for (r, reader) in expanded.iter().enumerate().skip(1) {
        for (w, writer) in expanded[..r].iter().enumerate() {
            if let Err(e) = SchemaCompatibility::can_read(writer, reader) {
                problems.push(format!(
                    "{} v{} cannot read data written with v{}: {}; give new fields a default and never change a field's type, remove a field without default or remove an enum symbol",
                    display_name(reader),
                    r + 1,
                    w + 1,
                    with_causes(&e)
                ));
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Runs [`check_backward_transitive`] over every schema family in `registry`.
pub fn check_registry(registry: &Registry) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for name in registry.full_names() {
        let versions: Vec<Schema> = registry.versions(name).iter().map(|s| s.schema().clone()).collect();
        if let Err(mut p) = check_backward_transitive(&versions) {
            problems.append(&mut p);
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
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
