//! The Confluent wire format: magic byte `0`, the schema id as a 4-byte big-endian
//! integer, then the Avro binary datum (no container-file header, no sync markers).

use crate::error::{Error, Result};

/// The Confluent magic byte.
pub const MAGIC: u8 = 0;

/// Length of the header: magic byte + 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Appends the 5-byte header for `schema_id` to `out`; the datum goes after it.
pub fn write_header(schema_id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
}

/// A framed record: header for `schema_id` followed by `datum`.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    write_header(schema_id, &mut out);
    out.extend_from_slice(datum);
    out
}

/// Splits a framed record into its schema id and the Avro datum.
///
/// Fails when the record is shorter than the header or does not start with the magic
/// byte; the error says what the bytes look like instead (JSON, for instance).
pub fn unframe(bytes: &[u8]) -> Result<(u32, &[u8])> {
    if let Some(&found) = bytes.first()
        && found != MAGIC
    {
        return Err(Error::BadMagic { found, hint: magic_hint(found) });
    }
    let Some((header, datum)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(Error::Truncated { len: bytes.len() });
    };
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, datum))
}

fn magic_hint(found: u8) -> &'static str {
    match found {
        b'{' | b'[' => "this looks like JSON; send it to the JSON endpoint or frame it as Confluent Avro",
        0xC3 => {
            "this looks like Avro single-object encoding (0xC3 0x01 + fingerprint); frame it as Confluent Avro instead"
        }
        b'O' => "this looks like an Avro container file (Obj\\x01); send single records framed as Confluent Avro",
        _ => {
            "this is not a Confluent-framed Avro record; frame it as magic byte 0 + 4-byte big-endian schema id + Avro datum"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_unframe_round_trip() {
        let framed = frame(0x0102_0304, b"abc");
        assert_eq!(framed, [0, 1, 2, 3, 4, b'a', b'b', b'c']);
        assert_eq!(unframe(&framed).unwrap(), (0x0102_0304, &b"abc"[..]));
        assert_eq!(unframe(&[0, 0, 0, 0, 7]).unwrap(), (7, &[][..]));
    }

    #[test]
    fn truncated_frame_says_how_long_it_must_be() {
        let err = unframe(&[0, 0, 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "record is 3 bytes long; a Confluent-framed Avro record needs at least 5 (magic byte 0 + 4-byte schema id)"
        );
        assert!(matches!(unframe(&[]), Err(Error::Truncated { len: 0 })));
    }

    #[test]
    fn json_sent_to_the_avro_path_is_recognised() {
        let err = unframe(br#"{"type":"OrderReleased"}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "magic byte is 0x7b, expected 0x00: this looks like JSON; send it to the JSON endpoint or frame it as Confluent Avro"
        );
        let err = unframe(&[0x42, 0, 0, 0, 1]).unwrap_err();
        assert!(
            err.to_string().starts_with("magic byte is 0x42, expected 0x00: this is not a Confluent-framed"),
            "{err}"
        );
    }
}
