//! Small text helpers shared by the readers.

use std::borrow::Cow;

/// The file's text: UTF-8 without a byte-order mark, or, when the bytes are not UTF-8,
/// ISO 8859-1 (what many banks still write MT940 and CSV files in).
pub(crate) fn decode(bytes: &[u8]) -> Cow<'_, str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Trims and collapses runs of whitespace to one space; `None` when nothing is left.
pub(crate) fn clean(text: &str) -> Option<String> {
    let s = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_files_are_read() {
        assert_eq!(decode(b"M\xfcller"), "Müller");
        assert_eq!(decode("\u{feff}:20:X".as_bytes()), ":20:X");
        assert_eq!(clean("  a \n b  "), Some("a b".into()));
        assert_eq!(clean("  "), None);
    }
}
