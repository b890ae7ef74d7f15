//! `[[endpoint]]` tables: the request body, its builder, and the client methods.
//!
//! For `send_msg` this emits `SendMsgRequest` (the body, usable on its own with
//! `Client::execute`), `SendMsg<'a>` (the builder a client method returns; await it or call
//! `send`), the method `send_msg` with the required fields as arguments, one shortcut per
//! message type (`send_text`, …), and the raw variant `send_msg_raw`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use super::docs::Doc;
use super::fields::{constructor, debug_derive, debug_impl, declarations, param, setters};
use super::validate::{Across, validate_impl};
use crate::model::{Api, Endpoint, TypeKind};
use crate::names::{ident, pascal_case, type_ident};

/// A client method: its docs, signature and body, emitted as an inherent method or as a
/// trait declaration plus impl.
pub struct Method {
    pub docs: TokenStream,
    pub signature: TokenStream,
    pub body: TokenStream,
}

/// The items of one endpoint, and the client methods it adds.
/// `owner` is the path docs use to link the client methods (`rt::Client` or the trait).
pub fn emit(api: &Api, e: &Endpoint, owner: &str) -> (TokenStream, Vec<Method>) {
    let base = pascal_case(e.name.get_ref());
    let request = Ident::new(&format!("{base}Request"), Span::call_site());
    let builder = type_ident(e.name.get_ref());
    let method = ident(e.name.get_ref());
    let marker = marker_trait(api, e, &base, owner);
    let marker_path = marker.as_ref().map(|(name, _)| quote!(#name));
    let response = match &e.response {
        // Binary endpoints have no response type; `download_builder` names what they give.
        Some(_) if e.is_binary() => quote!(rt::Media),
        Some(r) => {
            let r = ident(r.get_ref());
            quote!(#r)
        }
        None => quote!(rt::Ack),
    };
    let http = request_line(e);
    let path = e.path.get_ref();
    let name = e.name.get_ref();

    let fields = declarations(api, &e.fields);
    let (args, init) = constructor(api, &e.fields, marker_path.as_ref());
    let request_setters = setters(api, &e.fields, &quote!(self));
    let builder_setters = setters(api, &e.fields, &quote!(self.request));
    let across = Across {
        one_of: &e.one_of,
        ranges: &e.ranges,
    };
    let validate = validate_impl(api, &request, &e.fields, across);
    let debug = debug_derive(&e.fields);
    let debug_impl = debug_impl(&request, &e.fields);
    let http_method = if e.is_get() {
        quote!(rt::HttpMethod::Get)
    } else {
        quote!(rt::HttpMethod::Post)
    };
    let auth = if e.uses_corp_secret() {
        quote!(rt::Auth::CorpSecret)
    } else {
        quote!(rt::Auth::AccessToken)
    };
    let idempotent = e.idempotent;
    let multipart = e.is_multipart();
    let binary = e.is_binary();
    let fixed_query = e.fixed_query().map(|(k, v)| {
        let v = v.get_ref();
        quote!((#k, #v))
    });
    let files = multipart.then(|| {
        let parts = e
            .fields
            .iter()
            .filter(|f| api.kind_of(f.type_ref().name) == Some(TypeKind::File))
            .map(|f| {
                let wire = f.name.get_ref();
                let field = ident(wire);
                if f.required {
                    quote!(Some((#wire, &self.#field)))
                } else {
                    quote!(self.#field.as_ref().map(|upload| (#wire, upload)))
                }
            });
        quote! {
            fn files(&self) -> Vec<(&'static str, &rt::Upload)> {
                [#(#parts),*].into_iter().flatten().collect()
            }
        }
    });
    let retry_key = match &e.retry_key {
        Some(key) => {
            let key = key.get_ref();
            quote!(Some(#key))
        }
        None => quote!(None),
    };
    // check.rs made sure the key names an optional string field.
    let retry_id = e.retry_key.as_ref().map(|key| {
        let field = ident(key.get_ref());
        quote! {
            fn retry_id(&self) -> Option<&str> {
                self.#field.as_deref().filter(|id| !id.is_empty())
            }

            fn with_retry_id(&self, id: &str) -> Option<Self> {
                if self.retry_id().is_some() {
                    return None;
                }
                let mut request = self.clone();
                request.#field = Some(id.to_owned());
                Some(request)
            }
        }
    });
    let sent_with = if e.is_binary() {
        "downloading it with [`MediaChunks::new`](rt::MediaChunks::new)"
    } else {
        "sending it with [`Client::execute`](rt::Client::execute)"
    };
    let request_docs = Doc::new()
        .line(format!("The body of [`{name}`]({owner}::{name}), for building a request by hand and {sent_with}."))
        .blank()
        .line(e.summary.clone())
        .official(api, Some(*e.doc.get_ref()))
        .tokens();
    let builder_docs = Doc::new()
        .line(format!("A `{name}` call being built: set optional fields, then `.await` it (or call [`send`](Self::send))."))
        .blank()
        .line(format!("Returned by [`{name}`]({owner}::{name})."))
        .tokens();
    let new_doc = " Creates the body from its required fields.";
    let send_doc = format!(" Sends the request: {http}.");
    let arg_names: Vec<Ident> = e
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| ident(f.name.get_ref()))
        .collect();
    let marker_items = marker.map(|(_, items)| items);

    let endpoint = quote! {
        rt::Endpoint {
            name: #name,
            method: #http_method,
            path: #path,
            auth: #auth,
            idempotent: #idempotent,
            multipart: #multipart,
            binary: #binary,
            query: &[#(#fixed_query),*],
            retry_key: #retry_key,
        }
    };
    let request_struct = quote! {
        #request_docs
        #[derive(#debug Clone, PartialEq, rt::serde::Serialize, rt::serde::Deserialize)]
        #[serde(crate = "::wecom_kf::__private::serde")]
        pub struct #request {
            #fields
        }

        #debug_impl

        impl #request {
            #[doc = #new_doc]
            pub fn new(#(#args),*) -> Self {
                Self { #(#init),* }
            }

            #request_setters
        }

        #validate
    };
    let call = if binary {
        download_builder(
            &request,
            &builder,
            &builder_setters,
            &endpoint,
            &http,
            name,
            owner,
        )
    } else {
        quote! {
            impl rt::Request for #request {
                type Response = #response;
                const ENDPOINT: rt::Endpoint = #endpoint;

                #files
                #retry_id
            }

            #builder_docs
            #[must_use = "a request does nothing until it is awaited or sent"]
            pub struct #builder<'a> {
                client: &'a rt::Client,
                request: #request,
            }

            impl<'a> #builder<'a> {
                #builder_setters

                #[doc = " The body as it will be sent."]
                pub fn request(&self) -> &#request {
                    &self.request
                }

                #[doc = #send_doc]
                pub async fn send(self) -> Result<#response, rt::Error> {
                    self.client.execute(&self.request).await
                }
            }

            impl<'a> rt::IntoFuture for #builder<'a> {
                type Output = Result<#response, rt::Error>;
                type IntoFuture = rt::BoxFuture<'a, Self::Output>;

                fn into_future(self) -> Self::IntoFuture {
                    Box::pin(self.send())
                }
            }
        }
    };
    let items = quote! {
        #request_struct
        #call
        #marker_items
    };
    let initial = if binary {
        quote!(download: rt::DownloadOptions::default(),)
    } else {
        quote!()
    };

    let mut methods = vec![Method {
        docs: method_docs(api, e).tokens(),
        signature: quote!(fn #method(&self, #(#args),*) -> #builder<'_>),
        body: quote! {
            #builder {
                client: self,
                request: #request::new(#(#arg_names),*),
                #initial
            }
        },
    }];
    methods.extend(shortcuts(api, e, &builder));
    if let Some(raw) = &e.raw {
        let raw_ident = ident(raw.get_ref());
        let docs = Doc::new()
            .line(format!("Sends `body` as is to {http}, for what the API file doesn't describe yet."))
            .blank()
            .line(format!("Nothing is validated; prefer [`{name}`](Self::{name}). The response is parsed like `{name}`'s."))
            .official(api, Some(*e.doc.get_ref()))
            .tokens();
        methods.push(Method {
            docs,
            signature: quote!(fn #raw_ident(&self, body: rt::Value) -> rt::RawCall<'_, #response>),
            body: quote!(rt::RawCall::new(self, <#request as rt::Request>::ENDPOINT, body)),
        });
    }
    (items, methods)
}

/// The builder of a `binary` endpoint: set optional fields and how to download, then await
/// it for the file in memory, or stream the file into a writer or chunk by chunk.
fn download_builder(
    request: &Ident,
    builder: &Ident,
    setters: &TokenStream,
    endpoint: &TokenStream,
    http: &str,
    name: &str,
    owner: &str,
) -> TokenStream {
    let builder_docs = Doc::new()
        .line(format!("A `{name}` download being set up: `.await` it for the file in memory, or stream it with [`to_writer`](Self::to_writer) or [`chunks`](Self::chunks)."))
        .blank()
        .line("Files come in ranged requests of at most 20 MiB; one that fails midway is asked again from the last byte received.")
        .blank()
        .line(format!("Returned by [`{name}`]({owner}::{name})."))
        .tokens();
    let send_doc = format!(
        " Downloads the file into memory ({http}), refusing one over [`max_bytes`](Self::max_bytes) (20 MiB unless set)."
    );
    quote! {
        impl rt::FileRequest for #request {
            const ENDPOINT: rt::Endpoint = #endpoint;
        }

        #builder_docs
        #[must_use = "a download does nothing until it is awaited or streamed"]
        pub struct #builder<'a> {
            client: &'a rt::Client,
            request: #request,
            download: rt::DownloadOptions,
        }

        impl<'a> #builder<'a> {
            #setters

            #[doc = " The body as it will be sent."]
            pub fn request(&self) -> &#request {
                &self.request
            }

            #[doc = " Refuses a file over `limit` bytes: before reading when its length is announced, else when the download reaches it."]
            pub fn max_bytes(mut self, limit: u64) -> Self {
                self.download = self.download.max_bytes(limit);
                self
            }

            #[doc = " Starts at byte `offset`, to finish a download that stopped there (the [`resume_from`](rt::Error::Incomplete) of its error)."]
            pub fn resume_from(mut self, offset: u64) -> Self {
                self.download = self.download.resume_from(offset);
                self
            }

            #[doc = " The most bytes one ranged request asks for, at most the 20 MiB WeCom allows."]
            pub fn chunk_size(mut self, bytes: u64) -> Self {
                self.download = self.download.chunk_size(bytes);
                self
            }

            #[doc = #send_doc]
            pub async fn send(self) -> Result<rt::Media, rt::Error> {
                self.chunks().into_memory().await
            }

            #[doc = " Streams the file into `writer` as it arrives, without holding it in memory."]
            pub async fn to_writer<W>(self, writer: &mut W) -> Result<rt::Downloaded, rt::Error>
            where
                W: rt::AsyncWrite + Unpin + Send + ?Sized,
            {
                self.chunks().to_writer(writer).await
            }

            #[doc = " The file a chunk at a time, as it arrives: call [`next_chunk`](rt::MediaChunks::next_chunk) until `None`."]
            pub fn chunks(self) -> rt::MediaChunks {
                rt::MediaChunks::new(self.client, &self.request, self.download)
            }
        }

        impl<'a> rt::IntoFuture for #builder<'a> {
            type Output = Result<rt::Media, rt::Error>;
            type IntoFuture = rt::BoxFuture<'a, Self::Output>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.send())
            }
        }
    }
}

/// For a field with `accepts`: a trait implemented by the accepted payload types only, so
/// passing any other message type is a compile error in our words.
fn marker_trait(api: &Api, e: &Endpoint, base: &str, owner: &str) -> Option<(Ident, TokenStream)> {
    let field = e.message_field()?;
    let accepts = field.accepts.as_ref()?;
    let union = api.union(field.type_ref().name)?;
    let union_ident = ident(union.name.get_ref());
    let trait_ident = Ident::new(&format!("{base}Message"), Span::call_site());
    let name = e.name.get_ref();
    let tags: Vec<&str> = accepts
        .get_ref()
        .iter()
        .map(|t| t.get_ref().as_str())
        .collect();
    let accepted: Vec<Ident> = union
        .variants
        .iter()
        .filter(|v| tags.contains(&v.tag.get_ref().as_str()))
        .map(|v| ident(v.ty.get_ref()))
        .collect();
    let message = format!("`{{Self}}` can't be sent with `{name}`");
    let label = format!("`{name}` doesn't accept this message type");
    let note = format!("`{name}` accepts: {}", tags.join(", "));
    let doc = format!(
        " The message types [`{name}`]({owner}::{name}) accepts: {}.",
        tags.join(", ")
    );
    let items = quote! {
        #[doc = #doc]
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        pub trait #trait_ident: Into<#union_ident> {}

        #(impl #trait_ident for #accepted {})*
    };
    Some((trait_ident, items))
}

/// `send_text(…)`, `send_image(…)`, …: one per accepted variant of the message field.
fn shortcuts(api: &Api, e: &Endpoint, builder: &Ident) -> Vec<Method> {
    let Some(field) = e.message_field() else {
        return Vec::new();
    };
    let (Some(pattern), Some(union)) = (&field.shortcuts, api.union(field.type_ref().name)) else {
        return Vec::new();
    };
    let method = ident(e.name.get_ref());
    let name = e.name.get_ref();
    let message_arg = ident(field.name.get_ref());
    // The other required fields keep their place and type.
    let mut args = Vec::new();
    let mut pass = Vec::new();
    for f in e.fields.iter().filter(|f| f.required) {
        let arg = ident(f.name.get_ref());
        if f.name.get_ref() == field.name.get_ref() {
            pass.push(quote!(#arg.into()));
        } else {
            let (ty, _) = param(api, f, None);
            args.push((arg.clone(), Some(ty)));
            pass.push(quote!(#arg));
        }
    }
    union
        .variants
        .iter()
        .filter(|v| {
            field
                .accepts
                .as_ref()
                .is_none_or(|a| a.get_ref().iter().any(|t| t.get_ref() == v.tag.get_ref()))
        })
        .map(|v| {
            let shortcut = ident(&pattern.get_ref().replace("{}", v.short_name()));
            let payload = ident(v.ty.get_ref());
            let docs = Doc::new()
                .line(format!(
                    "Sends a `{}` message: [`{name}`](Self::{name}) with a [`{}`].",
                    v.tag.get_ref(),
                    v.ty.get_ref()
                ))
                .blank()
                .line(format!(
                    "The limits of [`{}`] are checked before sending; the errors are those of [`{name}`](Self::{name}).",
                    v.ty.get_ref()
                ))
                .official(api, Some(*e.doc.get_ref()))
                .tokens();
            let params = args.iter().map(|(a, ty)| quote!(#a: #ty));
            Method {
                docs,
                signature: quote!(fn #shortcut(&self, #(#params,)* #message_arg: impl Into<#payload>) -> #builder<'_>),
                body: quote!(self.#method(#(#pass),*)),
            }
        })
        .collect()
}

/// The HTTP request as docs show it: `` `POST /cgi-bin/media/upload?type=image` (multipart) ``.
fn request_line(e: &Endpoint) -> String {
    let method = if e.is_get() { "GET" } else { "POST" };
    let query: Vec<String> = e
        .fixed_query()
        .map(|(k, v)| format!("{k}={}", v.get_ref()))
        .collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let body = if e.is_multipart() { " (multipart)" } else { "" };
    format!("`{method} /cgi-bin/{}{query}`{body}", e.path.get_ref())
}

/// Summary, the HTTP call, arguments, error codes and the official link.
fn method_docs(api: &Api, e: &Endpoint) -> Doc {
    let how = if e.is_binary() {
        "`.await` the returned builder for the file in memory, or stream it with its `to_writer` or `chunks`"
    } else {
        "set optional ones on the returned builder, then `.await` it"
    };
    let mut doc = Doc::new().line(e.summary.clone()).blank().line(format!(
        "Sends {}. Required fields are the arguments; {how}.",
        request_line(e)
    ));
    let required: Vec<_> = e.fields.iter().filter(|f| f.required).collect();
    if !required.is_empty() {
        doc = doc.blank().line("# Arguments");
        for f in required {
            let about = f.doc.as_deref().unwrap_or("");
            doc = doc.line(format!("- `{}`: {about}", f.name.get_ref()));
        }
    }
    for rule in &e.ranges {
        let rule = rule.get_ref();
        let (start, end) = (rule.start.get_ref(), rule.end.get_ref());
        let span = match &rule.max_span {
            Some(max) => format!(", nor more than {} after it", max.get_ref()),
            None => String::new(),
        };
        doc = doc.blank().line(format!(
            "`{end}` may not be before `{start}`{span}; this is checked before sending."
        ));
    }
    if !e.errors.is_empty() {
        doc = doc.blank().line("# Errors").line(
            "Besides transport and decode errors, [`Error::Api`](rt::Error::Api) with, among others:",
        );
        for code in &e.errors {
            if let Some(err) = api.error(*code.get_ref()) {
                doc = doc.line(format!(
                    "- `{}` ({}): {}",
                    err.code.get_ref(),
                    err.name.get_ref(),
                    err.meaning
                ));
            }
        }
    }
    doc.official(api, Some(*e.doc.get_ref()))
}
