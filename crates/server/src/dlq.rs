//! `waybill dlq list|replay` on a stopped server (`--data-dir`/`--config`): the listing
//! as a table or JSON. The dead-letter logic is the control plane's
//! ([`waybill_control::dead_letters`]), which also serves it while the server runs.

use std::io::Write;

use waybill_log::EventLog;

pub use waybill_control::dead_letters::{DeadLetter, REPLAY_GROUP, list, replay};

/// One dead letter as JSON (`waybill dlq list --output json`): its position, kind,
/// reason, where it came from, and the original key, headers and bytes (base64).
pub fn to_json(d: &DeadLetter) -> serde_json::Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    serde_json::json!({
        "partition": d.partition,
        "offset": d.offset,
        "kind": d.kind,
        "reason": d.reason,
        "source_topic": d.source_topic,
        "caller": d.caller,
        "key": text(&d.record.key),
        "headers": d.record.headers.iter().map(|h| (h.key.clone(), serde_json::Value::String(text(&h.value)))).collect::<serde_json::Map<_, _>>(),
        "value_base64": crate::schemas::base64(&d.record.value),
        "timestamp_ms": d.record.timestamp_ms,
    })
}

/// Prints the dead letters as a JSON array.
pub fn print_list_json(log: &dyn EventLog, out: &mut dyn Write) -> anyhow::Result<()> {
    let items: Vec<serde_json::Value> = list(log)?.iter().map(to_json).collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
    Ok(())
}

/// Prints the dead letters as a table.
pub fn print_list(log: &dyn EventLog, out: &mut dyn Write) -> anyhow::Result<()> {
    let items = list(log)?;
    writeln!(out, "{:<10} {:<15} {:<26} reason", "position", "kind", "from")?;
    for d in &items {
        let from = match &d.caller {
            Some(c) => format!("{} ({c})", d.source_topic),
            None => d.source_topic.clone(),
        };
        writeln!(out, "{:<10} {:<15} {:<26} {}", format!("{}@{}", d.partition, d.offset), d.kind, from, d.reason)?;
    }
    writeln!(out, "{} dead letters", items.len())?;
    Ok(())
}
