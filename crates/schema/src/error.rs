//! Errors of this crate. Each message names the input that was wrong and says what to do.

/// Everything that can go wrong while framing, encoding, decoding or loading schemas.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fewer bytes than the 5-byte Confluent header.
    #[error(
        "record is {len} bytes long; a Confluent-framed Avro record needs at least 5 (magic byte 0 + 4-byte schema id)"
    )]
    Truncated {
        /// Length of the record.
        len: usize,
    },

    /// The first byte is not the Confluent magic byte 0.
    #[error("magic byte is {found:#04x}, expected 0x00: {hint}")]
    BadMagic {
        /// The byte found.
        found: u8,
        /// What the byte suggests and what to do.
        hint: &'static str,
    },

    /// The frame names a schema id that this build does not know.
    #[error("schema id {id} is not in the registry; was the producer built from a newer schemas/ folder?")]
    UnknownSchemaId {
        /// The id read from the frame.
        id: u32,
    },

    /// The frame names a schema of another kind than the caller asked for.
    #[error("schema id {id} is {full_name} v{version}, expected {expected}")]
    WrongKind {
        /// The id read from the frame.
        id: u32,
        /// Full name of the schema with that id.
        full_name: String,
        /// Its version.
        version: u32,
        /// What the caller wanted, e.g. "an inbound event (waybill.event.*)".
        expected: &'static str,
    },

    /// No schema with this full name (or version) is registered.
    #[error(
        "no schema {full_name}{} in the registry; add schemas/<namespace>/<Name>/v<N>.avsc and a line to schemas/ids.txt",
        version.map(|v| format!(" v{v}")).unwrap_or_default()
    )]
    UnknownSchema {
        /// The full name asked for.
        full_name: String,
        /// The version asked for, if any.
        version: Option<u32>,
    },

    /// A registered schema has no matching variant in the domain crate.
    #[error(
        "schema {full_name} v{version} has no matching variant in the domain crate; this build's waybill-domain does not know it (update the domain enum or drop the schema)"
    )]
    NoDomainType {
        /// Full name of the schema.
        full_name: String,
        /// Its version.
        version: u32,
    },

    /// The Avro datum did not decode with the schema named in its frame.
    #[error(
        "cannot decode {full_name} v{version} (schema id {id}) into the v{reader_version} reader: {source}; the bytes do not match the schema their id names (written by another serializer, or corrupted)"
    )]
    Decode {
        /// Schema id from the frame.
        id: u32,
        /// Full name of the writer schema.
        full_name: String,
        /// Writer version.
        version: u32,
        /// Reader version (the latest of the same name).
        reader_version: u32,
        /// What apache-avro reported.
        #[source]
        source: Box<apache_avro::Error>,
    },

    /// Bytes were left over after the record was decoded.
    #[error(
        "{full_name} v{version} (schema id {id}) decoded with {trailing} bytes left over; the bytes do not match the schema their id names (written by another serializer, or several records concatenated)"
    )]
    TrailingBytes {
        /// Schema id from the frame.
        id: u32,
        /// Full name of the writer schema.
        full_name: String,
        /// Writer version.
        version: u32,
        /// Bytes left over.
        trailing: usize,
    },

    /// A domain value did not fit the schema it is written with.
    #[error(
        "cannot encode {full_name} v{version}: {source}; the .avsc file and the domain type disagree, fix one of them"
    )]
    Encode {
        /// Full name of the schema.
        full_name: String,
        /// Its version.
        version: u32,
        /// What apache-avro reported.
        #[source]
        source: Box<apache_avro::Error>,
    },

    /// The JSON body is not valid JSON or lacks the envelope.
    #[error("invalid JSON event: {0}; expected {{\"type\": \"<EventName>\", \"meta\": {{...}}, \"data\": {{...}}}}")]
    JsonEnvelope(String),

    /// A field of a JSON event is missing or has the wrong type.
    #[error("JSON event {event}: field `{path}` {problem}")]
    JsonField {
        /// The event type from the envelope.
        event: String,
        /// Dotted path of the field, e.g. `data.lines[0].quantity`.
        path: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A schema file or the id catalog is invalid.
    #[error("schema catalog: {0}")]
    Catalog(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
