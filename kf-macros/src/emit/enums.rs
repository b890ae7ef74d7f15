//! Integer enums: `[[enum]]` tables and `ErrCode` (from the `[[error]]` tables).
//!
//! Both keep values the file doesn't name (`Other(n)`), so a new server value never fails
//! a parse; one function emits the shared part.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::quote;

use super::docs::Doc;
use crate::ir::{Api, ErrorCode, IntEnum, Repr, RetryClass};

/// One named value of an integer enum.
pub struct Named {
    pub ident: Ident,
    pub value: i64,
    pub doc: Doc,
    /// Whether a wire value alone decodes to it: not for an error refined by `errmsg`,
    /// which shares its value with the code's plain variant.
    pub from_wire: bool,
}

/// The enum, `from_value`/`value`, `From` both ways, and serde as a plain integer.
pub fn int_enum(name: &Ident, repr: Repr, docs: Doc, values: &[Named]) -> TokenStream {
    let docs = docs.tokens();
    let decls = values.iter().map(|v| {
        let ident = &v.ident;
        let doc = v.doc.tokens();
        quote!(#doc #ident,)
    });
    let lit = |n: i64| Literal::i64_unsuffixed(n);
    let from_arms = values.iter().filter(|v| v.from_wire).map(|v| {
        let (ident, n) = (&v.ident, lit(v.value));
        if v.value < 0 {
            let n = lit(-v.value);
            quote!(-#n => Self::#ident,)
        } else {
            quote!(#n => Self::#ident,)
        }
    });
    let to_arms = values.iter().map(|v| {
        let ident = &v.ident;
        let n = lit(v.value.abs());
        if v.value < 0 {
            quote!(Self::#ident => -#n,)
        } else {
            quote!(Self::#ident => #n,)
        }
    });
    let (repr, serialize) = match repr {
        Repr::I32 => (quote!(i32), quote!(serialize_i32)),
        Repr::U32 => (quote!(u32), quote!(serialize_u32)),
        Repr::I64 => (quote!(i64), quote!(serialize_i64)),
        Repr::U64 => (quote!(u64), quote!(serialize_u64)),
    };
    quote! {
        #docs
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum #name {
            #(#decls)*
            #[doc = " A value this version doesn't name, kept as received."]
            Other(#repr),
        }

        impl #name {
            #[doc = " The variant for a wire value."]
            pub const fn from_value(value: #repr) -> Self {
                match value {
                    #(#from_arms)*
                    other => Self::Other(other),
                }
            }

            #[doc = " The wire value."]
            pub const fn value(self) -> #repr {
                match self {
                    #(#to_arms)*
                    Self::Other(other) => other,
                }
            }
        }

        impl From<#repr> for #name {
            fn from(value: #repr) -> Self {
                Self::from_value(value)
            }
        }

        impl From<#name> for #repr {
            fn from(value: #name) -> Self {
                value.value()
            }
        }

        impl rt::serde::Serialize for #name {
            fn serialize<S: rt::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.#serialize(self.value())
            }
        }

        impl<'de> rt::serde::Deserialize<'de> for #name {
            fn deserialize<D: rt::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <#repr as rt::serde::Deserialize>::deserialize(deserializer).map(Self::from_value)
            }
        }
    }
}

pub fn emit(api: &Api, e: &IntEnum) -> TokenStream {
    let docs = Doc::new().maybe(e.summary.as_deref()).official(api, e.doc);
    let values: Vec<Named> = e
        .values
        .iter()
        .map(|v| Named {
            ident: v.ident.clone(),
            value: v.value,
            doc: Doc::new()
                .line(format!("`{}`", v.value))
                .blank()
                .maybe(v.doc.as_deref()),
            from_wire: true,
        })
        .collect();
    int_enum(&e.ident, e.repr, docs, &values)
}

/// `ErrCode`: every `[[error]]` as a variant, with its meaning, hint and retry class.
pub fn errcode(api: &Api) -> TokenStream {
    if api.errors.is_empty() {
        return quote!();
    }
    let name = Ident::new("ErrCode", proc_macro2::Span::call_site());
    let docs = Doc::new()
        .line("A WeCom `errcode`: the named codes of the API file, or `Other` for the rest.")
        .blank()
        .line("Each code knows its meaning, a hint for what to do, and whether retrying helps.")
        .official(api, Some(90313));
    let values: Vec<Named> = api
        .errors
        .iter()
        .map(|e| Named {
            ident: e.ident.clone(),
            value: e.code,
            doc: Doc::new()
                .line(if e.errmsg.is_empty() {
                    format!("`{}`: {}.", e.code, e.meaning)
                } else {
                    format!(
                        "`{}` with an `errmsg` like {}: {}.",
                        e.code,
                        quoted(&e.errmsg),
                        e.meaning
                    )
                })
                .blank()
                .line(e.hint.clone()),
            from_wire: e.errmsg.is_empty(),
        })
        .collect();
    let base = int_enum(&name, Repr::I64, docs, &values);
    let refined: Vec<TokenStream> = refined_codes(api)
        .into_iter()
        .map(|code| {
            let refinements = api
                .errors
                .iter()
                .filter(|e| e.code == code && !e.errmsg.is_empty());
            let checks = refinements.map(|e: &ErrorCode| {
                let ident = &e.ident;
                let patterns = e.errmsg.iter().map(|p| p.to_lowercase());
                quote!(if [#(#patterns),*].iter().any(|p| errmsg.contains(p)) {
                    return Self::#ident;
                })
            });
            let n = Literal::i64_unsuffixed(code.abs());
            let pattern = if code < 0 { quote!(-#n) } else { quote!(#n) };
            quote!(if code == #pattern { #(#checks)* })
        })
        .collect();
    let from_answer = if refined.is_empty() {
        quote!(let _ = errmsg;)
    } else {
        quote! {
            let errmsg = errmsg.to_lowercase();
            #(#refined)*
        }
    };
    let meaning_arms = api.errors.iter().map(|e| {
        let ident = &e.ident;
        let meaning = &e.meaning;
        quote!(Self::#ident => Some(#meaning),)
    });
    let hint_arms = api.errors.iter().map(|e| {
        let ident = &e.ident;
        let hint = &e.hint;
        quote!(Self::#ident => Some(#hint),)
    });
    let retry_arms = api.errors.iter().map(|e| {
        let ident = &e.ident;
        let class = match e.retry {
            RetryClass::Backoff => quote!(rt::RetryClass::Backoff),
            RetryClass::RateLimited => quote!(rt::RetryClass::RateLimited),
            RetryClass::RefreshToken => quote!(rt::RetryClass::RefreshToken),
            RetryClass::Never => quote!(rt::RetryClass::Never),
        };
        quote!(Self::#ident => #class,)
    });
    quote! {
        #base

        impl #name {
            #[doc = " The variant for an answer: the code, told apart by `errmsg` where WeCom uses one"]
            #[doc = " code for several causes."]
            pub fn from_answer(code: i64, errmsg: &str) -> Self {
                #from_answer
                Self::from_value(code)
            }

            #[doc = " What the code means, if the API file names it."]
            pub fn meaning(self) -> Option<&'static str> {
                match self {
                    #(#meaning_arms)*
                    Self::Other(_) => None,
                }
            }

            #[doc = " What to do about it, if the API file names the code."]
            pub fn hint(self) -> Option<&'static str> {
                match self {
                    #(#hint_arms)*
                    Self::Other(_) => None,
                }
            }

            #[doc = " How the client treats the code: retry with backoff, refresh the token, or give up."]
            pub fn retry_class(self) -> rt::RetryClass {
                match self {
                    #(#retry_arms)*
                    Self::Other(_) => rt::RetryClass::Never,
                }
            }

            #[doc = " Whether waiting and sending the same request again may succeed."]
            pub fn is_retryable(self) -> bool {
                match self.retry_class() {
                    rt::RetryClass::Never => false,
                    rt::RetryClass::Backoff
                    | rt::RetryClass::RateLimited
                    | rt::RetryClass::RefreshToken => true,
                }
            }
        }

        impl rt::fmt::Display for #name {
            fn fmt(&self, f: &mut rt::fmt::Formatter<'_>) -> rt::fmt::Result {
                match self.meaning() {
                    Some(meaning) => write!(f, "{} ({})", self.value(), meaning),
                    None => write!(f, "{}", self.value()),
                }
            }
        }
    }
}

/// The codes some `[[error]]` refines by `errmsg`, in file order, each once.
fn refined_codes(api: &Api) -> Vec<i64> {
    let mut codes = Vec::new();
    for e in api.errors.iter().filter(|e| !e.errmsg.is_empty()) {
        if !codes.contains(&e.code) {
            codes.push(e.code);
        }
    }
    codes
}

/// `"a"` or `"b"`, for a doc line.
fn quoted(patterns: &[String]) -> String {
    let quoted: Vec<String> = patterns.iter().map(|p| format!("`{p:?}`")).collect();
    quoted.join(" or ")
}
