//! Every generated name comes from here, so snake_case and PascalCase agree everywhere.

use proc_macro2::{Ident, Span};

/// `send_msg_on_event` → `SendMsgOnEvent`.
pub fn pascal_case(name: &str) -> String {
    name.split(['_', '/', '-'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect::<String>(),
                None => String::new(),
            }
        })
        .collect()
}

/// Whether `name` can be a Rust identifier (keywords included: they become raw identifiers,
/// except the four that can't be raw).
pub fn is_identifier(name: &str) -> bool {
    if matches!(name, "self" | "Self" | "super" | "crate") {
        return false;
    }
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first == '_' || first.is_ascii_alphabetic() => {
            name != "_" && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        }
        _ => false,
    }
}

/// Strict and reserved keywords of Rust 2024: usable only as raw identifiers.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// The identifier for a name, `None` when it can't be one; Rust keywords become raw
/// identifiers (`r#type`).
pub fn ident(name: &str) -> Option<Ident> {
    if !is_identifier(name) {
        None
    } else if KEYWORDS.contains(&name) {
        Some(Ident::new_raw(name, Span::call_site()))
    } else {
        Some(Ident::new(name, Span::call_site()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_cases() {
        assert_eq!(pascal_case("send_msg_on_event"), "SendMsgOnEvent");
        assert_eq!(pascal_case("gettoken"), "Gettoken");
        assert_eq!(
            ident("type").map(|i| i.to_string()).as_deref(),
            Some("r#type")
        );
        assert!(!is_identifier("content-type"));
        assert!(!is_identifier("9lives"));
        assert!(!is_identifier("self"));
        assert_eq!(
            ident("name").map(|i| i.to_string()).as_deref(),
            Some("name")
        );
        assert!(ident("content-type").is_none());
    }
}
