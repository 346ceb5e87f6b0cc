//! Arbitrary bytes as a JSON event envelope (`waybill_schema::decode_event_json`, what
//! HTTP ingestion runs on every JSON body).
//!
//! Decoding must never panic. Whatever it accepts, ingestion writes to the log as Avro:
//! so it must encode as Avro and decode back to the same event, and its JSON encoding
//! must read back to the same event too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill_schema::samples;

fuzz_target!(
    init: {
        waybill_fuzz::write_seeds(samples::events().iter().map(waybill_schema::encode_event_json));
    },
    |data: &[u8]| {
        let Ok(event) = waybill_schema::decode_event_json(data) else { return };
        let avro = waybill_schema::encode_event(&event)
            .unwrap_or_else(|e| panic!("an accepted JSON event cannot be written as Avro: {e}\n{event:?}"));
        assert_eq!(waybill_schema::decode_event(&avro).expect("the Avro copy decodes"), event);
        let json = waybill_schema::encode_event_json(&event);
        let back = waybill_schema::decode_event_json(&json).unwrap_or_else(|e| {
            panic!("an accepted event's own JSON is refused: {e}\n{}", String::from_utf8_lossy(&json))
        });
        assert_eq!(back, event);
    }
);
