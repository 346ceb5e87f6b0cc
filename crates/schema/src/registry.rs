//! The schema registry: every schema version in `schemas/`, parsed once, by id, by full
//! name and by `(full name, version)`.
//!
//! The embedded registry ([`Registry::embedded`]) is built from `schemas/ids.txt` at
//! compile time, so schema ids are the same in every build that has the same file. Tests
//! and tools can build other registries with [`Registry::from_sources`].

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::schema::{Name, Namespace, UnionSchema};
use apache_avro::types::Value;

use crate::error::{Error, Result};
use crate::wire;

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// One schema version as listed in `schemas/ids.txt`, with its JSON text.
#[derive(Debug, Clone, Copy)]
pub struct SchemaSource<'a> {
    /// Schema id (the number in the Confluent frame).
    pub id: u32,
    /// Full name, `<namespace>.<Name>`; must equal the name the JSON declares.
    pub full_name: &'a str,
    /// Version, from 1.
    pub version: u32,
    /// The `.avsc` text.
    pub json: &'a str,
}

impl SchemaSource<'_> {
    /// Where the file lives under `schemas/`.
    pub fn path(&self) -> String {
        let (ns, name) = self.full_name.rsplit_once('.').unwrap_or(("", self.full_name));
        format!("schemas/{ns}/{name}/v{}.avsc", self.version)
    }
}

/// Which domain type a schema maps to, from its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `waybill.event.*`: an [`InboundEvent`](waybill_domain::InboundEvent).
    Event,
    /// `waybill.command.*`: a [`Command`](waybill_domain::Command).
    Command,
    /// `waybill.journal.*` except `Checkpoint`: a [`JournalEvent`](waybill_domain::JournalEvent).
    Journal,
    /// `waybill.journal.Checkpoint`: a [`Checkpoint`](waybill_domain::journal::Checkpoint).
    Checkpoint,
    /// `waybill.audit.*`: the control plane's own audit records (no domain type; written
    /// and read through serde with [`Registry::encode_record`] and
    /// [`Registry::decode_record`]).
    Audit,
    /// `waybill.connect.*`: the connectors' own state records (a poller's cursor), no
    /// domain type; through serde like [`Kind::Audit`].
    Connect,
    /// `waybill.snapshot.*`: the coordinator's saga state snapshots (a flow's state, a
    /// partition's mark), no domain type; through serde like [`Kind::Audit`].
    Snapshot,
}

impl Kind {
    /// The namespace of the schemas of this kind.
    pub const fn namespace(self) -> &'static str {
        match self {
            Kind::Event => "waybill.event",
            Kind::Command => "waybill.command",
            Kind::Journal | Kind::Checkpoint => "waybill.journal",
            Kind::Audit => "waybill.audit",
            Kind::Connect => "waybill.connect",
            Kind::Snapshot => "waybill.snapshot",
        }
    }

    /// The kind of the schema with this full name, if it is one Waybill maps.
    pub fn of(full_name: &str) -> Option<Kind> {
        match full_name.rsplit_once('.')? {
            ("waybill.event", _) => Some(Kind::Event),
            ("waybill.command", _) => Some(Kind::Command),
            ("waybill.journal", "Checkpoint") => Some(Kind::Checkpoint),
            ("waybill.journal", _) => Some(Kind::Journal),
            ("waybill.audit", _) => Some(Kind::Audit),
            ("waybill.connect", _) => Some(Kind::Connect),
            ("waybill.snapshot", _) => Some(Kind::Snapshot),
            _ => None,
        }
    }

    /// How error messages describe what was expected.
    pub(crate) const fn expected(self) -> &'static str {
        match self {
            Kind::Event => "an inbound event (waybill.event.*)",
            Kind::Command => "a command (waybill.command.*)",
            Kind::Journal => "a journal event (waybill.journal.*)",
            Kind::Checkpoint => "a journal checkpoint (waybill.journal.Checkpoint)",
            Kind::Audit => "a control-plane audit record (waybill.audit.*)",
            Kind::Connect => "a connector's state record (waybill.connect.*)",
            Kind::Snapshot => "a saga state snapshot record (waybill.snapshot.*)",
        }
    }

    fn slot(self) -> usize {
        match self {
            Kind::Event => 0,
            Kind::Command => 1,
            Kind::Journal | Kind::Checkpoint => 2,
            Kind::Audit => 3,
            Kind::Connect => 4,
            Kind::Snapshot => 5,
        }
    }
}

/// One parsed schema version.
#[derive(Debug)]
pub struct RegisteredSchema {
    id: u32,
    full_name: String,
    name_at: usize,
    version: u32,
    kind: Kind,
    json: String,
    schema: Schema,
    /// `schema` with every named-type reference replaced by its definition, so that
    /// apache-avro's datum reader, writer and resolver need no name table (building one
    /// costs a walk of the schema and a hash map per call).
    pub(crate) expanded: Schema,
    /// Id of the latest version of the same full name: the reader schema for data
    /// written with this one.
    pub(crate) reader_id: u32,
    /// False when this schema is the reader or reads identically (same Parsing Canonical
    /// Form), so that decoding can skip schema resolution.
    pub(crate) needs_resolution: bool,
    /// True when this is the latest version and the domain type has exactly its shape,
    /// so encoding may use apache-avro's direct serializer (see `codec`).
    pub(crate) direct_write: bool,
    /// True when data written with this schema needs no resolution and every type in it
    /// is one `datum` reads, so decoding may skip the intermediate Avro `Value`.
    pub(crate) direct_read: bool,
}

impl RegisteredSchema {
    /// Schema id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Full name, e.g. `waybill.event.OrderReleased`.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Where the file lives under `schemas/`.
    pub fn path(&self) -> String {
        SchemaSource { id: self.id, full_name: &self.full_name, version: self.version, json: "" }.path()
    }

    /// Name without namespace, e.g. `OrderReleased`.
    pub fn name(&self) -> &str {
        &self.full_name[self.name_at..]
    }

    /// Version, from 1.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The domain type it maps to.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The `.avsc` text.
    pub fn json(&self) -> &str {
        &self.json
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The parsed schema with named-type references inlined (no `Schema::Ref`).
    pub fn expanded(&self) -> &Schema {
        &self.expanded
    }

    /// Whether records are encoded with apache-avro's direct serde serializer (the
    /// latest version, whose records have exactly the domain types' fields in order) or
    /// through an Avro `Value` and schema resolution (slower; any other shape).
    pub fn direct_write(&self) -> bool {
        self.direct_write
    }
}

/// All schema versions known to this build.
#[derive(Debug)]
pub struct Registry {
    by_id: HashMap<u32, RegisteredSchema>,
    /// Ids of each full name's versions, in version order (version `n` at index `n - 1`).
    families: BTreeMap<String, Vec<u32>>,
    /// Latest id by short name, per namespace slot (see [`Kind::slot`]), so that encoding
    /// finds its schema without building a full name.
    latest_by_name: [HashMap<String, u32>; 6],
}

/// Most bytes of one string or `bytes` field, and most items of one array or map, that
/// a decoder accepts. apache-avro reserves an array's claimed length before reading its
/// items, so without a bound a few bytes claiming half a billion items make it ask for
/// 30 GB and abort the process. Nothing Waybill writes comes near this (a Kafka record is
/// 1 MB by default, an ingestion body at most 2 MB); a record beyond it is a decode error.
pub const MAX_DECODE_LEN: usize = 4 * 1024 * 1024;

static EMBEDDED: LazyLock<Registry> = LazyLock::new(|| {
    Registry::from_sources(CATALOG.iter().copied())
        .unwrap_or_else(|e| panic!("the schemas/ folder compiled into waybill-schema is invalid: {e}"))
});

impl Registry {
    /// The registry compiled into this binary from `schemas/` and `schemas/ids.txt`.
    ///
    /// # Panics
    /// If a compiled-in schema does not parse or the catalog is inconsistent; the crate's
    /// tests load it, so a build that passed them never panics here.
    pub fn embedded() -> &'static Registry {
        &EMBEDDED
    }

    /// The sources the embedded registry is built from, in `ids.txt` order.
    pub fn embedded_sources() -> &'static [SchemaSource<'static>] {
        CATALOG
    }

    /// Builds a registry from schema sources. Checks that every schema parses, declares
    /// the full name it is listed under, lives in a namespace Waybill maps, and that ids
    /// and `(name, version)` pairs are unique and versions run 1, 2, 3… without gaps.
    pub fn from_sources<'a>(sources: impl IntoIterator<Item = SchemaSource<'a>>) -> Result<Registry> {
        // apache-avro's bound is process-wide and set once, before anything decodes; every
        // decode goes through a registry, so building one is early enough.
        apache_avro::util::max_allocation_bytes(MAX_DECODE_LEN);
        let mut by_id = HashMap::new();
        let mut versions: BTreeMap<String, BTreeMap<u32, u32>> = BTreeMap::new();
        for src in sources {
            let path = src.path();
            let schema = Schema::parse_str(src.json)
                .map_err(|e| Error::Catalog(format!("{path} (id {}) does not parse: {e}", src.id)))?;
            let declared = schema.name().map(|n| n.fullname(None)).unwrap_or_default();
            if declared != src.full_name {
                return Err(Error::Catalog(format!(
                    "{path} (id {}) declares record {declared:?} but ids.txt lists it as {}; fix the file or the line",
                    src.id, src.full_name
                )));
            }
            let kind = Kind::of(src.full_name).ok_or_else(|| {
                Error::Catalog(format!(
                    "{path} (id {}): namespace of {} is not waybill.event, waybill.command, waybill.journal, waybill.audit, waybill.connect or waybill.snapshot",
                    src.id, src.full_name
                ))
            })?;
            if src.version == 0 {
                return Err(Error::Catalog(format!("{path} (id {}): versions start at 1", src.id)));
            }
            let expanded = expand(&schema).map_err(|e| Error::Catalog(format!("{path} (id {}): {e}", src.id)))?;
            let entry = RegisteredSchema {
                id: src.id,
                full_name: src.full_name.to_string(),
                name_at: src.full_name.rfind('.').map_or(0, |i| i + 1),
                version: src.version,
                kind,
                json: src.json.to_string(),
                schema,
                expanded,
                reader_id: src.id,
                needs_resolution: false,
                direct_write: false,
                direct_read: false,
            };
            if by_id.insert(src.id, entry).is_some() {
                return Err(Error::Catalog(format!("schema id {} is listed twice; ids are never reused", src.id)));
            }
            if let Some(other) = versions.entry(src.full_name.to_string()).or_default().insert(src.version, src.id) {
                return Err(Error::Catalog(format!(
                    "{} v{} is listed twice (ids {other} and {})",
                    src.full_name, src.version, src.id
                )));
            }
        }

        let mut families = BTreeMap::new();
        let mut latest_by_name: [HashMap<String, u32>; 6] = Default::default();
        for (full_name, by_version) in versions {
            let numbers: Vec<u32> = by_version.keys().copied().collect();
            if numbers.iter().zip(1..).any(|(&v, want)| v != want) {
                return Err(Error::Catalog(format!(
                    "{full_name} has versions {numbers:?}; versions must be numbered 1, 2, 3… without gaps"
                )));
            }
            let ids: Vec<u32> = by_version.into_values().collect();
            let reader_id = *ids.last().expect("a family has at least one version");
            let reader_form = by_id[&reader_id].schema.canonical_form();
            for id in &ids {
                let entry = by_id.get_mut(id).expect("inserted above");
                entry.reader_id = reader_id;
                entry.needs_resolution = *id != reader_id && entry.schema.canonical_form() != reader_form;
                entry.direct_read = !entry.needs_resolution && crate::datum::supported(&entry.expanded);
            }
            let reader = by_id.get_mut(&reader_id).expect("inserted above");
            reader.direct_write =
                crate::codec::direct_write_check(reader.kind, reader.name(), &reader.expanded).is_ok();
            latest_by_name[reader.kind.slot()].insert(reader.name().to_string(), reader_id);
            families.insert(full_name, ids);
        }
        Ok(Registry { by_id, families, latest_by_name })
    }

    /// The schema with this id.
    pub fn get(&self, id: u32) -> Option<&RegisteredSchema> {
        self.by_id.get(&id)
    }

    /// The latest version of the schema with this full name.
    pub fn latest(&self, full_name: &str) -> Option<&RegisteredSchema> {
        let id = self.families.get(full_name)?.last()?;
        self.by_id.get(id)
    }

    /// Version `version` of the schema with this full name.
    pub fn version(&self, full_name: &str, version: u32) -> Option<&RegisteredSchema> {
        let ids = self.families.get(full_name)?;
        let id = ids.get(usize::try_from(version).ok()?.checked_sub(1)?)?;
        self.by_id.get(id)
    }

    /// Every version of the schema with this full name, oldest first (empty if unknown).
    pub fn versions(&self, full_name: &str) -> Vec<&RegisteredSchema> {
        self.families.get(full_name).map(|ids| ids.iter().map(|id| &self.by_id[id]).collect()).unwrap_or_default()
    }

    /// The full names of all schema families, sorted.
    pub fn full_names(&self) -> impl Iterator<Item = &str> {
        self.families.keys().map(String::as_str)
    }

    /// All schemas, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &RegisteredSchema> {
        let mut all: Vec<&RegisteredSchema> = self.by_id.values().collect();
        all.sort_by_key(|s| s.id);
        all.into_iter()
    }

    /// The schema a framed record names in its header.
    pub fn schema_of(&self, bytes: &[u8]) -> Result<&RegisteredSchema> {
        let (id, _) = wire::unframe(bytes)?;
        self.by_wire_id(id).ok_or(Error::UnknownSchemaId { id })
    }

    /// The latest schema of `kind` with short name `name`; used by the encoders.
    pub(crate) fn latest_of(&self, kind: Kind, name: &str) -> Result<&RegisteredSchema> {
        self.latest_by_name[kind.slot()]
            .get(name)
            .map(|id| &self.by_id[id])
            .filter(|s| s.kind == kind)
            .ok_or_else(|| Error::UnknownSchema { full_name: format!("{}.{name}", kind.namespace()), version: None })
    }

    /// Unframes `bytes`, checks the schema is of an accepted kind, decodes the datum with
    /// the writer schema and resolves it to the reader (latest) schema when they differ.
    /// Returns the writer and reader entries and the value.
    pub(crate) fn decode_value(
        &self,
        bytes: &[u8],
        accept: &[Kind],
    ) -> Result<(&RegisteredSchema, &RegisteredSchema, Value)> {
        let (id, mut datum) = wire::unframe(bytes)?;
        let writer = self.by_wire_id(id).ok_or(Error::UnknownSchemaId { id })?;
        if !accept.contains(&writer.kind) {
            return Err(Error::WrongKind {
                id,
                full_name: writer.full_name.clone(),
                version: writer.version,
                expected: accept[0].expected(),
            });
        }
        let reader = &self.by_id[&writer.reader_id];
        let decode_error = |source| Error::Decode {
            id,
            full_name: writer.full_name.clone(),
            version: writer.version,
            reader_version: reader.version,
            source: Box::new(source),
        };
        // Both schemas are expanded, so apache-avro needs no name table (empty
        // `schemata`); resolution runs only when the writer really differs.
        let value =
            apache_avro::from_avro_datum_reader_schemata(&writer.expanded, Vec::new(), &mut datum, None, Vec::new())
                .map_err(decode_error)?;
        if !datum.is_empty() {
            return Err(Error::TrailingBytes {
                id,
                full_name: writer.full_name.clone(),
                version: writer.version,
                trailing: datum.len(),
            });
        }
        let value =
            if writer.needs_resolution { value.resolve(&reader.expanded).map_err(decode_error)? } else { value };
        Ok((writer, reader, value))
    }
}

/// Returns `schema` with every `Schema::Ref` replaced by the named type it refers to.
///
/// apache-avro 0.21's `write_avro_datum_ref` serializes with an empty name table, so a
/// schema that uses a named type twice (the second use is a `Ref`) cannot be written
/// through it; inlining makes every schema usable there and lets decoding skip building
/// a name table per record. Recursive types cannot be inlined and are rejected.
pub fn expand(schema: &Schema) -> Result<Schema, String> {
    let mut defined = HashMap::new();
    let mut stack = Vec::new();
    expand_in(schema, &None, &mut defined, &mut stack)
}

fn expand_in(
    schema: &Schema,
    enclosing: &Namespace,
    defined: &mut HashMap<String, Schema>,
    stack: &mut Vec<String>,
) -> Result<Schema, String> {
    Ok(match schema {
        Schema::Ref { name } => {
            let full = name.fullname(enclosing.clone());
            if stack.contains(&full) {
                return Err(format!("type {full} is recursive; Waybill schemas must not be"));
            }
            defined.get(&full).cloned().ok_or_else(|| format!("type {full} is used before it is defined"))?
        }
        Schema::Record(record) => {
            let full = record.name.fullname(enclosing.clone());
            let inner: Namespace = Name::new(&full).ok().and_then(|n| n.namespace);
            stack.push(full.clone());
            let mut out = record.clone();
            for field in &mut out.fields {
                field.schema = expand_in(&field.schema, &inner, defined, stack)?;
            }
            stack.pop();
            let out = Schema::Record(out);
            defined.insert(full, out.clone());
            out
        }
        Schema::Enum(e) => {
            defined.insert(e.name.fullname(enclosing.clone()), schema.clone());
            schema.clone()
        }
        Schema::Fixed(f) => {
            defined.insert(f.name.fullname(enclosing.clone()), schema.clone());
            schema.clone()
        }
        Schema::Array(array) => {
            let mut out = array.clone();
            out.items = Box::new(expand_in(&array.items, enclosing, defined, stack)?);
            Schema::Array(out)
        }
        Schema::Map(map) => {
            let mut out = map.clone();
            out.types = Box::new(expand_in(&map.types, enclosing, defined, stack)?);
            Schema::Map(out)
        }
        Schema::Union(union) => {
            let variants = union
                .variants()
                .iter()
                .map(|v| expand_in(v, enclosing, defined, stack))
                .collect::<Result<Vec<_>, _>>()?;
            Schema::Union(UnionSchema::new(variants).map_err(|e| e.to_string())?)
        }
        other => other.clone(),
    })
}
