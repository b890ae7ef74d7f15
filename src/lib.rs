//! A typed, fast client for WeCom's WeChat Customer Service API (企业微信 · 微信客服, "kf").
//!
//! Receive customer messages with [`Client::sync_msg`], answer with [`Client::send_msg`]
//! (or a shortcut like [`Client::send_text`]) inside WeChat's 48-hour / 5-message window,
//! and greet customers with [`Client::send_msg_on_event`] and an event's one-time code.
//!
//! ```no_run
//! # async fn run() -> Result<(), wecom_kf::Error> {
//! use wecom_kf::prelude::*;
//!
//! let client = Client::builder().corp_id("ww123").secret("…").build()?;
//! let sent = client.send_text("wmUSER", "wkKFID", "您好").await?;
//! client.send_video("wmUSER", "wkKFID", "MEDIA_ID").msgid("order-42").await?;
//! client
//!     .send_msg("wmUSER", "wkKFID", OutgoingMsg::Location(Location::new(23.1, 113.3).name("广州")))
//!     .await?;
//! let page = client.sync_msg("wkKFID").token("CALLBACK_TOKEN").limit(1000).await?;
//! for m in page.msg_list {
//!     match m.content {
//!         Received::Text(t) => println!("{}", t.content),
//!         Received::Event(Event::EnterSession(e)) => println!("welcome code {:?}", e.welcome_code),
//!         Received::Unknown { msgtype, raw } => println!("kept a {msgtype}: {raw}"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Whatever a customer sends as a file (image, voice, video, file), [`ReceivedMsg::media_id`]
//! names it and [`Client::download_media`] fetches it, into memory under a cap or streamed
//! into a writer, in ranges, resumable; [`Client::send_media`] uploads and sends one.
//!
//! To consume an account's messages without ever skipping one, use [`SyncStream`]: it
//! follows `has_more`, and commits each page's cursor to a [`CursorStore`] only after your
//! handler returned `Ok`, so a crash or an error resumes at the page that failed.
//!
//! ```no_run
//! # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use wecom_kf::{FileCursorStore, SyncStream};
//!
//! let sync = SyncStream::new(client, FileCursorStore::new("cursors")?);
//! sync.callback_token("wkKFID", "TOKEN_FROM_THE_CALLBACK");
//! sync.run("wkKFID", |page| async move {
//!     for m in &page.messages {
//!         println!("{}: {:?}", m.msgid, m.content);
//!     }
//!     Ok::<_, std::io::Error>(())
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! The bot runtime ([`bot`], feature `bot`), replying within WeCom's rules ([`reply`],
//! feature `reply`), callbacks ([`callback`], feature `callback`) and metrics (feature
//! `metrics`) are default features; a program that only calls the API builds without them
//! (`default-features = false, features = ["native-tls"]`) and compiles less.
//!
//! Everything API-specific is generated at compile time from `endpoints.toml` by
//! [`endpoints!`]: request types, message types, builders, [`ErrCode`] and the client
//! methods. Limits from that file are checked before anything is sent
//! ([`Error::Invalid`]); errors say whether the request may have arrived
//! ([`Error::Transport`]); secrets and tokens never appear in `Debug`, errors or logs.

#![warn(missing_docs)]

extern crate self as wecom_kf;

#[cfg(feature = "bot")]
pub mod bot;
#[cfg(feature = "callback")]
pub mod callback;
pub mod client;
mod encode;
mod error;
#[cfg(feature = "reply")]
mod map;
pub mod media;
mod mutex;
mod observe;
pub mod prelude;
mod raw_json;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "reply")]
pub mod reply;
mod retry;
mod rt;
mod secret;
pub mod sync;
pub mod token;
#[cfg(feature = "callback-server")]
mod unwind;
mod upload;
mod validate;

pub use client::{Client, ClientBuilder};
pub use error::{Delivery, Error, RetryClass};
pub use raw_json::RawJson;
pub use retry::RetryPolicy;
pub use rt::endpoint::Request;
pub use secret::Secret;
pub use sync::{CursorStore, FileCursorStore, MemoryCursorStore, SyncStream};
pub use token::{MemoryTokenStore, TokenStore};
pub use types::ErrCode;
pub use upload::Upload;
pub use validate::{Invalid, Validate};

/// Generates typed requests, builders and client methods from an API file.
///
/// `wecom_kf::endpoints!("their.toml")` reads the file (relative to the crate's
/// `Cargo.toml`; `relative_to = SourceFile` resolves it beside the calling file) and emits,
/// where it is called, the modules `types` (the file's data types and request bodies) and
/// `builders` (what the methods return), plus a trait, `ClientExt` by default
/// (`methods = trait MyApi` names it), that adds one method per endpoint to [`Client`]. The
/// file format is the one of this crate's own `endpoints.toml`, documented in
/// `docs/endpoints-toml.md`. A mistake in the file is a compile error that names the file,
/// line and column.
///
/// Error codes are this crate's: a user's file lists the codes an endpoint returns in its
/// `errors`, but has no `[[error]]` tables, because the client classifies every answer
/// (retry, refresh the token, give up) with [`ErrCode`], which keeps codes it doesn't name
/// as [`ErrCode::Other`].
///
/// If the dependency is renamed (`kf = { package = "wecom-kf", … }`), say so with
/// `crate = ::kf`.
///
/// ```ignore
/// wecom_kf::endpoints!("idconvert.toml");
/// use ClientExt as _;
/// let converted = client.convert_open_kfid(["wkCORP1"]).await?;
/// ```
pub use kf_macros::endpoints;

// `types` and `builders`: the API of `endpoints.toml`. Inside the crate, the runtime names
// the generated types by their short names.
kf_macros::endpoints!("endpoints.toml", methods = inherent);
pub(crate) use types::*;

/// The README's examples compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// What generated code uses, under one path so a user's crate needs no extra dependency
/// for `endpoints!` to compile. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use core::fmt;
    pub use core::future::IntoFuture;

    pub use serde;
    pub use serde_json;
    pub use serde_json::Value;

    pub use tokio::io::AsyncWrite;

    pub use crate::error::RetryClass;
    pub use crate::media::{DownloadOptions, Downloaded, Media, MediaChunks, MediaType};
    pub use crate::rt::endpoint::{
        Ack, Auth, BoxFuture, Endpoint, FileRequest, HttpMethod, RawCall, Request,
    };
    pub use crate::rt::json::{
        Entries, FromEntries, InPass, Item, Key, Keyed, KeyedPayload, Tagged, TextOrNumber,
        deserialize_keyed, deserialize_union, from_text, inline_in_place, lenient_flat,
        optional_text_or_number, read_item, read_page, read_prefix, set_once, set_text_once,
        text_or_number, union_in_place, value_of,
    };
    pub use crate::rt::rules::{
        DayRule, ItemsRule, NumberRule, OverLimit, RangeRule, SizeRule, StringRule,
    };
    pub use crate::secret::Redacted;
    pub use crate::validate::{Invalid, Validate};
    pub use crate::{Client, ErrCode, Error, RawJson, Secret, Upload};
    pub use serde::de::{IgnoredAny, MapAccess, Visitor};
}
