//! Strings that must never be printed: the corp secret and access tokens.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret string: its `Debug` prints `Secret(***)`, it has no `Display`, and it
/// serializes as `"***"`, so it can't end up in a log line, an error message, a panic or a
/// JSON dump by accident. Read it with [`expose`](Self::expose) where it must go on the
/// wire. It deserializes from the plain string.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

/// What a secret prints and serializes as.
const REDACTED: &str = "***";

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Stands for a hidden value in generated `Debug` output (`secret = true` fields).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Secret {
    /// Wraps `value`, which from now on shows only as `[redacted]`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Every call site is a place a secret leaves the type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{:?}", Some(Redacted)), "Some(***)");
    }

    #[test]
    fn serializes_redacted_and_deserializes_plain() {
        let s: Secret = serde_json::from_str("\"hunter2\"").expect("a string");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"***\"");
    }
}
