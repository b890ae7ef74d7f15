//! Errors that point into the TOML file.
//!
//! A span can't point into a non-Rust file on stable, so each diagnostic renders the
//! location and a snippet into its message, rustc-style, and is attached to the path
//! literal of the macro call:
//!
//! ```text
//! endpoints.toml:41:8: unknown field type `strng`
//!    |
//! 41 | type = "strng"
//!    |        ^^^^^^^
//!    = help: did you mean `string`?
//! ```

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the TOML source.
    pub span: Range<usize>,
    pub message: String,
    pub help: Option<String>,
    /// For duplicates: where the name was first defined.
    pub first_defined: Option<Range<usize>>,
}

impl Diagnostic {
    /// Renders the diagnostic for `source`, naming the file as `path` (as the user wrote it).
    pub fn render(&self, source: &str, path: &str) -> String {
        // Spans come from the TOML parser and fall on char boundaries; flooring keeps a
        // stray one from panicking the slices below.
        let start = floor_char_boundary(source, self.span.start.min(source.len()));
        let (line_no, col) = line_and_column(source, start);
        let line = source.lines().nth(line_no - 1).unwrap_or("");
        let gutter = " ".repeat(line_no.to_string().len());
        let line_start = start - source[..start].rfind('\n').map_or(0, |i| i + 1);
        // Underline up to the end of the span or of the line, whichever comes first, in chars.
        let span_end = floor_char_boundary(source, self.span.end.clamp(start, source.len()));
        let underlined = source[start..span_end].lines().next().unwrap_or("");
        let width = underlined.chars().count().max(1);
        let pad = line.get(..line_start).map_or(0, |p| p.chars().count());
        let mut out = format!(
            "{path}:{line_no}:{col}: {message}\n{gutter} |\n{line_no} | {line}\n{gutter} | {pad}{carets}",
            message = self.message,
            pad = " ".repeat(pad),
            carets = "^".repeat(width),
        );
        if let Some(help) = &self.help {
            out.push_str(&format!("\n{gutter} = help: {help}"));
        }
        if let Some(first) = &self.first_defined {
            let (line, col) = line_and_column(source, first.start);
            out.push_str(&format!(
                "\n{gutter} = note: first defined at {path}:{line}:{col}"
            ));
        }
        out
    }
}

/// 1-based line and column (columns counted in chars) of a byte offset.
pub fn line_and_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Collects every problem in a file before anything is emitted (serde's `Ctxt` idea), so
/// one build reports all of them.
#[derive(Debug, Default)]
pub struct Diagnostics {
    found: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.found.push(Diagnostic {
            span,
            message: message.into(),
            help: None,
            first_defined: None,
        });
    }

    pub fn duplicate(&mut self, span: Range<usize>, message: String, first: Range<usize>) {
        self.found.push(Diagnostic {
            span,
            message,
            help: None,
            first_defined: Some(first),
        });
    }

    pub fn error_with_help(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.found.push(Diagnostic {
            span,
            message: message.into(),
            help: Some(help.into()),
            first_defined: None,
        });
    }

    pub fn finish(mut self) -> Result<(), Vec<Diagnostic>> {
        if self.found.is_empty() {
            Ok(())
        } else {
            self.found.sort_by_key(|d| d.span.start);
            Err(self.found)
        }
    }
}

/// `a, b` → "`a`, `b`": names as messages and docs list them.
pub fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(wrong, c), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = prev[j] + usize::from(ca != *cb);
            row[j + 1] = substitution.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_snippet_and_help() {
        let source = "[[struct]]\nname = \"A\"\nfields = [{ name = \"x\", type = \"strng\" }]\n";
        let start = source.find("\"strng\"").unwrap_or_default();
        let d = Diagnostic {
            span: start..start + 7,
            message: "unknown field type `strng`".into(),
            help: Some("did you mean `string`?".into()),
            first_defined: None,
        };
        let text = d.render(source, "api.toml");
        assert_eq!(
            text,
            "api.toml:3:32: unknown field type `strng`\n  |\n3 | fields = [{ name = \"x\", type = \"strng\" }]\n  |                                ^^^^^^^\n  = help: did you mean `string`?"
        );
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        let source = "summary = \"欢迎\" x";
        let offset = source.find('x').unwrap_or_default();
        assert_eq!(line_and_column(source, offset), (1, 16));
    }

    #[test]
    fn spans_inside_a_char_render_without_panicking() {
        let source = "summary = \"欢迎\"\n";
        let inside = source.find('欢').unwrap_or_default() + 1;
        let d = Diagnostic {
            span: inside..inside + 4,
            message: "odd span".into(),
            help: None,
            first_defined: Some(inside..inside + 1),
        };
        let text = d.render(source, "api.toml");
        assert!(text.starts_with("api.toml:1:12: odd span"), "{text}");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("strng", ["string", "bool"]), Some("string"));
        assert_eq!(did_you_mean("banana", ["string", "bool"]), None);
    }
}
