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
    let from_body = s.page_list.map(|i| from_body(s, &s.fields[i]));
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
        #from_body
    }
}

/// A page's reading of a response body: its list's items read where they stand.
fn from_body(s: &Struct, list: &Field) -> TokenStream {
    let (name, field, key) = (&s.ident, &list.ident, &list.wire);
    let docs = Doc::new()
        .line("Reads a response body as `serde_json::from_slice` does, but faster: each item")
        .line(format!(
            "of `{key}` is read where it stands, and its text is a part of one copy of"
        ))
        .line("the body rather than a copy of its own. What the client uses.")
        .tokens();
    quote! {
        impl #name {
            #docs
            pub fn from_body(body: &[u8]) -> Result<Self, rt::serde_json::Error> {
                rt::read_page(body, #key, |page: &mut Self, items| page.#field = items)
            }
        }
    }
}

/// A `Deserialize` that never fails on valid JSON: the object's text is kept in `raw`, and
/// each field read from it, in one pass when nothing is out of the ordinary, else field by
/// field, where one that is missing or doesn't parse is `None` (or its default when
/// required).
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
    let read_prefix = if s.one_pass {
        one_pass(s)
    } else {
        quote! {
            /// Not read in one pass: every object is read field by field.
            fn read_prefix(_text: &str) -> Option<(Self, usize)> {
                None
            }
        }
    };
    quote! {
        impl<'de> rt::serde::Deserialize<'de> for #name {
            fn deserialize<D: rt::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                rt::RawJson::deserialize(deserializer).map(rt::read_item)
            }
        }

        impl rt::Item for #name {
            #read_prefix

            fn field_by_field(raw: rt::RawJson) -> Self {
                // Not an object: every field reads as missing, and `raw` still has it.
                let entries = rt::Entries::parse(raw.as_str()).unwrap_or_default();
                #(#inits)*
                drop(entries);
                Self { #(#names,)* raw }
            }

            fn set_raw(&mut self, raw: rt::RawJson) {
                self.raw = raw;
            }
        }
    }
}

/// A lenient struct's one pass over its text, each field straight into its type (the
/// flattened union's payload too); `None` for anything a field-by-field reading handles
/// differently: a value that doesn't parse, a repeated key, an unknown or missing tag.
fn one_pass(s: &Struct) -> TokenStream {
    let name = &s.ident;
    let slots = s.fields.iter().map(|f| {
        let field = &f.ident;
        match &f.ty {
            FieldType::Union { tag_key, .. } if f.flatten => {
                quote!(let mut #field = rt::InPass::new(#tag_key);)
            }
            _ => quote!(let mut #field = None;),
        }
    });
    let arms = s.fields.iter().filter(|f| !f.flatten).map(|f| {
        let field = &f.ident;
        let keys = std::iter::once(&f.wire).chain(&f.aliases);
        let set = if f.numbers_as_text {
            quote!(rt::set_text_once(&mut #field, &mut map)?)
        } else {
            quote!(rt::set_once(&mut #field, &mut map)?)
        };
        quote!(#(#keys)|* => #set,)
    });
    let rest = match s.fields.iter().find(|f| f.flatten) {
        Some(f) => {
            let field = &f.ident;
            quote!(other => #field.entry(other, &mut map)?,)
        }
        None => quote!(_ => {
            map.next_value::<rt::IgnoredAny>()?;
        }),
    };
    let inits = s.fields.iter().map(|f| {
        let field = &f.ident;
        if f.flatten {
            quote!(#field: #field.finish::<A::Error>()?)
        } else if f.required || f.list {
            quote!(#field: #field.unwrap_or_default())
        } else {
            quote!(#field)
        }
    });
    let expecting = format!("a `{name}` object");
    quote! {
        /// Every field read straight into its type in one pass over the object at the start
        /// of `text`; `None` when something is out of the ordinary.
        fn read_prefix(text: &str) -> Option<(Self, usize)> {
            #[derive(Default)]
            struct Fields;

            impl<'de> rt::Visitor<'de> for Fields {
                type Value = #name;

                fn expecting(&self, f: &mut rt::fmt::Formatter<'_>) -> rt::fmt::Result {
                    f.write_str(#expecting)
                }

                fn visit_map<A: rt::MapAccess<'de>>(self, mut map: A) -> Result<#name, A::Error> {
                    #(#slots)*
                    while let Some(key) = map.next_key::<rt::Key>()? {
                        match key.as_str() {
                            #(#arms)*
                            #rest
                        }
                    }
                    Ok(#name {
                        #(#inits,)*
                        raw: rt::RawJson::default(),
                    })
                }
            }

            rt::read_prefix::<Fields>(text)
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
