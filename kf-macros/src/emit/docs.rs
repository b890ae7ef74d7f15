//! Doc comments for generated items.
//!
//! One `#[doc = " line"]` per line, with the leading space, so the snapshot reads as `///`
//! comments (prettyplease prints a multi-line doc string as `/** */`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::ir::{Api, Field, OverLimit};

/// Lines of a doc comment, built up and then emitted as attributes.
#[derive(Default)]
pub struct Doc {
    lines: Vec<String>,
}

impl Doc {
    pub fn new() -> Self {
        Doc::default()
    }

    pub fn line(mut self, text: impl Into<String>) -> Self {
        self.lines.push(text.into());
        self
    }

    pub fn maybe(self, text: Option<&str>) -> Self {
        match text {
            Some(t) if !t.trim().is_empty() => self.line(t.trim()),
            _ => self,
        }
    }

    /// A paragraph break, unless the doc is empty or already ends with one.
    pub fn blank(mut self) -> Self {
        if self.lines.last().is_some_and(|l| !l.is_empty()) {
            self.lines.push(String::new());
        }
        self
    }

    pub fn official(self, api: &Api, doc: Option<u64>) -> Self {
        match doc {
            Some(id) => self
                .blank()
                .line(format!("[Official documentation]({}{id})", api.docs_prefix)),
            None => self,
        }
    }

    pub fn tokens(&self) -> TokenStream {
        let lines = self.lines.iter().map(|l| {
            let text = if l.is_empty() {
                String::new()
            } else {
                format!(" {l}")
            };
            quote!(#[doc = #text])
        });
        quote!(#(#lines)*)
    }
}

/// `a` or `an`, as the word is spoken: "an `Image`", "a `User`".
pub fn article(word: &str) -> &'static str {
    let lower = word.to_ascii_lowercase();
    let vowel = lower.starts_with(['a', 'e', 'i', 'o', 'u']);
    // "u" and "eu" sounding like "you" take `a`.
    let like_you = ["us", "uni", "use", "eu"]
        .iter()
        .any(|p| lower.starts_with(p));
    if vowel && !like_you { "an" } else { "a" }
}

/// The limits of a field, in words, for its doc comment.
pub fn limit_lines(f: &Field) -> Vec<String> {
    let limits = &f.limits;
    let mut lines = Vec::new();
    let past_limit = match limits.over {
        OverLimit::Truncated => "WeCom truncates longer values (the client logs a warning)",
        OverLimit::Refused => "longer values are refused before sending",
    };
    if let Some(max) = limits.max_bytes {
        lines.push(format!("At most {max} bytes; {past_limit}."));
    }
    if let Some(max) = limits.max_chars {
        lines.push(format!("At most {max} characters; {past_limit}."));
    }
    if let Some(min) = limits.min_bytes {
        lines.push(format!("At least {min} bytes."));
    }
    if let Some(charset) = &limits.charset {
        lines.push(format!("Only the characters `{charset}`."));
    }
    if !limits.prefixes.is_empty() {
        let list = limits
            .prefixes
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" or ");
        lines.push(format!("Starts with {list}."));
    }
    match (limits.min, limits.max) {
        (Some(min), Some(max)) => lines.push(format!("From {min} to {max}, inclusive.")),
        (Some(min), None) => lines.push(format!("At least {min}.")),
        (None, Some(max)) => lines.push(format!("At most {max}.")),
        (None, None) => {}
    }
    if let Some(day) = &limits.day {
        lines.push(format!(
            "The Unix time of 00:00 of a day in UTC{}.",
            day.written
        ));
        if let Some((low, high)) = day.days_ago {
            lines.push(format!(
                "A day {low} to {high} days before today there; others are refused before sending."
            ));
        }
    }
    if let Some(max) = limits.max_items {
        let past = match limits.over {
            OverLimit::Truncated => "WeCom drops the rest",
            OverLimit::Refused => "more are refused before sending",
        };
        lines.push(format!("At most {max} items; {past}."));
    }
    if let Some(min) = limits.min_items {
        lines.push(format!("At least {min} items."));
    }
    lines
}
