//! The records of `waybill.snapshots` (`schemas/waybill.snapshot/`): a flow's saga state
//! and the mark that closes each save. Confluent Avro like every other topic, so any
//! Kafka client with the registry reads them.

use serde::{Deserialize, Serialize};

use crate::{Registry, Result};

/// Full name of a flow's state record.
pub const FLOW_STATE: &str = "waybill.snapshot.FlowState";
/// Full name of the mark record.
pub const SNAPSHOT_MARK: &str = "waybill.snapshot.SnapshotMark";

/// One flow's state, as `waybill.snapshot.FlowState` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowState {
    /// Correlation key.
    pub key: String,
    /// Every saga of the flow has ended.
    pub finished: bool,
    /// The flow's state as the coordinator's state store keeps it.
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub state: Vec<u8>,
    /// When a finished flow last changed (its retention counts from here); `None` while
    /// it works, and in records written before it was kept.
    #[serde(default)]
    pub finished_at: Option<i64>,
}

/// Encodes a flow's state record. Written directly (the record is a string, a boolean,
/// bytes and an optional long, and a save writes thousands): the same bytes as the
/// generic [`Registry::encode_record`], which a test checks.
pub fn encode_flow_state(key: &str, finished: bool, state: &[u8], finished_at: Option<i64>) -> Result<Vec<u8>> {
    let registry = Registry::embedded();
    let schema = registry
        .latest(FLOW_STATE)
        .ok_or_else(|| crate::Error::UnknownSchema { full_name: FLOW_STATE.to_string(), version: None })?;
    let mut out = Vec::with_capacity(5 + 10 + key.len() + 1 + 10 + state.len());
    crate::wire::write_header(registry.wire_id(schema.id()), &mut out);
    write_long(&mut out, key.len() as i64);
    out.extend_from_slice(key.as_bytes());
    out.push(u8::from(finished));
    write_long(&mut out, state.len() as i64);
    out.extend_from_slice(state);
    // A union is the branch's index, then its value.
    match finished_at {
        None => write_long(&mut out, 0),
        Some(t) => {
            write_long(&mut out, 1);
            write_long(&mut out, t);
        }
    }
    Ok(out)
}

/// An Avro `long`: zig-zag, then a base-128 varint.
fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Decodes a flow's state record.
pub fn decode_flow_state(bytes: &[u8]) -> Result<FlowState> {
    Registry::embedded().decode_record(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_state_round_trips_with_its_bytes_as_avro_bytes() {
        let state = FlowState {
            key: "SO42".into(),
            finished: true,
            state: br#"{"order":"SO42"}"#.to_vec(),
            finished_at: Some(1_780_000_000_000_000),
        };
        let bytes = encode_flow_state(&state.key, state.finished, &state.state, state.finished_at).unwrap();
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        assert_eq!(decode_flow_state(&bytes).unwrap(), state);
        // Avro `bytes` is a length and the bytes themselves, not an array of ints.
        assert!(bytes.windows(state.state.len()).any(|w| w == state.state.as_slice()));
    }

    #[test]
    fn the_direct_encoding_is_the_generic_one() {
        for (key, finished, len, at) in [
            ("SO1", false, 0, None),
            ("po:P00042", true, 63, Some(1)),
            ("SO-ÉTÉ", false, 300, None),
            ("k", true, 20_000, Some(1_780_000_000_000_000)),
            ("k", true, 2, Some(-5)),
        ] {
            let state = FlowState {
                key: key.into(),
                finished,
                state: (0..len).map(|i| (i % 251) as u8).collect(),
                finished_at: at,
            };
            assert_eq!(
                encode_flow_state(&state.key, state.finished, &state.state, state.finished_at).unwrap(),
                Registry::embedded().encode_record(FLOW_STATE, &state).unwrap(),
                "{key} {len}"
            );
        }
    }
}
