//! A serde `Deserializer` that reads an Avro binary datum straight into a domain type,
//! guided by the (expanded) schema it was written with.
//!
//! apache-avro 0.21 only deserializes from an `apache_avro::types::Value`, so its decode
//! builds a `Value` tree for every record (strings, vectors, boxed unions) and then copies
//! it into the domain type. This reader skips the tree. It is used only when the writer
//! schema is the reader schema (no resolution needed) and every type in it is one this
//! reader knows; anything else, and every error, falls back to the `Value` path, so
//! results and error messages stay those of apache-avro.
//!
//! It follows apache-avro's `from_value` mapping for the types Waybill's schemas use:
//! records are maps of field name to value, `["null", T]` unions are options, enums are
//! unit variants named by their symbol, arrays are sequences, maps are string-keyed maps,
//! `int`/`date`/`time-millis` are `i32`, `long` and the other time types `i64`.

use std::fmt;

use apache_avro::Schema;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// Why a datum could not be read (only ever logged by the caller's fallback).
#[derive(Debug)]
pub(crate) struct DatumError(String);

impl fmt::Display for DatumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatumError {}

impl de::Error for DatumError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DatumError(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, DatumError>;

fn eof() -> DatumError {
    DatumError("unexpected end of datum".into())
}

/// Reads one zig-zag varint of at most 10 bytes.
fn read_long(input: &mut &[u8]) -> Result<i64> {
    let mut value: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, rest) = input.split_first().ok_or_else(eof)?;
        *input = rest;
        if shift == 63 && b > 1 {
            return Err(DatumError("varint overflows a long".into()));
        }
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(DatumError("varint overflows a long".into()));
        }
    }
    Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
}

fn read_int(input: &mut &[u8]) -> Result<i32> {
    i32::try_from(read_long(input)?).map_err(|_| DatumError("int out of range".into()))
}

fn read_len(input: &mut &[u8]) -> Result<usize> {
    let n = read_long(input)?;
    let n = usize::try_from(n).map_err(|_| DatumError(format!("negative length {n}")))?;
    if n > input.len() {
        return Err(eof());
    }
    Ok(n)
}

fn read_bytes<'de>(input: &mut &'de [u8]) -> Result<&'de [u8]> {
    let n = read_len(input)?;
    let (b, rest) = input.split_at(n);
    *input = rest;
    Ok(b)
}

fn read_str<'de>(input: &mut &'de [u8]) -> Result<&'de str> {
    std::str::from_utf8(read_bytes(input)?).map_err(|e| DatumError(format!("invalid UTF-8: {e}")))
}

fn read_fixed<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    let (b, rest) = input.split_first_chunk::<N>().ok_or_else(eof)?;
    *input = rest;
    Ok(*b)
}

/// Whether every type reachable in `schema` is one [`Datum`] reads.
pub(crate) fn supported(schema: &Schema) -> bool {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::Bytes
        | Schema::String
        | Schema::Enum(_)
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos => true,
        Schema::Array(a) => supported(&a.items),
        Schema::Map(m) => supported(&m.types),
        Schema::Union(u) => u.variants().iter().all(supported),
        Schema::Record(r) => r.fields.iter().all(|f| supported(&f.schema)),
        _ => false,
    }
}

/// Deserializes `T` from the datum at the start of `input` written with `schema`, and
/// advances `input` past it.
pub(crate) fn from_datum<'de, T: de::Deserialize<'de>>(schema: &Schema, input: &mut &'de [u8]) -> Result<T> {
    T::deserialize(Datum { schema, input })
}

/// One value of `schema` at the start of `input`.
struct Datum<'s, 'r, 'de> {
    schema: &'s Schema,
    input: &'r mut &'de [u8],
}

impl<'s, 'r, 'de> Datum<'s, 'r, 'de> {
    /// The branch of a union.
    fn branch(&mut self, variants: &'s [Schema]) -> Result<&'s Schema> {
        let i = read_long(self.input)?;
        usize::try_from(i)
            .ok()
            .and_then(|i| variants.get(i))
            .ok_or_else(|| DatumError(format!("union index {i} out of range")))
    }
}

impl<'de> de::Deserializer<'de> for Datum<'_, '_, 'de> {
    type Error = DatumError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.schema {
            Schema::Null => visitor.visit_unit(),
            Schema::Boolean => match read_fixed::<1>(self.input)? {
                [0] => visitor.visit_bool(false),
                [1] => visitor.visit_bool(true),
                [b] => Err(DatumError(format!("invalid boolean byte {b}"))),
            },
            Schema::Int | Schema::Date | Schema::TimeMillis => visitor.visit_i32(read_int(self.input)?),
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => visitor.visit_i64(read_long(self.input)?),
            Schema::Float => visitor.visit_f32(f32::from_le_bytes(read_fixed(self.input)?)),
            Schema::Double => visitor.visit_f64(f64::from_le_bytes(read_fixed(self.input)?)),
            Schema::Bytes => visitor.visit_borrowed_bytes(read_bytes(self.input)?),
            Schema::String => visitor.visit_borrowed_str(read_str(self.input)?),
            Schema::Enum(e) => visitor.visit_str(symbol(&e.symbols, self.input)?),
            Schema::Union(u) => {
                let schema = self.branch(u.variants())?;
                Datum { schema, input: self.input }.deserialize_any(visitor)
            }
            Schema::Array(a) => visitor.visit_seq(Blocks::new(&a.items, self.input)?),
            Schema::Map(m) => visitor.visit_map(Blocks::new(&m.types, self.input)?),
            Schema::Record(r) => visitor.visit_map(Fields { fields: &r.fields, next: 0, input: self.input }),
            other => Err(DatumError(format!("unsupported schema {other:?}"))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value> {
        match self.schema {
            Schema::Union(u) => match self.branch(u.variants())? {
                Schema::Null => visitor.visit_none(),
                schema => visitor.visit_some(Datum { schema, input: self.input }),
            },
            Schema::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.schema {
            Schema::Enum(e) => visitor.visit_enum(symbol(&e.symbols, self.input)?.into_deserializer()),
            Schema::Union(u) => {
                let schema = self.branch(u.variants())?;
                Datum { schema, input: self.input }.deserialize_enum(name, variants, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

fn symbol<'s>(symbols: &'s [String], input: &mut &[u8]) -> Result<&'s str> {
    let i = read_long(input)?;
    usize::try_from(i)
        .ok()
        .and_then(|i| symbols.get(i))
        .map(String::as_str)
        .ok_or_else(|| DatumError(format!("enum index {i} out of range")))
}

/// The fields of a record, in schema order.
struct Fields<'s, 'r, 'de> {
    fields: &'s [apache_avro::schema::RecordField],
    next: usize,
    input: &'r mut &'de [u8],
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_, 'de> {
    type Error = DatumError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        match self.fields.get(self.next) {
            Some(f) => seed.deserialize(f.name.as_str().into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let f = self.fields.get(self.next).ok_or_else(|| DatumError("value without a field".into()))?;
        self.next += 1;
        seed.deserialize(Datum { schema: &f.schema, input: self.input })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.fields.len() - self.next)
    }
}

/// The items of an array or the entries of a map: blocks of a count (negative when a
/// byte size follows) until a count of zero.
struct Blocks<'s, 'r, 'de> {
    items: &'s Schema,
    /// Items left in the current block.
    left: usize,
    /// Whether the count of zero that ends the items was read.
    done: bool,
    input: &'r mut &'de [u8],
}

impl<'s, 'r, 'de> Blocks<'s, 'r, 'de> {
    fn new(items: &'s Schema, input: &'r mut &'de [u8]) -> Result<Self> {
        let mut b = Blocks { items, left: 0, done: false, input };
        b.start_block()?;
        Ok(b)
    }

    fn start_block(&mut self) -> Result<()> {
        let mut n = read_long(self.input)?;
        if n < 0 {
            n = n.checked_neg().ok_or_else(|| DatumError("block count overflows".into()))?;
            read_long(self.input)?;
        }
        self.left = usize::try_from(n).map_err(|_| DatumError("block count overflows".into()))?;
        self.done = self.left == 0;
        Ok(())
    }

    /// Whether another item follows (moving to the next block when this one is done).
    fn more(&mut self) -> Result<bool> {
        if self.left == 0 && !self.done {
            self.start_block()?;
        }
        Ok(self.left > 0)
    }
}

impl<'de> de::SeqAccess<'de> for Blocks<'_, '_, 'de> {
    type Error = DatumError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Datum { schema: self.items, input: self.input }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Bounded so that a corrupt count cannot make the caller allocate a huge vector.
        Some(self.left.min(self.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Blocks<'_, '_, 'de> {
    type Error = DatumError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.more()? {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Datum { schema: &Schema::String, input: self.input }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(Datum { schema: self.items, input: self.input })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.input.len()))
    }
}
