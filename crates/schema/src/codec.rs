//! Domain ⇄ Avro: Confluent-framed Avro records for events, commands, journal events and
//! checkpoints.
//!
//! Every top-level record is `{meta, data}`: `meta` is the domain type's common fields,
//! `data` the fields of the enum variant's struct, and the record's name is the variant's
//! `name()`. The mapping goes through serde: the Avro field names are the Rust field
//! names, Avro enums carry serde's SCREAMING_SNAKE names in declaration order,
//! `Option<T>` is `["null", T]`, and `Timestamp`/`Qty`/`Money` are longs.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use waybill_domain::command::CommandBody;
use waybill_domain::event::EventBody;
use waybill_domain::journal::{Checkpoint, JournalBody};
use waybill_domain::{Command, InboundEvent, JournalEvent};

use crate::datum::{self, DatumError};
use crate::error::{Error, Result};
use crate::registry::{Kind, RegisteredSchema, Registry};
use crate::wire;

/// A record read from the journal topic, which carries both saga events and checkpoints.
// Saga events are nearly every record of the journal; boxing them to shrink the rare
// checkpoint variant would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    /// A saga journal event.
    Event(JournalEvent),
    /// A coordinator checkpoint.
    Checkpoint(Checkpoint),
}

#[derive(Serialize)]
struct EnvelopeRef<'a, M, D> {
    meta: &'a M,
    data: &'a D,
}

#[derive(Deserialize)]
struct Envelope<M, D> {
    meta: M,
    data: D,
}

#[derive(Serialize)]
struct JsonEnvelopeRef<'a, M, D> {
    #[serde(rename = "type")]
    kind: &'a str,
    meta: &'a M,
    data: &'a D,
}

/// A domain type stored as `{meta, data}` records, one schema per enum variant.
pub(crate) trait Family: Sized {
    /// The schemas' kind.
    const KIND: Kind;
    /// Every variant name, in declaration order.
    const NAMES: &'static [&'static str];
    /// The variant's record name.
    fn name(&self) -> &'static str;
    /// Serializes straight to Avro binary with `schema` (no intermediate `Value`).
    fn write_datum(&self, schema: &Schema, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize>;
    /// Converts to an Avro `Value` (the naive path).
    fn to_avro_value(&self) -> apache_avro::AvroResult<Value>;
    /// Writes the JSON envelope `{"type", "meta", "data"}`.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    /// Builds the variant named `name` from a `{meta, data}` record value; `None` when
    /// no variant has that name.
    fn from_avro_value(name: &str, value: Value) -> Option<apache_avro::AvroResult<Self>>;
    /// Reads the variant named `name` from a `{meta, data}` datum written with `schema`
    /// (no intermediate `Value`); `None` when no variant has that name.
    fn from_datum(name: &str, schema: &Schema, datum: &mut &[u8]) -> Option<Result<Self, DatumError>>;
}

fn envelope<M: DeserializeOwned, D: DeserializeOwned>(value: Value) -> apache_avro::AvroResult<(M, D)> {
    let e: Envelope<M, D> = apache_avro::from_value(&value)?;
    Ok((e.meta, e.data))
}

macro_rules! family {
    ($ty:ty, $body:ident, $kind:expr, [$($variant:ident),* $(,)?]) => {
        impl Family for $ty {
            const KIND: Kind = $kind;
            const NAMES: &'static [&'static str] = &[$(stringify!($variant)),*];

            fn name(&self) -> &'static str {
                self.body.name()
            }

            fn write_datum(&self, schema: &Schema, out: &mut Vec<u8>) -> apache_avro::AvroResult<usize> {
                match &self.body {
                    $($body::$variant(data) => {
                        apache_avro::write_avro_datum_ref(schema, &EnvelopeRef { meta: &self.meta, data }, out)
                    })*
                }
            }

            fn to_avro_value(&self) -> apache_avro::AvroResult<Value> {
                match &self.body {
                    $($body::$variant(data) => apache_avro::to_value(EnvelopeRef { meta: &self.meta, data }),)*
                }
            }

            fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
                let kind = self.name();
                match &self.body {
                    $($body::$variant(data) => {
                        serde_json::to_writer(out, &JsonEnvelopeRef { kind, meta: &self.meta, data })
                    })*
                }
            }

            fn from_avro_value(name: &str, value: Value) -> Option<apache_avro::AvroResult<Self>> {
                Some(match name {
                    $(stringify!($variant) => {
                        envelope(value).map(|(meta, data)| Self { meta, body: $body::$variant(data) })
                    })*
                    _ => return None,
                })
            }

            fn from_datum(name: &str, schema: &Schema, datum: &mut &[u8]) -> Option<Result<Self, DatumError>> {
                Some(match name {
                    $(stringify!($variant) => {
                        datum::from_datum::<Envelope<_, _>>(schema, datum)
                            .map(|e| Self { meta: e.meta, body: $body::$variant(e.data) })
                    })*
                    _ => return None,
                })
            }
        }
    };
}

family!(
    InboundEvent,
    EventBody,
    Kind::Event,
    [
        OrderReleased,
        StockReserved,
        ReleasedToWarehouse,
        PickConfirmed,
        GoodsIssued,
        CarrierBooked,
        Delivered,
        OrderCancelled,
        InvoicePosted,
        InvoiceRejected,
        PostingApproved,
        PostingRejected,
        ReturnAuthorized,
        ReturnReceived,
        CreditNoteIssued,
        CreditNoteRejected,
        ExceptionRetryRequested,
        ExceptionResolveRequested,
        ExceptionAssignRequested,
        SagaReplayRequested,
        TimerTick,
        CommandFailed,
        TargetUnavailable,
        TargetRecovered,
        PurchaseOrderConfirmed,
        PurchaseOrderClosed,
        ShipNoticeReceived,
        GoodsReceived,
        ReceiptValidated,
        ReceiptCancelled,
        VendorBillReceived,
        VendorBillPosted,
        VendorBillRejected,
        VendorCreditNoteIssued,
        StatementReceived,
        StatementLinePosted,
        StatementLineRejected,
        StockObserved,
        StatementLineAssignRequested,
    ]
);

family!(
    Command,
    CommandBody,
    Kind::Command,
    [
        ReserveStock,
        ReleaseToWarehouse,
        CancelReservation,
        CancelWarehouseRelease,
        CreateBackorder,
        BookCarrier,
        ConfirmShipment,
        PostInvoice,
        IssueCreditNote,
        AdjustStock,
        ValidateReceipt,
        ReturnToVendor,
        PostVendorBill,
        IssueVendorCreditNote,
        PostStatementLine,
    ]
);

family!(
    JournalEvent,
    JournalBody,
    Kind::Journal,
    [
        OrderAccepted,
        MasterDataFailed,
        ReservationRequested,
        StockAllocated,
        Backordered,
        ReleaseRequested,
        WarehouseAccepted,
        PickRecorded,
        PickOverdue,
        ShipmentRecorded,
        CarrierAssigned,
        DeliveryConfirmed,
        Cancelled,
        ExceptionRaised,
        ExceptionResolved,
        Completed,
        InvoiceDrafted,
        PostingHeld,
        PostingApproved,
        PostingRejected,
        PostingEscalated,
        ControlRefused,
        InvoiceRequested,
        InvoiceRecorded,
        FinanceRefused,
        ReturnOpened,
        ReturnReceiptRecorded,
        CreditNoteDrafted,
        CreditNoteRequested,
        CreditNoteRecorded,
        StockAdjustmentRequested,
        ExceptionRetried,
        SagaReplayed,
        ExceptionAssigned,
        PurchaseOpened,
        PurchaseClosed,
        ShipNoticeRecorded,
        ReceiptRecorded,
        ReceiptConfirmed,
        ReceiptReversed,
        BillReceived,
        BillMatched,
        BillRecorded,
        VendorCreditRecorded,
        StatementOpened,
        LineApplied,
        LineRecorded,
        ApplicationScheduled,
        StockReconciled,
        FlowRetired,
    ]
);

/// Record names of every [`EventBody`] variant, in declaration order.
pub const EVENT_NAMES: &[&str] = <InboundEvent as Family>::NAMES;
/// Record names of every [`CommandBody`] variant, in declaration order.
pub const COMMAND_NAMES: &[&str] = <Command as Family>::NAMES;
/// Record names of every [`JournalBody`] variant, in declaration order.
pub const JOURNAL_NAMES: &[&str] = <JournalEvent as Family>::NAMES;

fn encode_error(schema: &RegisteredSchema) -> impl FnOnce(apache_avro::Error) -> Error + '_ {
    move |source| Error::Encode {
        full_name: schema.full_name().to_string(),
        version: schema.version(),
        source: Box::new(source),
    }
}

fn to_domain_error(writer: &RegisteredSchema, reader: &RegisteredSchema, source: apache_avro::Error) -> Error {
    Error::Decode {
        id: writer.id(),
        full_name: writer.full_name().to_string(),
        version: writer.version(),
        reader_version: reader.version(),
        source: Box::new(source),
    }
}

// ---- direct serializer guard ----
//
// apache-avro 0.21's `write_avro_datum_ref` writes struct fields in the order serde hands
// them over and never checks that every schema field was written: a schema whose
// records differ from the Rust structs (a new field, another order) silently yields a
// corrupt datum. So a schema takes that fast path only when the sample of every variant
// (see `samples`) has exactly its shape; otherwise encoding goes through an Avro `Value`
// and schema resolution, which match fields by name and fill defaults.

/// `to_value` of the sample of every variant, by (kind, record name).
static SAMPLE_VALUES: LazyLock<HashMap<(Kind, &'static str), Vec<Value>>> = LazyLock::new(|| {
    let mut out: HashMap<(Kind, &'static str), Vec<Value>> = HashMap::new();
    let mut add = |kind, name, value: apache_avro::AvroResult<Value>| {
        out.entry((kind, name)).or_default().push(value.expect("domain samples convert to Avro values"));
    };
    for e in crate::samples::events() {
        add(Kind::Event, e.name(), e.to_avro_value());
    }
    for c in crate::samples::commands() {
        add(Kind::Command, c.name(), c.to_avro_value());
    }
    for j in crate::samples::journal_events() {
        add(Kind::Journal, j.name(), j.to_avro_value());
    }
    add(Kind::Checkpoint, "Checkpoint", apache_avro::to_value(crate::samples::checkpoint()));
    out
});

/// Whether `schema` can be written with the direct serializer: the samples of its
/// variant have exactly its record shapes (field names and order at every level).
/// Returns the full names of the records the samples reached, or the first mismatch.
pub(crate) fn direct_write_check(kind: Kind, name: &str, schema: &Schema) -> Result<BTreeSet<String>, String> {
    let samples = SAMPLE_VALUES.get(&(kind, name)).ok_or_else(|| format!("no domain variant named {name}"))?;
    let mut visited = BTreeSet::new();
    for value in samples {
        same_shape(value, schema, "", &mut visited)?;
    }
    Ok(visited)
}

fn same_shape(value: &Value, schema: &Schema, path: &str, visited: &mut BTreeSet<String>) -> Result<(), String> {
    match (value, schema) {
        (Value::Record(fields), Schema::Record(record)) => {
            let have: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
            let want: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
            if have != want {
                return Err(format!("{path}: domain fields {have:?}, schema fields {want:?}"));
            }
            visited.insert(record.name.fullname(None));
            for ((name, v), field) in fields.iter().zip(&record.fields) {
                same_shape(v, &field.schema, &format!("{path}.{name}"), visited)?;
            }
            Ok(())
        }
        (Value::Array(items), Schema::Array(array)) => {
            items.iter().try_for_each(|item| same_shape(item, &array.items, &format!("{path}[]"), visited))
        }
        (Value::Union(_, inner), Schema::Union(union)) => match inner.as_ref() {
            Value::Null => Ok(()),
            inner => {
                let variant = union
                    .variants()
                    .iter()
                    .find(|v| !matches!(v, Schema::Null))
                    .ok_or_else(|| format!("{path}: union without a non-null branch"))?;
                same_shape(inner, variant, path, visited)
            }
        },
        (Value::String(symbol), Schema::Enum(e)) if e.symbols.contains(symbol) => Ok(()),
        (
            Value::Record(_) | Value::Array(_) | Value::Union(..) | Value::String(_),
            Schema::Record(_) | Schema::Array(_) | Schema::Union(_) | Schema::Enum(_),
        ) => Err(format!("{path}: domain value {value:?} does not have the shape of {schema:?}")),
        _ => Ok(()),
    }
}

impl Registry {
    fn encode_family<T: Family>(&self, value: &T) -> Result<Vec<u8>> {
        let schema = self.latest_of(T::KIND, value.name())?;
        let mut out = Vec::with_capacity(256);
        wire::write_header(self.wire_id(schema.id()), &mut out);
        if schema.direct_write {
            value.write_datum(schema.expanded(), &mut out).map_err(encode_error(schema))?;
        } else {
            let datum = value
                .to_avro_value()
                .and_then(|v| v.resolve(schema.expanded()))
                .and_then(|v| apache_avro::to_avro_datum(schema.expanded(), v))
                .map_err(encode_error(schema))?;
            out.extend_from_slice(&datum);
        }
        Ok(out)
    }

    /// The writer schema and the datum of a framed record of an accepted kind that can
    /// be read without an intermediate `Value` (see [`datum`]).
    fn direct<'b>(&self, bytes: &'b [u8], accept: &[Kind]) -> Option<(&RegisteredSchema, &'b [u8])> {
        let (id, datum) = wire::unframe(bytes).ok()?;
        let writer = self.by_wire_id(id)?;
        (writer.direct_read && accept.contains(&writer.kind())).then_some((writer, datum))
    }

    /// Decodes a record straight into the domain type when its writer schema allows it.
    /// `None` sends the caller down the `Value` path, which also produces the errors.
    pub(crate) fn decode_family_direct<T: Family>(&self, bytes: &[u8]) -> Option<T> {
        let (writer, mut datum) = self.direct(bytes, &[T::KIND])?;
        let value = T::from_datum(writer.name(), writer.expanded(), &mut datum)?.ok()?;
        datum.is_empty().then_some(value)
    }

    pub(crate) fn decode_checkpoint_direct(&self, bytes: &[u8]) -> Option<Checkpoint> {
        let (writer, mut datum) = self.direct(bytes, &[Kind::Checkpoint])?;
        let value = datum::from_datum(writer.expanded(), &mut datum).ok()?;
        datum.is_empty().then_some(value)
    }

    fn decode_family<T: Family>(&self, bytes: &[u8]) -> Result<T> {
        if let Some(value) = self.decode_family_direct(bytes) {
            return Ok(value);
        }
        let (writer, reader, value) = self.decode_value(bytes, &[T::KIND])?;
        family_from_value(writer, reader, value)
    }

    /// Encodes an inbound event as a Confluent-framed Avro record with the latest version
    /// of its schema.
    pub fn encode_event(&self, event: &InboundEvent) -> Result<Vec<u8>> {
        self.encode_family(event)
    }

    /// Decodes a Confluent-framed inbound event written with any registered version.
    pub fn decode_event(&self, bytes: &[u8]) -> Result<InboundEvent> {
        self.decode_family(bytes)
    }

    /// Encodes a command as a Confluent-framed Avro record.
    pub fn encode_command(&self, command: &Command) -> Result<Vec<u8>> {
        self.encode_family(command)
    }

    /// Decodes a Confluent-framed command.
    pub fn decode_command(&self, bytes: &[u8]) -> Result<Command> {
        self.decode_family(bytes)
    }

    /// Encodes a saga journal event as a Confluent-framed Avro record.
    pub fn encode_journal(&self, event: &JournalEvent) -> Result<Vec<u8>> {
        self.encode_family(event)
    }

    /// Decodes a Confluent-framed saga journal event (not a checkpoint; see
    /// [`Registry::decode_journal_record`] for the journal topic).
    pub fn decode_journal(&self, bytes: &[u8]) -> Result<JournalEvent> {
        self.decode_family(bytes)
    }

    /// Encodes a journal checkpoint as a Confluent-framed Avro record.
    pub fn encode_checkpoint(&self, checkpoint: &Checkpoint) -> Result<Vec<u8>> {
        let schema = self.latest_of(Kind::Checkpoint, "Checkpoint")?;
        let mut out = Vec::with_capacity(64);
        wire::write_header(self.wire_id(schema.id()), &mut out);
        if schema.direct_write {
            apache_avro::write_avro_datum_ref(schema.expanded(), checkpoint, &mut out).map_err(encode_error(schema))?;
        } else {
            let datum = apache_avro::to_value(checkpoint)
                .and_then(|v| v.resolve(schema.expanded()))
                .and_then(|v| apache_avro::to_avro_datum(schema.expanded(), v))
                .map_err(encode_error(schema))?;
            out.extend_from_slice(&datum);
        }
        Ok(out)
    }

    /// Encodes a record of a kind without a domain type (`waybill.audit.*`, `waybill.connect.*`, `waybill.snapshot.*`) from its serde
    /// form, with the latest version of the schema `full_name`: through an Avro `Value`
    /// and schema resolution, so fields are matched by name.
    pub fn encode_record<T: serde::Serialize>(&self, full_name: &str, value: &T) -> Result<Vec<u8>> {
        let schema = self
            .latest(full_name)
            .filter(|s| matches!(s.kind(), Kind::Audit | Kind::Connect | Kind::Snapshot))
            .ok_or_else(|| Error::UnknownSchema { full_name: full_name.to_string(), version: None })?;
        let datum = apache_avro::to_value(value)
            .and_then(|v| v.resolve(schema.expanded()))
            .and_then(|v| apache_avro::to_avro_datum(schema.expanded(), v))
            .map_err(encode_error(schema))?;
        Ok(wire::frame(self.wire_id(schema.id()), &datum))
    }

    /// Decodes a Confluent-framed record of a kind without a domain type
    /// (`waybill.audit.*`) into its serde form, resolving older writer versions.
    pub fn decode_record<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        let (writer, reader, value) = self.decode_value(bytes, &[Kind::Audit, Kind::Connect, Kind::Snapshot])?;
        apache_avro::from_value(&value).map_err(|e| to_domain_error(writer, reader, e))
    }

    /// Decodes a Confluent-framed journal checkpoint.
    pub fn decode_checkpoint(&self, bytes: &[u8]) -> Result<Checkpoint> {
        if let Some(checkpoint) = self.decode_checkpoint_direct(bytes) {
            return Ok(checkpoint);
        }
        let (writer, reader, value) = self.decode_value(bytes, &[Kind::Checkpoint])?;
        apache_avro::from_value(&value).map_err(|e| to_domain_error(writer, reader, e))
    }

    /// Decodes any record of the journal topic: a saga event or a checkpoint.
    pub fn decode_journal_record(&self, bytes: &[u8]) -> Result<JournalRecord> {
        if let Ok(writer) = self.schema_of(bytes) {
            let direct = if writer.kind() == Kind::Checkpoint {
                self.decode_checkpoint_direct(bytes).map(JournalRecord::Checkpoint)
            } else {
                self.decode_family_direct(bytes).map(JournalRecord::Event)
            };
            if let Some(record) = direct {
                return Ok(record);
            }
        }
        let (writer, reader, value) = self.decode_value(bytes, &[Kind::Journal, Kind::Checkpoint])?;
        if writer.kind() == Kind::Checkpoint {
            let checkpoint = apache_avro::from_value(&value).map_err(|e| to_domain_error(writer, reader, e))?;
            Ok(JournalRecord::Checkpoint(checkpoint))
        } else {
            family_from_value(writer, reader, value).map(JournalRecord::Event)
        }
    }

    /// Full name of the schema a framed record was written with, e.g.
    /// `waybill.event.OrderReleased`.
    pub fn schema_name_of(&self, bytes: &[u8]) -> Result<&str> {
        self.schema_of(bytes).map(RegisteredSchema::full_name)
    }

    // ---- naive baseline ----

    /// **Benchmark baseline only.** Like [`Registry::encode_event`] but parses the
    /// schema JSON on every call and goes through an intermediate Avro `Value`
    /// (`to_value` → `resolve` → `to_avro_datum`). Produces the same bytes.
    pub fn encode_event_naive(&self, event: &InboundEvent) -> Result<Vec<u8>> {
        let entry = self.latest_of(Kind::Event, event.name())?;
        let schema = Schema::parse_str(entry.json()).map_err(encode_error(entry))?;
        let datum = event
            .to_avro_value()
            .and_then(|v| v.resolve(&schema))
            .and_then(|v| apache_avro::to_avro_datum(&schema, v))
            .map_err(encode_error(entry))?;
        Ok(wire::frame(self.wire_id(entry.id()), &datum))
    }

    /// **Benchmark baseline only.** Like [`Registry::decode_event`] but parses the writer
    /// and reader schema JSON on every call and always runs schema resolution.
    pub fn decode_event_naive(&self, bytes: &[u8]) -> Result<InboundEvent> {
        let (id, mut datum) = wire::unframe(bytes)?;
        let writer = self.by_wire_id(id).ok_or(Error::UnknownSchemaId { id })?;
        if writer.kind() != Kind::Event {
            return Err(Error::WrongKind {
                id,
                full_name: writer.full_name().to_string(),
                version: writer.version(),
                expected: Kind::Event.expected(),
            });
        }
        let reader = self.latest(writer.full_name()).unwrap_or(writer);
        let fail = |e| to_domain_error(writer, reader, e);
        let writer_schema = Schema::parse_str(writer.json()).map_err(fail)?;
        let reader_schema = Schema::parse_str(reader.json()).map_err(fail)?;
        let value = apache_avro::from_avro_datum(&writer_schema, &mut datum, Some(&reader_schema)).map_err(fail)?;
        family_from_value(writer, reader, value)
    }
}

pub(crate) fn family_from_value<T: Family>(
    writer: &RegisteredSchema,
    reader: &RegisteredSchema,
    value: Value,
) -> Result<T> {
    match T::from_avro_value(reader.name(), value) {
        Some(result) => result.map_err(|e| to_domain_error(writer, reader, e)),
        None => Err(Error::NoDomainType { full_name: reader.full_name().to_string(), version: reader.version() }),
    }
}

/// The JSON envelope of an event, `{"type", "meta", "data"}`.
pub(crate) fn event_to_json(event: &InboundEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    event.write_json(&mut out).expect("domain events serialize to JSON: plain structs, string keys, no floats");
    out
}

/// The JSON envelope of a command, `{"type", "meta", "data"}`.
pub(crate) fn command_to_json(command: &Command) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    command.write_json(&mut out).expect("commands serialize to JSON: plain structs, string keys, no floats");
    out
}

/// Builds an event from a `{meta, data}` value made from JSON against `reader`.
pub(crate) fn event_from_value(reader: &RegisteredSchema, value: Value) -> Result<InboundEvent> {
    family_from_value(reader, reader, value)
}
