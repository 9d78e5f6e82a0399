//! Text that users write (machines files, known_hosts, `app.toml`): UTF-8, where a leading
//! byte-order mark is dropped (editors on Windows write one), and a byte that is not UTF-8 is
//! reported with its line and column rather than as a bare decoding failure.

use crate::ProtoError;

/// The UTF-8 byte-order mark, as a character.
pub const BOM: char = '\u{feff}';

/// `text` without a leading byte-order mark.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Decode a user's text file named `source_name`: UTF-8 with an optional byte-order mark
/// (dropped). Errors: [`ProtoError::NotUtf8`] with the line and column (1-based, in bytes) of
/// the first byte that is not UTF-8.
pub fn decode_text(source_name: &str, bytes: Vec<u8>) -> Result<String, ProtoError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(match text.strip_prefix(BOM) {
            Some(rest) => rest.to_owned(),
            None => text,
        }),
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let before = &bytes[..at];
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            Err(ProtoError::NotUtf8 {
                source_name: source_name.to_owned(),
                line,
                column: at - line_start + 1,
                byte: bytes[at],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_dropped() {
        let text = decode_text("f", b"\xef\xbb\xbf# comment\nlocal:a\n".to_vec()).unwrap();
        assert_eq!(text, "# comment\nlocal:a\n");
        assert_eq!(strip_bom("\u{feff}x"), "x");
        assert_eq!(strip_bom("x\u{feff}"), "x\u{feff}");
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_placed() {
        let e = decode_text(
            "machines.txt",
            b"local:a\nlocal:b\nlocal:\xe9t\xe9\n".to_vec(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "machines.txt:3: not UTF-8 (byte 0xe9 at column 7): save the file as UTF-8"
        );
        let e = decode_text("f", b"\xff".to_vec()).unwrap_err().to_string();
        assert!(
            e.starts_with("f:1: not UTF-8 (byte 0xff at column 1)"),
            "{e}"
        );
    }
}
