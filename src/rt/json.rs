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
use std::ops::Range;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::RawJson;

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
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    read_entries(raw.get())
}

/// A union read from its text's entries, field by field.
fn read_entries<T: FromEntries, E: serde::de::Error>(text: &str) -> Result<T, E> {
    // Not an object: no tag, so an `unknown` union keeps it and a strict one says so.
    let entries = Entries::parse(text).unwrap_or_default();
    T::from_entries(&entries, text).map_err(E::custom)
}

/// [`deserialize_union`] for a keyed union (`MenuItem`): its copied text read in one pass,
/// the tag and the payload it names, unless something is out of the ordinary.
pub fn deserialize_keyed<'de, T: FromEntries + KeyedPayload, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    let raw = Box::<RawValue>::deserialize(deserializer)?;
    let mut in_one_pass = serde_json::Deserializer::from_str(raw.get());
    let read = serde::Deserializer::deserialize_map(&mut in_one_pass, KeyedPass(PhantomData));
    read.or_else(|_| read_entries(raw.get()))
}

struct KeyedPass<U>(PhantomData<U>);

impl<'de, U: KeyedPayload> Visitor<'de> for KeyedPass<U> {
    type Value = U;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a `{}`", U::TAG_KEY)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<U, A::Error> {
        let mut union = InPass::new(U::TAG_KEY);
        while let Some(key) = map.next_key::<Key>()? {
            union.entry(key.as_str(), &mut map)?;
        }
        union.finish()
    }
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

/// Reads the object at the start of `text` in one pass with the visitor `V`, which reads
/// each field straight into its type: the value and the length of its text, or `None` when
/// the text is anything the visitor refuses, so the caller reads it field by field instead.
pub fn read_prefix<'a, V: Visitor<'a> + Default>(text: &'a str) -> Option<(V::Value, usize)> {
    let (ByVisitor(value, PhantomData::<V>), len) = prefix(text)?;
    Some((value, len))
}

/// The value at the start of `text` (after any whitespace), and where its text ends.
fn prefix<'a, T: Deserialize<'a>>(text: &'a str) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, values.byte_offset()))
}

/// What the visitor `V` reads from an object.
struct ByVisitor<T, V>(T, PhantomData<V>);

impl<'de, T, V: Visitor<'de, Value = T> + Default> Deserialize<'de> for ByVisitor<T, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_map(V::default())?;
        Ok(ByVisitor(value, PhantomData))
    }
}

/// A lenient struct (`ReceivedMsg`): it never fails to read, and keeps its text.
pub trait Item: Sized {
    /// The object at the start of `text` read in one pass, each field straight into its
    /// type, and the length of its text; `None` when something is out of the ordinary (a
    /// value that doesn't parse, a repeated key, an unknown tag), for
    /// [`field_by_field`](Self::field_by_field). `raw` is left empty.
    fn read_prefix(text: &str) -> Option<(Self, usize)>;

    /// Each field on its own from the object's entries; `raw` keeps the text.
    fn field_by_field(raw: RawJson) -> Self;

    /// Keeps `raw` as the object's text.
    fn set_raw(&mut self, raw: RawJson);
}

/// `T` read in one pass from the whole of `text`: `None` when the one pass refuses it, or
/// when anything but whitespace follows the object.
pub fn in_one_pass<T: Item>(text: &str) -> Option<T> {
    let (read, len) = T::read_prefix(text)?;
    text.get(len..)?.bytes().all(is_blank).then_some(read)
}

/// A lenient item from its text: in one pass when it can be, else field by field.
pub fn read_item<T: Item>(raw: RawJson) -> T {
    let read = in_one_pass::<T>(raw.as_str());
    match read {
        Some(mut read) => {
            read.set_raw(raw);
            read
        }
        None => T::field_by_field(raw),
    }
}

/// JSON's whitespace.
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'\n' | b'\r' | b'\t')
}

/// Reads a page (`SyncMsgResponse`), an object whose `list_key` holds a list of items:
/// what `serde_json::from_slice` reads, in one pass over the items. Each item is read
/// where it stands, and its text is a part of one copy of the body that the page's items
/// share, rather than a copy of its own. The other fields are read by serde_json from
/// their text; `set_list` puts the items in place. Anything out of the ordinary (a body
/// that is not an object, the list twice or not a list, a syntax error) is left to
/// `serde_json::from_slice`, errors included.
pub fn read_page<P: DeserializeOwned, T: Item>(
    body: &[u8],
    list_key: &str,
    set_list: impl FnOnce(&mut P, Vec<T>),
) -> Result<P, serde_json::Error> {
    let read = std::str::from_utf8(body).ok().and_then(|text| {
        let page: Arc<str> = Arc::from(text);
        let (others, items) = PageReader::new(&page).read(list_key)?;
        let mut read: P = serde_json::from_str(&others).ok()?;
        set_list(&mut read, items);
        Some(read)
    });
    match read {
        Some(read) => Ok(read),
        None => serde_json::from_slice(body),
    }
}

/// A cursor over a page's text, reading each value with serde_json where it stands.
struct PageReader<'p> {
    page: &'p Arc<str>,
    text: &'p str,
    at: usize,
}

impl<'p> PageReader<'p> {
    fn new(page: &'p Arc<str>) -> Self {
        PageReader {
            page,
            text: page,
            at: 0,
        }
    }

    /// Steps over whitespace.
    fn blank(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.at).copied().is_some_and(is_blank) {
            self.at += 1;
        }
    }

    /// Steps over `byte`, after any whitespace; `false` when something else is there.
    fn eat(&mut self, byte: u8) -> bool {
        self.blank();
        let found = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// The value after any whitespace, and where its text is.
    fn value<T: Deserialize<'p>>(&mut self) -> Option<(T, Range<usize>)> {
        self.blank();
        let start = self.at;
        let (value, len) = prefix(self.text.get(start..)?)?;
        self.at = start + len;
        Some((value, start..self.at))
    }

    /// The page's object: the items under `list_key`, and the other entries as the text
    /// of an object of their own.
    fn read<T: Item>(mut self, list_key: &str) -> Option<(String, Vec<T>)> {
        let mut others = String::from("{");
        let mut items = None;
        if !self.eat(b'{') {
            return None;
        }
        if !self.eat(b'}') {
            loop {
                let (key, key_text) = self.value::<Key>()?;
                if !self.eat(b':') {
                    return None;
                }
                if key.as_str() == list_key {
                    if items.is_some() {
                        return None;
                    }
                    items = Some(self.items()?);
                } else {
                    let (IgnoredAny, value_text) = self.value()?;
                    if others.len() > 1 {
                        others.push(',');
                    }
                    others.push_str(&self.text[key_text]);
                    others.push(':');
                    others.push_str(&self.text[value_text]);
                }
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    return None;
                }
            }
        }
        // Only whitespace may follow, as `serde_json::from_slice` requires.
        self.blank();
        if self.at != self.text.len() {
            return None;
        }
        others.push('}');
        Some((others, items.unwrap_or_default()))
    }

    /// A list of items, each read where it stands: in one pass when it can be, else
    /// stepped over and read field by field from its text.
    fn items<T: Item>(&mut self) -> Option<Vec<T>> {
        let mut items = Vec::new();
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(items);
        }
        loop {
            self.blank();
            let start = self.at;
            match T::read_prefix(self.text.get(start..)?) {
                Some((mut item, len)) => {
                    self.at = start + len;
                    item.set_raw(RawJson::shared(self.page, start..self.at)?);
                    items.push(item);
                }
                None => {
                    let (IgnoredAny, text) = self.value()?;
                    items.push(T::field_by_field(RawJson::shared(self.page, text)?));
                }
            }
            if items.len() == 1 {
                // Room for as many more items as the rest of the page holds of this size.
                let left = self.text.len() - self.at;
                items.reserve(left / (self.at - start).max(1));
            }
            if self.eat(b']') {
                return Some(items);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }
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

/// A union whose payload can be read where it stands, once the tag is known: a keyed
/// union's payload object, or the fields beside an inline union's tag.
pub trait KeyedPayload: Sized {
    /// The key of the tag (`msgtype`).
    const TAG_KEY: &'static str;

    /// The variant `tag` names, read from `payload`; an error for a tag it doesn't know.
    fn payload<'de, D: Deserializer<'de>>(tag: &str, payload: D) -> Result<Self, D::Error>;

    /// Whether `tag` names a variant.
    fn is_variant(tag: &str) -> bool;
}

/// The flattened keyed union of a lenient struct (`ReceivedMsg::content`), read in the pass
/// over the struct's object: the tag, then the payload under the key it names, parsed in
/// place. Before the tag, a key named like a variant is taken for the payload and read as
/// that variant; the tag tells later whether it was.
pub struct InPass<'de, U> {
    tag_key: &'static str,
    tag: Option<Key<'de>>,
    value: Option<U>,
    /// The entry before the tag read as the variant its key names.
    before_tag: Option<(String, U)>,
}

impl<'de, U: KeyedPayload> InPass<'de, U> {
    /// A pass over an item whose variant is named by the field `tag_key`.
    pub fn new(tag_key: &'static str) -> Self {
        InPass {
            tag_key,
            tag: None,
            value: None,
            before_tag: None,
        }
    }

    /// Takes an entry no field of the struct claimed.
    pub fn entry<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        if key == self.tag_key {
            return set_once(&mut self.tag, map);
        }
        match self.tag.as_ref().map(Key::as_str) {
            Some(tag) if tag == key => {
                let before = self.before_tag.as_ref().is_some_and(|(k, _)| k == key);
                if self.value.is_some() || before {
                    return Err(A::Error::custom("a repeated payload"));
                }
                self.value = Some(map.next_value_seed(PayloadSeed::<U>(tag, PhantomData))?);
            }
            None if U::is_variant(key) => {
                if self.before_tag.is_some() {
                    return Err(A::Error::custom("two payloads before the tag"));
                }
                let value = map.next_value_seed(PayloadSeed::<U>(key, PhantomData))?;
                self.before_tag = Some((key.to_owned(), value));
            }
            // Not the payload: if the tag named it, the tag would be unknown.
            _ => {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    /// The union, when its tag and one payload were found and parsed.
    pub fn finish<E: serde::de::Error>(self) -> Result<U, E> {
        let tag = self.tag.ok_or_else(|| E::custom("no tag"))?;
        let tag = tag.as_str();
        let before = self.before_tag.filter(|(key, _)| key == tag);
        match (self.value, before) {
            (Some(value), None) | (None, Some((_, value))) => Ok(value),
            // A missing payload reads as `{}`, as in `Entries::payload`.
            (None, None) => {
                let mut deserializer = serde_json::Deserializer::from_str("{}");
                U::payload(tag, &mut deserializer).map_err(E::custom)
            }
            (Some(_), Some(_)) => Err(E::custom("more than one payload")),
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

/// A union payload that is itself an inline union (`Received::Event`), read where it
/// stands: the entries up to the tag kept as text, then the variant from them and the rest
/// of the object. An error when the tag is missing or comes again, or the entries before
/// it can't be borrowed, so that the item is read field by field instead.
pub fn inline_in_place<'de, U: KeyedPayload, D: Deserializer<'de>>(
    payload: D,
) -> Result<U, D::Error> {
    payload.deserialize_map(InlineTag(PhantomData))
}

struct InlineTag<U>(PhantomData<U>);

impl<'de, U: KeyedPayload> Visitor<'de> for InlineTag<U> {
    type Value = U;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a `{}`", U::TAG_KEY)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<U, A::Error> {
        use serde::de::Error as _;
        let tag_key = U::TAG_KEY;
        let mut before_tag = Vec::new();
        let tag = loop {
            match map.next_key::<Key>()? {
                Some(key) if key.as_str() == tag_key => break map.next_value::<Key>()?,
                Some(key) => before_tag.push((key, map.next_value::<&RawValue>()?)),
                None => return Err(A::Error::custom(format!("no `{tag_key}`"))),
            }
        };
        let fields = AfterTag {
            before_tag: before_tag.into_iter(),
            value: None,
            map,
            tag_key,
        };
        U::payload(
            tag.as_str(),
            serde::de::value::MapAccessDeserializer::new(fields),
        )
    }
}

/// An inline union's fields: the entries met before its tag, then the rest of the object.
/// The tag met again is refused, since a field-by-field reading takes the last one.
struct AfterTag<'de, A> {
    before_tag: std::vec::IntoIter<(Key<'de>, &'de RawValue)>,
    /// The value of the entry before the tag whose key was read last.
    value: Option<&'de RawValue>,
    map: A,
    tag_key: &'static str,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for AfterTag<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        use serde::de::Error as _;
        use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
        let key = match self.before_tag.next() {
            Some((key, value)) => {
                self.value = Some(value);
                key
            }
            None => match self.map.next_key::<Key>()? {
                Some(key) if key.as_str() == self.tag_key => {
                    return Err(A::Error::custom("a repeated tag"));
                }
                Some(key) => key,
                None => return Ok(None),
            },
        };
        match key.0 {
            Cow::Borrowed(key) => seed.deserialize(BorrowedStrDeserializer::new(key)),
            Cow::Owned(key) => seed.deserialize(StringDeserializer::new(key)),
        }
        .map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        use serde::de::Error as _;
        match self.value.take() {
            Some(value) => {
                let mut deserializer = serde_json::Deserializer::from_str(value.get());
                seed.deserialize(&mut deserializer)
                    .map_err(A::Error::custom)
            }
            None => self.map.next_value_seed(seed),
        }
    }
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
            // An event's own keys: in reverse (its tag last), its tag repeated or missing.
            if let Some(Value::Object(event)) = fields.get("event") {
                let reversed: serde_json::Map<String, Value> = event
                    .iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let event_text = Value::Object(event.clone()).to_string();
                let repeated = format!(
                    "{},\"event_type\":\"other\"}}",
                    &event_text[..event_text.len() - 1]
                );
                let mut untagged = event.clone();
                untagged.remove("event_type");
                let mut rest = fields.clone();
                rest.remove("event");
                let rest = Value::Object(rest).to_string();
                for nested in [
                    Value::Object(reversed).to_string(),
                    repeated,
                    Value::Object(untagged).to_string(),
                ] {
                    texts.push(format!("{},\"event\":{nested}}}", &rest[..rest.len() - 1]));
                }
            }
        }
        for item in examples.values() {
            let text = item.to_string();
            assert!(
                in_one_pass::<ReceivedMsg>(&text).is_some(),
                "not in one pass: {text}"
            );
        }
        let mut read_in_one_pass = 0;
        for text in &texts {
            let raw: RawJson = serde_json::from_str(text).expect("an object");
            let by_field = ReceivedMsg::field_by_field(raw.clone());
            if let Some(read) = in_one_pass::<ReceivedMsg>(text) {
                read_in_one_pass += 1;
                let mut read = read;
                read.set_raw(raw);
                assert_eq!(read, by_field, "{text}");
            }
        }
        assert!(
            read_in_one_pass >= examples.len(),
            "{read_in_one_pass} of {} in one pass",
            texts.len()
        );
    }
}
