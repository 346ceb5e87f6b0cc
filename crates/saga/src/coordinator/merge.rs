//! Merging the batches read from several input topics into one processing order.

use waybill_log::StoredRecord;

/// Records read from one topic in a turn.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) records: Vec<StoredRecord>,
    /// The topic may hold more records after these.
    pub(super) full: bool,
}

/// Interleaves the batches read from each input topic in append-time order, so that a
/// backlog spread over several topics is processed in the order the systems wrote it
/// (a carrier's booking after the warehouse's goods issue it answers), never topic by
/// topic. Within a topic, offset order is kept whatever the clock did; records appended
/// in the same millisecond go in topic order (Odoo, warehouse, carrier, finance, bank,
/// control), which is the order the business flows through them.
///
/// A full batch ends on a millisecond boundary but may have more records after it;
/// records of other topics appended later than its last one are left for the next
/// turn, so nothing overtakes records that were not read yet. The full batch with the
/// earliest last record is always processed whole, so every turn makes progress.
pub(super) fn merge_by_time<'a>(topics: &'a [String], batches: &'a [Batch]) -> Vec<(&'a str, &'a StoredRecord)> {
    let horizon = batches.iter().filter(|b| b.full).filter_map(|b| b.records.last()).map(|r| r.timestamp_ms).min();
    let mut next = vec![0usize; batches.len()];
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.records.len()).sum());
    loop {
        let mut pick: Option<(i64, usize)> = None;
        for (i, b) in batches.iter().enumerate() {
            let Some(r) = b.records.get(next[i]) else { continue };
            if horizon.is_some_and(|h| r.timestamp_ms > h) {
                continue;
            }
            if pick.is_none_or(|(ts, _)| r.timestamp_ms < ts) {
                pick = Some((r.timestamp_ms, i));
            }
        }
        let Some((_, i)) = pick else { return out };
        out.push((topics[i].as_str(), &batches[i].records[next[i]]));
        next[i] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, offset: i64, ts: i64) -> StoredRecord {
        StoredRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp_ms: ts,
            key: vec![],
            headers: vec![],
            value: vec![],
        }
    }

    #[test]
    fn backlog_over_several_topics_is_merged_in_append_order() {
        let topics = vec!["wms".to_string(), "carrier".to_string()];
        let batches = vec![
            Batch { records: vec![rec("wms", 0, 10), rec("wms", 1, 30)], full: false },
            Batch { records: vec![rec("carrier", 0, 20), rec("carrier", 1, 40)], full: false },
        ];
        let order: Vec<(String, i64)> =
            merge_by_time(&topics, &batches).into_iter().map(|(t, r)| (t.to_string(), r.timestamp_ms)).collect();
        assert_eq!(order, [("wms".into(), 10), ("carrier".into(), 20), ("wms".into(), 30), ("carrier".into(), 40)]);
    }

    #[test]
    fn nothing_overtakes_the_unread_rest_of_a_full_batch() {
        let topics = vec!["wms".to_string(), "carrier".to_string()];
        // wms came back full, ending at ts 20: its next records (not read yet) may be older than
        // the carrier's record at 25, so that one waits.
        let batches = vec![
            Batch { records: vec![rec("wms", 0, 10), rec("wms", 1, 20)], full: true },
            Batch { records: vec![rec("carrier", 0, 15), rec("carrier", 1, 25)], full: false },
        ];
        let got: Vec<i64> = merge_by_time(&topics, &batches).into_iter().map(|(_, r)| r.timestamp_ms).collect();
        assert_eq!(got, [10, 15, 20]);
    }

    #[test]
    fn offset_order_within_a_topic_survives_a_clock_step_back() {
        let topics = vec!["wms".to_string()];
        let batches = vec![Batch { records: vec![rec("wms", 0, 50), rec("wms", 1, 40)], full: false }];
        let got: Vec<i64> = merge_by_time(&topics, &batches).into_iter().map(|(_, r)| r.offset).collect();
        assert_eq!(got, [0, 1]);
    }
}
