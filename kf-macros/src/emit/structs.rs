//! `[[struct]]` tables: plain data with public fields, `new`, setters and `Validate`.

use proc_macro2::TokenStream;
use quote::quote;

use super::docs::Doc;
use super::fields::{constructor, declarations, setters};
use super::validate::validate_impl;
use crate::model::{Api, Struct, TypeKind};
use crate::names::ident;

pub fn emit(api: &Api, s: &Struct) -> TokenStream {
    let name = ident(s.name.get_ref());
    let docs = Doc::new()
        .maybe(s.summary.as_deref())
        .official(api, s.doc.as_ref().map(|d| *d.get_ref()))
        .tokens();
    let fields = declarations(api, &s.fields);
    let (args, init) = constructor(api, &s.fields, None);
    let new_doc = format!(" Builds a `{}` from its required fields.", s.name.get_ref());
    let setters = setters(api, &s.fields, &quote!(self));
    let validate = validate_impl(api, &name, &s.fields);
    let from_string = from_single_string(api, s);
    quote! {
        #docs
        #[derive(Debug, Clone, PartialEq, rt::serde::Serialize, rt::serde::Deserialize)]
        #[serde(crate = "::wecom_kf::__private::serde")]
        pub struct #name {
            #fields
        }

        impl #name {
            #[doc = #new_doc]
            pub fn new(#(#args),*) -> Self {
                #init
            }

            #setters
        }

        #validate
        #from_string
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
