//! JSON kept exactly as it arrived.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value kept as the text it arrived as: what every `sync_msg` item holds in `raw`,
/// so nothing the server sent is lost, not even a field this version doesn't know.
///
/// Keeping the text rather than a [`Value`] is what makes typed page parsing cheaper than
/// parsing into `Value`: the text is one copy, a `Value` is a tree of allocations. Ask for
/// [`to_value`](Self::to_value) when you need to look inside.
///
/// The items of a page the client reads share one copy of the page's text, so cloning one
/// is cheap, and keeping one keeps that copy; [`detach`](Self::detach) gives an item its own.
#[derive(Clone)]
pub struct RawJson(Text);

#[derive(Clone)]
enum Text {
    /// A value built in code.
    Null,
    Owned(Box<str>),
    /// `page[range]`, a part of a text shared with other values.
    Shared(Arc<str>, Range<usize>),
}

impl RawJson {
    /// The JSON text, byte for byte as received (`null` for a value built in code).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Text::Null => "null",
            Text::Owned(text) => text,
            // `range` was checked against the page when the value was made (`shared`).
            Text::Shared(page, range) => page.get(range.clone()).unwrap_or("null"),
        }
    }

    /// The same text in an allocation of its own, so it no longer keeps the page it
    /// came in alive.
    pub fn detach(&self) -> RawJson {
        match &self.0 {
            Text::Shared(..) => RawJson(Text::Owned(self.as_str().into())),
            _ => self.clone(),
        }
    }

    /// Parses the text into a [`Value`].
    pub fn to_value(&self) -> Value {
        // The text came out of serde_json's own parser (or is `null`), so it is valid JSON.
        serde_json::from_str(self.as_str()).unwrap_or(Value::Null)
    }

    /// Parses the text into any type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_str())
    }

    /// `page[range]`, which the caller has read as one JSON value; `None` when `range` is
    /// not a part of `page` on character boundaries.
    pub(crate) fn shared(page: &Arc<str>, range: Range<usize>) -> Option<RawJson> {
        page.get(range.clone())?;
        Some(RawJson(Text::Shared(Arc::clone(page), range)))
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson(Text::Null)
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Equal when the texts are equal; `to_value()` compares by meaning.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// Compares by meaning, whatever the spacing or key order of the text.
impl PartialEq<Value> for RawJson {
    fn eq(&self, other: &Value) -> bool {
        &self.to_value() == other
    }
}

/// Writes the text as it is, not as a string.
impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        // serde_json writes a `RawValue` as its text; one is borrowed for the call.
        let raw: &RawValue = serde_json::from_str(self.as_str()).map_err(S::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Ok(RawJson(Text::Owned(raw.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_the_text_and_compares_by_meaning() {
        let raw: RawJson = serde_json::from_str(r#"{"b": 1,  "a": [1.50]}"#).expect("JSON");
        assert_eq!(raw.as_str(), r#"{"b": 1,  "a": [1.50]}"#);
        assert_eq!(raw, json!({"a": [1.5], "b": 1}));
        assert_eq!(RawJson::default().to_value(), Value::Null);
        let from_value: RawJson = serde_json::from_value(json!({"x": "y"})).expect("from a Value");
        assert_eq!(from_value, json!({"x": "y"}));
        assert_eq!(
            serde_json::to_string(&raw).expect("text"),
            r#"{"b": 1,  "a": [1.50]}"#
        );
    }

    #[test]
    fn a_shared_text_is_its_part_of_the_page() {
        let page: Arc<str> = Arc::from(r#"[{"a": 1}, "é"]"#);
        let item = RawJson::shared(&page, 1..9).expect("a part of the page");
        assert_eq!(item.as_str(), r#"{"a": 1}"#);
        assert_eq!(item.detach(), item);
        assert_eq!(
            RawJson::shared(&page, 11..15).map(|r| r.to_value()),
            Some(json!("é"))
        );
        assert!(
            RawJson::shared(&page, 12..13).is_none(),
            "not on a character boundary"
        );
        assert!(RawJson::shared(&page, 1..90).is_none());
    }
}
