//! The resolved API: what `lower` makes of a checked file, and all that the emitters read.
//!
//! Every choice the TOML spells as a string (`method`, `auth`, `body`, `layout`, `retry`,
//! `server`, a type name) is a typed value here, and every name the generator derives
//! (`SendMsgRequest`, `SendMsg`, `SendMsgMessage`, `send_text`) is computed once, in
//! `lower`. Emitters match on these values; none compares a string or falls back.

use proc_macro2::Ident;

/// The whole file, in file order.
pub struct Api {
    /// Doc links are this plus the page id.
    pub docs_prefix: String,
    pub errors: Vec<ErrorCode>,
    pub enums: Vec<IntEnum>,
    pub structs: Vec<Struct>,
    pub unions: Vec<Union>,
    pub endpoints: Vec<Endpoint>,
}

impl Api {
    /// The plain entry of `code` (not a refinement by `errmsg`).
    pub fn error(&self, code: i64) -> Option<&ErrorCode> {
        self.errors
            .iter()
            .find(|e| e.code == code && e.errmsg.is_empty())
    }
}

/// How the client treats an error code (`retry` in an `[[error]]` table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RetryClass {
    Never,
    Backoff,
    RateLimited,
    RefreshToken,
}

impl RetryClass {
    pub const ALL: [(&'static str, RetryClass); 4] = [
        ("never", RetryClass::Never),
        ("backoff", RetryClass::Backoff),
        ("rate_limited", RetryClass::RateLimited),
        ("refresh_token", RetryClass::RefreshToken),
    ];
}

/// One `[[error]]` table: a variant of `ErrCode`.
pub struct ErrorCode {
    pub code: i64,
    pub ident: Ident,
    pub meaning: String,
    pub hint: String,
    pub retry: RetryClass,
    /// Non-empty when the entry refines its code by `errmsg`, as written.
    pub errmsg: Vec<String>,
}

/// The Rust integer an `[[enum]]` is (`repr`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Repr {
    I32,
    U32,
    I64,
    U64,
}

impl Repr {
    pub const ALL: [(&'static str, Repr); 4] = [
        ("i32", Repr::I32),
        ("u32", Repr::U32),
        ("i64", Repr::I64),
        ("u64", Repr::U64),
    ];
}

pub struct IntEnum {
    pub ident: Ident,
    pub repr: Repr,
    pub summary: Option<String>,
    pub doc: Option<u64>,
    pub values: Vec<EnumValue>,
}

pub struct EnumValue {
    pub value: i64,
    pub ident: Ident,
    pub doc: Option<String>,
}

/// Which way a type travels: sent in a request, received in a response, or both. Only
/// types that are sent get a `Validate` impl.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Direction {
    /// Reached from an endpoint's fields only.
    Request,
    /// Reached from an endpoint's `response` only.
    Response,
    /// Reached from both, or from neither (a type the file declares for its own use).
    #[default]
    Both,
}

impl Direction {
    /// Whether values of the type are sent, so their limits are checked before sending.
    pub fn is_sent(self) -> bool {
        matches!(self, Direction::Request | Direction::Both)
    }
}

pub struct Struct {
    pub ident: Ident,
    pub summary: Option<String>,
    pub doc: Option<u64>,
    /// Never fails to deserialize; keeps its text in `raw`.
    pub lenient: bool,
    /// A lenient struct that is read in one pass when nothing is out of the ordinary: at
    /// most one flattened field, a keyed union whose tag no other field is named like.
    pub one_pass: bool,
    /// A page (`SyncMsgResponse`): the index of its optional list of lenient items, which
    /// `from_body` reads where they stand in the body (`rt::read_page`).
    pub page_list: Option<usize>,
    pub fields: Vec<Field>,
    pub direction: Direction,
}

/// Where a union puts its payload (`layout`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Layout {
    /// `{"msgtype": "text", "text": {…}}`: under a key named like the tag.
    Keyed,
    /// `{"event_type": "enter_session", …fields}`: beside the tag.
    Inline,
}

impl Layout {
    pub const ALL: [(&'static str, Layout); 2] =
        [("keyed", Layout::Keyed), ("inline", Layout::Inline)];
}

pub struct Union {
    pub ident: Ident,
    /// The key holding the tag, on the wire (`msgtype`).
    pub tag_key: String,
    /// The same key as the `Unknown` variant's field.
    pub tag_field: Ident,
    pub layout: Layout,
    /// Keeps tags (and payloads) it doesn't know as `Unknown` instead of failing.
    pub keeps_unknown: bool,
    pub summary: Option<String>,
    pub doc: Option<u64>,
    pub variants: Vec<Variant>,
    pub direction: Direction,
    /// Flattened into a struct read in one pass, or an inline union nested in one, so it
    /// reads its payload in place (`rt::KeyedPayload`).
    pub read_in_pass: bool,
}

pub struct Variant {
    /// The tag value (`text`).
    pub tag: String,
    /// The Rust variant (`Text`).
    pub ident: Ident,
    /// The payload type (`Text`, `ReceivedText`).
    pub payload: Ident,
    /// The payload is itself a union (`Received::Event`), read in place.
    pub nested_union: bool,
}

/// The field types the file may name without declaring them: the one list of them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Builtin {
    String,
    /// A credential received, hidden from `Debug` (`rt::Secret`).
    Secret,
    Bool,
    I32,
    U32,
    I64,
    U64,
    F64,
    /// Any JSON (`rt::Value`).
    Json,
    /// A file to upload, a part of a multipart body (`rt::Upload`).
    File,
}

impl Builtin {
    pub const ALL: [(&'static str, Builtin); 10] = [
        ("string", Builtin::String),
        ("secret", Builtin::Secret),
        ("bool", Builtin::Bool),
        ("i32", Builtin::I32),
        ("u32", Builtin::U32),
        ("i64", Builtin::I64),
        ("u64", Builtin::U64),
        ("f64", Builtin::F64),
        ("json", Builtin::Json),
        ("file", Builtin::File),
    ];

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
    }

    pub fn names() -> impl Iterator<Item = &'static str> + Clone {
        Builtin::ALL.iter().map(|(name, _)| *name)
    }
}

/// What a field's values are.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FieldType {
    Builtin(Builtin),
    Struct(Ident),
    Union {
        ident: Ident,
        /// The union's tag key, for the path of an `accepts` error.
        tag_key: String,
    },
    Enum(Ident),
}

/// What WeCom does with a value past a `max_*` limit (`server`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OverLimit {
    /// `rejects`: the client refuses it before sending.
    Refused,
    /// `truncates`: the client sends it and logs a warning.
    Truncated,
}

impl OverLimit {
    pub const ALL: [(&'static str, OverLimit); 2] = [
        ("rejects", OverLimit::Refused),
        ("truncates", OverLimit::Truncated),
    ];
}

/// WeCom's media types, as `wecom_kf::media::MediaType` names them (`media_type`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MediaType {
    Image,
    Voice,
    Video,
    File,
}

impl MediaType {
    pub const ALL: [(&'static str, MediaType); 4] = [
        ("image", MediaType::Image),
        ("voice", MediaType::Voice),
        ("video", MediaType::Video),
        ("file", MediaType::File),
    ];
}

/// A string field's rule, as the runtime's `StringRule` takes it.
#[derive(Clone, PartialEq, Debug)]
pub enum StringRule {
    /// Any string (`allow_empty` and nothing else).
    Any,
    /// Only the default: not empty.
    NonEmpty,
    /// Anything more.
    Custom {
        min_bytes: u64,
        max_bytes: Option<u64>,
        max_chars: Option<u64>,
        charset: Vec<(char, char)>,
        prefixes: Vec<String>,
    },
}

/// A field's limits, as written (for its docs) and resolved (for its checks).
#[derive(Clone, PartialEq, Debug)]
pub struct Limits {
    pub min_bytes: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_chars: Option<u64>,
    /// The charset as written, for the docs; its ranges are in the string rule.
    pub charset: Option<String>,
    pub prefixes: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub over: OverLimit,
    pub day: Option<DayRule>,
    pub media_type: Option<MediaType>,
    /// The rule a string field checks (`Any` on other types).
    pub string: StringRule,
}

impl Limits {
    pub fn has_number_limits(&self) -> bool {
        self.min.is_some() || self.max.is_some()
    }

    pub fn has_list_limits(&self) -> bool {
        self.min_items.is_some() || self.max_items.is_some()
    }
}

/// `day_aligned` (and `days_ago`) on an integer field.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DayRule {
    /// As written (`+08:00`), for the docs.
    pub written: String,
    /// Seconds east of UTC.
    pub utc_offset: i32,
    pub days_ago: Option<(u64, u64)>,
}

/// A field of a struct or an endpoint.
pub struct Field {
    /// The name on the wire and in the docs.
    pub wire: String,
    pub ident: Ident,
    pub ty: FieldType,
    pub list: bool,
    pub required: bool,
    pub doc: Option<String>,
    pub aliases: Vec<String>,
    pub flatten: bool,
    pub numbers_as_text: bool,
    /// `Debug` prints `***` (`secret = true`).
    pub secret: bool,
    /// The message tags the field takes, when it restricts them (`accepts`).
    pub accepts: Option<Vec<String>>,
    pub limits: Limits,
}

impl Field {
    /// The builtin this field is, if it is one.
    pub fn builtin(&self) -> Option<Builtin> {
        match self.ty {
            FieldType::Builtin(b) => Some(b),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub const ALL: [(&'static str, HttpMethod); 2] =
        [("GET", HttpMethod::Get), ("POST", HttpMethod::Post)];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// How a call authenticates (`auth`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Auth {
    AccessToken,
    /// `gettoken` itself: the corp id and secret in the query.
    CorpSecret,
}

impl Auth {
    pub const ALL: [(&'static str, Auth); 2] = [
        ("access_token", Auth::AccessToken),
        ("corp_secret", Auth::CorpSecret),
    ];
}

/// How the fields travel (`method` and `body` together).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Body {
    /// POST with the fields as a JSON body.
    Json,
    /// GET with the fields as query parameters.
    Query,
    /// POST with the `file` fields as parts and the others in the query.
    Multipart,
}

impl Body {
    pub const ALL: [(&'static str, Body); 2] =
        [("json", Body::Json), ("multipart", Body::Multipart)];
}

/// What a call answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    /// `errcode`/`errmsg` only.
    Ack,
    Struct(Ident),
    /// A file's bytes (`response = "binary"`).
    Binary,
}

/// An endpoint's interval rule (`ranges`): both fields resolved.
pub struct RangeRule {
    pub start: usize,
    pub end: usize,
    pub max_span: Option<u64>,
}

/// The trait that limits a message field to the types an endpoint accepts.
pub struct Marker {
    pub ident: Ident,
    pub union: Ident,
    pub tags: Vec<String>,
    /// The payload types that implement it.
    pub accepted: Vec<Ident>,
}

/// `send_text(…)`: one per accepted variant of the message field.
pub struct Shortcut {
    pub ident: Ident,
    pub tag: String,
    pub payload: Ident,
}

pub struct Endpoint {
    /// As written (`send_msg`), for docs.
    pub name: String,
    /// The client method (`send_msg`).
    pub method: Ident,
    /// The request body type (`SendMsgRequest`).
    pub request: Ident,
    /// The builder a method returns (`SendMsg`).
    pub builder: Ident,
    pub http: HttpMethod,
    pub path: String,
    pub doc: u64,
    pub summary: String,
    pub auth: Auth,
    pub idempotent: bool,
    pub body: Body,
    pub response: Response,
    /// Constant query parameters, in key order.
    pub query: Vec<(String, String)>,
    /// The error codes its docs list; each has a plain entry in [`Api::errors`].
    pub errors: Vec<i64>,
    /// Groups of optional fields of which one must be set: indices into `fields`.
    pub one_of: Vec<Vec<usize>>,
    pub ranges: Vec<RangeRule>,
    /// The optional string field a retry keeps: an index into `fields`.
    pub retry_key: Option<usize>,
    pub fields: Vec<Field>,
    /// The field that carries the message (`msg`): an index into `fields`.
    pub message: Option<usize>,
    pub marker: Option<Marker>,
    pub shortcuts: Vec<Shortcut>,
    pub raw: Option<Ident>,
}
