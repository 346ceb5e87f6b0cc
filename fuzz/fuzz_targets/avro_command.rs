//! Arbitrary bytes as a Confluent-framed Avro command (`waybill_schema::decode_command`,
//! what connectors run on every record of `waybill.commands.<system>`).
//!
//! Decoding must never panic, and whatever it accepts must re-encode and decode back to
//! the same command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill_schema::samples;

fn seeds() -> Vec<Vec<u8>> {
    samples::commands().iter().map(|c| waybill_schema::encode_command(c).expect("encode a sample")).collect()
}

fuzz_target!(
    init: waybill_fuzz::write_seeds(seeds()),
    |data: &[u8]| {
        if let Ok(command) = waybill_schema::decode_command(data) {
            let again = waybill_schema::encode_command(&command)
                .unwrap_or_else(|e| panic!("a decoded command does not encode again: {e}\n{command:?}"));
            let back = waybill_schema::decode_command(&again).expect("a re-encoded command decodes");
            assert_eq!(back, command);
        }
    }
);
