//! From the checked model to tokens: one file per kind of generated item.

mod docs;
mod endpoints;
mod enums;
mod fields;
mod structs;
mod unions;
pub mod validate;

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::diagnostic::Diagnostic;
use crate::model::Api;
use crate::names::is_identifier;

/// Where the client methods go.
#[derive(Debug, Clone)]
pub enum Methods {
    /// `impl Client { … }`: only possible inside `wecom_kf` itself.
    Inherent,
    /// `pub trait Name { … } impl Name for Client { … }`: for a user's own API file.
    Trait(Ident),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// The file as the user wrote it, for diagnostics.
    pub display_path: String,
    /// The resolved path, so cargo rebuilds when the file changes.
    pub track_path: Option<String>,
    pub methods: Methods,
}

/// Parses, checks and emits an API file. Errors are every problem found, with spans into
/// `source`.
pub fn expand(source: &str, options: &Options) -> Result<TokenStream, Vec<Diagnostic>> {
    let api: Api = toml::from_str(source).map_err(|e| {
        vec![Diagnostic {
            span: e.span().unwrap_or(0..0),
            message: e.message().trim().to_owned(),
            help: None,
            first_defined: None,
        }]
    })?;
    crate::check::check(&api)?;
    Ok(emit(&api, options))
}

fn emit(api: &Api, options: &Options) -> TokenStream {
    let owner = match &options.methods {
        Methods::Inherent => "rt::Client".to_owned(),
        Methods::Trait(name) => name.to_string(),
    };
    let errcode = enums::errcode(api);
    let enums = api.enums.iter().map(|e| enums::emit(api, e));
    let structs = api.structs.iter().map(|s| structs::emit(api, s));
    let unions = api.unions.iter().map(|u| unions::emit(api, u));
    let mut endpoint_items = Vec::new();
    let mut methods = Vec::new();
    for e in &api.endpoints {
        let (items, m) = endpoints::emit(api, e, &owner);
        endpoint_items.push(items);
        methods.extend(m);
    }
    let client_methods = client_methods(&options.methods, &methods, &options.display_path);
    let module = module_name(&options.display_path);
    let tracking = options.track_path.as_ref().map(|path| {
        // `proc_macro::tracked::path` would say this directly, but it is unstable.
        quote!(
            const _: &[u8] = include_bytes!(#path);
        )
    });
    quote! {
        mod #module {
            use ::wecom_kf::__private as rt;
            use rt::serde::{Deserialize as _, Serialize as _};
            use rt::Validate as _;

            #errcode
            #(#enums)*
            #(#structs)*
            #(#unions)*
            #(#endpoint_items)*
            #client_methods
            #tracking
        }
        pub use #module::*;
    }
}

fn client_methods(target: &Methods, methods: &[endpoints::Method], file: &str) -> TokenStream {
    match target {
        Methods::Inherent => {
            let items = methods.iter().map(|m| {
                let (docs, signature, body) = (&m.docs, &m.signature, &m.body);
                quote!(#docs pub #signature { #body })
            });
            quote! {
                impl rt::Client {
                    #(#items)*
                }
            }
        }
        Methods::Trait(name) => {
            let declarations = methods.iter().map(|m| {
                let (docs, signature) = (&m.docs, &m.signature);
                quote!(#docs #signature;)
            });
            let impls = methods.iter().map(|m| {
                let (signature, body) = (&m.signature, &m.body);
                quote!(#signature { #body })
            });
            let doc = format!(
                " Client methods generated from `{file}`; bring the trait into scope to call them."
            );
            quote! {
                #[doc = #doc]
                pub trait #name {
                    #(#declarations)*
                }

                impl #name for rt::Client {
                    #(#impls)*
                }
            }
        }
    }
}

/// `endpoints.toml` → `generated_from_endpoints`.
fn module_name(display_path: &str) -> Ident {
    let file = display_path
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(display_path);
    let stem = file.split('.').next().unwrap_or(file);
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("generated_from_{cleaned}");
    if is_identifier(&name) {
        Ident::new(&name, Span::call_site())
    } else {
        Ident::new("generated_from_api", Span::call_site())
    }
}
