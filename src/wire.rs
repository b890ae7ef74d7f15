//! Serde helpers that generated types call: union tags and payloads, lenient structs, and
//! strings that some senders write as numbers.

use std::sync::LazyLock;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The string at `key`, the tag that picks a union variant.
pub fn tag_of<'v>(raw: &'v Value, key: &str) -> Result<&'v str, String> {
    match raw.get(key) {
        Some(Value::String(tag)) => Ok(tag),
        Some(other) => Err(format!("`{key}` must be a string, found {other}")),
        None => Err(format!("missing `{key}`")),
    }
}

static EMPTY_OBJECT: LazyLock<Value> = LazyLock::new(|| Value::Object(Default::default()));

/// The payload of a keyed union: the object under the key named like the tag. A missing
/// payload reads as `{}`, so types without fields (`note`) parse and the others fail on
/// their first required field.
pub fn payload<'v>(raw: &'v Value, tag: &str) -> &'v Value {
    raw.get(tag).unwrap_or(&EMPTY_OBJECT)
}

pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

/// The first of `keys` (a field and its aliases) that is present and parses as `T`.
pub fn lenient_field<T: DeserializeOwned>(raw: &Value, keys: &[&str]) -> Option<T> {
    keys.iter()
        .filter_map(|key| raw.get(*key))
        .find_map(|value| T::deserialize(value).ok())
}

/// A flattened field of a lenient struct: read from the whole object.
pub fn lenient_flat<T: DeserializeOwned>(raw: &Value) -> Option<T> {
    T::deserialize(raw).ok()
}

/// Like [`lenient_field`] for a string that may arrive as a number.
pub fn lenient_text(raw: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .filter_map(|key| raw.get(*key))
        .find_map(as_text)
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `deserialize_with` for a string field that some senders write as a number.
pub fn text_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = Value::deserialize(deserializer)?;
    as_text(&value).ok_or_else(|| {
        serde::de::Error::custom(format!("expected a string or a number, found {value}"))
    })
}

/// [`text_or_number`] for an optional field; `null` reads as `None`.
pub fn optional_text_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        value => as_text(&value).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("expected a string or a number, found {value}"))
        }),
    }
}

/// Serializes an inline union variant: the tag beside the payload's own fields.
pub struct Tagged<'a, T> {
    pub key: &'a str,
    pub tag: &'a str,
    pub payload: &'a T,
}

impl<T: Serialize> Serialize for Tagged<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let fields = match serde_json::to_value(self.payload).map_err(S::Error::custom)? {
            Value::Object(fields) => fields,
            _ => {
                return Err(S::Error::custom(
                    "an inline union payload must be an object",
                ));
            }
        };
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry(self.key, self.tag)?;
        for (k, v) in &fields {
            if k != self.key {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_reads_skip_what_does_not_parse() {
        let raw = json!({"a": "x", "n": "not a number", "head_img": "url", "price": 1999});
        assert_eq!(lenient_field::<String>(&raw, &["a"]), Some("x".into()));
        assert_eq!(lenient_field::<u64>(&raw, &["n"]), None);
        assert_eq!(lenient_field::<u64>(&raw, &["missing"]), None);
        assert_eq!(
            lenient_field::<String>(&raw, &["head_image", "head_img"]),
            Some("url".into())
        );
        assert_eq!(lenient_text(&raw, &["price"]), Some("1999".into()));
    }

    #[test]
    fn a_missing_payload_reads_as_an_empty_object() {
        assert_eq!(payload(&json!({"msgtype": "note"}), "note"), &json!({}));
        assert_eq!(
            payload(&json!({"note": {"a": 1}}), "note"),
            &json!({"a": 1})
        );
    }
}
