//! Semantic rules over the whole file. Every rule runs and every problem is collected, so
//! a maintainer sees all the mistakes of an edit in one build.

use std::collections::HashMap;
use std::ops::Range;

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics, backticked, did_you_mean};
use crate::ir::{Auth, Body, Builtin, HttpMethod, Layout, MediaType, OverLimit, Repr, RetryClass};
use crate::model::{Api, BINARY_RESPONSE, Endpoint, Field, Struct, TypeKind, parse_utc_offset};
use crate::names::{is_identifier, pascal_case};

/// `shipped`: the file is the crate's own (`methods = inherent`), the one place error
/// codes are declared.
pub fn check(api: &Api, shipped: bool) -> Result<(), Vec<Diagnostic>> {
    let mut cx = Diagnostics::default();
    check_docs(api, &mut cx);
    check_type_names(api, &mut cx);
    if shipped {
        check_errors(api, &mut cx);
    } else if let Some(first) = api.errors.first() {
        cx.error_with_help(
            first.code.span(),
            "`[[error]]` tables belong to wecom-kf's own endpoints.toml",
            "the client classifies every answer with `wecom_kf::ErrCode` (its retry class, its hint); list the codes an endpoint returns in its `errors`, and unnamed ones arrive as `ErrCode::Other`",
        );
    }
    check_enums(api, &mut cx);
    for s in &api.structs {
        check_fields(api, &s.fields, FieldOwner::Struct, &mut cx);
        if s.lenient {
            check_lenient(api, s, &mut cx);
        }
    }
    check_unions(api, &mut cx);
    check_endpoints(api, shipped, &mut cx);
    cx.finish()
}

fn check_docs(api: &Api, cx: &mut Diagnostics) {
    if let Some(docs) = &api.docs
        && !docs.get_ref().starts_with("https://")
        && !docs.get_ref().starts_with("http://")
    {
        cx.error(docs.span(), "`docs` must be an http(s) URL prefix");
    }
}

/// Remembers the first place each name was defined, to report duplicates against it.
struct Seen {
    what: &'static str,
    first: HashMap<String, Range<usize>>,
}

impl Seen {
    fn new(what: &'static str) -> Self {
        Seen {
            what,
            first: HashMap::new(),
        }
    }

    fn add(&mut self, name: &str, span: Range<usize>, cx: &mut Diagnostics) {
        match self.first.get(name) {
            Some(first) => cx.duplicate(
                span,
                format!("duplicate {} `{name}`", self.what),
                first.clone(),
            ),
            None => {
                self.first.insert(name.to_owned(), span);
            }
        }
    }
}

fn check_identifier(name: &Spanned<String>, what: &str, cx: &mut Diagnostics) -> bool {
    if is_identifier(name.get_ref()) {
        true
    } else {
        cx.error_with_help(
            name.span(),
            format!("{what} `{}` is not a Rust identifier", name.get_ref()),
            "use letters, digits and `_`, starting with a letter",
        );
        false
    }
}

fn check_type_names(api: &Api, cx: &mut Diagnostics) {
    let mut seen = Seen::new("type name");
    let declared = api
        .structs
        .iter()
        .map(|s| &s.name)
        .chain(api.unions.iter().map(|u| &u.name))
        .chain(api.enums.iter().map(|e| &e.name));
    for name in declared {
        if !check_identifier(name, "type name", cx) {
            continue;
        }
        if Builtin::from_name(name.get_ref()).is_some() {
            cx.error(
                name.span(),
                format!("`{}` is a built-in type name", name.get_ref()),
            );
        }
        if name.get_ref() == BINARY_RESPONSE {
            cx.error(
                name.span(),
                "`binary` is reserved: `response = \"binary\"` means the answer is a file",
            );
        }
        seen.add(name.get_ref(), name.span(), cx);
    }
    // Names the generator derives from endpoints live in the same namespace.
    for e in &api.endpoints {
        let base = pascal_case(e.name.get_ref());
        for derived in [
            format!("{base}Request"),
            base.clone(),
            format!("{base}Message"),
        ] {
            if api.kind_of(&derived).is_some_and(|k| !is_builtin(k)) {
                cx.error(
                    e.name.span(),
                    format!(
                        "endpoint `{}` generates `{derived}`, which a table already defines",
                        e.name.get_ref()
                    ),
                );
            }
        }
    }
}

fn is_builtin(kind: TypeKind) -> bool {
    !matches!(kind, TypeKind::Struct | TypeKind::Union | TypeKind::Enum)
}

fn check_errors(api: &Api, cx: &mut Diagnostics) {
    let mut names = Seen::new("error name");
    let mut codes: HashMap<i64, ()> = HashMap::new();
    for e in &api.errors {
        if check_identifier(&e.name, "error name", cx) {
            names.add(e.name.get_ref(), e.name.span(), cx);
        }
        if e.name.get_ref() == "Other" {
            cx.error(
                e.name.span(),
                "`Other` is reserved for codes the file doesn't name",
            );
        }
        let code = *e.code.get_ref();
        if e.is_refinement() {
            if api.error(code).is_none() {
                cx.error_with_help(
                    e.code.span(),
                    format!("error code `{code}` is refined by `errmsg` but has no plain entry"),
                    format!("add an `[[error]]` for `{code}` without `errmsg`: it applies when no `errmsg` matches"),
                );
            }
            for pattern in &e.errmsg {
                if pattern.get_ref().trim().is_empty() {
                    cx.error(pattern.span(), "an `errmsg` pattern can't be empty");
                }
            }
        } else if codes.insert(code, ()).is_some() {
            cx.error_with_help(
                e.code.span(),
                format!("duplicate error code `{code}`"),
                "entries that share a code must tell WeCom's causes apart with `errmsg = [\"…\"]`",
            );
        }
        expect_one_of(&e.retry, &RetryClass::ALL, "retry class", cx);
    }
}

/// The value is one of `table`'s names: the tables `lower` turns them into values with.
fn expect_one_of<T>(
    value: &Spanned<String>,
    table: &[(&str, T)],
    what: &str,
    cx: &mut Diagnostics,
) {
    let allowed: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
    if !allowed.contains(&value.get_ref().as_str()) {
        let expected = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        cx.error_with_help(
            value.span(),
            format!("unknown {what} `{}`", value.get_ref()),
            format!("expected one of {expected}"),
        );
    }
}

fn check_enums(api: &Api, cx: &mut Diagnostics) {
    for e in &api.enums {
        expect_one_of(&e.repr, &Repr::ALL, "enum repr", cx);
        let unsigned = e.repr.get_ref().starts_with('u');
        let narrow = e.repr.get_ref().ends_with("32");
        let mut names = Seen::new("enum value name");
        let mut values = HashMap::new();
        for v in &e.values {
            if check_identifier(&v.name, "enum value name", cx) {
                names.add(v.name.get_ref(), v.name.span(), cx);
            }
            if v.name.get_ref() == "Other" {
                cx.error(v.name.span(), "`Other` is reserved for unknown values");
            }
            let n = *v.value.get_ref();
            let fits = match (unsigned, narrow) {
                (true, true) => u32::try_from(n).is_ok(),
                (true, false) => n >= 0,
                (false, true) => i32::try_from(n).is_ok(),
                (false, false) => true,
            };
            if !fits {
                cx.error(
                    v.value.span(),
                    format!("value {n} does not fit `{}`", e.repr.get_ref()),
                );
            }
            if values.insert(n, ()).is_some() {
                cx.error(v.value.span(), format!("duplicate enum value {n}"));
            }
        }
    }
}

/// A lenient struct fills a field that doesn't parse with its default, so required fields
/// need one; and `raw` is the name of the field that keeps the original object.
fn check_lenient(api: &Api, s: &Struct, cx: &mut Diagnostics) {
    for f in &s.fields {
        if let Some(secret) = f.secret.as_ref().filter(|s| *s.get_ref()) {
            cx.error(
                secret.span(),
                "a lenient struct keeps its JSON text in `raw`, which would show a `secret` field",
            );
        }
        if f.name.get_ref() == "raw" {
            cx.error(
                f.name.span(),
                "a lenient struct keeps the original JSON in `raw`; rename this field",
            );
        }
        let ty = f.type_ref();
        if !f.required || ty.list {
            continue;
        }
        let has_default = match api.kind_of(ty.name) {
            Some(TypeKind::Union) => api.union(ty.name).is_some_and(|u| u.unknown),
            Some(TypeKind::Struct | TypeKind::Enum | TypeKind::Secret) => false,
            _ => true,
        };
        if !has_default {
            cx.error_with_help(
                f.ty.span(),
                format!(
                    "required field `{}` of a lenient struct needs a type with a fallback",
                    f.name.get_ref()
                ),
                "make it optional, or use a plain type or a union with `unknown = true`",
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOwner {
    Struct,
    /// `query`: the fields are sent as query parameters (GET, or beside multipart files).
    Endpoint {
        query: bool,
        multipart: bool,
    },
}

fn check_fields(api: &Api, fields: &[Field], owner: FieldOwner, cx: &mut Diagnostics) {
    let mut names = Seen::new("field");
    for f in fields {
        if check_identifier(&f.name, "field name", cx) {
            names.add(f.name.get_ref(), f.name.span(), cx);
        }
        let ty = f.type_ref();
        let Some(kind) = api.kind_of(ty.name) else {
            report_unknown_type(api, &f.ty, ty.name, "field type", cx);
            continue;
        };
        check_limits(f, kind, ty.list, cx);
        check_day_rules(f, kind, ty.list, cx);
        check_message_keys(api, f, kind, ty.list, owner, cx);
        if f.numbers_as_text && (kind != TypeKind::String || ty.list) {
            cx.error(
                f.ty.span(),
                "`numbers_as_text` applies to `string` fields only",
            );
        }
        if let Some(secret) = f.secret.as_ref().filter(|s| *s.get_ref())
            && (kind != TypeKind::String || ty.list)
        {
            cx.error_with_help(
                secret.span(),
                "`secret = true` applies to `string` fields only",
                "a `secret` typed value is already hidden from `Debug`",
            );
        }
        if kind == TypeKind::Secret && matches!(owner, FieldOwner::Endpoint { .. }) {
            cx.error_with_help(
                f.ty.span(),
                "a `secret` value serializes as `\"***\"`, so a request can't send it",
                "use `type = \"string\", secret = true`: sent as is, hidden from `Debug`",
            );
        }
        let (query, multipart) = match owner {
            FieldOwner::Endpoint { query, multipart } => (query, multipart),
            FieldOwner::Struct => (false, false),
        };
        check_media_type(f, kind, cx);
        if kind == TypeKind::File {
            if !multipart {
                cx.error_with_help(
                    f.ty.span(),
                    "a `file` field can only be a part of a multipart body",
                    "put it on an [[endpoint]] with `body = \"multipart\"`",
                );
            } else if ty.list {
                cx.error(
                    f.ty.span(),
                    "one `file` field is one part; a list of files isn't supported",
                );
            }
        } else if query && (ty.list || kind.is_composite() || kind == TypeKind::Json) {
            cx.error(
                f.ty.span(),
                format!(
                    "this endpoint sends its fields as query parameters; `{}` can't be one",
                    f.ty.get_ref()
                ),
            );
        }
    }
}

fn report_unknown_type(
    api: &Api,
    ty: &Spanned<String>,
    name: &str,
    what: &str,
    cx: &mut Diagnostics,
) {
    let declared = api
        .structs
        .iter()
        .map(|s| s.name.get_ref().as_str())
        .chain(api.unions.iter().map(|u| u.name.get_ref().as_str()))
        .chain(api.enums.iter().map(|e| e.name.get_ref().as_str()));
    let mut candidates: Vec<&str> = Builtin::names().collect();
    candidates.extend(declared);
    let help = match did_you_mean(name, candidates.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!(
            "expected one of {}, a [[struct]], [[union]] or [[enum]] name, or `[T]` for a list",
            backticked(Builtin::names())
        ),
    };
    cx.error_with_help(ty.span(), format!("unknown {what} `{name}`"), help);
}

fn check_limits(f: &Field, kind: TypeKind, list: bool, cx: &mut Diagnostics) {
    let of_type = || format!("field `{}` of type `{}`", f.name.get_ref(), f.ty.get_ref());
    let scalar_string = kind.is_string_like() && !list;
    if !scalar_string && kind != TypeKind::File {
        for (key, span) in [
            ("min_bytes", f.min_bytes.as_ref().map(Spanned::span)),
            ("max_bytes", f.max_bytes.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                cx.error(
                    span,
                    format!("`{key}` applies to strings and files, not to {}", of_type()),
                );
            }
        }
    }
    if !scalar_string {
        for (key, span) in [
            ("max_chars", f.max_chars.as_ref().map(Spanned::span)),
            ("charset", f.charset.as_ref().map(Spanned::span)),
            ("prefix", f.prefix.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                cx.error(
                    span,
                    format!("`{key}` applies to strings, not to {}", of_type()),
                );
            }
        }
        if f.allow_empty {
            cx.error(
                f.name.span(),
                format!("`allow_empty` applies to strings, not to {}", of_type()),
            );
        }
    }
    if !kind.is_number() || list {
        for limit in [&f.min, &f.max].into_iter().flatten() {
            cx.error(
                limit.span(),
                format!("`min`/`max` apply to numbers, not to {}", of_type()),
            );
        }
    }
    if !list {
        for limit in [&f.min_items, &f.max_items].into_iter().flatten() {
            cx.error(
                limit.span(),
                format!(
                    "`min_items`/`max_items` apply to lists, not to {}",
                    of_type()
                ),
            );
        }
    }
    contradiction(&f.min_bytes, &f.max_bytes, "min_bytes", "max_bytes", cx);
    contradiction(&f.min_items, &f.max_items, "min_items", "max_items", cx);
    for bound in [&f.min, &f.max].into_iter().flatten() {
        if !bound.get_ref().is_finite() {
            cx.error(bound.span(), "`min`/`max` must be finite numbers");
        }
    }
    if let (Some(min), Some(max)) = (&f.min, &f.max)
        && min.get_ref() > max.get_ref()
    {
        cx.error(
            max.span(),
            format!(
                "contradictory limits: `min` {} is above `max` {}",
                min.get_ref(),
                max.get_ref()
            ),
        );
    }
    if let (Some(min), Some(max)) = (&f.min_bytes, &f.max_chars) {
        // Every char is at least one byte, so `max_chars` bounds the byte length too.
        if *min.get_ref() > max.get_ref().saturating_mul(4) {
            cx.error(
                max.span(),
                "contradictory limits: `min_bytes` can never be met within `max_chars`",
            );
        }
    }
    if f.allow_empty && f.min_bytes.as_ref().is_some_and(|m| *m.get_ref() > 0) {
        cx.error(
            f.name.span(),
            "contradictory limits: `allow_empty` with a positive `min_bytes`",
        );
    }
    for max in [&f.max_bytes, &f.max_chars, &f.max_items]
        .into_iter()
        .flatten()
    {
        if *max.get_ref() == 0 {
            cx.error(max.span(), "a maximum of 0 leaves no valid value");
        }
    }
    if let Some(charset) = &f.charset
        && let Err(why) = crate::emit::validate::parse_charset(charset.get_ref())
    {
        cx.error(charset.span(), format!("invalid charset: {why}"));
    }
    let has_max = f.max_bytes.is_some() || f.max_chars.is_some() || f.max_items.is_some();
    match &f.server {
        Some(server) => {
            expect_one_of(server, &OverLimit::ALL, "server behaviour", cx);
            if !has_max {
                cx.error(
                    server.span(),
                    "`server` says what WeCom does past a `max_*` limit, but the field has none",
                );
            }
        }
        None if has_max => cx.error_with_help(
            f.name.span(),
            format!("field `{}` has a `max_*` limit but no `server`", f.name.get_ref()),
            "add `server = \"rejects\"` or `server = \"truncates\"`: what WeCom does with longer values",
        ),
        None => {}
    }
}

/// `media_type` names one of WeCom's four on a `file` field that has a size limit.
fn check_media_type(f: &Field, kind: TypeKind, cx: &mut Diagnostics) {
    let Some(media_type) = &f.media_type else {
        return;
    };
    if kind != TypeKind::File {
        cx.error(
            media_type.span(),
            format!(
                "`media_type` applies to `file` fields, not to field `{}` of type `{}`",
                f.name.get_ref(),
                f.ty.get_ref()
            ),
        );
    }
    expect_one_of(media_type, &MediaType::ALL, "media type", cx);
    if f.max_bytes.is_none() && kind == TypeKind::File {
        cx.error_with_help(
            media_type.span(),
            "`media_type` names the type in the error for a file over `max_bytes`, but the field has none",
            "add the type's size limit, like `max_bytes = 2097152, server = \"rejects\"`",
        );
    }
}

/// `day_aligned` names a UTC offset on an integer field; `days_ago` needs it, and is a
/// `[low, high]` pair.
fn check_day_rules(f: &Field, kind: TypeKind, list: bool, cx: &mut Diagnostics) {
    if let Some(aligned) = &f.day_aligned {
        if kind != TypeKind::Int || list {
            cx.error_with_help(
                aligned.span(),
                format!(
                    "`day_aligned` applies to integer fields (Unix seconds), not to field `{}` of type `{}`",
                    f.name.get_ref(),
                    f.ty.get_ref()
                ),
                "use `u64`, `i64`, `u32` or `i32` for timestamps",
            );
        }
        if let Err(why) = parse_utc_offset(aligned.get_ref()) {
            cx.error(aligned.span(), format!("invalid `day_aligned`: {why}"));
        }
    }
    let Some(days) = &f.days_ago else {
        return;
    };
    if f.day_aligned.is_none() {
        cx.error_with_help(
            days.span(),
            "`days_ago` counts days in a time zone, but the field has no `day_aligned`",
            "add `day_aligned = \"+08:00\"` (the offset whose midnight starts a day)",
        );
    }
    match f.days_ago_bounds() {
        Some((low, high)) if low > high => cx.error(
            days.span(),
            format!("contradictory limits: `days_ago` goes from {low} down to {high}"),
        ),
        Some((_, high)) if high > MAX_DAYS_AGO => cx.error(
            days.span(),
            format!("`days_ago` reaches {high} days back; at most {MAX_DAYS_AGO} are checked"),
        ),
        Some(_) => {}
        None => cx.error(
            days.span(),
            "`days_ago` is a pair `[low, high]`, like `[1, 180]` for yesterday to 180 days back",
        ),
    }
}

/// A century: past it, `days_ago` is surely a mistake (and day arithmetic stays small).
const MAX_DAYS_AGO: u64 = 36_525;

fn contradiction(
    min: &Option<Spanned<u64>>,
    max: &Option<Spanned<u64>>,
    min_key: &str,
    max_key: &str,
    cx: &mut Diagnostics,
) {
    if let (Some(min), Some(max)) = (min, max)
        && min.get_ref() > max.get_ref()
    {
        cx.error(
            max.span(),
            format!(
                "contradictory limits: `{min_key}` {} is above `{max_key}` {}",
                min.get_ref(),
                max.get_ref()
            ),
        );
    }
}

/// `flatten`, `accepts` and `shortcuts` only make sense on a union-typed endpoint field.
fn check_message_keys(
    api: &Api,
    f: &Field,
    kind: TypeKind,
    list: bool,
    owner: FieldOwner,
    cx: &mut Diagnostics,
) {
    let is_union = kind == TypeKind::Union && !list;
    if f.flatten && !is_union {
        cx.error(
            f.name.span(),
            "`flatten` applies to union-typed fields only",
        );
    }
    if f.flatten && !f.required {
        cx.error(f.name.span(), "a flattened field must be `required`");
    }
    for (key, span) in [
        ("accepts", f.accepts.as_ref().map(Spanned::span)),
        ("shortcuts", f.shortcuts.as_ref().map(Spanned::span)),
    ] {
        let Some(span) = span else { continue };
        if !is_union {
            cx.error(span, format!("`{key}` applies to union-typed fields only"));
        } else if owner == FieldOwner::Struct {
            cx.error(span, format!("`{key}` applies to endpoint fields only"));
        } else if !f.required {
            cx.error(span, format!("`{key}` needs the field to be `required`"));
        }
    }
    let Some(union) = api.union(f.type_ref().name).filter(|_| is_union) else {
        return;
    };
    if let Some(accepts) = &f.accepts {
        for tag in accepts.get_ref() {
            if !union
                .variants
                .iter()
                .any(|v| v.tag.get_ref() == tag.get_ref())
            {
                let tags: Vec<&str> = union
                    .variants
                    .iter()
                    .map(|v| v.tag.get_ref().as_str())
                    .collect();
                let help = match did_you_mean(tag.get_ref(), tags.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("`{}` defines: {}", union.name.get_ref(), tags.join(", ")),
                };
                cx.error_with_help(
                    tag.span(),
                    format!(
                        "message type `{}` is not defined by union `{}`",
                        tag.get_ref(),
                        union.name.get_ref()
                    ),
                    help,
                );
            }
        }
    }
    if let Some(pattern) = &f.shortcuts
        && (pattern.get_ref().matches("{}").count() != 1
            || !is_identifier(&pattern.get_ref().replace("{}", "x")))
    {
        cx.error(
            pattern.span(),
            "`shortcuts` must be a method name with one `{}`, like \"send_{}\"",
        );
    }
}

fn check_unions(api: &Api, cx: &mut Diagnostics) {
    for u in &api.unions {
        if let Some(layout) = &u.layout {
            expect_one_of(layout, &Layout::ALL, "union layout", cx);
        }
        if u.tag.get_ref().is_empty() {
            cx.error(u.tag.span(), "a union's `tag` can't be empty");
        }
        let keyed = u.layout.as_ref().is_none_or(|l| l.get_ref() == "keyed");
        let mut tags = Seen::new("variant tag");
        let mut shorts = Seen::new("variant short name");
        let mut names = Seen::new("variant name");
        let mut types = Seen::new("variant type");
        for v in &u.variants {
            tags.add(v.tag.get_ref(), v.tag.span(), cx);
            let short = v.short.as_ref().unwrap_or(&v.tag);
            if check_identifier(short, "variant short name", cx) {
                shorts.add(short.get_ref(), short.span(), cx);
            }
            let name = v.variant_name();
            if check_identifier(name, "variant name", cx) {
                names.add(name.get_ref(), name.span(), cx);
            }
            if u.unknown && name.get_ref() == "Unknown" {
                cx.error(
                    name.span(),
                    "`Unknown` is the variant that keeps unknown tags",
                );
            }
            match api.kind_of(v.ty.get_ref()) {
                // A nested union needs a key of its own to sit under.
                Some(TypeKind::Struct) => types.add(v.ty.get_ref(), v.ty.span(), cx),
                Some(TypeKind::Union) if keyed => types.add(v.ty.get_ref(), v.ty.span(), cx),
                Some(_) => cx.error(
                    v.ty.span(),
                    format!(
                        "variants of {} unions must be {}; `{}` is not",
                        if keyed { "keyed" } else { "inline" },
                        if keyed {
                            "[[struct]] or [[union]] types"
                        } else {
                            "[[struct]] types"
                        },
                        v.ty.get_ref()
                    ),
                ),
                None => report_unknown_type(api, &v.ty, v.ty.get_ref(), "variant type", cx),
            }
        }
    }
}

fn check_endpoints(api: &Api, shipped: bool, cx: &mut Diagnostics) {
    let mut methods = Seen::new("method name");
    for e in &api.endpoints {
        if check_identifier(&e.name, "endpoint name", cx) {
            methods.add(e.name.get_ref(), e.name.span(), cx);
        }
        expect_one_of(&e.method, &HttpMethod::ALL, "HTTP method", cx);
        if let Some(auth) = &e.auth {
            expect_one_of(auth, &Auth::ALL, "auth", cx);
        }
        let path = e.path.get_ref();
        if path.is_empty() || path.starts_with('/') || path.contains(['?', '#', ' ']) {
            cx.error_with_help(
                e.path.span(),
                format!("invalid path `{path}`"),
                "write the path under /cgi-bin/ without a leading slash, like \"kf/send_msg\"",
            );
        }
        if e.is_binary() {
            check_binary(e, cx);
        } else if let Some(response) = &e.response {
            match api.kind_of(response.get_ref()) {
                Some(TypeKind::Struct) => {}
                Some(_) => cx.error(response.span(), "`response` must name a [[struct]]"),
                None => {
                    let structs = api.structs.iter().map(|s| s.name.get_ref().as_str());
                    let help = match did_you_mean(response.get_ref(), structs) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => "declare it as a [[struct]], write `\"binary\"` for a file, or leave `response` out for endpoints that answer with errcode/errmsg only".to_owned(),
                    };
                    cx.error_with_help(
                        response.span(),
                        format!("unknown response type `{}`", response.get_ref()),
                        help,
                    );
                }
            }
        }
        for code in e.errors.iter().filter(|_| shipped) {
            if api.error(*code.get_ref()).is_none() {
                cx.error_with_help(
                    code.span(),
                    format!("error code {} has no [[error]] table", code.get_ref()),
                    "add an [[error]] with its meaning, hint and retry class",
                );
            }
        }
        check_body(api, e, cx);
        let owner = FieldOwner::Endpoint {
            query: e.is_get() || e.is_multipart(),
            multipart: e.is_multipart(),
        };
        check_fields(api, &e.fields, owner, cx);
        check_one_of(e, cx);
        check_ranges(api, e, cx);
        check_retry_key(api, e, cx);
        check_generated_methods(api, e, &mut methods, cx);
    }
}

/// A download is retried from the last byte received, so it must be safe to repeat; its
/// answer is no JSON body a raw method could parse, and no id needs carrying across retries.
fn check_binary(e: &Endpoint, cx: &mut Diagnostics) {
    let Some(response) = &e.response else {
        return;
    };
    if !e.idempotent {
        cx.error_with_help(
            response.span(),
            "a `binary` response is downloaded in ranges and retried where it stopped, so the endpoint must be `idempotent`",
            "add `idempotent = true`: a download changes nothing on the server",
        );
    }
    if let Some(raw) = &e.raw {
        cx.error(
            raw.span(),
            "`raw` methods parse a JSON answer; a `binary` response has none",
        );
    }
    if let Some(key) = &e.retry_key {
        cx.error(
            key.span(),
            "`retry_key` keeps a send from being delivered twice; a `binary` response is a download",
        );
    }
    if e.is_multipart()
        && let Some(body) = &e.body
    {
        cx.error(
            body.span(),
            "a `binary` response takes its fields as JSON or query parameters, not a multipart upload",
        );
    }
}

/// A multipart body is POSTed and has a file; constant query parameters don't shadow fields.
fn check_body(api: &Api, e: &Endpoint, cx: &mut Diagnostics) {
    if let Some(body) = &e.body {
        expect_one_of(body, &Body::ALL, "body", cx);
        if e.is_multipart() {
            if e.is_get() {
                cx.error(body.span(), "a multipart body needs `method = \"POST\"`");
            }
            let has_file = e
                .fields
                .iter()
                .any(|f| api.kind_of(f.type_ref().name) == Some(TypeKind::File));
            if !has_file {
                cx.error_with_help(
                    body.span(),
                    "a multipart body needs a field of type `file`",
                    "add the file to upload, like `{ name = \"media\", type = \"file\", required = true }`",
                );
            }
        }
    }
    // `media_upload`'s `type` parameter and a file's `media_type` say the same thing.
    let query_type = e.fixed_query().find(|(key, _)| *key == "type");
    let file_types = e
        .fields
        .iter()
        .filter(|f| api.kind_of(f.type_ref().name) == Some(TypeKind::File))
        .filter_map(|f| f.media_type.as_ref())
        .filter(|t| MediaType::ALL.iter().any(|(wire, _)| wire == t.get_ref()));
    for media_type in file_types {
        if let Some((_, query)) = query_type.filter(|(_, q)| q.get_ref() != media_type.get_ref()) {
            cx.error(
                media_type.span(),
                format!(
                    "`media_type` is `{}`, but the endpoint uploads as `type = \"{}\"`",
                    media_type.get_ref(),
                    query.get_ref()
                ),
            );
        }
    }
    for (key, value) in e.fixed_query() {
        if e.fields.iter().any(|f| f.name.get_ref() == key) {
            cx.error(
                value.span(),
                format!("query parameter `{key}` is also a field; keep one of them"),
            );
        }
        if key.is_empty() || key.contains(['&', '=', '?', '#', ' ']) {
            cx.error(
                value.span(),
                format!("`{key}` can't be a query parameter name"),
            );
        }
    }
}

/// Each `one_of` group names two or more of the endpoint's optional fields.
fn check_one_of(e: &Endpoint, cx: &mut Diagnostics) {
    for group in &e.one_of {
        if group.get_ref().len() < 2 {
            cx.error(group.span(), "a `one_of` group names at least two fields");
        }
        for name in group.get_ref() {
            match e.fields.iter().find(|f| f.name.get_ref() == name.get_ref()) {
                Some(f) if f.required => cx.error_with_help(
                    name.span(),
                    format!("`{}` is required, so it is always set", name.get_ref()),
                    "`one_of` groups optional fields; make it optional or leave it out of the group",
                ),
                Some(_) => {}
                None => {
                    let optional: Vec<&str> = e
                        .fields
                        .iter()
                        .filter(|f| !f.required)
                        .map(|f| f.name.get_ref().as_str())
                        .collect();
                    let help = match did_you_mean(name.get_ref(), optional.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("its optional fields are {}", backticked(optional)),
                    };
                    cx.error_with_help(
                        name.span(),
                        format!("`one_of` names `{}`, which is not a field of `{}`", name.get_ref(), e.name.get_ref()),
                        help,
                    );
                }
            }
        }
    }
}

/// Each `ranges` entry names two different integer fields of the endpoint.
fn check_ranges(api: &Api, e: &Endpoint, cx: &mut Diagnostics) {
    for rule in &e.ranges {
        let rule = rule.get_ref();
        for name in [&rule.start, &rule.end] {
            match e.fields.iter().find(|f| f.name.get_ref() == name.get_ref()) {
                Some(f)
                    if api.kind_of(f.type_ref().name) != Some(TypeKind::Int)
                        || f.type_ref().list =>
                {
                    cx.error_with_help(
                        name.span(),
                        format!(
                            "`ranges` compares numbers; `{}` is `{}`",
                            name.get_ref(),
                            f.ty.get_ref()
                        ),
                        "name two integer fields, like timestamps",
                    );
                }
                Some(_) => {}
                None => {
                    let numbers: Vec<&str> = e
                        .fields
                        .iter()
                        .filter(|f| api.kind_of(f.type_ref().name) == Some(TypeKind::Int))
                        .map(|f| f.name.get_ref().as_str())
                        .collect();
                    let help = match did_you_mean(name.get_ref(), numbers.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("its integer fields are {}", backticked(numbers)),
                    };
                    cx.error_with_help(
                        name.span(),
                        format!(
                            "`ranges` names `{}`, which is not a field of `{}`",
                            name.get_ref(),
                            e.name.get_ref()
                        ),
                        help,
                    );
                }
            }
        }
        if rule.start.get_ref() == rule.end.get_ref() {
            cx.error(
                rule.end.span(),
                "a range's `start` and `end` are two different fields",
            );
        }
        if let Some(max) = rule.max_span.as_ref().filter(|m| *m.get_ref() == 0) {
            cx.error_with_help(
                max.span(),
                "a `max_span` of 0 allows only `end` = `start`",
                "leave `max_span` out for no limit on the span",
            );
        }
    }
}

/// The client fills a `retry_key` with 32 hex digits when it is unset, so it names an
/// optional `string` field that takes them.
fn check_retry_key(api: &Api, e: &Endpoint, cx: &mut Diagnostics) {
    let Some(key) = &e.retry_key else {
        return;
    };
    let Some(field) = e.fields.iter().find(|f| f.name.get_ref() == key.get_ref()) else {
        let strings: Vec<&str> = e
            .fields
            .iter()
            .filter(|f| api.kind_of(f.type_ref().name) == Some(TypeKind::String))
            .map(|f| f.name.get_ref().as_str())
            .collect();
        let help = match did_you_mean(key.get_ref(), strings.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None => "add an optional `string` field for the id, like `{ name = \"msgid\", type = \"string\" }`".to_owned(),
        };
        cx.error_with_help(
            key.span(),
            format!(
                "`retry_key` names `{}`, which is not a field of `{}`",
                key.get_ref(),
                e.name.get_ref()
            ),
            help,
        );
        return;
    };
    let ty = field.type_ref();
    if api.kind_of(ty.name) != Some(TypeKind::String) || ty.list || field.required {
        cx.error_with_help(
            key.span(),
            format!(
                "`retry_key` must name an optional `string` field; `{}` is {}`{}`",
                key.get_ref(),
                if field.required { "a required " } else { "" },
                field.ty.get_ref()
            ),
            "the client fills the field with a fresh id when the caller leaves it unset",
        );
        return;
    }
    let too_short = field
        .max_bytes
        .as_ref()
        .is_some_and(|m| *m.get_ref() < RETRY_ID_LEN)
        || field
            .max_chars
            .as_ref()
            .is_some_and(|m| *m.get_ref() < RETRY_ID_LEN);
    let refuses_hex = field.charset.as_ref().is_some_and(|c| {
        crate::emit::validate::parse_charset(c.get_ref()).is_ok_and(|ranges| {
            !"0123456789abcdef"
                .chars()
                .all(|ch| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&ch)))
        })
    });
    if too_short || refuses_hex {
        cx.error(
            key.span(),
            format!(
                "the client fills `{}` with {RETRY_ID_LEN} hex digits, which its limits refuse",
                key.get_ref()
            ),
        );
    }
}

/// The length of the ids the client generates for a `retry_key`.
const RETRY_ID_LEN: u64 = 32;

/// Raw and shortcut methods share the client's namespace with the endpoint methods.
fn check_generated_methods(api: &Api, e: &Endpoint, methods: &mut Seen, cx: &mut Diagnostics) {
    if let Some(raw) = &e.raw
        && check_identifier(raw, "raw method name", cx)
    {
        methods.add(raw.get_ref(), raw.span(), cx);
    }
    let carriers: Vec<&Field> = e
        .fields
        .iter()
        .filter(|f| f.accepts.is_some() || f.shortcuts.is_some())
        .collect();
    if carriers.len() > 1 {
        cx.error(
            carriers[1].name.span(),
            "an endpoint has at most one field with `accepts` or `shortcuts`",
        );
    }
    let Some(field) = carriers.first() else {
        return;
    };
    let (Some(pattern), Some(union)) = (&field.shortcuts, api.union(field.type_ref().name)) else {
        return;
    };
    for v in &union.variants {
        let accepted = field
            .accepts
            .as_ref()
            .is_none_or(|a| a.get_ref().iter().any(|t| t.get_ref() == v.tag.get_ref()));
        if accepted {
            let name = pattern.get_ref().replace("{}", v.short_name());
            if is_identifier(&name) {
                methods.add(&name, pattern.span(), cx);
            }
        }
    }
}
