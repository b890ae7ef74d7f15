//! Fields: their Rust types, serde attributes, constructor arguments and setters.
//!
//! Structs and endpoint requests are both "a list of fields", so one set of functions
//! serves both: required fields become `new` arguments, optional ones become setters,
//! and unset optional fields are left out of the body.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::docs::{Doc, limit_lines};
use crate::ir::{Builtin, Field, FieldType};

/// The Rust type of one value of the field (without `Option`/`Vec`).
pub fn value_type(f: &Field) -> TokenStream {
    match &f.ty {
        FieldType::Builtin(builtin) => builtin_type(*builtin),
        FieldType::Struct(name) | FieldType::Union { ident: name, .. } | FieldType::Enum(name) => {
            quote!(#name)
        }
    }
}

/// The Rust spelling of each built-in type.
fn builtin_type(builtin: Builtin) -> TokenStream {
    match builtin {
        Builtin::String => quote!(String),
        Builtin::Secret => quote!(rt::Secret),
        Builtin::Bool => quote!(bool),
        Builtin::I32 => quote!(i32),
        Builtin::U32 => quote!(u32),
        Builtin::I64 => quote!(i64),
        Builtin::U64 => quote!(u64),
        Builtin::F64 => quote!(f64),
        Builtin::Json => quote!(rt::Value),
        Builtin::File => quote!(rt::Upload),
    }
}

/// The declared type of the struct field.
pub fn field_type(f: &Field) -> TokenStream {
    let value = value_type(f);
    match (f.list, f.required) {
        (true, _) => quote!(Vec<#value>),
        (false, true) => value,
        (false, false) => quote!(Option<#value>),
    }
}

/// Types whose arguments read better as `impl Into<T>` (strings, structs, unions, enums).
fn takes_into(ty: &FieldType) -> bool {
    match ty {
        FieldType::Builtin(b) => matches!(b, Builtin::String | Builtin::Secret | Builtin::File),
        FieldType::Struct(_) | FieldType::Union { .. } | FieldType::Enum(_) => true,
    }
}

/// The parameter type of a constructor argument or setter, and how to turn it into the value.
pub fn param(f: &Field, marker: Option<&TokenStream>) -> (TokenStream, TokenStream) {
    let name = &f.ident;
    let value = value_type(f);
    if f.list {
        return (
            quote!(impl IntoIterator<Item = impl Into<#value>>),
            quote!(#name.into_iter().map(Into::into).collect()),
        );
    }
    if let Some(marker) = marker {
        return (quote!(impl #marker), quote!(#name.into()));
    }
    if takes_into(&f.ty) {
        (quote!(impl Into<#value>), quote!(#name.into()))
    } else {
        (value, quote!(#name))
    }
}

pub fn field_docs(f: &Field) -> Doc {
    let mut doc = Doc::new().maybe(f.doc.as_deref());
    let limits = limit_lines(f);
    if !limits.is_empty() {
        doc = doc.blank();
        for l in limits {
            doc = doc.line(l);
        }
    }
    doc
}

/// The struct field declarations, with docs and serde attributes.
pub fn declarations(fields: &[Field]) -> TokenStream {
    let decls = fields.iter().map(|f| {
        let name = &f.ident;
        let ty = field_type(f);
        let docs = field_docs(f).tokens();
        let mut serde = Vec::new();
        if f.numbers_as_text {
            serde.push(if f.required {
                quote!(deserialize_with = "rt::text_or_number")
            } else {
                quote!(deserialize_with = "rt::optional_text_or_number")
            });
        }
        if f.builtin() == Some(Builtin::File) {
            // A multipart part, not a JSON or query value.
            serde.push(quote!(skip));
        } else if f.flatten {
            serde.push(quote!(flatten));
        } else if f.list && !f.required {
            serde.push(quote!(default, skip_serializing_if = "Vec::is_empty"));
        } else if !f.required {
            serde.push(quote!(default, skip_serializing_if = "Option::is_none"));
        }
        for alias in &f.aliases {
            serde.push(quote!(alias = #alias));
        }
        let serde = if serde.is_empty() {
            quote!()
        } else {
            quote!(#[serde(#(#serde),*)])
        };
        quote! {
            #docs
            #serde
            pub #name: #ty,
        }
    });
    quote!(#(#decls)*)
}

/// `new(required…)`: arguments, and the initializers that fill every field.
pub fn constructor(
    fields: &[Field],
    marker: Option<&TokenStream>,
) -> (Vec<TokenStream>, Vec<TokenStream>) {
    let mut args = Vec::new();
    let mut inits = Vec::new();
    for f in fields {
        let name = &f.ident;
        if f.required {
            let (ty, convert) = param(f, marker.filter(|_| f.accepts.is_some()));
            args.push(quote!(#name: #ty));
            inits.push(quote!(#name: #convert));
        } else if f.list {
            inits.push(quote!(#name: Vec::new()));
        } else {
            inits.push(quote!(#name: None));
        }
    }
    (args, inits)
}

/// One setter per optional field. `target` is the expression that holds the fields
/// (`self` for a struct, `self.request` for a builder).
pub fn setters(fields: &[Field], target: &TokenStream) -> TokenStream {
    let setters = fields.iter().filter(|f| !f.required).map(|f| {
        let name = &f.ident;
        let (ty, convert) = param(f, None);
        let store = if f.list {
            quote!(#convert)
        } else {
            quote!(Some(#convert))
        };
        let docs = Doc::new().line(format!("Sets `{}`.", f.wire)).blank();
        let mut docs = docs.maybe(f.doc.as_deref());
        for l in limit_lines(f) {
            docs = docs.line(l);
        }
        let docs = docs.tokens();
        quote! {
            #docs
            pub fn #name(mut self, #name: #ty) -> Self {
                #target.#name = #store;
                self
            }
        }
    });
    quote!(#(#setters)*)
}

/// The `Debug` derive, unless a field is `secret = true`: then [`debug_impl`] writes one.
pub fn debug_derive(fields: &[Field]) -> TokenStream {
    if fields.iter().any(|f| f.secret) {
        quote!()
    } else {
        quote!(Debug,)
    }
}

/// A `Debug` like the derived one, but `secret = true` fields print `***`; `None` when no
/// field is secret (the derive is used).
pub fn debug_impl(name: &Ident, fields: &[Field]) -> Option<TokenStream> {
    if !fields.iter().any(|f| f.secret) {
        return None;
    }
    let name_text = name.to_string();
    let entries = fields.iter().map(|field| {
        let member = &field.ident;
        let label = &field.wire;
        match (field.secret, field.required) {
            (true, true) => quote!(.field(#label, &rt::Redacted)),
            (true, false) => quote!(.field(#label, &self.#member.as_ref().map(|_| rt::Redacted))),
            (false, _) => quote!(.field(#label, &self.#member)),
        }
    });
    Some(quote! {
        impl rt::fmt::Debug for #name {
            fn fmt(&self, f: &mut rt::fmt::Formatter<'_>) -> rt::fmt::Result {
                f.debug_struct(#name_text) #(#entries)* .finish()
            }
        }
    })
}
