//! `waybill trace <source-ref>`: everything related to a source reference.

use waybill_control::proto;

use super::render::{Output, age, json, table};
use super::{Remote, call};

pub(crate) fn run(source_ref: &str, remote: &Remote) -> anyhow::Result<()> {
    let req = proto::GetLineageRequest { source_ref: source_ref.to_string() };
    let resp = call(remote, async |mut c| Ok(c.queries.get_lineage(req).await?.into_inner()))?;
    if remote.output == Output::Json {
        return json(&resp);
    }
    let rows: Vec<Vec<String>> = resp
        .entries
        .iter()
        .map(|e| {
            vec![
                e.kind.clone(),
                e.id.clone(),
                e.name.clone(),
                format!("{}/{}@{}", e.topic, e.partition, e.offset),
                age(e.at_us),
            ]
        })
        .collect();
    print!("{}", table(&["KIND", "ID", "NAME", "WHERE", "AGO"], &rows));
    Ok(())
}
