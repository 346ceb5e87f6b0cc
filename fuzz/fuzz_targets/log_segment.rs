//! Arbitrary bytes as the embedded log's segment file, then recovery (`EmbeddedLog::open`).
//!
//! Input: one flags byte (bit 0: rewrite every whole frame's crc to match, so mutated
//! payloads reach the frame decoder), then the segment's bytes. Recovery must never
//! panic, and what it recovers must be exactly what an independent reading of the
//! format finds in the whole, valid frames: never a record that was not written whole.
//! A log that recovered must open again to the same contents and accept a new append.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill_fuzz::{Reading, assert_log_holds, first_segment, log_options, read_segment, real_segment, scratch_dir};
use waybill_log::embedded::EmbeddedLog;
use waybill_log::{AppendBatch, Error, EventLog, Record};

fn seeds() -> Vec<Vec<u8>> {
    let dir = scratch_dir("log-segment-seeds");
    let mut seeds = vec![vec![0u8], vec![1u8]];
    for batches in [0, 1, 3] {
        let segment = real_segment(&dir, batches);
        for flags in [0u8, 1] {
            let mut seed = vec![flags];
            seed.extend_from_slice(&segment);
            seeds.push(seed.clone());
            // The same log torn in its last frame.
            seed.truncate(seed.len() - 3);
            seeds.push(seed);
        }
    }
    seeds
}

fuzz_target!(
    init: waybill_fuzz::write_seeds(seeds()),
    |data: &[u8]| {
        let Some((&flags, segment)) = data.split_first() else { return };
        let mut segment = segment.to_vec();
        if flags & 1 == 1 {
            waybill_fuzz::repair_crcs(&mut segment);
        }
        let dir = scratch_dir("log-segment");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("segments")).expect("create the scratch log");
        std::fs::write(first_segment(&dir), &segment).expect("write the segment");

        let reading = read_segment(&segment);
        let log = match (EmbeddedLog::open(&dir, log_options()), &reading) {
            (Ok(log), Reading::Clean(want) | Reading::Damaged { before: want, .. }) => {
                assert_log_holds(&log, want);
                log
            }
            (Ok(_), Reading::Undecodable { at, reason }) => {
                panic!("recovery accepted a frame at byte {at} that breaks the format: {reason}")
            }
            (Err(Error::Corrupt { .. }), Reading::Damaged { .. } | Reading::Undecodable { .. }) => return,
            (Err(e), Reading::Clean(_)) => panic!("recovery refused a segment of whole, valid frames: {e}"),
            (Err(e), _) => panic!("recovery failed with something other than Corrupt: {e}"),
        };
        let want = match reading {
            Reading::Clean(c) | Reading::Damaged { before: c, .. } => c,
            Reading::Undecodable { .. } => unreachable!(),
        };
        // The cut (if any) is on disk: the log opens again to the same contents, and a
        // record appended now is read back after another restart.
        drop(log);
        let log = EmbeddedLog::open(&dir, log_options()).expect("a recovered log opens again");
        assert_log_holds(&log, &want);
        let Some((topic, _)) = want.topics.first() else { return };
        let end = log.end_offset(topic, 0).expect("end offset");
        let record = Record { partition: Some(0), ..Record::keyed(topic.clone(), b"k".to_vec(), b"after".to_vec()) };
        let at = log.append(AppendBatch { records: vec![record], positions: vec![] }).expect("append after recovery");
        assert_eq!(at[0].offset, end);
        drop(log);
        let log = EmbeddedLog::open(&dir, log_options()).expect("the log opens after an append");
        let back = log.read(topic, 0, end, 2).expect("read the new record");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].value, b"after");
    }
);
