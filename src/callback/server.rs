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
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{CallbackCrypto, CallbackError, CallbackEvent};
use crate::{CursorStore, Page, SyncStream};

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
    /// Accounts being pulled, and whether another callback came in meanwhile.
    pulling: Mutex<HashMap<String, bool>>,
}

/// A router to mount at the callback URL: `GET` answers the URL check, `POST` takes
/// callbacks. Refused requests (bad signature, tampered payload) get 403.
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
    let state = Arc::new(Callbacks {
        crypto,
        sync,
        handler,
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
            tracing::warn!(%error, "refused a callback URL check");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn callback<S, H, F, E>(
    State(state): State<Arc<Callbacks<S, H>>>,
    Query(q): Query<Signed>,
    body: String,
) -> Response
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
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
            tracing::warn!(%error, "refused a callback");
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
