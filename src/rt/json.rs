//! Serde helpers that generated types call: union tags and payloads, lenient structs, and
//! strings that some senders write as numbers.
//!
//! Received items are read without building a `serde_json::Value`: an object is scanned once
//! into its entries, each value left as unparsed text ([`Entries`]), and each field or
//! payload is then parsed straight into its type. That keeps typed parsing cheaper than
//! parsing into `Value`, while the item's text stays whole in its `raw` field.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON object's entries, each value still its text.
#[derive(Default)]
pub struct Entries<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Entries<'a> {
    /// Scans `text`; an error when it is not a JSON object.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The value at `key`; the last one when a key repeats, as `serde_json::Value` does.
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// The first of `keys` (a field and its aliases) that is present and parses as `T`.
    pub fn field<T: DeserializeOwned>(&self, keys: &[&str]) -> Option<T> {
        keys.iter()
            .filter_map(|key| self.get(key))
            .find_map(|value| serde_json::from_str(value.get()).ok())
    }

    /// Like [`field`](Self::field) for a string that may arrive as a number.
    pub fn text(&self, keys: &[&str]) -> Option<String> {
        keys.iter()
            .filter_map(|key| self.get(key))
            .find_map(|value| serde_json::from_str::<TextOrNumber>(value.get()).ok())
            .map(|t| t.0)
    }

    /// The string at `key`, the tag that picks a union variant.
    pub fn tag(&self, key: &str) -> Result<String, String> {
        match self.get(key) {
            Some(value) => serde_json::from_str::<String>(value.get())
                .map_err(|_| format!("`{key}` must be a string, found {}", value.get())),
            None => Err(format!("missing `{key}`")),
        }
    }

    /// The payload of a keyed union: the object under the key named like the tag. A missing
    /// payload reads as `{}`, so types without fields (`note`) parse and the others fail on
    /// their first required field.
    pub fn payload<T: DeserializeOwned>(&self, key: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get(key).map_or("{}", RawValue::get))
    }
}

impl Entries<'_> {
    /// [`payload`](Self::payload) for a payload that is itself a union (`Received::Event`):
    /// read in place, without the copy its `Deserialize` makes.
    pub fn union_payload<T: FromEntries>(&self, key: &str) -> Result<T, serde_json::Error> {
        let text = self.get(key).map_or("{}", RawValue::get);
        let entries = Entries::parse(text).unwrap_or_default();
        T::from_entries(&entries, text)
    }
}

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;

        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(key), value)) = map.next_entry()? {
                    entries.push((key, value));
                }
                Ok(Entries { entries })
            }
        }

        deserializer.deserialize_map(EntriesVisitor)
    }
}

/// A map key, borrowed from the text unless it holds escapes.
pub struct Key<'a>(Cow<'a, str>);

impl Key<'_> {
    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A union that can be read from an object's entries: what a lenient struct's flattened
/// field is (`ReceivedMsg::content`), and how every union reads itself.
pub trait FromEntries: Sized {
    /// `whole` is the object's text, kept by unions that keep unknown variants.
    fn from_entries(entries: &Entries<'_>, whole: &str) -> Result<Self, serde_json::Error>;
}

/// Reads a union from any deserializer: one copy of its text, then [`FromEntries`].
pub fn deserialize_union<'de, T: FromEntries, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    use serde::de::Error as _;
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    // Not an object: no tag, so an `unknown` union keeps it and a strict one says so.
    let entries = Entries::parse(raw.get()).unwrap_or_default();
    T::from_entries(&entries, raw.get()).map_err(D::Error::custom)
}

/// An inline union's payload: the whole object (the tag beside the fields).
pub fn from_text<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

/// What an `Unknown` variant keeps: the object as a `Value`.
pub fn value_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// A flattened field of a lenient struct: read from the whole object.
pub fn lenient_flat<T: FromEntries>(entries: &Entries<'_>, whole: &str) -> Option<T> {
    T::from_entries(entries, whole).ok()
}

/// A string, or a number kept as its decimal text.
pub struct TextOrNumber(pub String);

impl<'de> Deserialize<'de> for TextOrNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        text_or_number(deserializer).map(TextOrNumber)
    }
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

/// Reads an object in one pass with `visitor`, which reads each field straight into its
/// type: `None` when the text is anything the visitor refuses, so the caller reads it
/// field by field instead.
pub fn read_in_one_pass<'a, V: Visitor<'a>>(text: &'a str, visitor: V) -> Option<V::Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde::Deserializer::deserialize_map(&mut deserializer, visitor).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// Reads the next value into `slot`; a key met twice is refused (a lenient reading takes
/// the last one, so the one-pass reading leaves it to that).
pub fn set_once<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(serde::de::Error::custom("a repeated key"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// [`set_once`] for a string that may arrive as a number.
pub fn set_text_once<'de, A: MapAccess<'de>>(
    slot: &mut Option<String>,
    map: &mut A,
) -> Result<(), A::Error> {
    let mut text = None;
    set_once::<TextOrNumber, A>(&mut text, map)?;
    *slot = text.map(|t| t.0);
    Ok(())
}

/// A keyed union whose payload can be read where it stands, once the tag is known.
pub trait KeyedPayload: Sized {
    /// The variant `tag` names, read from `payload`; an error for a tag it doesn't know.
    fn payload<'de, D: Deserializer<'de>>(tag: &str, payload: D) -> Result<Self, D::Error>;
}

/// The flattened keyed union of a lenient struct (`ReceivedMsg::content`), read in the pass
/// over the struct's object: the tag, then the payload under the key it names, parsed in
/// place. A payload met before its tag is kept as text and read at the end.
pub struct InPass<'de, U> {
    tag_key: &'static str,
    tag: Option<Key<'de>>,
    value: Option<U>,
    before_tag: Vec<(String, &'de RawValue)>,
}

impl<'de, U: KeyedPayload> InPass<'de, U> {
    /// A pass over an item whose variant is named by the field `tag_key`.
    pub fn new(tag_key: &'static str) -> Self {
        InPass {
            tag_key,
            tag: None,
            value: None,
            before_tag: Vec::new(),
        }
    }

    /// Takes an entry no field of the struct claimed.
    pub fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        use serde::de::IgnoredAny;
        if key == self.tag_key {
            return set_once(&mut self.tag, map);
        }
        match self.tag.as_ref().map(Key::as_str) {
            Some(tag) if tag == key => {
                if self.value.is_some() {
                    return Err(serde::de::Error::custom("a repeated payload"));
                }
                self.value = Some(map.next_value_seed(PayloadSeed::<U>(tag, PhantomData))?);
            }
            Some(_) => {
                map.next_value::<IgnoredAny>()?;
            }
            None => self.before_tag.push((key.to_owned(), map.next_value()?)),
        }
        Ok(())
    }

    /// The union, when its tag and one payload were found and parsed.
    pub fn finish<E: serde::de::Error>(self) -> Result<U, E> {
        let tag = self.tag.ok_or_else(|| E::custom("no tag"))?;
        let tag = tag.as_str();
        let mut before = self.before_tag.iter().filter(|(key, _)| key == tag);
        let read = |text: &str| {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            U::payload(tag, &mut deserializer).map_err(E::custom)
        };
        match (self.value, before.next(), before.next()) {
            (Some(value), None, _) => Ok(value),
            (None, Some((_, text)), None) => read(text.get()),
            // A missing payload reads as `{}`, as in `Entries::payload`.
            (None, None, _) => read("{}"),
            _ => Err(E::custom("more than one payload")),
        }
    }
}

struct PayloadSeed<'t, U>(&'t str, PhantomData<U>);

/// A union payload that is itself a union (`Received::Event`), read where it stands:
/// borrowed, not copied, then read from its entries.
pub fn union_in_place<'de, T: FromEntries, D: Deserializer<'de>>(
    payload: D,
) -> Result<T, D::Error> {
    use serde::de::Error as _;
    let text = <&'de RawValue>::deserialize(payload)?.get();
    let entries = Entries::parse(text).map_err(D::Error::custom)?;
    T::from_entries(&entries, text).map_err(D::Error::custom)
}

impl<'de, U: KeyedPayload> serde::de::DeserializeSeed<'de> for PayloadSeed<'_, U> {
    type Value = U;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<U, D::Error> {
        U::payload(self.0, deserializer)
    }
}

/// Serializes a keyed union variant: the tag, and the payload under a key named like it
/// (`{"msgtype": "text", "text": {…}}`).
/// The fields are the tag's key, the tag and the payload.
pub struct Keyed<'a, T>(pub &'a str, pub &'a str, pub &'a T);

impl<T: Serialize> Serialize for Keyed<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Keyed(key, tag, payload) = self;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(key, tag)?;
        map.serialize_entry(tag, payload)?;
        map.end()
    }
}

/// Serializes an inline union variant: the tag beside the payload's own fields.
/// The fields are the tag's key, the tag and the payload.
pub struct Tagged<'a, T>(pub &'a str, pub &'a str, pub &'a T);

impl<T: Serialize> Serialize for Tagged<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let Tagged(key, tag, payload) = self;
        let fields = match serde_json::to_value(payload).map_err(S::Error::custom)? {
            Value::Object(fields) => fields,
            _ => {
                return Err(S::Error::custom(
                    "an inline union payload must be an object",
                ));
            }
        };
        let mut map = serializer.serialize_map(Some(fields.len() + 1))?;
        map.serialize_entry(key, tag)?;
        for (k, v) in &fields {
            if k != key {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RawJson;

    #[test]
    fn lenient_reads_skip_what_does_not_parse() {
        let text =
            r#"{"a": "x", "n": "not a number", "head_img": "url", "price": 1999, "a\u0062": 2}"#;
        let entries = Entries::parse(text).expect("an object");
        assert_eq!(entries.field::<String>(&["a"]), Some("x".into()));
        assert_eq!(entries.field::<u64>(&["n"]), None);
        assert_eq!(entries.field::<u64>(&["missing"]), None);
        assert_eq!(
            entries.field::<u64>(&["ab"]),
            Some(2),
            "escaped keys are read too"
        );
        assert_eq!(
            entries.field::<String>(&["head_image", "head_img"]),
            Some("url".into())
        );
        assert_eq!(entries.text(&["price"]), Some("1999".into()));
        assert_eq!(entries.tag("n"), Ok("not a number".into()));
        assert!(entries.tag("price").is_err());
        assert!(entries.tag("missing").is_err());
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let entries = Entries::parse(r#"{"k": 1, "k": 2}"#).expect("an object");
        assert_eq!(entries.field::<u32>(&["k"]), Some(2));
    }

    #[test]
    fn a_missing_payload_reads_as_an_empty_object() {
        let entries = Entries::parse(r#"{"msgtype": "note", "a": {"b": 1}}"#).expect("an object");
        assert_eq!(
            entries.payload::<Value>("note").ok(),
            Some(serde_json::json!({}))
        );
        assert_eq!(
            entries.payload::<Value>("a").ok(),
            Some(serde_json::json!({"b": 1}))
        );
    }

    #[test]
    fn only_objects_have_entries() {
        assert!(Entries::parse("[1, 2]").is_err());
        assert!(Entries::parse("\"text\"").is_err());
    }

    /// Every received example, and variants of each (keys reversed so the payload comes
    /// before its tag, each key dropped, each value replaced by other JSON, a key repeated):
    /// wherever the one pass reads an item, it reads what the field-by-field reading does.
    #[test]
    fn the_one_pass_reads_what_field_by_field_reads() {
        use crate::types::ReceivedMsg;
        let examples: serde_json::Map<String, Value> =
            serde_json::from_str(include_str!("../../tests/fixtures/received_examples.json"))
                .expect("the fixture parses");
        let mut texts = Vec::new();
        for item in examples.values() {
            let Value::Object(fields) = item else {
                continue;
            };
            texts.push(item.to_string());
            let reversed: serde_json::Map<String, Value> = fields
                .iter()
                .rev()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            texts.push(Value::Object(reversed).to_string());
            for key in fields.keys() {
                let mut dropped = fields.clone();
                dropped.remove(key);
                texts.push(Value::Object(dropped).to_string());
                for other in [
                    Value::Null,
                    7.into(),
                    "x".into(),
                    serde_json::json!({}),
                    serde_json::json!([]),
                ] {
                    let mut changed = fields.clone();
                    changed.insert(key.clone(), other);
                    texts.push(Value::Object(changed).to_string());
                }
                let text = item.to_string();
                texts.push(format!("{},\"{key}\":null}}", &text[..text.len() - 1]));
            }
        }
        for item in examples.values() {
            let text = item.to_string();
            assert!(
                ReceivedMsg::in_one_pass(&text).is_some(),
                "not in one pass: {text}"
            );
        }
        let mut in_one_pass = 0;
        for text in &texts {
            let raw: RawJson = serde_json::from_str(text).expect("an object");
            let by_field = ReceivedMsg::field_by_field(raw.clone());
            if let Some(read) = ReceivedMsg::in_one_pass(text) {
                in_one_pass += 1;
                assert_eq!(ReceivedMsg { raw, ..read }, by_field, "{text}");
            }
        }
        assert!(
            in_one_pass >= examples.len(),
            "{in_one_pass} of {} in one pass",
            texts.len()
        );
    }
}
