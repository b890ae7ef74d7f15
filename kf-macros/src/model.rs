//! The shape of `endpoints.toml`, as `read.rs` reads it.
//!
//! Every value a rule in `check.rs` may blame is kept as [`Spanned`], so a diagnostic can
//! point at its line and column. Every table denies unknown keys, so a misspelled key fails
//! at the right place instead of being ignored. The format is documented for maintainers in
//! `docs/endpoints-toml.md`.

use std::collections::BTreeMap;

use toml::Spanned;

use crate::ir::Builtin;

/// Doc links are this prefix plus the page id, unless the file sets `docs`.
pub const DEFAULT_DOCS: &str = "https://developer.work.weixin.qq.com/document/path/";

#[derive(Debug)]
pub struct Api {
    pub docs: Option<Spanned<String>>,
    pub errors: Vec<ErrorCode>,
    pub enums: Vec<IntEnum>,
    pub structs: Vec<Struct>,
    pub unions: Vec<Union>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug)]
pub struct ErrorCode {
    pub code: Spanned<i64>,
    pub name: Spanned<String>,
    pub meaning: String,
    pub hint: String,
    pub retry: Spanned<String>,
    /// Refines a code WeCom uses for several causes: this entry applies when the answer's
    /// `errmsg` contains one of these (ignoring case); the code's plain entry otherwise.
    pub errmsg: Vec<Spanned<String>>,
}

impl ErrorCode {
    /// Whether it refines another entry of the same code by `errmsg`.
    pub fn is_refinement(&self) -> bool {
        !self.errmsg.is_empty()
    }
}

#[derive(Debug)]
pub struct IntEnum {
    pub name: Spanned<String>,
    pub repr: Spanned<String>,
    pub summary: Option<String>,
    pub doc: Option<Spanned<u64>>,
    pub values: Vec<EnumValue>,
}

#[derive(Debug)]
pub struct EnumValue {
    pub value: Spanned<i64>,
    pub name: Spanned<String>,
    pub doc: Option<String>,
}

#[derive(Debug)]
pub struct Struct {
    pub name: Spanned<String>,
    pub summary: Option<String>,
    pub doc: Option<Spanned<u64>>,
    /// Never fails to deserialize: a field that is missing or doesn't parse becomes `None`
    /// (or its default when required), and the original object is kept in `raw`.
    pub lenient: bool,
    pub fields: Vec<Field>,
}

#[derive(Debug)]
pub struct Union {
    pub name: Spanned<String>,
    pub tag: Spanned<String>,
    pub layout: Option<Spanned<String>>,
    pub unknown: bool,
    pub summary: Option<String>,
    pub doc: Option<Spanned<u64>>,
    pub variants: Vec<Variant>,
}

#[derive(Debug)]
pub struct Variant {
    pub tag: Spanned<String>,
    pub ty: Spanned<String>,
    pub short: Option<Spanned<String>>,
    /// The Rust variant's name, when it should differ from the type's (`ReceivedText` → `Text`).
    pub name: Option<Spanned<String>>,
}

impl Variant {
    /// The name shortcut methods use: `short`, or the tag itself.
    pub fn short_name(&self) -> &str {
        self.short.as_ref().unwrap_or(&self.tag).get_ref()
    }

    /// The Rust variant's name: `name`, or the payload type's.
    pub fn variant_name(&self) -> &Spanned<String> {
        self.name.as_ref().unwrap_or(&self.ty)
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub name: Spanned<String>,
    pub method: Spanned<String>,
    pub path: Spanned<String>,
    pub doc: Spanned<u64>,
    pub summary: String,
    pub auth: Option<Spanned<String>>,
    pub idempotent: bool,
    pub response: Option<Spanned<String>>,
    pub raw: Option<Spanned<String>>,
    /// `"json"` (the default: POST fields are the JSON body) or `"multipart"` (`file` fields
    /// are the parts, the other fields go to the query string).
    pub body: Option<Spanned<String>>,
    /// Query parameters sent with every call, whatever the fields (`type = "image"`).
    pub query: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub errors: Vec<Spanned<i64>>,
    /// Groups of optional fields of which at least one must be set (`servicer_add` takes
    /// members, departments, or both).
    pub one_of: Vec<Spanned<Vec<Spanned<String>>>>,
    /// The optional string field that makes a retry recognisable (`msgid`): the client
    /// fills it once per call when the caller left it unset, so every attempt carries the
    /// same id and WeCom can refuse a repeat.
    pub retry_key: Option<Spanned<String>>,
    /// Pairs of number fields that bound an interval (`start_time`, `end_time`): the end is
    /// not before the start, and at most `max_span` after it.
    pub ranges: Vec<Spanned<RangeRule>>,
    pub fields: Vec<Field>,
}

/// One entry of an endpoint's `ranges`.
#[derive(Debug)]
pub struct RangeRule {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    /// The largest `end - start` allowed, in the fields' unit.
    pub max_span: Option<Spanned<u64>>,
}

/// The `response` that means "a file's bytes", not a struct.
pub const BINARY_RESPONSE: &str = "binary";

impl Endpoint {
    /// Whether the answer is a file (`response = "binary"`), or a JSON error.
    pub fn is_binary(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(|r| r.get_ref() == BINARY_RESPONSE)
    }

    pub fn is_get(&self) -> bool {
        self.method.get_ref() == "GET"
    }

    pub fn is_multipart(&self) -> bool {
        self.body
            .as_ref()
            .is_some_and(|b| b.get_ref() == "multipart")
    }

    /// The constant query parameters, in key order.
    pub fn fixed_query(&self) -> impl Iterator<Item = (&str, &Spanned<String>)> {
        self.query
            .iter()
            .flat_map(|q| q.get_ref().iter().map(|(k, v)| (k.as_str(), v)))
    }
}

#[derive(Debug)]
pub struct Field {
    pub name: Spanned<String>,
    pub ty: Spanned<String>,
    pub required: bool,
    pub doc: Option<String>,
    pub aliases: Vec<String>,
    pub flatten: bool,
    pub accepts: Option<Spanned<Vec<Spanned<String>>>>,
    pub shortcuts: Option<Spanned<String>>,
    pub min_bytes: Option<Spanned<u64>>,
    pub max_bytes: Option<Spanned<u64>>,
    pub max_chars: Option<Spanned<u64>>,
    pub charset: Option<Spanned<String>>,
    pub prefix: Option<Spanned<Vec<String>>>,
    pub allow_empty: bool,
    /// A string field that also accepts a JSON number (kept as its decimal text).
    pub numbers_as_text: bool,
    /// A credential sent as is (a callback token) whose `Debug` prints `***`.
    pub secret: Option<Spanned<bool>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub min_items: Option<Spanned<u64>>,
    pub max_items: Option<Spanned<u64>>,
    pub server: Option<Spanned<String>>,
    /// On an integer field holding Unix seconds: the value is 00:00 of a day at this UTC
    /// offset (`"+08:00"`).
    pub day_aligned: Option<Spanned<String>>,
    /// With `day_aligned`: the day lies this many days before today, inclusive (`[1, 180]`:
    /// from yesterday to 180 days back).
    pub days_ago: Option<Spanned<Vec<u64>>>,
    /// On a `file` field: the WeCom media type it uploads as; a file over `max_bytes` is then
    /// `Error::UploadTooLarge` with this type.
    pub media_type: Option<Spanned<String>>,
}

impl Field {
    pub fn type_ref(&self) -> TypeRef<'_> {
        TypeRef::parse(self.ty.get_ref())
    }

    /// Whether `Debug` hides the value (`secret = true`).
    pub fn is_secret(&self) -> bool {
        self.secret.as_ref().is_some_and(|s| *s.get_ref())
    }

    /// `days_ago` as a pair, when it is one.
    pub fn days_ago_bounds(&self) -> Option<(u64, u64)> {
        match self.days_ago.as_ref().map(|d| d.get_ref().as_slice()) {
            Some([low, high]) => Some((*low, *high)),
            _ => None,
        }
    }
}

/// `"+08:00"` → 28800: a UTC offset as ISO 8601 writes it, at most 14 hours either way.
pub fn parse_utc_offset(text: &str) -> Result<i32, String> {
    let format = || format!("`{text}` is not a UTC offset like \"+08:00\" or \"-05:30\"");
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(format()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(format)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(format());
    }
    let hours: i32 = hours.parse().map_err(|_| format())?;
    let minutes: i32 = minutes.parse().map_err(|_| format())?;
    if minutes >= 60 || hours * 60 + minutes > 14 * 60 {
        return Err(format!(
            "`{text}` is out of range; UTC offsets go from -14:00 to +14:00"
        ));
    }
    Ok(sign * (hours * 3600 + minutes * 60))
}

/// A field type as written: a name, or `[name]` for a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeRef<'a> {
    pub name: &'a str,
    pub list: bool,
}

impl<'a> TypeRef<'a> {
    pub fn parse(text: &'a str) -> Self {
        match text
            .trim()
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
        {
            Some(inner) => TypeRef {
                name: inner.trim(),
                list: true,
            },
            None => TypeRef {
                name: text.trim(),
                list: false,
            },
        }
    }
}

/// What a type name refers to, once the whole file is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    String,
    Secret,
    Bool,
    Int,
    Float,
    Json,
    /// A file to upload ([`multipart`](Endpoint::is_multipart) endpoints only).
    File,
    Struct,
    Union,
    Enum,
}

impl TypeKind {
    pub fn is_string_like(self) -> bool {
        matches!(self, TypeKind::String | TypeKind::Secret)
    }

    pub fn is_number(self) -> bool {
        matches!(self, TypeKind::Int | TypeKind::Float)
    }

    /// Types whose values carry their own `validate`.
    pub fn is_composite(self) -> bool {
        matches!(self, TypeKind::Struct | TypeKind::Union)
    }
}

impl Api {
    /// Resolves a type name against the built-ins and the file's own tables.
    pub fn kind_of(&self, name: &str) -> Option<TypeKind> {
        let builtin = Builtin::from_name(name).map(|b| match b {
            Builtin::String => TypeKind::String,
            Builtin::Secret => TypeKind::Secret,
            Builtin::Bool => TypeKind::Bool,
            Builtin::I32 | Builtin::U32 | Builtin::I64 | Builtin::U64 => TypeKind::Int,
            Builtin::F64 => TypeKind::Float,
            Builtin::Json => TypeKind::Json,
            Builtin::File => TypeKind::File,
        });
        builtin.or_else(|| {
            if self.structs.iter().any(|s| s.name.get_ref() == name) {
                Some(TypeKind::Struct)
            } else if self.unions.iter().any(|u| u.name.get_ref() == name) {
                Some(TypeKind::Union)
            } else if self.enums.iter().any(|e| e.name.get_ref() == name) {
                Some(TypeKind::Enum)
            } else {
                None
            }
        })
    }

    pub fn union(&self, name: &str) -> Option<&Union> {
        self.unions.iter().find(|u| u.name.get_ref() == name)
    }

    /// The plain entry of `code` (not a refinement by `errmsg`).
    pub fn error(&self, code: i64) -> Option<&ErrorCode> {
        self.errors
            .iter()
            .find(|e| *e.code.get_ref() == code && !e.is_refinement())
    }

    pub fn docs_prefix(&self) -> &str {
        self.docs
            .as_ref()
            .map(|d| d.get_ref().as_str())
            .unwrap_or(DEFAULT_DOCS)
    }
}
