//! Doc comments for generated items.
//!
//! One `#[doc = " line"]` per line, with the leading space, so the snapshot reads as `///`
//! comments (prettyplease prints a multi-line doc string as `/** */`).

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::{Api, Field};

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
            Some(id) => self.blank().line(format!(
                "[Official documentation]({}{id})",
                api.docs_prefix()
            )),
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

/// The limits of a field, in words, for its doc comment.
pub fn limit_lines(f: &Field) -> Vec<String> {
    let mut lines = Vec::new();
    let past_limit = if f.server_truncates() {
        "WeCom truncates longer values (the client logs a warning)"
    } else {
        "longer values are refused before sending"
    };
    if let Some(max) = &f.max_bytes {
        lines.push(format!("At most {} bytes; {past_limit}.", max.get_ref()));
    }
    if let Some(max) = &f.max_chars {
        lines.push(format!(
            "At most {} characters; {past_limit}.",
            max.get_ref()
        ));
    }
    if let Some(min) = &f.min_bytes {
        lines.push(format!("At least {} bytes.", min.get_ref()));
    }
    if let Some(charset) = &f.charset {
        lines.push(format!("Only the characters `{}`.", charset.get_ref()));
    }
    if let Some(prefix) = &f.prefix {
        let list = prefix
            .get_ref()
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(" or ");
        lines.push(format!("Starts with {list}."));
    }
    match (&f.min, &f.max) {
        (Some(min), Some(max)) => lines.push(format!(
            "From {} to {}, inclusive.",
            min.get_ref(),
            max.get_ref()
        )),
        (Some(min), None) => lines.push(format!("At least {}.", min.get_ref())),
        (None, Some(max)) => lines.push(format!("At most {}.", max.get_ref())),
        (None, None) => {}
    }
    if let Some(aligned) = &f.day_aligned {
        lines.push(format!(
            "The Unix time of 00:00 of a day in UTC{}.",
            aligned.get_ref()
        ));
    }
    if let Some((low, high)) = f.days_ago_bounds() {
        lines.push(format!(
            "A day {low} to {high} days before today there; others are refused before sending."
        ));
    }
    if let Some(max) = &f.max_items {
        let past = if f.server_truncates() {
            "WeCom drops the rest"
        } else {
            "more are refused before sending"
        };
        lines.push(format!("At most {} items; {past}.", max.get_ref()));
    }
    if let Some(min) = &f.min_items {
        lines.push(format!("At least {} items.", min.get_ref()));
    }
    lines
}
