//! `[[endpoint]]` tables: the request body, its builder, and the client methods.
//!
//! For `send_msg` this emits `SendMsgRequest` (the body, usable on its own with
//! `Client::execute`), `SendMsg<'a>` (the builder a client method returns; await it or call
//! `send`), the method `send_msg` with the required fields as arguments, one shortcut per
//! message type (`send_text`, …), and the raw variant `send_msg_raw`.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::docs::{Doc, article};
use super::fields::{constructor, debug_derive, debug_impl, declarations, param, setters};
use super::validate::{Across, validate_impl};
use crate::ir::{Api, Auth, Body, Builtin, Endpoint, HttpMethod, Marker, Response};

/// A client method: its docs, signature and body, emitted as an inherent method or as a
/// trait declaration plus impl.
pub struct Method {
    pub docs: TokenStream,
    pub signature: TokenStream,
    pub body: TokenStream,
}

/// The items of one endpoint: its types (the request body, the marker trait), its
/// builder, and the client methods it adds.
pub struct Items {
    pub types: TokenStream,
    pub builder: TokenStream,
    pub methods: Vec<Method>,
}

/// `owner` is the path docs use to link the client methods (`rt::Client` or the trait).
pub fn emit(api: &Api, e: &Endpoint, owner: &str) -> Items {
    let request = &e.request;
    let builder = &e.builder;
    let method = &e.method;
    let marker = e.marker.as_ref().map(|m| marker_trait(e, m, owner));
    let marker_path = e.marker.as_ref().map(|m| {
        let ident = &m.ident;
        quote!(#ident)
    });
    let response = match &e.response {
        // Binary endpoints have no response type; `download_builder` names what they give.
        Response::Binary => quote!(rt::Media),
        Response::Struct(r) => quote!(#r),
        Response::Ack => quote!(rt::Ack),
    };
    let binary = e.response == Response::Binary;
    let read_response = match &e.response {
        Response::Struct(r)
            if api
                .structs
                .iter()
                .any(|s| &s.ident == r && s.page_list.is_some()) =>
        {
            Some(quote! {
                fn read_response(body: &[u8]) -> Result<#r, rt::serde_json::Error> {
                    #r::from_body(body)
                }
            })
        }
        _ => None,
    };
    let http = request_line(e);
    let path = &e.path;
    let name = &e.name;

    let fields = declarations(&e.fields);
    let (args, init) = constructor(&e.fields, marker_path.as_ref());
    let request_setters = setters(&e.fields, &quote!(self));
    let builder_setters = setters(&e.fields, &quote!(self.request));
    let across = Across {
        one_of: &e.one_of,
        ranges: &e.ranges,
    };
    let validate = validate_impl(request, &e.fields, across);
    let debug = debug_derive(&e.fields);
    let debug_impl = debug_impl(request, &e.fields);
    let http_method = match e.http {
        HttpMethod::Get => quote!(rt::HttpMethod::Get),
        HttpMethod::Post => quote!(rt::HttpMethod::Post),
    };
    let auth = match e.auth {
        Auth::CorpSecret => quote!(rt::Auth::CorpSecret),
        Auth::AccessToken => quote!(rt::Auth::AccessToken),
    };
    let idempotent = e.idempotent;
    let multipart = e.body == Body::Multipart;
    let fixed_query = e.query.iter().map(|(k, v)| quote!((#k, #v)));
    let files = multipart.then(|| {
        let parts = e
            .fields
            .iter()
            .filter(|f| f.builtin() == Some(Builtin::File))
            .map(|f| {
                let wire = &f.wire;
                let field = &f.ident;
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
    let retry_field = e.retry_key.and_then(|i| e.fields.get(i));
    let retry_key = match retry_field {
        Some(key) => {
            let key = &key.wire;
            quote!(Some(#key))
        }
        None => quote!(None),
    };
    // check.rs made sure the key names an optional string field.
    let retry_id = retry_field.map(|key| {
        let field = &key.ident;
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
    let sent_with = if binary {
        "downloading it with [`MediaChunks::new`](rt::MediaChunks::new)"
    } else {
        "sending it with [`Client::execute`](rt::Client::execute)"
    };
    let request_docs = Doc::new()
        .line(format!("The body of [`{name}`]({owner}::{name}), for building a request by hand and {sent_with}."))
        .blank()
        .line(e.summary.clone())
        .official(api, Some(e.doc))
        .tokens();
    let builder_docs = Doc::new()
        .line(format!("A `{name}` call being built: set optional fields, then `.await` it (or call [`send`](Self::send))."))
        .blank()
        .line(format!("Returned by [`{name}`]({owner}::{name})."))
        .tokens();
    let new_doc = " Creates the body from its required fields.";
    let send_doc = format!(" Sends the request: {http}.");
    let arg_names: Vec<&Ident> = e
        .fields
        .iter()
        .filter(|f| f.required)
        .map(|f| &f.ident)
        .collect();

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
    // A request body is written, never read: no `Deserialize`, which would be an eighth of
    // the crate's expanded code for nothing.
    let request_struct = quote! {
        #request_docs
        #[derive(#debug Clone, PartialEq, rt::serde::Serialize)]
        #[serde(crate = "rt::serde")]
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
    let (request_impl, call) = if binary {
        (
            quote! {
                impl rt::FileRequest for #request {
                    const ENDPOINT: rt::Endpoint = #endpoint;
                }
            },
            download_builder(request, builder, &builder_setters, &http, name, owner),
        )
    } else {
        let request_impl = quote! {
            impl rt::Request for #request {
                type Response = #response;
                const ENDPOINT: rt::Endpoint = #endpoint;

                #read_response
                #files
                #retry_id
            }
        };
        let call = quote! {
            #builder_docs
            #[must_use = "a request does nothing until it is awaited or sent"]
            pub struct #builder<'a> {
                client: &'a rt::Client,
                request: #request,
            }

            impl<'a> #builder<'a> {
                pub(super) fn new(client: &'a rt::Client, request: #request) -> Self {
                    Self { client, request }
                }

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
        };
        (request_impl, call)
    };
    let types = quote! {
        #request_struct
        #request_impl
        #marker
    };
    let mut methods = vec![Method {
        docs: method_docs(api, e).tokens(),
        signature: quote!(fn #method(&self, #(#args),*) -> #builder<'_>),
        body: quote!(#builder::new(self, #request::new(#(#arg_names),*))),
    }];
    methods.extend(shortcuts(api, e));
    if let Some(raw_ident) = &e.raw {
        let docs = Doc::new()
            .line(format!("Sends `body` as is to {http}, for what the API file doesn't describe yet."))
            .blank()
            .line(format!("Nothing is validated; prefer [`{name}`](Self::{name}). The response is parsed like `{name}`'s."))
            .official(api, Some(e.doc))
            .tokens();
        methods.push(Method {
            docs,
            signature: quote!(fn #raw_ident(&self, body: rt::Value) -> rt::RawCall<'_, #response>),
            body: quote!(rt::RawCall::new(self, <#request as rt::Request>::ENDPOINT, body)),
        });
    }
    Items {
        types,
        builder: call,
        methods,
    }
}

/// The builder of a `binary` endpoint: set optional fields and how to download, then await
/// it for the file in memory, or stream the file into a writer or chunk by chunk.
fn download_builder(
    request: &Ident,
    builder: &Ident,
    setters: &TokenStream,
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
        #builder_docs
        #[must_use = "a download does nothing until it is awaited or streamed"]
        pub struct #builder<'a> {
            client: &'a rt::Client,
            request: #request,
            download: rt::DownloadOptions,
        }

        impl<'a> #builder<'a> {
            pub(super) fn new(client: &'a rt::Client, request: #request) -> Self {
                Self {
                    client,
                    request,
                    download: rt::DownloadOptions::default(),
                }
            }

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
fn marker_trait(e: &Endpoint, marker: &Marker, owner: &str) -> TokenStream {
    let Marker {
        ident,
        union,
        tags,
        accepted,
    } = marker;
    let name = &e.name;
    let message = format!("`{{Self}}` can't be sent with `{name}`");
    let label = format!("`{name}` doesn't accept this message type");
    let note = format!("`{name}` accepts: {}", tags.join(", "));
    let doc = format!(
        " The message types [`{name}`]({owner}::{name}) accepts: {}.",
        tags.join(", ")
    );
    quote! {
        #[doc = #doc]
        #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
        pub trait #ident: Into<#union> {}

        #(impl #ident for #accepted {})*
    }
}

/// `send_text(…)`, `send_image(…)`, …: one per accepted variant of the message field.
fn shortcuts(api: &Api, e: &Endpoint) -> Vec<Method> {
    let Some(message) = e.message.and_then(|i| e.fields.get(i)) else {
        return Vec::new();
    };
    let (method, builder, name) = (&e.method, &e.builder, &e.name);
    let message_arg = &message.ident;
    // The other required fields keep their place and type.
    let mut args = Vec::new();
    let mut pass = Vec::new();
    for f in e.fields.iter().filter(|f| f.required) {
        let arg = &f.ident;
        if f.wire == message.wire {
            pass.push(quote!(#arg.into()));
        } else {
            let (ty, _) = param(f, None);
            args.push(quote!(#arg: #ty));
            pass.push(quote!(#arg));
        }
    }
    e.shortcuts
        .iter()
        .map(|s| {
            let (shortcut, payload) = (&s.ident, &s.payload);
            let payload_name = payload.to_string();
            let docs = Doc::new()
                .line(format!(
                    "Sends {} `{}` message: [`{name}`](Self::{name}) with {} [`{payload_name}`].",
                    article(&s.tag),
                    s.tag,
                    article(&payload_name),
                ))
                .blank()
                .line(format!(
                    "The limits of [`{payload_name}`] are checked before sending; the errors are those of [`{name}`](Self::{name})."
                ))
                .official(api, Some(e.doc))
                .tokens();
            Method {
                docs,
                signature: quote!(fn #shortcut(&self, #(#args,)* #message_arg: impl Into<#payload>) -> #builder<'_>),
                body: quote!(self.#method(#(#pass),*)),
            }
        })
        .collect()
}

/// The HTTP request as docs show it: `` `POST /cgi-bin/media/upload?type=image` (multipart) ``.
fn request_line(e: &Endpoint) -> String {
    let query: Vec<String> = e.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    let body = match e.body {
        Body::Multipart => " (multipart)",
        Body::Json | Body::Query => "",
    };
    format!("`{} /cgi-bin/{}{query}`{body}", e.http.as_str(), e.path)
}

/// Summary, the HTTP call, arguments, error codes and the official link.
fn method_docs(api: &Api, e: &Endpoint) -> Doc {
    let how = match e.response {
        Response::Binary => {
            "`.await` the returned builder for the file in memory, or stream it with its `to_writer` or `chunks`"
        }
        Response::Ack | Response::Struct(_) => {
            "set optional ones on the returned builder, then `.await` it"
        }
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
            doc = doc.line(format!("- `{}`: {about}", f.wire));
        }
    }
    for rule in &e.ranges {
        let (start, end) = (&e.fields[rule.start].wire, &e.fields[rule.end].wire);
        let span = match rule.max_span {
            Some(max) => format!(", nor more than {max} after it"),
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
            doc = doc.line(match api.error(*code) {
                // Codes of the crate's own file are variants of the `ErrCode` it generates.
                Some(err) => format!(
                    "- [`{code}`](types::ErrCode::{}): {}",
                    err.ident, err.meaning
                ),
                // A user's file names codes the runtime's `ErrCode` keeps as they come.
                None => format!("- `{code}` ([`ErrCode::Other`](rt::ErrCode::Other) unless named)"),
            });
        }
    }
    doc.official(api, Some(e.doc))
}
