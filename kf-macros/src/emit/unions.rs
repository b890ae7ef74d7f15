//! `[[union]]` tables: enums over structs, discriminated by a tag key.
//!
//! `keyed` unions put the payload under a key named like the tag value
//! (`{"msgtype":"text","text":{…}}`); `inline` unions put its fields beside the tag
//! (`{"event_type":"enter_session","open_kfid":…}`). Unions marked `unknown` keep any tag
//! they don't know, with the raw JSON, instead of failing.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::docs::Doc;
use crate::diagnostic::backticked;
use crate::model::{Api, TypeKind, Union};
use crate::names::ident;

pub fn emit(api: &Api, u: &Union) -> TokenStream {
    let name = ident(u.name.get_ref());
    let tag_key = u.tag.get_ref();
    let keyed = u.layout.as_ref().is_none_or(|l| l.get_ref() == "keyed");
    let mut docs = Doc::new().maybe(u.summary.as_deref()).blank();
    docs = docs.line(if keyed {
        format!("On the wire: `{{\"{tag_key}\": \"<tag>\", \"<tag>\": {{…}}}}`.")
    } else {
        format!("On the wire: `{{\"{tag_key}\": \"<tag>\", …fields}}`.")
    });
    let docs = docs
        .official(api, u.doc.as_ref().map(|d| *d.get_ref()))
        .tokens();

    let variants: Vec<UnionVariant> = u
        .variants
        .iter()
        .map(|v| UnionVariant {
            tag: v.tag.get_ref(),
            name: ident(v.variant_name().get_ref()),
            ty: ident(v.ty.get_ref()),
            nested_union: api.kind_of(v.ty.get_ref()) == Some(TypeKind::Union),
        })
        .collect();
    let decls = variants.iter().map(|UnionVariant { tag, name, ty, .. }| {
        let doc = format!(" `{tag_key}` = `{tag}`.");
        quote!(#[doc = #doc] #name(#ty),)
    });
    let tag_field = ident(tag_key);
    let unknown_decl = u.unknown.then(|| {
        let doc =
            format!(" A `{tag_key}` this version doesn't know, kept with the JSON it came in.");
        quote! {
            #[doc = #doc]
            Unknown {
                #[doc = " The tag as received."]
                #tag_field: String,
                #[doc = " The whole object, as received."]
                raw: rt::Value,
            },
        }
    });
    let tag_arms = variants
        .iter()
        .map(|UnionVariant { tag, name, .. }| quote!(Self::#name(_) => #tag,));
    let unknown_tag_arm = u
        .unknown
        .then(|| quote!(Self::Unknown { #tag_field, .. } => #tag_field,));
    let tag_doc = format!(" The `{tag_key}` of this value.");

    let serialize = serialize_impl(u, keyed, &variants);
    let deserialize = deserialize_impl(u, keyed, &variants);
    let validate_arms = variants.iter().map(|UnionVariant { tag, name, .. }| {
        if keyed {
            quote!(Self::#name(payload) => payload.validate().map_err(|e| e.within(#tag)),)
        } else {
            quote!(Self::#name(payload) => payload.validate(),)
        }
    });
    let unknown_validate = u.unknown.then(|| quote!(Self::Unknown { .. } => Ok(()),));
    let unknown_default = u.unknown.then(|| {
        quote! {
            /// An empty `Unknown`: what a lenient struct holds when the content is missing.
            impl Default for #name {
                fn default() -> Self {
                    Self::Unknown { #tag_field: String::new(), raw: rt::Value::Null }
                }
            }
        }
    });
    let froms = variants.iter().map(|v| {
        let (variant, ty) = (&v.name, &v.ty);
        quote! {
            impl From<#ty> for #name {
                fn from(payload: #ty) -> Self {
                    Self::#variant(payload)
                }
            }
        }
    });
    quote! {
        #docs
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum #name {
            #(#decls)*
            #unknown_decl
        }

        impl #name {
            #[doc = #tag_doc]
            pub fn tag(&self) -> &str {
                match self {
                    #(#tag_arms)*
                    #unknown_tag_arm
                }
            }
        }

        #serialize
        #deserialize

        impl rt::Validate for #name {
            fn validate(&self) -> Result<(), rt::Invalid> {
                match self {
                    #(#validate_arms)*
                    #unknown_validate
                }
            }
        }

        #(#froms)*
        #unknown_default
    }
}

/// One variant as the emitters need it: its tag, its Rust name and its payload type.
struct UnionVariant<'a> {
    tag: &'a str,
    name: Ident,
    ty: Ident,
    /// The payload is itself a union (`Received::Event`), read in place.
    nested_union: bool,
}

fn serialize_impl(u: &Union, keyed: bool, variants: &[UnionVariant]) -> TokenStream {
    let name = ident(u.name.get_ref());
    let tag_key = u.tag.get_ref();
    let arms = variants.iter().map(|UnionVariant { tag, name, .. }| {
        if keyed {
            quote! {
                Self::#name(payload) => {
                    let mut map = serializer.serialize_map(Some(2))?;
                    map.serialize_entry(#tag_key, #tag)?;
                    map.serialize_entry(#tag, payload)?;
                    map.end()
                }
            }
        } else {
            quote! {
                Self::#name(payload) => rt::Tagged { key: #tag_key, tag: #tag, payload }.serialize(serializer),
            }
        }
    });
    let unknown = u
        .unknown
        .then(|| quote!(Self::Unknown { raw, .. } => raw.serialize(serializer),));
    quote! {
        impl rt::serde::Serialize for #name {
            fn serialize<S: rt::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use rt::serde::ser::SerializeMap;
                match self {
                    #(#arms)*
                    #unknown
                }
            }
        }
    }
}

fn deserialize_impl(u: &Union, keyed: bool, variants: &[UnionVariant]) -> TokenStream {
    let name = ident(u.name.get_ref());
    let tag_key = u.tag.get_ref();
    let tag_field = ident(tag_key);
    let arms = variants.iter().map(
        |UnionVariant {
             tag,
             name: variant,
             nested_union,
             ..
         }| {
            let parsed = if keyed && *nested_union {
                quote!(entries.union_payload(#tag))
            } else if keyed {
                quote!(entries.payload(#tag))
            } else {
                quote!(rt::from_text(whole))
            };
            if u.unknown {
                // A known tag whose payload doesn't parse is kept too: one odd item never fails a page.
                quote! {
                    #tag => match #parsed {
                        Ok(payload) => Ok(Self::#variant(payload)),
                        Err(_) => Ok(Self::Unknown { #tag_field: tag.clone(), raw: rt::value_of(whole) }),
                    },
                }
            } else {
                quote!(#tag => #parsed.map(Self::#variant),)
            }
        },
    );
    let fallback = if u.unknown {
        quote!(_ => Ok(Self::Unknown { #tag_field: tag.clone(), raw: rt::value_of(whole) }),)
    } else {
        let known = backticked(variants.iter().map(|v| v.tag));
        let message = format!("unknown {tag_key} `{{}}`, expected one of {known}");
        quote!(other => Err(rt::serde_json::Error::custom(format!(#message, other))),)
    };
    let read_tag = if u.unknown {
        // Even an object without a tag is kept rather than failing its page.
        quote! {
            let Ok(tag) = entries.tag(#tag_key) else {
                return Ok(Self::Unknown { #tag_field: String::new(), raw: rt::value_of(whole) });
            };
        }
    } else {
        quote!(let tag = entries.tag(#tag_key).map_err(rt::serde_json::Error::custom)?;)
    };
    quote! {
        impl<'de> rt::serde::Deserialize<'de> for #name {
            fn deserialize<D: rt::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                rt::deserialize_union(deserializer)
            }
        }

        impl rt::FromEntries for #name {
            fn from_entries(entries: &rt::Entries<'_>, whole: &str) -> Result<Self, rt::serde_json::Error> {
                use rt::serde::de::Error as _;
                #read_tag
                match tag.as_str() {
                    #(#arms)*
                    #fallback
                }
            }
        }
    }
}
