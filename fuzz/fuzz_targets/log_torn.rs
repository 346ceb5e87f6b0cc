//! The embedded log written for real, then damaged as a crash or a bad disk would, then
//! recovered.
//!
//! The input drives a few batches (topics, keys, headers, values, positions) through
//! `EventLog::append`, then one kind of damage: the file cut at any byte (a torn write),
//! one byte changed, or a few stray bytes after the last frame. Recovery must give back
//! exactly the batches whose frames are whole and before the damage when the damage is
//! at the end, and `Corrupt` when a whole frame follows it; never a part of a batch.
//! After recovery the log must take a new batch at the next offsets.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use waybill_fuzz::{Reading, assert_log_holds, first_segment, log_options, read_segment, scratch_dir};
use waybill_log::embedded::EmbeddedLog;
use waybill_log::{AppendBatch, Error, EventLog, Header, Position, Record};

const TOPICS: [&str; 2] = ["waybill.inbound.odoo", "waybill.journal"];

/// Writes the log the input describes; returns the number of records appended.
fn write_log(u: &mut Unstructured<'_>, log: &EmbeddedLog, partitions: [u32; 2]) -> Result<usize> {
    let mut appended = 0;
    for (topic, n) in TOPICS.iter().zip(partitions) {
        log.ensure_topic(topic, n).expect("create a topic");
    }
    for _ in 0..u.int_in_range(0..=6)? {
        let mut records = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let t = u.choose_index(TOPICS.len())?;
            let partition = if u.arbitrary()? { Some(u.int_in_range(0..=partitions[t] - 1)? as i32) } else { None };
            let mut headers = Vec::new();
            for _ in 0..u.int_in_range(0..=2)? {
                let key: String = u.arbitrary()?;
                headers.push(Header { key: key.chars().take(16).collect(), value: u.arbitrary()? });
            }
            let key: Vec<u8> = u.arbitrary()?;
            let value: Vec<u8> = u.arbitrary()?;
            records.push(Record { topic: TOPICS[t].into(), partition, key, headers, value });
        }
        let mut positions = Vec::new();
        if u.arbitrary()? {
            let t = u.choose_index(TOPICS.len())?;
            positions.push(Position {
                group: "waybill-coordinator".into(),
                topic: TOPICS[t].into(),
                partition: u.int_in_range(0..=partitions[t] - 1)? as i32,
                next_offset: u.arbitrary()?,
            });
        }
        appended += records.len();
        log.append(AppendBatch { records, positions }).expect("append a batch");
    }
    Ok(appended)
}

/// Byte ranges of the frames of a segment written by the log.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let plen = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, pos + 8 + plen));
        pos += 8 + plen;
    }
    out
}

fn contents(bytes: &[u8]) -> waybill_fuzz::Contents {
    match read_segment(bytes) {
        Reading::Clean(c) => c,
        other => panic!("the log wrote a segment that does not read back cleanly: {other:?}"),
    }
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let dir = scratch_dir("log-torn");
    let _ = std::fs::remove_dir_all(&dir);
    let partitions = [u.int_in_range(1..=4)?, 1];
    let appended = {
        let log = EmbeddedLog::open(&dir, log_options()).expect("open a fresh log");
        write_log(&mut u, &log, partitions)?
    };
    let path = first_segment(&dir);
    let written = std::fs::read(&path).expect("read the segment");
    let whole = contents(&written);
    assert_eq!(whole.records.values().map(Vec::len).sum::<usize>(), appended, "records in the written segment");
    let frames = frames(&written);

    // The damage, and what recovery must make of it: `Some(prefix)` means "recovers
    // exactly the frames in written[..prefix]", `None` means "Corrupt".
    let (damaged, expect): (Vec<u8>, Option<usize>) = match u.int_in_range(0..=2)? {
        0 => {
            let cut = u.int_in_range(0..=written.len())?;
            let keep = frames.iter().map(|&(_, end)| end).filter(|&end| end <= cut).max().unwrap_or(0);
            (written[..cut].to_vec(), Some(keep))
        }
        1 if !written.is_empty() => {
            let at = u.int_in_range(0..=written.len() - 1)?;
            let flip = u.int_in_range(1..=255u8)?;
            let mut bytes = written.clone();
            bytes[at] ^= flip;
            let (start, end) = *frames.iter().find(|&&(s, e)| s <= at && at < e).unwrap();
            (bytes, (end == written.len()).then_some(start))
        }
        _ => {
            let mut bytes = written.clone();
            let n = u.int_in_range(1..=8)?;
            bytes.extend_from_slice(u.bytes(n)?);
            (bytes, Some(written.len()))
        }
    };
    std::fs::write(&path, &damaged).expect("write the damaged segment");

    let log = match (EmbeddedLog::open(&dir, log_options()), expect) {
        (Ok(log), Some(prefix)) => {
            assert_log_holds(&log, &contents(&written[..prefix]));
            log
        }
        (Err(Error::Corrupt { .. }), None) => return Ok(()),
        (Ok(_), None) => panic!("recovery accepted a segment with a damaged frame before whole ones"),
        (Err(e), Some(prefix)) => {
            panic!("recovery refused damage after the last whole frame (byte {prefix}): {e}")
        }
        (Err(e), None) => panic!("recovery failed with something other than Corrupt: {e}"),
    };
    // Recovery cut the damage away: the next batch lands at the next offsets and is
    // there after a restart.
    let end = log.end_offset(TOPICS[1], 0).unwrap_or(0);
    let topic_exists = log.partitions(TOPICS[1]).is_ok();
    if topic_exists {
        let record = Record { partition: Some(0), ..Record::keyed(TOPICS[1], b"k".to_vec(), b"after".to_vec()) };
        let at = log.append(AppendBatch { records: vec![record], positions: vec![] }).expect("append after recovery");
        assert_eq!(at[0].offset, end);
    }
    drop(log);
    let log = EmbeddedLog::open(&dir, log_options()).expect("a recovered log opens again");
    if topic_exists {
        let back = log.read(TOPICS[1], 0, end, 2).expect("read the new record");
        assert_eq!(back.iter().map(|r| r.value.as_slice()).collect::<Vec<_>>(), [b"after"]);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
