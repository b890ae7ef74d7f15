//! From the checked model to the IR: every string choice becomes its typed value, every
//! type name is resolved once, every derived name is computed once, and each type learns
//! which way it travels.
//!
//! `check` has already refused whatever this could not lower, so every lookup here
//! succeeds on a checked file. Should one fail anyway (a rule missing from `check`), it is
//! reported as a diagnostic naming the generator, never papered over with a placeholder.

use std::cell::RefCell;
use std::collections::HashMap;

use proc_macro2::{Ident, Span};

use toml::Spanned;

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::emit::validate::parse_charset;
use crate::ir::{
    self, Auth, Body, Builtin, DayRule, Direction, FieldType, HttpMethod, Layout, Limits,
    MediaType, OverLimit, Repr, Response, RetryClass, StringRule,
};
use crate::model::{self, BINARY_RESPONSE, parse_utc_offset};
use crate::names::{self, pascal_case};

pub fn lower(api: &model::Api) -> Result<ir::Api, Vec<Diagnostic>> {
    let mut cx = Lower {
        api,
        declared: declared_types(api),
        diagnostics: Diagnostics::default(),
        not_identifiers: RefCell::new(Vec::new()),
    };
    let errors = api.errors.iter().map(|e| cx.error_code(e)).collect();
    let enums = api.enums.iter().map(|e| cx.int_enum(e)).collect();
    let mut structs: Vec<ir::Struct> = api.structs.iter().map(|s| cx.structure(s)).collect();
    let mut unions: Vec<ir::Union> = api.unions.iter().map(|u| cx.union(u)).collect();
    let endpoints: Vec<ir::Endpoint> = api.endpoints.iter().map(|e| cx.endpoint(e)).collect();
    directions(&endpoints, &mut structs, &mut unions);
    one_pass(&mut structs, &mut unions);
    pages(&mut structs);
    for name in cx.not_identifiers.take() {
        cx.bug(0..0, format!("`{name}` passed the checks as a name"));
    }
    cx.diagnostics.finish()?;
    Ok(ir::Api {
        docs_prefix: api.docs_prefix().to_owned(),
        errors,
        enums,
        structs,
        unions,
        endpoints,
    })
}

/// What a declared type name is.
#[derive(Clone, Copy)]
enum Declared {
    Struct,
    Union(usize),
    Enum,
}

fn declared_types(api: &model::Api) -> HashMap<&str, Declared> {
    let mut declared = HashMap::new();
    for s in &api.structs {
        declared.insert(s.name.get_ref().as_str(), Declared::Struct);
    }
    for (i, u) in api.unions.iter().enumerate() {
        declared.insert(u.name.get_ref().as_str(), Declared::Union(i));
    }
    for e in &api.enums {
        declared.insert(e.name.get_ref().as_str(), Declared::Enum);
    }
    declared
}

struct Lower<'a> {
    api: &'a model::Api,
    declared: HashMap<&'a str, Declared>,
    diagnostics: Diagnostics,
    /// Names that are no Rust identifiers after all, reported when lowering ends.
    not_identifiers: RefCell<Vec<String>>,
}

impl Lower<'_> {
    /// The identifier for a checked name (a keyword becomes a raw identifier).
    fn ident(&self, name: &str) -> Ident {
        names::ident(name).unwrap_or_else(|| {
            self.not_identifiers.borrow_mut().push(name.to_owned());
            Ident::new("not_an_identifier", Span::call_site())
        })
    }

    /// The value a checked string names in `table`; a generator bug if it names none.
    fn choice<T: Copy>(
        &mut self,
        table: &[(&str, T)],
        value: &Spanned<String>,
        what: &str,
    ) -> Option<T> {
        let found = table
            .iter()
            .find(|(name, _)| name == value.get_ref())
            .map(|(_, v)| *v);
        if found.is_none() {
            self.bug(
                value.span(),
                format!("{what} `{}` passed the checks", value.get_ref()),
            );
        }
        found
    }

    fn bug(&mut self, span: std::ops::Range<usize>, what: String) {
        self.diagnostics.error(
            span,
            format!("kf-macros bug: {what} but can't be generated; please report it"),
        );
    }

    fn error_code(&mut self, e: &model::ErrorCode) -> ir::ErrorCode {
        ir::ErrorCode {
            code: *e.code.get_ref(),
            ident: self.ident(e.name.get_ref()),
            meaning: e.meaning.clone(),
            hint: e.hint.clone(),
            retry: self
                .choice(&RetryClass::ALL, &e.retry, "retry class")
                .unwrap_or(RetryClass::Never),
            errmsg: e.errmsg.iter().map(|p| p.get_ref().clone()).collect(),
        }
    }

    fn int_enum(&mut self, e: &model::IntEnum) -> ir::IntEnum {
        ir::IntEnum {
            ident: self.ident(e.name.get_ref()),
            repr: self
                .choice(&Repr::ALL, &e.repr, "enum repr")
                .unwrap_or(Repr::I64),
            summary: e.summary.clone(),
            doc: e.doc.as_ref().map(|d| *d.get_ref()),
            values: e
                .values
                .iter()
                .map(|v| ir::EnumValue {
                    value: *v.value.get_ref(),
                    ident: self.ident(v.name.get_ref()),
                    doc: v.doc.clone(),
                })
                .collect(),
        }
    }

    fn structure(&mut self, s: &model::Struct) -> ir::Struct {
        ir::Struct {
            ident: self.ident(s.name.get_ref()),
            summary: s.summary.clone(),
            doc: s.doc.as_ref().map(|d| *d.get_ref()),
            lenient: s.lenient,
            one_pass: false,
            page_list: None,
            fields: s.fields.iter().map(|f| self.field(f)).collect(),
            direction: Direction::default(),
        }
    }

    fn union(&mut self, u: &model::Union) -> ir::Union {
        let layout = match &u.layout {
            Some(layout) => self
                .choice(&Layout::ALL, layout, "union layout")
                .unwrap_or(Layout::Keyed),
            None => Layout::Keyed,
        };
        let variants = u
            .variants
            .iter()
            .map(|v| ir::Variant {
                tag: v.tag.get_ref().clone(),
                ident: self.ident(v.variant_name().get_ref()),
                payload: self.ident(v.ty.get_ref()),
                nested_union: matches!(
                    self.declared.get(v.ty.get_ref().as_str()),
                    Some(Declared::Union(_))
                ),
            })
            .collect();
        ir::Union {
            ident: self.ident(u.name.get_ref()),
            tag_key: u.tag.get_ref().clone(),
            tag_field: self.ident(u.tag.get_ref()),
            layout,
            keeps_unknown: u.unknown,
            summary: u.summary.clone(),
            doc: u.doc.as_ref().map(|d| *d.get_ref()),
            variants,
            direction: Direction::default(),
            read_in_pass: false,
        }
    }

    fn field_type(&mut self, ty: &Spanned<String>) -> (FieldType, bool) {
        let written = model::TypeRef::parse(ty.get_ref());
        if let Some(builtin) = Builtin::from_name(written.name) {
            return (FieldType::Builtin(builtin), written.list);
        }
        let resolved = match self.declared.get(written.name) {
            Some(Declared::Struct) => FieldType::Struct(self.ident(written.name)),
            Some(Declared::Union(i)) => FieldType::Union {
                ident: self.ident(written.name),
                tag_key: self.api.unions[*i].tag.get_ref().clone(),
            },
            Some(Declared::Enum) => FieldType::Enum(self.ident(written.name)),
            None => {
                self.bug(
                    ty.span(),
                    format!("type `{}` passed the checks", written.name),
                );
                FieldType::Builtin(Builtin::Json)
            }
        };
        (resolved, written.list)
    }

    fn field(&mut self, f: &model::Field) -> ir::Field {
        let (ty, list) = self.field_type(&f.ty);
        let limits = self.limits(f, &ty);
        ir::Field {
            wire: f.name.get_ref().clone(),
            ident: self.ident(f.name.get_ref()),
            ty,
            list,
            required: f.required,
            doc: f.doc.clone(),
            aliases: f.aliases.clone(),
            flatten: f.flatten,
            numbers_as_text: f.numbers_as_text,
            secret: f.is_secret(),
            accepts: f
                .accepts
                .as_ref()
                .map(|tags| tags.get_ref().iter().map(|t| t.get_ref().clone()).collect()),
            limits,
        }
    }

    fn limits(&mut self, f: &model::Field, ty: &FieldType) -> Limits {
        let over = match &f.server {
            Some(server) => self
                .choice(&OverLimit::ALL, server, "server behaviour")
                .unwrap_or(OverLimit::Refused),
            None => OverLimit::Refused,
        };
        let media_type = match &f.media_type {
            Some(t) => self.choice(&MediaType::ALL, t, "media type"),
            None => None,
        };
        let day = match &f.day_aligned {
            Some(aligned) => match parse_utc_offset(aligned.get_ref()) {
                Ok(utc_offset) => Some(DayRule {
                    written: aligned.get_ref().clone(),
                    utc_offset,
                    days_ago: f.days_ago_bounds(),
                }),
                Err(why) => {
                    self.bug(aligned.span(), format!("`day_aligned` ({why})"));
                    None
                }
            },
            None => None,
        };
        let is_string = matches!(ty, FieldType::Builtin(Builtin::String | Builtin::Secret));
        let string = if is_string {
            self.string_rule(f)
        } else {
            StringRule::Any
        };
        Limits {
            min_bytes: f.min_bytes.as_ref().map(|m| *m.get_ref()),
            max_bytes: f.max_bytes.as_ref().map(|m| *m.get_ref()),
            max_chars: f.max_chars.as_ref().map(|m| *m.get_ref()),
            charset: f.charset.as_ref().map(|c| c.get_ref().clone()),
            prefixes: f
                .prefix
                .as_ref()
                .map(|p| p.get_ref().clone())
                .unwrap_or_default(),
            min: f.min.as_ref().map(|m| *m.get_ref()),
            max: f.max.as_ref().map(|m| *m.get_ref()),
            min_items: f.min_items.as_ref().map(|m| *m.get_ref()),
            max_items: f.max_items.as_ref().map(|m| *m.get_ref()),
            over,
            day,
            media_type,
            string,
        }
    }

    /// The rule of a string field: non-empty unless `allow_empty`, and whatever else it sets.
    fn string_rule(&mut self, f: &model::Field) -> StringRule {
        let min_bytes = f
            .min_bytes
            .as_ref()
            .map_or(u64::from(!f.allow_empty), |m| *m.get_ref());
        let charset = match &f.charset {
            Some(spec) => match parse_charset(spec.get_ref()) {
                Ok(ranges) => ranges,
                Err(why) => {
                    self.bug(spec.span(), format!("charset ({why})"));
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let prefixes = f
            .prefix
            .as_ref()
            .map(|p| p.get_ref().clone())
            .unwrap_or_default();
        let only_min = f.max_bytes.is_none()
            && f.max_chars.is_none()
            && charset.is_empty()
            && prefixes.is_empty();
        match (min_bytes, only_min) {
            (0, true) => StringRule::Any,
            (1, true) => StringRule::NonEmpty,
            _ => StringRule::Custom {
                min_bytes,
                max_bytes: f.max_bytes.as_ref().map(|m| *m.get_ref()),
                max_chars: f.max_chars.as_ref().map(|m| *m.get_ref()),
                charset,
                prefixes,
            },
        }
    }

    fn endpoint(&mut self, e: &model::Endpoint) -> ir::Endpoint {
        let base = pascal_case(e.name.get_ref());
        let http = self
            .choice(&HttpMethod::ALL, &e.method, "HTTP method")
            .unwrap_or(HttpMethod::Post);
        let auth = match &e.auth {
            Some(auth) => self
                .choice(&Auth::ALL, auth, "auth")
                .unwrap_or(Auth::AccessToken),
            None => Auth::AccessToken,
        };
        let body = match (&e.body, http) {
            (Some(body), _) => match self.choice(&Body::ALL, body, "body") {
                Some(Body::Json) if http == HttpMethod::Get => Body::Query,
                other => other.unwrap_or(Body::Json),
            },
            (None, HttpMethod::Get) => Body::Query,
            (None, HttpMethod::Post) => Body::Json,
        };
        let response = match &e.response {
            None => Response::Ack,
            Some(r) if r.get_ref() == BINARY_RESPONSE => Response::Binary,
            Some(r) => Response::Struct(self.ident(r.get_ref())),
        };
        let fields: Vec<ir::Field> = e.fields.iter().map(|f| self.field(f)).collect();
        let index_of = |name: &str| fields.iter().position(|f| f.wire == name);
        let mut missing = Vec::new();
        let mut find = |name: &Spanned<String>| {
            let found = index_of(name.get_ref());
            if found.is_none() {
                missing.push(name.clone());
            }
            found
        };
        let one_of = e
            .one_of
            .iter()
            .map(|group| group.get_ref().iter().filter_map(&mut find).collect())
            .collect();
        let ranges = e
            .ranges
            .iter()
            .filter_map(|rule| {
                let rule = rule.get_ref();
                Some(ir::RangeRule {
                    start: find(&rule.start)?,
                    end: find(&rule.end)?,
                    max_span: rule.max_span.as_ref().map(|m| *m.get_ref()),
                })
            })
            .collect();
        let retry_key = e.retry_key.as_ref().and_then(&mut find);
        for name in missing {
            self.bug(
                name.span(),
                format!("field `{}` passed the checks", name.get_ref()),
            );
        }
        let message = e
            .fields
            .iter()
            .position(|f| f.accepts.is_some() || f.shortcuts.is_some());
        let union = message.and_then(|i| self.api.union(e.fields[i].type_ref().name));
        let accepted = |tag: &str, accepts: &Option<Vec<String>>| {
            accepts
                .as_ref()
                .is_none_or(|tags| tags.iter().any(|t| t == tag))
        };
        let marker = match (message, union) {
            (Some(i), Some(union)) => fields[i].accepts.as_ref().map(|tags| ir::Marker {
                ident: self.ident(&format!("{base}Message")),
                union: self.ident(union.name.get_ref()),
                tags: tags.clone(),
                accepted: union
                    .variants
                    .iter()
                    .filter(|v| tags.contains(v.tag.get_ref()))
                    .map(|v| self.ident(v.ty.get_ref()))
                    .collect(),
            }),
            _ => None,
        };
        let shortcuts = match (message, union) {
            (Some(i), Some(union)) => match &e.fields[i].shortcuts {
                Some(pattern) => union
                    .variants
                    .iter()
                    .filter(|v| accepted(v.tag.get_ref(), &fields[i].accepts))
                    .map(|v| ir::Shortcut {
                        ident: self.ident(&pattern.get_ref().replace("{}", v.short_name())),
                        tag: v.tag.get_ref().clone(),
                        payload: self.ident(v.ty.get_ref()),
                    })
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        ir::Endpoint {
            name: e.name.get_ref().clone(),
            method: self.ident(e.name.get_ref()),
            request: self.ident(&format!("{base}Request")),
            builder: self.ident(&base),
            http,
            path: e.path.get_ref().clone(),
            doc: *e.doc.get_ref(),
            summary: e.summary.clone(),
            auth,
            idempotent: e.idempotent,
            body,
            response,
            query: e
                .fixed_query()
                .map(|(k, v)| (k.to_owned(), v.get_ref().clone()))
                .collect(),
            errors: e.errors.iter().map(|c| *c.get_ref()).collect(),
            one_of,
            ranges,
            retry_key,
            fields,
            message,
            marker,
            shortcuts,
            raw: e.raw.as_ref().map(|r| self.ident(r.get_ref())),
        }
    }
}

/// Marks the lenient structs read in one pass, and the unions they read in place: keyed
/// unions without nested ones (`MenuItem`) read themselves in place, and those flattened
/// into the structs with their nested inline unions (`Received`, `Event`).
fn one_pass(structs: &mut [ir::Struct], unions: &mut [ir::Union]) {
    for u in unions.iter_mut() {
        if u.layout == Layout::Keyed && u.variants.iter().all(|v| !v.nested_union) {
            u.read_in_pass = true;
        }
    }
    for s in structs.iter_mut().filter(|s| s.lenient) {
        let flattened: Vec<&ir::Field> = s.fields.iter().filter(|f| f.flatten).collect();
        let union = match flattened.as_slice() {
            [] => None,
            [field] => match &field.ty {
                FieldType::Union { ident, .. } => unions
                    .iter()
                    .position(|u| &u.ident == ident && u.layout == Layout::Keyed),
                _ => None,
            },
            _ => continue,
        };
        if !flattened.is_empty() && union.is_none() {
            continue;
        }
        let clashes = union.is_some_and(|i| {
            let tag = &unions[i].tag_key;
            s.fields
                .iter()
                .any(|f| &f.wire == tag || f.aliases.contains(tag))
        });
        if clashes {
            continue;
        }
        s.one_pass = true;
        if let Some(i) = union {
            unions[i].read_in_pass = true;
            // Its inline unions (`Received::Event`) read their variant in place too.
            let nested: Vec<Ident> = unions[i]
                .variants
                .iter()
                .filter(|v| v.nested_union)
                .map(|v| v.payload.clone())
                .collect();
            for u in unions.iter_mut() {
                let flat = u.variants.iter().all(|v| !v.nested_union);
                if nested.contains(&u.ident) && u.layout == Layout::Inline && flat {
                    u.read_in_pass = true;
                }
            }
        }
    }
}

/// Marks the pages: structs with one optional list of lenient items, and no other.
fn pages(structs: &mut [ir::Struct]) {
    let lenient: Vec<Ident> = structs
        .iter()
        .filter(|s| s.lenient)
        .map(|s| s.ident.clone())
        .collect();
    for s in structs.iter_mut().filter(|s| !s.lenient) {
        let mut lists = s.fields.iter().enumerate().filter(|(_, f)| {
            f.list && matches!(&f.ty, FieldType::Struct(name) if lenient.contains(name))
        });
        if let (Some((i, field)), None) = (lists.next(), lists.next()) {
            s.page_list = (!field.required).then_some(i);
        }
    }
}

/// Marks each struct and union with the way it travels: from the endpoints' fields
/// (requests) and responses, through struct fields and union variants.
fn directions(endpoints: &[ir::Endpoint], structs: &mut [ir::Struct], unions: &mut [ir::Union]) {
    let mut sent: Vec<String> = Vec::new();
    let mut received: Vec<String> = Vec::new();
    for e in endpoints {
        sent.extend(e.fields.iter().filter_map(|f| type_name(&f.ty)));
        if let Response::Struct(r) = &e.response {
            received.push(r.to_string());
        }
    }
    let sent = reachable(sent, structs, unions);
    let received = reachable(received, structs, unions);
    let direction = |name: String| match (sent.contains(&name), received.contains(&name)) {
        (true, false) => Direction::Request,
        (false, true) => Direction::Response,
        _ => Direction::Both,
    };
    for s in structs.iter_mut() {
        s.direction = direction(s.ident.to_string());
    }
    for u in unions.iter_mut() {
        u.direction = direction(u.ident.to_string());
    }
}

fn type_name(ty: &FieldType) -> Option<String> {
    match ty {
        FieldType::Struct(name) | FieldType::Union { ident: name, .. } => Some(name.to_string()),
        FieldType::Builtin(_) | FieldType::Enum(_) => None,
    }
}

/// The struct and union names reachable from `roots`.
fn reachable(mut todo: Vec<String>, structs: &[ir::Struct], unions: &[ir::Union]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(s) = structs.iter().find(|s| s.ident == name.as_str()) {
            todo.extend(s.fields.iter().filter_map(|f| type_name(&f.ty)));
        }
        if let Some(u) = unions.iter().find(|u| u.ident == name.as_str()) {
            todo.extend(u.variants.iter().map(|v| v.payload.to_string()));
        }
        seen.push(name);
    }
    seen
}
