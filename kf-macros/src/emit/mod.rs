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
use crate::ir::Api;
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
    /// The path of the `wecom_kf` crate (`::wecom_kf`, or `crate = path` for a renamed
    /// dependency).
    pub krate: TokenStream,
}

/// Parses, checks, lowers and emits an API file. Errors are every problem found, with
/// spans into `source`.
pub fn expand(source: &str, options: &Options) -> Result<TokenStream, Vec<Diagnostic>> {
    let api = crate::read::api(source).map_err(|e| {
        vec![Diagnostic {
            span: e.span,
            message: e.message,
            help: None,
            first_defined: None,
        }]
    })?;
    let shipped = matches!(options.methods, Methods::Inherent);
    crate::check::check(&api, shipped)?;
    let api = crate::lower::lower(&api)?;
    Ok(emit(&api, options))
}

/// What the macro emits beside its errors, so the user's code that names the generated
/// modules and trait still resolves and the errors shown are the file's, not a cascade.
pub fn fallback(options: &Options) -> TokenStream {
    let empty = Api {
        docs_prefix: crate::model::DEFAULT_DOCS.to_owned(),
        errors: Vec::new(),
        enums: Vec::new(),
        structs: Vec::new(),
        unions: Vec::new(),
        endpoints: Vec::new(),
    };
    emit(
        &empty,
        &Options {
            track_path: None,
            ..options.clone()
        },
    )
}

fn emit(api: &Api, options: &Options) -> TokenStream {
    let owner = match &options.methods {
        Methods::Inherent => "rt::Client".to_owned(),
        Methods::Trait(name) => format!("super::{name}"),
    };
    let krate = &options.krate;
    // Only the crate's own file has error codes: the runtime classifies every answer with
    // that `ErrCode`, so a user's file names codes but defines none (check.rs says so).
    let errcode = matches!(options.methods, Methods::Inherent).then(|| enums::errcode(api));
    let enums = api.enums.iter().map(|e| enums::emit(api, e));
    let structs = api.structs.iter().map(|s| structs::emit(api, s));
    let unions = api.unions.iter().map(|u| unions::emit(api, u));
    let mut endpoint_types = Vec::new();
    let mut builders = Vec::new();
    let mut methods = Vec::new();
    for e in &api.endpoints {
        let items = endpoints::emit(api, e, &owner);
        endpoint_types.push(items.types);
        builders.push(items.builder);
        methods.extend(items.methods);
    }
    let client_methods = client_methods(&options.methods, &methods, &options.display_path);
    let module = module_name(&options.display_path);
    let tracking = options.track_path.as_ref().map(|path| {
        // `proc_macro::tracked::path` would say this directly, but it is unstable.
        quote!(
            const _: &[u8] = include_bytes!(#path);
        )
    });
    let file = &options.display_path;
    let types_doc = format!(
        " The data types of `{file}`: request bodies, messages, and what the server answers."
    );
    let builders_doc = format!(
        " The builders the client methods of `{file}` return: set optional fields, then `.await`."
    );
    let exports = match &options.methods {
        Methods::Inherent => quote!(pub use #module::{builders, types};),
        Methods::Trait(name) => quote!(pub use #module::{#name, builders, types};),
    };
    quote! {
        mod #module {
            use #krate::__private as rt;
            use builders::*;
            use types::*;

            #[doc = #types_doc]
            pub mod types {
                use #krate::__private as rt;
                use rt::serde::{Deserialize as _, Serialize as _};
                use rt::Validate as _;

                #errcode
                #(#enums)*
                #(#structs)*
                #(#unions)*
                #(#endpoint_types)*
            }

            #[doc = #builders_doc]
            pub mod builders {
                use #krate::__private as rt;
                use super::types::*;

                #(#builders)*
            }

            #client_methods
            #tracking
        }

        #exports
    }
}

fn client_methods(target: &Methods, methods: &[endpoints::Method], file: &str) -> TokenStream {
    match target {
        // Nothing to add (the fallback): no impl, which outside `wecom_kf` couldn't compile.
        Methods::Inherent if methods.is_empty() => quote!(),
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
