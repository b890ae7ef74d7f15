//! Bytes as text: lowercase hex for digests and ids, percent-encoding for URLs and file names.

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// `bytes` as lowercase hex, two digits a byte: how WeCom writes signatures, and how the
/// crate writes digests and random ids.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(LOWER[usize::from(byte >> 4)]));
        out.push(char::from(LOWER[usize::from(byte & 0x0f)]));
    }
    out
}

/// Appends `text` to `out`, keeping ASCII letters, digits and the bytes in `also_kept` and
/// writing every other byte as `%XX` (uppercase, as RFC 3986 recommends).
pub(crate) fn percent_encode(out: &mut String, text: &str, also_kept: &[u8]) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || also_kept.contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(UPPER[usize::from(byte >> 4)]));
            out.push(char::from(UPPER[usize::from(byte & 0x0f)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lowercase_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn percent_encode_keeps_only_what_it_is_told() {
        let mut out = String::from("x=");
        percent_encode(&mut out, "a-b_c.d~e f/é", b"-_.~");
        assert_eq!(out, "x=a-b_c.d~e%20f%2F%C3%A9");

        let mut file = String::new();
        percent_encode(&mut file, "../wk.1", b"-_");
        assert_eq!(file, "%2E%2E%2Fwk%2E1");
    }
}
