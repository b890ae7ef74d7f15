//! `Validate` impls: the TOML's limits become checks that run before anything is sent.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::quote;

use crate::diagnostic::backticked;
use crate::ir::{
    Builtin, DayRule, Field, FieldType, Limits, MediaType, OverLimit, RangeRule, StringRule,
};

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

/// What an endpoint checks across its fields, besides each field's own limits: indices
/// into its fields.
#[derive(Clone, Copy, Default)]
pub struct Across<'a> {
    pub one_of: &'a [Vec<usize>],
    pub ranges: &'a [RangeRule],
}

/// `impl Validate for #name`, checking every field in order, then each `one_of` group and
/// each range.
pub fn validate_impl(name: &Ident, fields: &[Field], across: Across<'_>) -> TokenStream {
    let mut checks: Vec<TokenStream> = fields.iter().filter_map(field_check).collect();
    checks.extend(
        across
            .one_of
            .iter()
            .map(|group| one_of_check(fields, group)),
    );
    checks.extend(across.ranges.iter().map(|rule| range_check(fields, rule)));
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
fn one_of_check(fields: &[Field], group: &[usize]) -> TokenStream {
    let members: Vec<&Field> = group.iter().filter_map(|&i| fields.get(i)).collect();
    let set = members.iter().map(|f| {
        let field = &f.ident;
        if f.list {
            quote!(!self.#field.is_empty())
        } else {
            quote!(self.#field.is_some())
        }
    });
    let first = members.first().map_or("", |f| f.wire.as_str());
    let reason = format!(
        "set at least one of {}",
        backticked(members.iter().map(|f| f.wire.as_str()))
    );
    quote! {
        if !(#(#set)||*) {
            return Err(rt::Invalid::new(#first, #reason));
        }
    }
}

/// `end` is not before `start`, and at most `max_span` after it; skipped while either
/// optional field is unset.
fn range_check(fields: &[Field], rule: &RangeRule) -> TokenStream {
    let max = match rule.max_span {
        Some(max) => {
            let max = count(max);
            quote!(Some(#max))
        }
        None => quote!(None),
    };
    let rule_tokens = quote!(rt::RangeRule { max_span: #max });
    // An optional field is bound by `if let`; a required one is read in place.
    let mut bound = Vec::new();
    let mut value = |f: &Field, binding: &str| {
        let field = &f.ident;
        if f.required {
            quote!(i128::from(self.#field))
        } else {
            let binding = Ident::new(binding, Span::call_site());
            bound.push((quote!(Some(#binding)), quote!(self.#field)));
            quote!(i128::from(#binding))
        }
    };
    let (start, end) = (&fields[rule.start], &fields[rule.end]);
    let (start_value, end_value) = (value(start, "start"), value(end, "end"));
    let (start_wire, end_wire) = (&start.wire, &end.wire);
    let check = quote!(#rule_tokens.check(#start_wire, #start_value, #end_wire, #end_value)?;);
    match bound.as_slice() {
        [] => check,
        [(pattern, source)] => quote!(if let #pattern = #source { #check }),
        _ => {
            let (patterns, sources): (Vec<_>, Vec<_>) = bound.into_iter().unzip();
            quote!(if let (#(#patterns),*) = (#(#sources),*) { #check })
        }
    }
}

/// One value the checks look at: a reference bound by `if let` or a loop (`value`,
/// `item`), or the field itself when it is required.
enum Checked {
    Bound(Ident),
    Field(Ident),
}

impl Checked {
    /// The value as a method receiver (`value`, `self.msg`).
    fn receiver(&self) -> TokenStream {
        match self {
            Checked::Bound(v) => quote!(#v),
            Checked::Field(f) => quote!(self.#f),
        }
    }

    /// A reference to the value (`value`, `&self.touser`).
    fn borrowed(&self) -> TokenStream {
        match self {
            Checked::Bound(v) => quote!(#v),
            Checked::Field(f) => quote!(&self.#f),
        }
    }

    /// The value of a `Copy` type (`*value`, `self.limit`).
    fn copied(&self) -> TokenStream {
        match self {
            Checked::Bound(v) => quote!(*#v),
            Checked::Field(f) => quote!(self.#f),
        }
    }
}

/// The check for one field, or `None` when nothing about it can be wrong.
fn field_check(f: &Field) -> Option<TokenStream> {
    let name = &f.ident;
    let checked = if f.list {
        Checked::Bound(Ident::new("item", Span::call_site()))
    } else if f.required {
        Checked::Field(name.clone())
    } else {
        Checked::Bound(Ident::new("value", Span::call_site()))
    };
    let per_value = value_check(f, &checked);
    let items = f.list.then(|| items_rule(&f.limits)).flatten();
    if per_value.is_none() && items.is_none() {
        return None;
    }
    let per_value = per_value.unwrap_or_default();
    let wire = &f.wire;
    Some(match checked {
        Checked::Bound(_) if f.list => {
            let items = items.map(|rule| quote!(#rule.check(#wire, self.#name.len())?;));
            let each = (!per_value.is_empty()).then(|| {
                quote! {
                    for (i, item) in self.#name.iter().enumerate() {
                        #per_value
                    }
                }
            });
            quote!(#items #each)
        }
        Checked::Bound(_) => quote! {
            if let Some(value) = &self.#name {
                #per_value
            }
        },
        Checked::Field(_) => per_value,
    })
}

/// What to check on one value of the field.
fn value_check(f: &Field, v: &Checked) -> Option<TokenStream> {
    let wire = &f.wire;
    let list = f.list;
    match &f.ty {
        FieldType::Builtin(b @ (Builtin::String | Builtin::Secret)) => {
            let rule = string_rule(&f.limits)?;
            let text = if *b == Builtin::Secret {
                let receiver = v.receiver();
                quote!(#receiver.expose())
            } else {
                v.borrowed()
            };
            Some(if list {
                quote!(#rule.check_item(#wire, i, #text)?;)
            } else {
                quote!(#rule.check(#wire, #text)?;)
            })
        }
        FieldType::Builtin(
            b @ (Builtin::I32 | Builtin::U32 | Builtin::I64 | Builtin::U64 | Builtin::F64),
        ) => {
            let float = *b == Builtin::F64;
            let limits = &f.limits;
            let value = v.copied();
            let range = (limits.has_number_limits() || float).then(|| {
                let rule = number_rule(limits);
                let as_f64 = match b {
                    Builtin::I32 | Builtin::U32 => quote!(f64::from(#value)),
                    Builtin::F64 => quote!(#value),
                    // Range checks on 64-bit integers tolerate the rounding of huge values.
                    _ => quote!(#value as f64),
                };
                if list {
                    quote!(#rule.check_item(#wire, i, #as_f64)?;)
                } else {
                    quote!(#rule.check(#wire, #as_f64)?;)
                }
            });
            // check.rs allows day rules on scalar integers only.
            let day = limits.day.as_ref().map(|day| {
                let rule = day_rule(day);
                quote!(#rule.check(#wire, i128::from(#value))?;)
            });
            (range.is_some() || day.is_some()).then(|| quote!(#range #day))
        }
        FieldType::Union { tag_key, .. } if f.accepts.is_some() => {
            // The marker trait stops other types at compile time; this catches a request
            // whose `msg` was assigned or deserialized directly.
            let accepted = f.accepts.as_deref().unwrap_or_default();
            let reason = format!("must be one of {}", accepted.join(", "));
            let path = if f.flatten {
                tag_key.clone()
            } else {
                format!("{wire}.{tag_key}")
            };
            let receiver = v.receiver();
            Some(quote! {
                if !matches!(#receiver.tag(), #(#accepted)|*) {
                    return Err(rt::Invalid::new(#path, #reason));
                }
                #receiver.validate()?;
            })
        }
        FieldType::Builtin(Builtin::File) => {
            let rule = size_rule(&f.limits);
            let receiver = v.receiver();
            Some(quote!(#rule.check(#wire, #receiver.len())?;))
        }
        FieldType::Struct(_) | FieldType::Union { .. } => {
            let receiver = v.receiver();
            Some(if list {
                quote!(#receiver.validate().map_err(|e| e.within_item(#wire, i))?;)
            } else if f.flatten {
                quote!(#receiver.validate()?;)
            } else {
                quote!(#receiver.validate().map_err(|e| e.within(#wire))?;)
            })
        }
        FieldType::Builtin(Builtin::Bool | Builtin::Json) | FieldType::Enum(_) => None,
    }
}

fn over_limit(limits: &Limits) -> TokenStream {
    match limits.over {
        OverLimit::Truncated => quote!(rt::OverLimit::Truncated),
        OverLimit::Refused => quote!(rt::OverLimit::Refused),
    }
}

/// The field's string rule, or `None` when it allows every string.
fn string_rule(limits: &Limits) -> Option<TokenStream> {
    let StringRule::Custom {
        min_bytes,
        max_bytes,
        max_chars,
        charset,
        prefixes,
    } = &limits.string
    else {
        return match limits.string {
            StringRule::NonEmpty => Some(quote!(rt::StringRule::NON_EMPTY)),
            _ => None,
        };
    };
    let mut rule = if *min_bytes == 1 {
        quote!(rt::StringRule::NON_EMPTY)
    } else if *min_bytes > 1 {
        let min = count(*min_bytes);
        quote!(rt::StringRule::ANY.min_bytes(#min))
    } else {
        quote!(rt::StringRule::ANY)
    };
    if let Some(max) = max_bytes {
        let max = count(*max);
        rule = quote!(#rule.max_bytes(#max));
    }
    if let Some(max) = max_chars {
        let max = count(*max);
        rule = quote!(#rule.max_chars(#max));
    }
    if !charset.is_empty() {
        let ranges = charset.iter().map(|(a, b)| quote!((#a, #b)));
        rule = quote!(#rule.charset(&[#(#ranges),*]));
    }
    if !prefixes.is_empty() {
        rule = quote!(#rule.prefixes(&[#(#prefixes),*]));
    }
    if limits.over == OverLimit::Truncated && (max_bytes.is_some() || max_chars.is_some()) {
        rule = quote!(#rule.truncated());
    }
    Some(rule)
}

/// The size limits of a `file` field; an empty file is refused unless `min_bytes = 0`.
fn size_rule(limits: &Limits) -> TokenStream {
    let min = count(limits.min_bytes.unwrap_or(1));
    let max = match limits.max_bytes {
        Some(max) => {
            let max = count(max);
            quote!(Some(#max))
        }
        None => quote!(None),
    };
    let over = over_limit(limits);
    let media_type = match limits.media_type {
        Some(MediaType::Image) => quote!(Some(rt::MediaType::Image)),
        Some(MediaType::Voice) => quote!(Some(rt::MediaType::Voice)),
        Some(MediaType::Video) => quote!(Some(rt::MediaType::Video)),
        Some(MediaType::File) => quote!(Some(rt::MediaType::File)),
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

fn number_rule(limits: &Limits) -> TokenStream {
    let bound = |b: Option<f64>| match b {
        Some(m) => {
            let m = float(m);
            quote!(Some(#m))
        }
        None => quote!(None),
    };
    let (min, max) = (bound(limits.min), bound(limits.max));
    quote!(rt::NumberRule { min: #min, max: #max })
}

/// The field's day rule: midnight at its UTC offset, and how many days back it may lie.
fn day_rule(day: &DayRule) -> TokenStream {
    let magnitude = Literal::u32_unsuffixed(day.utc_offset.unsigned_abs());
    let offset = if day.utc_offset < 0 {
        quote!(-#magnitude)
    } else {
        quote!(#magnitude)
    };
    let days_ago = match day.days_ago {
        Some((low, high)) => {
            let (low, high) = (count(low), count(high));
            quote!(Some((#low, #high)))
        }
        None => quote!(None),
    };
    quote!(rt::DayRule { utc_offset: #offset, days_ago: #days_ago })
}

fn items_rule(limits: &Limits) -> Option<TokenStream> {
    if !limits.has_list_limits() {
        return None;
    }
    let min = count(limits.min_items.unwrap_or(0));
    let max = match limits.max_items {
        Some(m) => {
            let m = count(m);
            quote!(Some(#m))
        }
        None => quote!(None),
    };
    let over = over_limit(limits);
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
