//! `Validate` impls: the TOML's limits become checks that run before anything is sent.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use super::fields::kind;
use toml::Spanned;

use crate::diagnostic::backticked;
use crate::model::{Api, Field, MEDIA_TYPES, RangeRule, TypeKind};
use crate::names::ident;

/// Parses a charset like `0-9a-zA-Z_-` into inclusive char ranges. A `-` that is first,
/// last, or follows a range stands for itself.
pub fn parse_charset(spec: &str) -> Result<Vec<(char, char)>, String> {
    let chars: Vec<char> = spec.chars().collect();
    if chars.is_empty() {
        return Err("it is empty".into());
    }
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = chars[i];
        if i + 2 < chars.len() && chars[i + 1] == '-' {
            let end = chars[i + 2];
            if end < start {
                return Err(format!("range `{start}-{end}` is backwards"));
            }
            ranges.push((start, end));
            i += 3;
        } else {
            ranges.push((start, start));
            i += 1;
        }
    }
    Ok(ranges)
}

/// What an endpoint checks across its fields, besides each field's own limits.
#[derive(Clone, Copy, Default)]
pub struct Across<'a> {
    pub one_of: &'a [Spanned<Vec<Spanned<String>>>],
    pub ranges: &'a [Spanned<RangeRule>],
}

/// `impl Validate for #name`, checking every field in order, then each `one_of` group and
/// each range.
pub fn validate_impl(api: &Api, name: &Ident, fields: &[Field], across: Across<'_>) -> TokenStream {
    let mut checks: Vec<TokenStream> = fields.iter().filter_map(|f| field_check(api, f)).collect();
    checks.extend(
        across
            .one_of
            .iter()
            .map(|group| one_of_check(fields, group.get_ref())),
    );
    checks.extend(
        across
            .ranges
            .iter()
            .filter_map(|rule| range_check(fields, rule.get_ref())),
    );
    let body = if checks.is_empty() {
        quote!(Ok(()))
    } else {
        quote! {
            #(#checks)*
            Ok(())
        }
    };
    quote! {
        impl rt::Validate for #name {
            fn validate(&self) -> Result<(), rt::Invalid> {
                #body
            }
        }
    }
}

/// At least one field of the group is set: an `Option` that is `Some`, a list with items.
/// check.rs guarantees the names are optional fields of `fields`.
fn one_of_check(fields: &[Field], group: &[Spanned<String>]) -> TokenStream {
    let names: Vec<&str> = group.iter().map(|n| n.get_ref().as_str()).collect();
    let set = fields
        .iter()
        .filter(|f| names.contains(&f.name.get_ref().as_str()))
        .map(|f| {
            let field = ident(f.name.get_ref());
            if f.type_ref().list {
                quote!(!self.#field.is_empty())
            } else {
                quote!(self.#field.is_some())
            }
        });
    let first = names.first().copied().unwrap_or_default();
    let reason = format!("set at least one of {}", backticked(names.iter().copied()));
    quote! {
        if !(#(#set)||*) {
            return Err(rt::Invalid::new(#first, #reason));
        }
    }
}

/// `end` is not before `start`, and at most `max_span` after it; skipped while either
/// optional field is unset. check.rs guarantees both name integer fields.
fn range_check(fields: &[Field], rule: &RangeRule) -> Option<TokenStream> {
    let field = |name: &str| fields.iter().find(|f| f.name.get_ref() == name);
    let (start, end) = (field(rule.start.get_ref())?, field(rule.end.get_ref())?);
    let max = match &rule.max_span {
        Some(max) => {
            let max = count(*max.get_ref());
            quote!(Some(#max))
        }
        None => quote!(None),
    };
    let (start_wire, end_wire) = (start.name.get_ref(), end.name.get_ref());
    let rule = quote!(rt::RangeRule { max_span: #max });
    // An optional field is bound by `if let`; a required one is read in place.
    let mut bound = Vec::new();
    let mut value = |f: &Field, binding: &str| {
        let field = ident(f.name.get_ref());
        if f.required {
            quote!(i128::from(self.#field))
        } else {
            let binding = ident(binding);
            bound.push((quote!(Some(#binding)), quote!(self.#field)));
            quote!(i128::from(#binding))
        }
    };
    let (start_value, end_value) = (value(start, "start"), value(end, "end"));
    let check = quote!(#rule.check(#start_wire, #start_value, #end_wire, #end_value)?;);
    Some(match bound.as_slice() {
        [] => check,
        [(pattern, source)] => quote!(if let #pattern = #source { #check }),
        _ => {
            let (patterns, sources): (Vec<_>, Vec<_>) = bound.into_iter().unzip();
            quote!(if let (#(#patterns),*) = (#(#sources),*) { #check })
        }
    })
}

/// The check for one field, or `None` when nothing about it can be wrong.
fn field_check(api: &Api, f: &Field) -> Option<TokenStream> {
    let name = ident(f.name.get_ref());
    let wire = f.name.get_ref();
    let kind = kind(api, f);
    let list = f.type_ref().list;
    // What to check on one value, given an expression `v` that borrows it.
    let per_value: Option<TokenStream> = match kind {
        TypeKind::String | TypeKind::Secret => string_rule(f).map(|rule| {
            let text = if kind == TypeKind::Secret {
                quote!(v.expose())
            } else {
                quote!(v)
            };
            if list {
                quote!(#rule.check_item(#wire, i, #text)?;)
            } else {
                quote!(#rule.check(#wire, #text)?;)
            }
        }),
        TypeKind::Int | TypeKind::Float
            if f.has_number_limits() || kind == TypeKind::Float || f.day_aligned.is_some() =>
        {
            let limits = (f.has_number_limits() || kind == TypeKind::Float).then(|| {
                let rule = number_rule(f);
                let as_f64 = match f.type_ref().name {
                    "i32" | "u32" => quote!(f64::from(*v)),
                    "f64" => quote!(*v),
                    // Range checks on 64-bit integers tolerate the rounding of huge values.
                    _ => quote!(*v as f64),
                };
                if list {
                    quote!(#rule.check_item(#wire, i, #as_f64)?;)
                } else {
                    quote!(#rule.check(#wire, #as_f64)?;)
                }
            });
            // check.rs allows day rules on scalar integers only.
            let day = day_rule(f).map(|rule| quote!(#rule.check(#wire, i128::from(*v))?;));
            Some(quote!(#limits #day))
        }
        TypeKind::Union if f.accepts.is_some() => {
            // The marker trait stops other types at compile time; this catches a request
            // whose `msg` was assigned or deserialized directly.
            let accepted = accepted_tags(f);
            let tag_key = api
                .union(f.type_ref().name)
                .map_or(wire.as_str(), |u| u.tag.get_ref().as_str());
            let reason = format!("must be one of {}", accepted.join(", "));
            let path = if f.flatten {
                tag_key.to_owned()
            } else {
                format!("{wire}.{tag_key}")
            };
            let tags = accepted.iter();
            Some(quote! {
                if !matches!(v.tag(), #(#tags)|*) {
                    return Err(rt::Invalid::new(#path, #reason));
                }
                v.validate()?;
            })
        }
        TypeKind::File => {
            let rule = size_rule(f);
            Some(quote!(#rule.check(#wire, v.len())?;))
        }
        TypeKind::Struct | TypeKind::Union => Some(if list {
            quote!(v.validate().map_err(|e| e.within_item(#wire, i))?;)
        } else if f.flatten {
            quote!(v.validate()?;)
        } else {
            quote!(v.validate().map_err(|e| e.within(#wire))?;)
        }),
        _ => None,
    };
    let items = list.then(|| items_rule(f)).flatten();
    if per_value.is_none() && items.is_none() {
        return None;
    }
    let per_value = per_value.unwrap_or_default();
    Some(if list {
        let items = items.map(|rule| quote!(#rule.check(#wire, self.#name.len())?;));
        let each = if per_value.is_empty() {
            quote!()
        } else {
            quote! {
                for (i, v) in self.#name.iter().enumerate() {
                    #per_value
                }
            }
        };
        quote!(#items #each)
    } else if f.required {
        quote! {
            let v = &self.#name;
            #per_value
        }
    } else {
        quote! {
            if let Some(v) = &self.#name {
                #per_value
            }
        }
    })
}

fn accepted_tags(f: &Field) -> Vec<String> {
    f.accepts
        .as_ref()
        .map(|tags| tags.get_ref().iter().map(|t| t.get_ref().clone()).collect())
        .unwrap_or_default()
}

fn over_limit(f: &Field) -> TokenStream {
    if f.server_truncates() {
        quote!(rt::OverLimit::Truncated)
    } else {
        quote!(rt::OverLimit::Refused)
    }
}

/// The field's string rule, or `None` when it allows every string.
fn string_rule(f: &Field) -> Option<TokenStream> {
    let mut parts = Vec::new();
    let min = f
        .min_bytes
        .as_ref()
        .map(|m| *m.get_ref())
        .unwrap_or(u64::from(!f.allow_empty));
    if min > 0 {
        let min = count(min);
        parts.push(quote!(min_bytes: #min));
    }
    if let Some(max) = &f.max_bytes {
        let max = count(*max.get_ref());
        parts.push(quote!(max_bytes: Some(#max)));
    }
    if let Some(max) = &f.max_chars {
        let max = count(*max.get_ref());
        parts.push(quote!(max_chars: Some(#max)));
    }
    if let Some(charset) = &f.charset {
        let ranges = parse_charset(charset.get_ref()).unwrap_or_default();
        let ranges = ranges.iter().map(|(a, b)| quote!((#a, #b)));
        parts.push(quote!(charset: &[#(#ranges),*]));
    }
    if let Some(prefix) = &f.prefix {
        let prefixes = prefix.get_ref().iter();
        parts.push(quote!(prefixes: &[#(#prefixes),*]));
    }
    if f.max_bytes.is_some() || f.max_chars.is_some() {
        let over = over_limit(f);
        parts.push(quote!(over_limit: #over));
    }
    (!parts.is_empty()).then(|| quote!(rt::StringRule { #(#parts,)* ..rt::StringRule::ANY }))
}

/// The size limits of a `file` field; an empty file is refused unless `min_bytes = 0`.
fn size_rule(f: &Field) -> TokenStream {
    let min = count(f.min_bytes.as_ref().map_or(1, |m| *m.get_ref()));
    let max = match &f.max_bytes {
        Some(max) => {
            let max = count(*max.get_ref());
            quote!(Some(#max))
        }
        None => quote!(None),
    };
    let over = over_limit(f);
    let media_type = match f
        .media_type
        .as_ref()
        .and_then(|t| MEDIA_TYPES.iter().find(|(wire, _)| wire == t.get_ref()))
    {
        Some((_, variant)) => {
            let variant = ident(variant);
            quote!(Some(rt::MediaType::#variant))
        }
        None => quote!(None),
    };
    quote!(rt::SizeRule { min_bytes: #min, max_bytes: #max, over_limit: #over, media_type: #media_type })
}

/// An unsuffixed integer literal, so the output reads `2048`, not `2048usize`.
fn count(n: u64) -> Literal {
    Literal::u64_unsuffixed(n)
}

/// A float literal; negative values are a `-` token before the literal, and check.rs
/// refuses NaN and infinities before emit runs.
fn float(x: f64) -> TokenStream {
    let lit = Literal::f64_unsuffixed(if x.is_finite() { x.abs() } else { 0.0 });
    if x < 0.0 { quote!(-#lit) } else { quote!(#lit) }
}

fn number_rule(f: &Field) -> TokenStream {
    let bound = |b: &Option<toml::Spanned<f64>>| match b {
        Some(m) => {
            let m = float(*m.get_ref());
            quote!(Some(#m))
        }
        None => quote!(None),
    };
    let min = bound(&f.min);
    let max = bound(&f.max);
    quote!(rt::NumberRule { min: #min, max: #max })
}

/// The field's day rule: midnight at its UTC offset, and how many days back it may lie.
fn day_rule(f: &Field) -> Option<TokenStream> {
    let offset = f.day_offset()?;
    let magnitude = Literal::u32_unsuffixed(offset.unsigned_abs());
    let offset = if offset < 0 {
        quote!(-#magnitude)
    } else {
        quote!(#magnitude)
    };
    let days_ago = match f.days_ago_bounds() {
        Some((low, high)) => {
            let (low, high) = (count(low), count(high));
            quote!(Some((#low, #high)))
        }
        None => quote!(None),
    };
    Some(quote!(rt::DayRule { utc_offset: #offset, days_ago: #days_ago }))
}

fn items_rule(f: &Field) -> Option<TokenStream> {
    if !f.has_list_limits() {
        return None;
    }
    let min = count(f.min_items.as_ref().map_or(0, |m| *m.get_ref()));
    let max = match &f.max_items {
        Some(m) => {
            let m = count(*m.get_ref());
            quote!(Some(#m))
        }
        None => quote!(None),
    };
    let over = over_limit(f);
    Some(quote!(rt::ItemsRule { min: #min, max: #max, over_limit: #over }))
}

#[cfg(test)]
mod tests {
    use super::parse_charset;

    #[test]
    fn parses_ranges_and_literal_dash() {
        assert_eq!(
            parse_charset("0-9a-z_-"),
            Ok(vec![('0', '9'), ('a', 'z'), ('_', '_'), ('-', '-')])
        );
        assert!(parse_charset("z-a").is_err());
        assert!(parse_charset("").is_err());
    }
}
