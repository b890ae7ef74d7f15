//! JSON kept exactly as it arrived.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON value kept as the text it arrived as: what every `sync_msg` item holds in `raw`,
/// so nothing the server sent is lost, not even a field this version doesn't know.
///
/// Keeping the text rather than a [`Value`] is what makes typed page parsing cheaper than
/// parsing into `Value`: the text is one copy, a `Value` is a tree of allocations. Ask for
/// [`to_value`](Self::to_value) when you need to look inside.
#[derive(Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text, byte for byte as received (`null` for a value built in code).
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Parses the text into a [`Value`].
    pub fn to_value(&self) -> Value {
        // The text came out of serde_json's own parser (or is `null`), so it is valid JSON.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// Parses the text into any type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson(RawValue::NULL.to_owned())
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

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RawJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Box::<RawValue>::deserialize(deserializer).map(RawJson)
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
    }
}
