//! The file name of a `Content-Disposition` header: `filename*=UTF-8''…` (RFC 5987) when
//! given, else `filename="…"`, reduced to a name that is safe to create in a directory.

/// The file name `value` gives, if any. Bytes that aren't UTF-8 (some servers send the raw
/// name) are replaced rather than refused.
pub(crate) fn filename(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let (mut plain, mut extended) = (None, None);
    for (name, value) in parameters(&text) {
        if name.eq_ignore_ascii_case("filename*") {
            extended = extended.or_else(|| decode_extended(&value));
        } else if name.eq_ignore_ascii_case("filename") {
            plain = plain.or(Some(value));
        }
    }
    extended.or(plain).and_then(|name| safe_name(&name))
}

/// The `name=value` parameters after the disposition type, values unquoted.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = match text.split_once(';') {
        Some((_, parameters)) => parameters,
        None => return found,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some((name, after)) = rest.split_once('=') else {
            return found;
        };
        let name = name.trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => match after.split_once(';') {
                Some((token, remaining)) => (token.trim().to_owned(), remaining),
                None => (after.trim().to_owned(), ""),
            },
        };
        found.push((name, value));
        rest = remaining;
    }
}

/// A quoted string's content (after its opening quote), and what follows its closing
/// quote. Only `\"` and `\\` are escapes: servers put Windows paths in names unescaped,
/// as browsers expect. An unclosed string runs to the end.
fn unquote(quoted: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = quoted.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[at + 1..]),
            '\\' => match chars.next_if(|(_, next)| matches!(next, '"' | '\\')) {
                Some((_, escaped)) => value.push(escaped),
                None => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    (value, "")
}

/// `UTF-8''%E6%8A%A5%E4%BB%B7.pdf` → `报价.pdf`; ISO-8859-1 too. `None` for other charsets
/// or bytes that aren't their charset's.
fn decode_extended(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let (charset, _language, encoded) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = percent_decode(encoded)?;
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let high = hex(bytes.next()?)?;
            let low = hex(bytes.next()?)?;
            out.push(high << 4 | low);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The last path component, without control characters: a name a bot can join to its own
/// directory without the server choosing another (`../../etc/passwd` → `passwd`).
fn safe_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    (!matches!(cleaned, "" | "." | "..")).then(|| cleaned.to_owned())
}

#[cfg(test)]
mod tests {
    use super::filename;

    fn name(header: &str) -> Option<String> {
        filename(header.as_bytes())
    }

    #[test]
    fn quoted_and_bare_names() {
        assert_eq!(
            name(r#"attachment; filename="MEDIA_ID.jpg""#).as_deref(),
            Some("MEDIA_ID.jpg")
        );
        assert_eq!(
            name("attachment; filename=voice.amr").as_deref(),
            Some("voice.amr")
        );
        assert_eq!(
            name(r#"attachment;filename="a \"quoted\" name.txt";size=3"#).as_deref(),
            Some(r#"a "quoted" name.txt"#)
        );
        assert_eq!(name("attachment").as_deref(), None);
        assert_eq!(name("inline; size=3").as_deref(), None);
    }

    #[test]
    fn the_extended_name_wins_and_is_decoded() {
        let header = r#"attachment; filename="fallback.pdf"; filename*=UTF-8''%E6%8A%A5%E4%BB%B7%E5%8D%95.pdf"#;
        assert_eq!(name(header).as_deref(), Some("报价单.pdf"));
        assert_eq!(
            name("attachment; filename*=utf-8'zh-CN'%E5%9B%BE.png").as_deref(),
            Some("图.png")
        );
        assert_eq!(
            name("attachment; filename*=ISO-8859-1''caf%E9.txt").as_deref(),
            Some("café.txt")
        );
        // An extended name that doesn't decode falls back to the plain one.
        assert_eq!(
            name(r#"attachment; filename*=UTF-8''%FF%FE.txt; filename="plain.txt""#).as_deref(),
            Some("plain.txt")
        );
        assert_eq!(
            name("attachment; filename*=UTF-8''%E6%8A").as_deref(),
            None,
            "cut inside a character"
        );
    }

    #[test]
    fn raw_utf8_names_are_kept() {
        assert_eq!(
            filename("attachment; filename=\"语音.amr\"".as_bytes()).as_deref(),
            Some("语音.amr")
        );
    }

    #[test]
    fn names_cannot_leave_the_directory() {
        for header in [
            r#"attachment; filename="../../etc/passwd""#,
            r#"attachment; filename="C:\Windows\passwd""#,
            "attachment; filename*=UTF-8''..%2F..%2Fpasswd",
        ] {
            assert_eq!(name(header).as_deref(), Some("passwd"), "{header}");
        }
        for header in [
            r#"attachment; filename="..""#,
            r#"attachment; filename="dir/""#,
            "attachment; filename=\"\u{7}\"",
        ] {
            assert_eq!(name(header), None, "{header}");
        }
        assert_eq!(
            name("attachment; filename=\"a\u{0}b\nc.txt\"").as_deref(),
            Some("abc.txt")
        );
    }
}
