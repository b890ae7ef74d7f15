//! `[[union]]` tables: enums over structs, discriminated by a tag key.
//!
//! `keyed` unions put the payload under a key named like the tag value
//! (`{"msgtype":"text","text":{…}}`); `inline` unions put its fields beside the tag
//! (`{"event_type":"enter_session","open_kfid":…}`). Unions marked `unknown` keep any tag
//! they don't know, with the raw JSON, instead of failing.

use proc_macro2::TokenStream;
use quote::quote;

use super::docs::Doc;
use crate::diagnostic::backticked;
use crate::ir::{Api, Layout, Union};

pub fn emit(api: &Api, u: &Union) -> TokenStream {
    let name = &u.ident;
    let tag_key = &u.tag_key;
    let tag_field = &u.tag_field;
    let wire = match u.layout {
        Layout::Keyed => format!("On the wire: `{{\"{tag_key}\": \"<tag>\", \"<tag>\": {{…}}}}`."),
        Layout::Inline => format!("On the wire: `{{\"{tag_key}\": \"<tag>\", …fields}}`."),
    };
    let docs = Doc::new()
        .maybe(u.summary.as_deref())
        .blank()
        .line(wire)
        .official(api, u.doc)
        .tokens();
    let decls = u.variants.iter().map(|v| {
        let doc = format!(" `{tag_key}` = `{}`.", v.tag);
        let (variant, payload) = (&v.ident, &v.payload);
        quote!(#[doc = #doc] #variant(#payload),)
    });
    let unknown_decl = u.keeps_unknown.then(|| {
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
    let tag_arms = u.variants.iter().map(|v| {
        let (variant, tag) = (&v.ident, &v.tag);
        quote!(Self::#variant(_) => #tag,)
    });
    let unknown_tag_arm = u
        .keeps_unknown
        .then(|| quote!(Self::Unknown { #tag_field, .. } => #tag_field,));
    let tag_doc = format!(" The `{tag_key}` of this value.");

    let serialize = serialize_impl(u);
    let deserialize = deserialize_impl(u);
    let validate = u.direction.is_sent().then(|| validate_impl(u));
    let in_pass = u.read_in_pass.then(|| keyed_payload_impl(api, u));
    let unknown_default = u.keeps_unknown.then(|| {
        quote! {
            /// An empty `Unknown`: what a lenient struct holds when the content is missing.
            impl Default for #name {
                fn default() -> Self {
                    Self::Unknown { #tag_field: String::new(), raw: rt::Value::Null }
                }
            }
        }
    });
    let froms = u.variants.iter().map(|v| {
        let (variant, payload) = (&v.ident, &v.payload);
        quote! {
            impl From<#payload> for #name {
                fn from(payload: #payload) -> Self {
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
        #in_pass
        #validate
        #(#froms)*
        #unknown_default
    }
}

/// Reads the variant a tag names from its payload, where it stands in the parent's pass.
/// For an inline union, `payload` holds the fields beside the tag.
fn keyed_payload_impl(api: &Api, u: &Union) -> TokenStream {
    let name = &u.ident;
    let tag_key = &u.tag_key;
    let arms = u.variants.iter().map(|v| {
        let (variant, tag, payload) = (&v.ident, &v.tag, &v.payload);
        let inline = api
            .unions
            .iter()
            .any(|n| n.ident == *payload && n.read_in_pass && n.layout == Layout::Inline);
        if v.nested_union && inline {
            quote!(#tag => rt::inline_in_place(payload).map(Self::#variant),)
        } else if v.nested_union {
            quote!(#tag => rt::union_in_place(payload).map(Self::#variant),)
        } else {
            quote!(#tag => #payload::deserialize(payload).map(Self::#variant),)
        }
    });
    let unknown = format!("unknown {tag_key} `{{other}}`");
    let tags = u.variants.iter().map(|v| &v.tag);
    quote! {
        impl rt::KeyedPayload for #name {
            const TAG_KEY: &'static str = #tag_key;

            fn payload<'de, D: rt::serde::Deserializer<'de>>(tag: &str, payload: D) -> Result<Self, D::Error> {
                use rt::serde::de::Error as _;
                match tag {
                    #(#arms)*
                    other => Err(D::Error::custom(format!(#unknown))),
                }
            }

            fn is_variant(tag: &str) -> bool {
                matches!(tag, #(#tags)|*)
            }
        }
    }
}

fn validate_impl(u: &Union) -> TokenStream {
    let name = &u.ident;
    let arms = u.variants.iter().map(|v| {
        let (variant, tag) = (&v.ident, &v.tag);
        match u.layout {
            Layout::Keyed => {
                quote!(Self::#variant(payload) => payload.validate().map_err(|e| e.within(#tag)),)
            }
            Layout::Inline => quote!(Self::#variant(payload) => payload.validate(),),
        }
    });
    let unknown = u
        .keeps_unknown
        .then(|| quote!(Self::Unknown { .. } => Ok(()),));
    quote! {
        impl rt::Validate for #name {
            fn validate(&self) -> Result<(), rt::Invalid> {
                match self {
                    #(#arms)*
                    #unknown
                }
            }
        }
    }
}

fn serialize_impl(u: &Union) -> TokenStream {
    let name = &u.ident;
    let tag_key = &u.tag_key;
    let helper = match u.layout {
        Layout::Keyed => quote!(rt::Keyed),
        Layout::Inline => quote!(rt::Tagged),
    };
    let arms = u.variants.iter().map(|v| {
        let (variant, tag) = (&v.ident, &v.tag);
        quote!(Self::#variant(payload) => #helper(#tag_key, #tag, payload).serialize(serializer),)
    });
    let unknown = u
        .keeps_unknown
        .then(|| quote!(Self::Unknown { raw, .. } => raw.serialize(serializer),));
    quote! {
        impl rt::serde::Serialize for #name {
            fn serialize<S: rt::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    #(#arms)*
                    #unknown
                }
            }
        }
    }
}

fn deserialize_impl(u: &Union) -> TokenStream {
    let name = &u.ident;
    let tag_key = &u.tag_key;
    let tag_field = &u.tag_field;
    let arms = u.variants.iter().map(|v| {
        let (variant, tag) = (&v.ident, &v.tag);
        let parsed = match u.layout {
            Layout::Keyed if v.nested_union => quote!(entries.union_payload(#tag)),
            Layout::Keyed => quote!(entries.payload(#tag)),
            Layout::Inline => quote!(rt::from_text(whole)),
        };
        if u.keeps_unknown {
            quote!(#tag => #parsed.ok().map(Self::#variant),)
        } else {
            quote!(#tag => #parsed.map(Self::#variant),)
        }
    });
    let body = if u.keeps_unknown {
        // A tag this version doesn't know, a known tag whose payload doesn't parse, even a
        // missing tag: all are kept, so one odd item never fails a page.
        quote! {
            let tag = entries.tag(#tag_key).unwrap_or_default();
            let known = match tag.as_str() {
                #(#arms)*
                _ => None,
            };
            Ok(known.unwrap_or_else(|| Self::Unknown { #tag_field: tag, raw: rt::value_of(whole) }))
        }
    } else {
        let known = backticked(u.variants.iter().map(|v| v.tag.as_str()));
        let message = format!("unknown {tag_key} `{{other}}`, expected one of {known}");
        quote! {
            use rt::serde::de::Error as _;
            let tag = entries.tag(#tag_key).map_err(rt::serde_json::Error::custom)?;
            match tag.as_str() {
                #(#arms)*
                other => Err(rt::serde_json::Error::custom(format!(#message))),
            }
        }
    };
    // A keyed union read in place is read in one pass from its copied text too.
    let read = if u.read_in_pass && u.layout == Layout::Keyed {
        quote!(rt::deserialize_keyed(deserializer))
    } else {
        quote!(rt::deserialize_union(deserializer))
    };
    quote! {
        impl<'de> rt::serde::Deserialize<'de> for #name {
            fn deserialize<D: rt::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                #read
            }
        }

        impl rt::FromEntries for #name {
            fn from_entries(entries: &rt::Entries<'_>, whole: &str) -> Result<Self, rt::serde_json::Error> {
                #body
            }
        }
    }
}
