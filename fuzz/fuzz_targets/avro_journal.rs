//! Arbitrary bytes as a Confluent-framed Avro record of the journal topic
//! (`waybill_schema::decode_journal_record`, what state restore and the projections run
//! on every journal record): a saga event or a checkpoint.
//!
//! Decoding must never panic, and whatever it accepts must re-encode and decode back to
//! the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill_schema::{JournalRecord, samples};

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> =
        samples::journal_events().iter().map(|e| waybill_schema::encode_journal(e).expect("encode a sample")).collect();
    seeds.push(waybill_schema::encode_checkpoint(&samples::checkpoint()).expect("encode the sample checkpoint"));
    seeds
}

fuzz_target!(
    init: waybill_fuzz::write_seeds(seeds()),
    |data: &[u8]| {
        let Ok(record) = waybill_schema::decode_journal_record(data) else { return };
        let again = match &record {
            JournalRecord::Event(e) => waybill_schema::encode_journal(e),
            JournalRecord::Checkpoint(c) => waybill_schema::encode_checkpoint(c),
        }
        .unwrap_or_else(|e| panic!("a decoded journal record does not encode again: {e}\n{record:?}"));
        let back = waybill_schema::decode_journal_record(&again).expect("a re-encoded journal record decodes");
        assert_eq!(back, record);
    }
);
