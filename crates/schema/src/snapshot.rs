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
}

/// Encodes a flow's state record.
pub fn encode_flow_state(state: &FlowState) -> Result<Vec<u8>> {
    Registry::embedded().encode_record(FLOW_STATE, state)
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
        let state = FlowState { key: "SO42".into(), finished: true, state: br#"{"order":"SO42"}"#.to_vec() };
        let bytes = encode_flow_state(&state).unwrap();
        assert_eq!(bytes[0], 0, "Confluent magic byte");
        assert_eq!(decode_flow_state(&bytes).unwrap(), state);
        // Avro `bytes` is a length and the bytes themselves, not an array of ints.
        assert!(bytes.windows(state.state.len()).any(|w| w == state.state.as_slice()));
    }
}
