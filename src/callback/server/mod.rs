//! An axum router for WeCom's callback URL (feature `callback-server`).
//!
//! It answers the URL check, and answers each `kf_msg_or_event` POST at once, before any
//! pulling: WeCom retries a callback that isn't answered within 5 seconds. The callback's
//! token goes to the [`SyncStream`] (the newest per account), and a background task pulls
//! the account's messages into your handler. Callbacks that arrive while that account is
//! being pulled don't start a second pull; the running one pulls again before it stops, so
//! a retried or repeated callback never hands the same messages over twice, and none is
//! left unpulled. A run that fails or panics is tried again a few times with backoff; a
//! run deferred to another replica checks, once that replica's lock could have expired,
//! that it committed the callback, and takes over if not. A copy of a callback already
//! taken (same signature and nonce, see [`CallbackCrypto`]) is answered 200 and otherwise
//! ignored.
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
//!     server::router(crypto, sync, |page: wecom_kf::sync::Page| async move {
//!         println!("{} new items", page.messages.len());
//!         Ok::<_, std::io::Error>(())
//!     }),
//! );
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! server::serve(listener, app).await?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{CallbackCrypto, CallbackError, CallbackEvent};
use crate::error::chain;
use crate::mutex::lock;
use crate::sync::{Page, SyncError};
use crate::{CursorStore, SyncStream};

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

/// What the router hands every callback that isn't `kf_msg_or_event` to.
type OtherCallbackHook = Arc<dyn Fn(CallbackEvent) + Send + Sync>;

/// How a [`router_with`] reads and hands over callbacks: its [`Limits`], and a hook for
/// the callbacks that aren't `kf_msg_or_event` (a component app's
/// [`KfAccountAuthChange`](super::KfAccountAuthChange), events this crate doesn't know),
/// which are otherwise logged at `debug` and answered 200.
#[derive(Clone, Default)]
pub struct RouterOptions {
    limits: Limits,
    on_other_callback: Option<OtherCallbackHook>,
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field("limits", &self.limits)
            .field("on_other_callback", &self.on_other_callback.is_some())
            .finish()
    }
}

impl RouterOptions {
    /// Reads callback bodies within `limits` ([`Limits::default`] otherwise).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Hands every callback that isn't `kf_msg_or_event` to `hook`, typed, after it was
    /// answered. A hook that panics is logged; the router goes on.
    pub fn on_other_callback(
        mut self,
        hook: impl Fn(CallbackEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_other_callback = Some(Arc::new(hook));
        self
    }
}

/// Shared by the routes: the crypto, the stream, the handler and who is pulling.
struct Callbacks<S, H> {
    crypto: CallbackCrypto,
    sync: Arc<SyncStream<S>>,
    handler: H,
    limits: Limits,
    on_other_callback: Option<OtherCallbackHook>,
    refusals: RefusalLog,
    /// Accounts a background task is pulling.
    pulling: Mutex<HashSet<String>>,
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
    router_with(
        crypto,
        sync,
        handler,
        RouterOptions::default().limits(limits),
    )
}

/// [`router`] with `options`: its limits and the hook for other callbacks.
pub fn router_with<S, H, F, E>(
    crypto: CallbackCrypto,
    sync: Arc<SyncStream<S>>,
    handler: H,
    options: RouterOptions,
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
        limits: options.limits,
        on_other_callback: options.on_other_callback,
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
            state.sync.callback(&event);
            pull_in_background(state, event.open_kfid);
            StatusCode::OK.into_response()
        }
        Ok(other) => {
            match &state.on_other_callback {
                Some(hook) => {
                    let hook = hook.clone();
                    let handed =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(other)));
                    if handed.is_err() {
                        tracing::error!("the hook for other callbacks panicked");
                    }
                }
                None => tracing::debug!(?other, "ignored a callback event"),
            }
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

/// A run that failed (or panicked) is tried again this many times, with backoff, before the
/// account waits for its next callback.
const FAILED_RUN_RETRIES: u32 = 3;

fn pull_in_background<S, H, F, E>(state: Arc<Callbacks<S, H>>, open_kfid: String)
where
    S: CursorStore + 'static,
    H: Fn(Page) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + Send + 'static,
{
    // A task already pulling this account sees this callback (`SyncStream::pending`)
    // before it stops: it checks under this same lock.
    if !lock(&state.pulling).insert(open_kfid.clone()) {
        return;
    }
    tokio::spawn(async move {
        let mut entry = PullingEntry {
            pulling: Some((state.clone(), open_kfid.clone())),
        };
        let mut failures = 0;
        loop {
            // A handler that panics ends its run only, caught here.
            let handler = state.handler.clone();
            let run = crate::unwind::caught(state.sync.run(&open_kfid, handler));
            let outcome = match run.await {
                Ok(outcome) => outcome.map_err(|e| describe(&e)),
                Err(()) => Err("the handler panicked".to_owned()),
            };
            match outcome {
                Ok(summary) if summary.deferred => {
                    // Another process holds the account and has this callback; should it
                    // die before pulling, its lock expires and this process takes over.
                    failures = 0;
                    tokio::time::sleep(state.sync.takeover_after()).await;
                    match state.sync.shared_pending(&open_kfid).await {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(error) => {
                            tracing::warn!(%error, open_kfid, "could not check the holder's progress");
                        }
                    }
                }
                Ok(_) => failures = 0,
                Err(error) if failures < FAILED_RUN_RETRIES => {
                    failures += 1;
                    tracing::warn!(%error, open_kfid, attempt = failures, "background sync failed; trying again");
                    tokio::time::sleep(Duration::from_secs(1) * 2u32.pow(failures - 1)).await;
                    continue;
                }
                Err(error) => {
                    tracing::error!(%error, open_kfid, "background sync keeps failing; the next callback resumes it");
                    return;
                }
            }
            let mut pulling = lock(&state.pulling);
            if state.sync.pending(&open_kfid) {
                continue;
            }
            pulling.remove(&open_kfid);
            entry.pulling = None;
            return;
        }
    });
}

/// Takes the account out of `pulling` however its task ends, panics included, so the next
/// callback starts a new one.
struct PullingEntry<S, H> {
    pulling: Option<(Arc<Callbacks<S, H>>, String)>,
}

impl<S, H> Drop for PullingEntry<S, H> {
    fn drop(&mut self) {
        if let Some((state, open_kfid)) = self.pulling.take() {
            lock(&state.pulling).remove(&open_kfid);
        }
    }
}

/// A failed run's error with the error it wraps, for the log.
fn describe<E: Display>(error: &SyncError<E>) -> String {
    match error {
        SyncError::Handler(cause) => format!("{error}: {cause}"),
        SyncError::Client(cause) => format!("{error}: {}", chain(cause)),
        SyncError::Store(cause) | SyncError::Observer(cause) => {
            format!("{error}: {}", chain(&**cause))
        }
        other => other.to_string(),
    }
}
