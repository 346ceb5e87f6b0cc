//! A compact, deterministic binary encoding for stored values, through serde: struct
//! fields in declaration order without names, integers as (zigzag) varints, strings and
//! sequences with a varint length, enums as the variant index, `Option` as a 0/1 tag.
//! Not self-describing: a value decodes only as the type that wrote it (the layout
//! version in the store guards against reading another build's values).
//!
//! It exists because a rebuild spends most of its time encoding, decoding and writing the
//! views it touches; this format is about a third the size of JSON and several times
//! faster. Equal values always encode to equal bytes.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// An encoding or decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BinError(String);

impl fmt::Display for BinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BinError {}

impl ser::Error for BinError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BinError(msg.to_string())
    }
}

impl de::Error for BinError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        BinError(msg.to_string())
    }
}

type Result<T, E = BinError> = std::result::Result<T, E>;

/// Encodes `value`.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut s = Serializer { out: Vec::with_capacity(1024) };
    value.serialize(&mut s)?;
    Ok(s.out)
}

/// Decodes a `T` that must use all of `bytes`.
pub(crate) fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut d = Deserializer { input: bytes };
    let v = T::deserialize(&mut d)?;
    if !d.input.is_empty() {
        return Err(BinError(format!("{} trailing bytes", d.input.len())));
    }
    Ok(v)
}

struct Serializer {
    out: Vec<u8>,
}

impl Serializer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn signed(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    fn len(&mut self, len: Option<usize>) -> Result<()> {
        let n = len.ok_or_else(|| BinError("sequences must know their length".into()))?;
        self.varint(n as u64);
        Ok(())
    }
}

impl ser::Serializer for &mut Serializer {
    type Ok = ();
    type Error = BinError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(u8::from(v));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.signed(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        self.signed(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.varint(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        self.varint(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<()> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<()> {
        self.varint(u64::from(v));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.serialize_bytes(v.as_bytes())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.varint(v.len() as u64);
        self.out.extend_from_slice(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.out.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.varint(index.into());
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint(index.into());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.len(len)?;
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_tuple_variant(self, _: &'static str, index: u32, _: &'static str, _: usize) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.len(len)?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_struct_variant(self, _: &'static str, index: u32, _: &'static str, _: usize) -> Result<Self> {
        self.varint(index.into());
        Ok(self)
    }
}

macro_rules! compound {
    ($($tr:ident :: $f:ident),*) => {$(
        impl ser::$tr for &mut Serializer {
            type Ok = ();
            type Error = BinError;
            fn $f<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<()> {
                Ok(())
            }
        }
    )*};
}
compound!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Serializer {
    type Ok = ();
    type Error = BinError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Serializer {
    type Ok = ();
    type Error = BinError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Serializer {
    type Ok = ();
    type Error = BinError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<()> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

struct Deserializer<'de> {
    input: &'de [u8],
}

impl<'de> Deserializer<'de> {
    fn byte(&mut self) -> Result<u8> {
        let (b, rest) = self.input.split_first().ok_or_else(|| BinError("unexpected end of value".into()))?;
        self.input = rest;
        Ok(*b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BinError("varint longer than 10 bytes".into()))
    }

    fn signed(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.input.len() < n {
            return Err(BinError(format!("value needs {n} more bytes, {} left", self.input.len())));
        }
        let (a, b) = self.input.split_at(n);
        self.input = b;
        Ok(a)
    }

    fn length(&mut self) -> Result<usize> {
        let n = self.varint()?;
        // Every element takes at least one byte, except units; cap to what is left to
        // reject garbage lengths before allocating.
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.input.len())
            .ok_or_else(|| BinError(format!("length {n} exceeds the value")))
    }

    fn bytes(&mut self) -> Result<&'de [u8]> {
        let n = self.length()?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).map_err(|e| BinError(e.to_string()))
    }
}

fn int<T: TryFrom<i64>>(v: i64) -> Result<T> {
    T::try_from(v).map_err(|_| BinError(format!("integer {v} out of range")))
}

fn uint<T: TryFrom<u64>>(v: u64) -> Result<T> {
    T::try_from(v).map_err(|_| BinError(format!("integer {v} out of range")))
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = BinError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(BinError("the binary encoding is not self-describing".into()))
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_bool(false),
            1 => v.visit_bool(true),
            b => Err(BinError(format!("invalid bool {b}"))),
        }
    }
    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i8(int(self.signed()?)?)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i16(int(self.signed()?)?)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i32(int(self.signed()?)?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_i64(self.signed()?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u8(uint(self.varint()?)?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u16(uint(self.varint()?)?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u32(uint(self.varint()?)?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u64(self.varint()?)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let b = self.take(4)?;
        v.visit_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        v.visit_f64(f64::from_le_bytes(a))
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let c = uint::<u32>(self.varint()?)?;
        v.visit_char(char::from_u32(c).ok_or_else(|| BinError(format!("invalid char {c}")))?)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_str(self.str()?)
    }
    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_borrowed_bytes(self.bytes()?)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.byte()? {
            0 => v.visit_none(),
            1 => v.visit_some(self),
            b => Err(BinError(format!("invalid option tag {b}"))),
        }
    }
    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_unit()
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, v: V) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| BinError(format!("length {n} too large")))?;
        v.visit_seq(Elements { de: self, left: n })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Elements { de: self, left: len })
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Elements { de: self, left: len })
    }
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| BinError(format!("length {n} too large")))?;
        v.visit_map(Elements { de: self, left: n })
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(Elements { de: self, left: fields.len() })
    }
    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], v: V) -> Result<V::Value> {
        v.visit_enum(self)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_u64(self.varint()?)
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(BinError("the binary encoding cannot skip unknown values".into()))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

struct Elements<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = BinError;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.len()))
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = BinError;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.de)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Deserializer<'de> {
    type Error = BinError;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = uint::<u32>(self.varint()?)?;
        let v = seed.deserialize(IntoDeserializer::<BinError>::into_deserializer(index))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Deserializer<'de> {
    type Error = BinError;
    fn unit_variant(self) -> Result<()> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value> {
        v.visit_seq(Elements { de: self, left: len })
    }
    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], v: V) -> Result<V::Value> {
        v.visit_seq(Elements { de: self, left: fields.len() })
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use waybill_domain::{ExceptionCategory, Qty, SourceRef, System, Timestamp};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        New(i64),
        Tuple(u8, String),
        Struct { a: Option<bool>, b: Vec<i32> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        at: Timestamp,
        qty: Qty,
        neg: i64,
        name: String,
        subject: Option<SourceRef>,
        none: Option<String>,
        category: ExceptionCategory,
        shapes: Vec<Shape>,
        big: u64,
        pair: (i32, char),
    }

    #[test]
    fn values_round_trip() {
        let s = Sample {
            at: Timestamp(1_717_000_000_000_000),
            qty: Qty(2500),
            neg: -42,
            name: "SO0042 — ünïcode".into(),
            subject: Some(SourceRef::new(System::Wms, "SHP-1")),
            none: None,
            category: ExceptionCategory::BadInput,
            shapes: vec![
                Shape::Unit,
                Shape::New(i64::MIN),
                Shape::Tuple(7, "x".into()),
                Shape::Struct { a: Some(true), b: vec![-1, 0, 1] },
            ],
            big: u64::MAX,
            pair: (i32::MIN, 'é'),
        };
        let bytes = to_vec(&s).unwrap();
        assert_eq!(from_slice::<Sample>(&bytes).unwrap(), s);
        assert_eq!(to_vec(&s).unwrap(), bytes, "deterministic");
        assert!(bytes.len() < serde_json::to_vec(&s).unwrap().len() / 2);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(from_slice::<Sample>(b"").is_err());
        assert!(from_slice::<Sample>(&[0xff; 64]).is_err());
        assert!(from_slice::<Vec<String>>(&[0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut ok = to_vec(&vec![1i64, 2]).unwrap();
        ok.push(0);
        assert!(from_slice::<Vec<i64>>(&ok).is_err(), "trailing bytes");
    }
}
