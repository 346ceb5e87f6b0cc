//! Arbitrary bytes as a Confluent-framed Avro inbound event (`waybill_schema::decode_event`,
//! what the coordinator runs on every inbound record).
//!
//! Decoding must never panic, and whatever it accepts must be an event Waybill can write
//! again: it re-encodes with the latest schema and decodes back to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill_schema::samples;

fn seeds() -> Vec<Vec<u8>> {
    samples::events().iter().map(|e| waybill_schema::encode_event(e).expect("encode a sample")).collect()
}

fuzz_target!(
    init: waybill_fuzz::write_seeds(seeds()),
    |data: &[u8]| {
        let _ = waybill_schema::schema_name_of(data);
        if let Ok(event) = waybill_schema::decode_event(data) {
            let again = waybill_schema::encode_event(&event)
                .unwrap_or_else(|e| panic!("a decoded event does not encode again: {e}\n{event:?}"));
            let back = waybill_schema::decode_event(&again).expect("a re-encoded event decodes");
            assert_eq!(back, event);
        }
    }
);
