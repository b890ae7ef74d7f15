//! `[[struct]]` tables: plain data with public fields, `new`, setters, and `Validate` when
//! the struct is sent.

use proc_macro2::TokenStream;
use quote::quote;

use super::docs::{Doc, article};
use super::fields::{constructor, debug_derive, debug_impl, declarations, setters};
use super::validate::{Across, validate_impl};
use crate::ir::{Api, Builtin, Field, FieldType, Struct};

pub fn emit(api: &Api, s: &Struct) -> TokenStream {
    let name = &s.ident;
    let docs = Doc::new()
        .maybe(s.summary.as_deref())
        .official(api, s.doc)
        .tokens();
    let fields = declarations(&s.fields);
    let (args, mut init) = constructor(&s.fields, None);
    let name_text = name.to_string();
    let new_doc = format!(
        " Builds {} `{name_text}` from its required fields.",
        article(&name_text)
    );
    let setters = setters(&s.fields, &quote!(self));
    let validate = s
        .direction
        .is_sent()
        .then(|| validate_impl(name, &s.fields, Across::default()));
    let from_string = from_single_string(s);
    let debug = debug_derive(&s.fields);
    let debug_impl = debug_impl(name, &s.fields);
    let (derive_deserialize, raw_field, lenient_deserialize) = if s.lenient {
        init.push(quote!(raw: rt::RawJson::default()));
        (
            quote!(),
            quote! {
                /// The object's JSON text as received, with any field this version doesn't know.
                #[serde(skip)]
                pub raw: rt::RawJson,
            },
            Some(lenient_deserialize(s)),
        )
    } else {
        (quote!(rt::serde::Deserialize), quote!(), None)
    };
    quote! {
        #docs
        #[derive(#debug Clone, PartialEq, rt::serde::Serialize, #derive_deserialize)]
        #[serde(crate = "rt::serde")]
        pub struct #name {
            #fields
            #raw_field
        }

        impl #name {
            #[doc = #new_doc]
            pub fn new(#(#args),*) -> Self {
                Self { #(#init),* }
            }

            #setters
        }

        #validate
        #debug_impl
        #from_string
        #lenient_deserialize
    }
}

/// A `Deserialize` that never fails on valid JSON: each field is read on its own from the
/// object's entries, one that is missing or doesn't parse is `None` (or its default when
/// required), and the object's text is kept in `raw`.
fn lenient_deserialize(s: &Struct) -> TokenStream {
    let name = &s.ident;
    let inits = s.fields.iter().map(|f: &Field| {
        let field = &f.ident;
        let keys = std::iter::once(&f.wire).chain(&f.aliases);
        let read = if f.flatten {
            quote!(rt::lenient_flat(&entries, raw.as_str()))
        } else if f.numbers_as_text {
            quote!(entries.text(&[#(#keys),*]))
        } else {
            quote!(entries.field(&[#(#keys),*]))
        };
        // check.rs allows required fields only of types with a default.
        let fallback = (f.required || f.list).then(|| quote!(.unwrap_or_default()));
        quote!(let #field = #read #fallback;)
    });
    let names = s.fields.iter().map(|f| &f.ident);
    quote! {
        impl<'de> rt::serde::Deserialize<'de> for #name {
            fn deserialize<D: rt::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = rt::RawJson::deserialize(deserializer)?;
                // Not an object: every field reads as missing, and `raw` still has it.
                let entries = rt::Entries::parse(raw.as_str()).unwrap_or_default();
                #(#inits)*
                drop(entries);
                Ok(Self { #(#names,)* raw })
            }
        }
    }
}

/// A struct whose only required field is a string converts from a string, so
/// `send_text(user, kf, "hi")` and `send_image(user, kf, media_id)` read naturally.
fn from_single_string(s: &Struct) -> Option<TokenStream> {
    let required: Vec<&Field> = s.fields.iter().filter(|f| f.required).collect();
    let [field] = required.as_slice() else {
        return None;
    };
    if field.list || field.ty != FieldType::Builtin(Builtin::String) {
        return None;
    }
    let name = &s.ident;
    Some(quote! {
        impl From<String> for #name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for #name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    })
}
