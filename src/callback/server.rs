//! An axum router for WeCom's callback URL (feature `callback-server`).
//!
//! It answers the URL check, and answers each `kf_msg_or_event` POST at once, before any
//! pulling: WeCom retries a callback that isn't answered within 5 seconds. The callback's
//! token goes to the [`SyncStream`] (the newest per account), and a background task pulls
//! the account's messages into your handler. Callbacks that arrive while that account is
//! being pulled don't start a second pull; they make the running one go round once more,
//! so a retried or repeated callback never hands the same messages over twice. A copy of
//! a callback already taken (same signature and nonce, see [`CallbackCrypto`]) is answered
//! 200 and otherwise ignored.
//!
//! The router bounds what it reads itself ([`Limits`]: 64 KiB within 10 s, answered 413
//! and 408 past that), whatever body limit the rest of the app sets; [`serve`] serves it
//! with a timeout on request headers too, which `axum::serve` doesn't have. Refusals are
//! logged at `warn` at most once every 10 s (with a count of the others, logged at
//! `debug`), so unsigned requests can't flood the log.
//!
//! ```no_run
//! # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use wecom_kf::callback::{CallbackCrypto, server};
//! use wecom_kf::{MemoryCursorStore, SyncStream};
//!
//! let crypto = CallbackCrypto::new("TOKEN", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwCORPID")?;
//! let sync = Arc::new(SyncStream::new(client, MemoryCursorStore::new()));
//! let app = axum::Router::new().nest(
//!     "/wecom/kf",
//!     server::router(crypto, sync, |page: wecom_kf::Page| async move {
//!         println!("{} new items", page.messages.len());
//!         Ok::<_, std::io::Error>(())
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! server::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{CallbackCrypto, CallbackError, CallbackEvent};
use crate::{CursorStore, Page, SyncStream};

mod limits;
mod serve;

pub use limits::Limits;
use limits::{RefusalLog, read_body};
pub use serve::{HEADER_READ_TIMEOUT, Serve, serve};

/// The query of both the URL check (with `echostr`) and callback POSTs.
#[derive(Deserialize)]
struct Signed {
    msg_signature: String,
    timestamp: String,
    nonce: String,
    #[serde(default)]
    echostr: Option<String>,
}

/// Shared by the routes: the crypto, the stream, the handler and who is pulling.
struct Callbacks<S, H> {
    crypto: CallbackCrypto,
    sync: Arc<SyncStream<S>>,
    handler: H,
    limits: Limits,
    refusals: RefusalLog,
    /// Accounts being pulled, and whether another callback came in meanwhile.
    pulling: Mutex<HashMap<String, bool>>,
}

/// A router to mount at the callback URL: `GET` answers the URL check, `POST` takes
/// callbacks. Refused requests (bad signature, tampered payload) get 403; bodies past the
/// default [`Limits`] get 413 or 408.
pub fn router<S, H, F, E>(
    crypto: CallbackCrypto,
    sync: Arc<SyncStream<S>>,
    handler: H,
) -> axum::Router
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    router_with_limits(crypto, sync, handler, Limits::default())
}

/// [`router`], reading callback bodies within `limits`.
pub fn router_with_limits<S, H, F, E>(
    crypto: CallbackCrypto,
    sync: Arc<SyncStream<S>>,
    handler: H,
    limits: Limits,
) -> axum::Router
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let state = Arc::new(Callbacks {
        crypto,
        sync,
        handler,
        limits,
        refusals: RefusalLog::new(),
        pulling: Mutex::default(),
    });
    axum::Router::new()
        .route("/", get(verify_url::<S, H>).post(callback::<S, H, F, E>))
        .with_state(state)
}

async fn verify_url<S, H>(
    State(state): State<Arc<Callbacks<S, H>>>,
    Query(q): Query<Signed>,
) -> Response {
    let Some(echostr) = q.echostr else {
        return (StatusCode::BAD_REQUEST, "missing echostr").into_response();
    };
    match state
        .crypto
        .verify_url(&q.msg_signature, &q.timestamp, &q.nonce, &echostr)
    {
        Ok(reply) => reply.into_response(),
        Err(error) => {
            state
                .refusals
                .refused("refused a callback URL check", &error);
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn callback<S, H, F, E>(
    State(state): State<Arc<Callbacks<S, H>>>,
    Query(q): Query<Signed>,
    body: Body,
) -> Response
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    // Read here, not by an extractor, so no outer body limit (or its absence) applies.
    let body = match read_body(body, state.limits).await {
        Ok(body) => body,
        Err(unread) => {
            state
                .refusals
                .refused("refused a callback body", &unread.reason());
            return unread.into_response();
        }
    };
    match state
        .crypto
        .open(&q.msg_signature, &q.timestamp, &q.nonce, &body)
    {
        Ok(CallbackEvent::KfMsgOrEvent(event)) => {
            state
                .sync
                .callback_token(&event.open_kfid, event.token.expose());
            pull_in_background(state, event.open_kfid);
            StatusCode::OK.into_response()
        }
        Ok(CallbackEvent::Other { event, .. }) => {
            tracing::debug!(
                event = event.as_deref().unwrap_or(""),
                "ignored a callback event"
            );
            StatusCode::OK.into_response()
        }
        // A copy of a callback already taken (a retry of one whose answer WeCom missed, or
        // a replay): answered, as the first one was, and not acted on again.
        Err(CallbackError::Replayed) => {
            tracing::debug!("ignored a callback already taken");
            StatusCode::OK.into_response()
        }
        Err(error) => {
            state.refusals.refused("refused a callback", &error);
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

fn pull_in_background<S, H, F, E>(state: Arc<Callbacks<S, H>>, open_kfid: String)
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    {
        let mut pulling = state.pulling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(again) = pulling.get_mut(&open_kfid) {
            *again = true;
            return;
        }
        pulling.insert(open_kfid.clone(), false);
    }
    tokio::spawn(async move {
        loop {
            if let Err(error) = state.sync.run(&open_kfid, state.handler.clone()).await {
                tracing::warn!(%error, open_kfid, "background sync stopped; the next callback resumes it");
            }
            let mut pulling = state.pulling.lock().unwrap_or_else(|p| p.into_inner());
            match pulling.get_mut(&open_kfid) {
                Some(again) if *again => *again = false,
                _ => {
                    pulling.remove(&open_kfid);
                    return;
                }
            }
        }
    });
}
