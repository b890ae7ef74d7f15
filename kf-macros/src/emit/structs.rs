//! `[[struct]]` tables: plain data with public fields, `new`, setters and `Validate`.

use proc_macro2::TokenStream;
use quote::quote;

use super::docs::Doc;
use super::fields::{constructor, debug_derive, debug_impl, declarations, setters};
use super::validate::{Across, validate_impl};
use crate::model::{Api, Struct, TypeKind};
use crate::names::ident;

pub fn emit(api: &Api, s: &Struct) -> TokenStream {
    let name = ident(s.name.get_ref());
    let docs = Doc::new()
        .maybe(s.summary.as_deref())
        .official(api, s.doc.as_ref().map(|d| *d.get_ref()))
        .tokens();
    let fields = declarations(api, &s.fields);
    let (args, mut init) = constructor(api, &s.fields, None);
    let new_doc = format!(" Builds a `{}` from its required fields.", s.name.get_ref());
    let setters = setters(api, &s.fields, &quote!(self));
    let validate = validate_impl(api, &name, &s.fields, Across::default());
    let from_string = from_single_string(api, s);
    let debug = debug_derive(&s.fields);
    let debug_impl = debug_impl(&name, &s.fields);
    let (derive_deserialize, raw_field, lenient_deserialize) = if s.lenient {
        init.push(quote!(raw: rt::RawJson::default()));
        (
            quote!(),
            quote! {
                /// The object's JSON text as received, with any field this version doesn't know.
                #[serde(skip)]
                pub raw: rt::RawJson,
            },
            lenient_deserialize(s),
        )
    } else {
        (quote!(rt::serde::Deserialize), quote!(), quote!())
    };
    quote! {
        #docs
        #[derive(#debug Clone, PartialEq, rt::serde::Serialize, #derive_deserialize)]
        #[serde(crate = "::wecom_kf::__private::serde")]
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
    let name = ident(s.name.get_ref());
    let inits = s.fields.iter().map(|f| {
        let field = ident(f.name.get_ref());
        let keys = std::iter::once(f.name.get_ref()).chain(&f.aliases);
        let read = if f.flatten {
            quote!(rt::lenient_flat(&entries, raw.as_str()))
        } else if f.numbers_as_text {
            quote!(entries.text(&[#(#keys),*]))
        } else {
            quote!(entries.field(&[#(#keys),*]))
        };
        // check.rs allows required fields only of types with a default.
        let fallback = (f.required || f.type_ref().list).then(|| quote!(.unwrap_or_default()));
        quote!(let #field = #read #fallback;)
    });
    let names = s.fields.iter().map(|f| ident(f.name.get_ref()));
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
fn from_single_string(api: &Api, s: &Struct) -> TokenStream {
    let required: Vec<_> = s.fields.iter().filter(|f| f.required).collect();
    let [field] = required.as_slice() else {
        return quote!();
    };
    if field.type_ref().list || api.kind_of(field.type_ref().name) != Some(TypeKind::String) {
        return quote!();
    }
    let name = ident(s.name.get_ref());
    quote! {
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
    }
}
