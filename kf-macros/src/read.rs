//! `endpoints.toml` read into the model (`model.rs`) from toml's spanned document tree.
//!
//! Written by hand rather than derived with serde: a proc macro's dependencies are built a
//! second time for the compiler's host, so serde here would put a second serde into every
//! user's build, on the way to the macro. The rules are serde's, and so are the messages:
//! every table refuses keys it doesn't know (at the key), a missing required key is
//! reported at its table, a value of the wrong type at the value.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::model::{
    Api, Endpoint, EnumValue, ErrorCode, Field, IntEnum, RangeRule, Struct, Union, Variant,
};

/// Why the file doesn't read, and where.
#[derive(Debug)]
pub struct ReadError {
    pub span: Range<usize>,
    pub message: String,
}

/// The whole file.
pub fn api(source: &str) -> Result<Api, ReadError> {
    let document = DeTable::parse(source).map_err(|e| ReadError {
        span: e.span().unwrap_or(0..0),
        message: e.message().trim().to_owned(),
    })?;
    let span = document.span();
    let value = Spanned::new(span, DeValue::Table(document.into_inner()));
    Api::read(&value)
}

type Value<'i> = Spanned<DeValue<'i>>;

/// A value of the file as one of the model's types.
trait Read: Sized {
    fn read(value: &Value<'_>) -> Result<Self, ReadError>;
}

/// "invalid type: integer `5`, expected a string", at the value.
fn invalid_type(value: &Value<'_>, expected: &str) -> ReadError {
    let found = match value.get_ref() {
        DeValue::String(text) => format!("string {text:?}"),
        DeValue::Integer(integer) => format!("integer `{integer}`"),
        DeValue::Float(float) => format!("floating point `{float}`"),
        DeValue::Boolean(boolean) => format!("boolean `{boolean}`"),
        DeValue::Datetime(datetime) => format!("datetime `{datetime}`"),
        DeValue::Array(_) => "array".to_owned(),
        DeValue::Table(_) => "table".to_owned(),
    };
    ReadError {
        span: value.span(),
        message: format!("invalid type: {found}, expected {expected}"),
    }
}

impl Read for String {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        match value.get_ref() {
            DeValue::String(text) => Ok(text.to_string()),
            _ => Err(invalid_type(value, "a string")),
        }
    }
}

impl Read for bool {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        match value.get_ref() {
            DeValue::Boolean(boolean) => Ok(*boolean),
            _ => Err(invalid_type(value, "a boolean")),
        }
    }
}

/// An integer of the file, as `T`; `expected` names `T` in errors.
fn integer<T: TryFrom<i128>>(value: &Value<'_>, expected: &str) -> Result<T, ReadError> {
    let DeValue::Integer(integer) = value.get_ref() else {
        return Err(invalid_type(value, expected));
    };
    i128::from_str_radix(integer.as_str(), integer.radix())
        .ok()
        .and_then(|wide| T::try_from(wide).ok())
        .ok_or_else(|| ReadError {
            span: value.span(),
            message: format!("invalid value: integer `{integer}`, expected {expected}"),
        })
}

impl Read for i64 {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        integer(value, "i64")
    }
}

impl Read for u64 {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        integer(value, "u64")
    }
}

impl Read for f64 {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        match value.get_ref() {
            DeValue::Float(float) => float.as_str().parse().map_err(|_| ReadError {
                span: value.span(),
                message: format!("invalid value: floating point `{float}`, expected f64"),
            }),
            // As serde reads them: an integer is a number too.
            DeValue::Integer(_) => integer::<i64>(value, "f64").map(|i| i as f64),
            _ => Err(invalid_type(value, "f64")),
        }
    }
}

impl<T: Read> Read for Spanned<T> {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        Ok(Spanned::new(value.span(), T::read(value)?))
    }
}

impl<T: Read> Read for Vec<T> {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        match value.get_ref() {
            DeValue::Array(items) => items.iter().map(T::read).collect(),
            _ => Err(invalid_type(value, "a sequence")),
        }
    }
}

impl<T: Read> Read for BTreeMap<String, T> {
    fn read(value: &Value<'_>) -> Result<Self, ReadError> {
        match value.get_ref() {
            DeValue::Table(entries) => entries
                .iter()
                .map(|(key, value)| Ok((key.get_ref().to_string(), T::read(value)?)))
                .collect(),
            _ => Err(invalid_type(value, "a map")),
        }
    }
}

/// One table of the file being read into a struct of the model.
struct Table<'a, 'i> {
    entries: &'a DeTable<'i>,
    span: Range<usize>,
}

impl<'a, 'i> Table<'a, 'i> {
    /// `value` as a table whose keys are all among `known` (the struct's, in its order).
    fn new(
        value: &'a Value<'i>,
        what: &str,
        known: &'static [&'static str],
    ) -> Result<Self, ReadError> {
        let DeValue::Table(entries) = value.get_ref() else {
            return Err(invalid_type(value, what));
        };
        if let Some((key, _)) = entries
            .iter()
            .find(|(key, _)| !known.contains(&key.get_ref().as_ref()))
        {
            return Err(ReadError {
                span: key.span(),
                message: format!("unknown field `{}`, {}", key.get_ref(), Expected(known)),
            });
        }
        Ok(Table {
            entries,
            span: value.span(),
        })
    }

    fn required<T: Read>(&self, key: &str) -> Result<T, ReadError> {
        self.optional(key)?.ok_or_else(|| ReadError {
            span: self.span.clone(),
            message: format!("missing field `{key}`"),
        })
    }

    fn optional<T: Read>(&self, key: &str) -> Result<Option<T>, ReadError> {
        self.entries.get(key).map(T::read).transpose()
    }

    fn or_default<T: Read + Default>(&self, key: &str) -> Result<T, ReadError> {
        Ok(self.optional(key)?.unwrap_or_default())
    }
}

/// serde's list of the keys a table may have, after "unknown field".
struct Expected(&'static [&'static str]);

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => f.write_str("there are no fields"),
            [only] => write!(f, "expected `{only}`"),
            [first, second] => write!(f, "expected `{first}` or `{second}`"),
            keys => {
                f.write_str("expected one of ")?;
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "`{key}`")?;
                }
                Ok(())
            }
        }
    }
}

/// A struct of the model, read from a table with these keys: `required` ones, and the
/// others read as `Option`s or with their default.
macro_rules! read_table {
    ($ty:ident, $what:literal, { $($field:ident: $how:ident $key:literal),* $(,)? }) => {
        impl Read for $ty {
            fn read(value: &Value<'_>) -> Result<Self, ReadError> {
                let table = Table::new(value, $what, &[$($key),*])?;
                Ok($ty { $($field: table.$how($key)?),* })
            }
        }
    };
}

read_table!(Api, "struct Api", {
    docs: optional "docs",
    errors: or_default "error",
    enums: or_default "enum",
    structs: or_default "struct",
    unions: or_default "union",
    endpoints: or_default "endpoint",
});

read_table!(ErrorCode, "struct ErrorCode", {
    code: required "code",
    name: required "name",
    meaning: required "meaning",
    hint: required "hint",
    retry: required "retry",
    errmsg: or_default "errmsg",
});

read_table!(IntEnum, "struct IntEnum", {
    name: required "name",
    repr: required "repr",
    summary: optional "summary",
    doc: optional "doc",
    values: required "values",
});

read_table!(EnumValue, "struct EnumValue", {
    value: required "value",
    name: required "name",
    doc: optional "doc",
});

read_table!(Struct, "struct Struct", {
    name: required "name",
    summary: optional "summary",
    doc: optional "doc",
    lenient: or_default "lenient",
    fields: or_default "fields",
});

read_table!(Union, "struct Union", {
    name: required "name",
    tag: required "tag",
    layout: optional "layout",
    unknown: or_default "unknown",
    summary: optional "summary",
    doc: optional "doc",
    variants: required "variants",
});

read_table!(Variant, "struct Variant", {
    tag: required "tag",
    ty: required "type",
    short: optional "short",
    name: optional "name",
});

read_table!(Endpoint, "struct Endpoint", {
    name: required "name",
    method: required "method",
    path: required "path",
    doc: required "doc",
    summary: required "summary",
    auth: optional "auth",
    idempotent: or_default "idempotent",
    response: optional "response",
    raw: optional "raw",
    body: optional "body",
    query: optional "query",
    errors: or_default "errors",
    one_of: or_default "one_of",
    retry_key: optional "retry_key",
    ranges: or_default "ranges",
    fields: or_default "fields",
});

read_table!(RangeRule, "struct RangeRule", {
    start: required "start",
    end: required "end",
    max_span: optional "max_span",
});

read_table!(Field, "struct Field", {
    name: required "name",
    ty: required "type",
    required: or_default "required",
    doc: optional "doc",
    aliases: or_default "aliases",
    flatten: or_default "flatten",
    accepts: optional "accepts",
    shortcuts: optional "shortcuts",
    min_bytes: optional "min_bytes",
    max_bytes: optional "max_bytes",
    max_chars: optional "max_chars",
    charset: optional "charset",
    prefix: optional "prefix",
    allow_empty: or_default "allow_empty",
    numbers_as_text: or_default "numbers_as_text",
    secret: optional "secret",
    min: optional "min",
    max: optional "max",
    min_items: optional "min_items",
    max_items: optional "max_items",
    server: optional "server",
    day_aligned: optional "day_aligned",
    days_ago: optional "days_ago",
    media_type: optional "media_type",
});
