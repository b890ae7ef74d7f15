//! The code generator behind [`wecom-kf`](https://docs.rs/wecom-kf): reads an API file
//! (`endpoints.toml`) at compile time and emits typed requests, messages, builders, error
//! codes and client methods. Use it through `wecom_kf::endpoints!`, which documents the
//! macro; the file format is in `docs/endpoints-toml.md`.
//!
//! Stages, one module each: `model` (the file's types, with spans) and `read` (the file
//! into them), `check` (every semantic rule, all errors collected), `lower` (the checked
//! model into `ir`, the typed and resolved API the emitters read), `emit` (tokens, one file
//! per kind of item), `diagnostic` (rendering `file:line:col` errors).
//! Only this file touches `proc_macro`; the rest works on `proc_macro2` so it can be unit
//! tested.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod check;
mod diagnostic;
mod emit;
mod ir;
mod lower;
mod model;
mod names;
mod read;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use proc_macro::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::{Ident, LitStr, Token};

use emit::{Methods, Options};

/// Generates the API described by a TOML file. See `wecom_kf::endpoints!`.
#[proc_macro]
pub fn endpoints(input: TokenStream) -> TokenStream {
    let args = syn::parse_macro_input!(input as Args);
    match run(&args) {
        Ok(tokens) => tokens.into(),
        // The errors, and empty generated modules beside them so the code that uses them
        // doesn't add errors of its own (thiserror's fallback).
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(emit::fallback(&args.options(None)));
            tokens.into()
        }
    }
}

fn run(args: &Args) -> syn::Result<proc_macro2::TokenStream> {
    let written = args.path.value();
    let base = match args.relative_to {
        RelativeTo::CrateRoot => std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .ok_or_else(|| {
                syn::Error::new(
                    args.path.span(),
                    "CARGO_MANIFEST_DIR is not set; build with cargo or use `relative_to = SourceFile`",
                )
            })?,
        RelativeTo::SourceFile => proc_macro::Span::call_site()
            .local_file()
            .and_then(|file| file.parent().map(PathBuf::from))
            .ok_or_else(|| {
                syn::Error::new(
                    args.path.span(),
                    "`relative_to = SourceFile` needs the calling file's path, which the compiler did not give",
                )
            })?,
    };
    let resolved = base.join(&written);
    let source = std::fs::read_to_string(&resolved)
        .map_err(|e| syn::Error::new(args.path.span(), format!("can't read `{written}`: {e}")))?;
    let options = args.options(Some(resolved.to_string_lossy().into_owned()));
    emit::expand(&source, &options).map_err(|diagnostics| {
        diagnostics
            .iter()
            .map(|d| syn::Error::new(args.path.span(), d.render(&source, &written)))
            .reduce(|mut all, e| {
                all.combine(e);
                all
            })
            // `expand` reports at least one diagnostic with every error it returns.
            .unwrap_or_else(|| syn::Error::new(args.path.span(), "invalid API file"))
    })
}

#[derive(Clone, Copy)]
enum RelativeTo {
    CrateRoot,
    SourceFile,
}

/// `"file.toml"`, optionally with `relative_to = SourceFile`,
/// `methods = inherent | trait Name` and `crate = path`, in any order.
struct Args {
    path: LitStr,
    relative_to: RelativeTo,
    methods: Methods,
    /// The `wecom_kf` crate as the caller names it (`::wecom_kf` unless renamed).
    krate: syn::Path,
}

impl Args {
    fn options(&self, track_path: Option<String>) -> Options {
        let krate = &self.krate;
        Options {
            display_path: self.path.value(),
            track_path,
            methods: self.methods.clone(),
            krate: quote::quote!(#krate),
        }
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut path = None;
        let mut relative_to = RelativeTo::CrateRoot;
        let mut methods = Methods::Trait(Ident::new("ClientExt", proc_macro2::Span::call_site()));
        let mut krate: syn::Path = syn::parse_quote!(::wecom_kf);
        while !input.is_empty() {
            if input.peek(LitStr) {
                path = Some(input.parse::<LitStr>()?);
            } else if input.peek(Token![crate]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                krate = input.parse()?;
            } else {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                match key.to_string().as_str() {
                    "relative_to" => {
                        let value: Ident = input.parse()?;
                        relative_to = match value.to_string().as_str() {
                            "SourceFile" => RelativeTo::SourceFile,
                            "CrateRoot" => RelativeTo::CrateRoot,
                            _ => {
                                return Err(syn::Error::new(
                                    value.span(),
                                    "expected `SourceFile` or `CrateRoot`",
                                ));
                            }
                        };
                    }
                    "methods" => {
                        methods = if input.peek(Token![trait]) {
                            input.parse::<Token![trait]>()?;
                            Methods::Trait(input.parse()?)
                        } else {
                            let value: Ident = input.parse()?;
                            if value != "inherent" {
                                return Err(syn::Error::new(
                                    value.span(),
                                    "expected `inherent` or `trait Name`",
                                ));
                            }
                            Methods::Inherent
                        };
                    }
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            "expected `relative_to`, `methods` or `crate`",
                        ));
                    }
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let path = path.ok_or_else(|| {
            syn::Error::new(
                input.span(),
                "expected the API file's path, like \"endpoints.toml\"",
            )
        })?;
        Ok(Args {
            path,
            relative_to,
            methods,
            krate,
        })
    }
}
