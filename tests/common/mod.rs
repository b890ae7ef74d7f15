//! A scriptable stand-in for WeCom's HTTP API, for tests that need a real server.
//!
//! It issues access tokens, checks them on every call, records every request, and answers
//! from a per-path script (falling back to a success body), so a test can make WeCom busy,
//! slow, or refuse a token at a chosen moment.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[cfg(all(feature = "callback-server", feature = "sim"))]
pub mod callbacks;
#[cfg(feature = "redis")]
pub mod redis_server;

pub const CORP_ID: &str = "ww-test-corp";
pub const SECRET: &str = "s3cr3t-VALUE-never-printed";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET` or `POST`.
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// Header names are lowercase; a header sent twice keeps its last value.
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// The body's bytes, for bodies that aren't JSON (multipart uploads).
    pub raw_body: Bytes,
}

/// What the server answers to the next request on a path.
#[derive(Debug, Clone)]
pub enum Reply {
    Json(Value),
    /// Wait, then answer (to trip client timeouts).
    Delayed(Duration, Value),
    Status(u16),
    /// Close the connection without answering.
    Hangup,
}

/// Answers every request to a path from the request itself (paging, say).
pub type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Recorded>>,
    gettoken_calls: AtomicUsize,
    tokens_issued: AtomicUsize,
    /// Valid tokens; a token mapped to Some(code) is refused with that code.
    tokens: Mutex<HashMap<String, Option<i64>>>,
    scripts: Mutex<HashMap<String, VecDeque<Reply>>>,
    responders: Mutex<HashMap<String, Responder>>,
    gettoken_delay: Mutex<Duration>,
    /// The `expires_in` gettoken answers with; 7200 when unset.
    expires_in: Mutex<Option<Value>>,
}

#[derive(Clone)]
pub struct MockServer {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl MockServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::serve(listener).await
    }

    pub async fn serve(listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(handle)
            // Uploads go up to 20 MB; axum's default stops at 2 MB.
            .layer(axum::extract::DefaultBodyLimit::max(32 << 20))
            .with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        MockServer { addr, inner }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/cgi-bin/", self.addr)
    }

    /// A client for this server with fast retries.
    pub fn client(&self) -> wecom_kf::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> wecom_kf::ClientBuilder {
        wecom_kf::Client::builder()
            .corp_id(CORP_ID)
            .secret(SECRET)
            .base_url(self.base_url())
            .retry_policy(wecom_kf::RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            })
    }

    pub fn script(&self, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.inner
            .scripts
            .lock()
            .unwrap()
            .entry(path.to_owned())
            .or_default()
            .extend(replies);
    }

    /// Answers requests to `path` with `responder` once its script is used up.
    pub fn respond_with(
        &self,
        path: &str,
        responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) {
        self.inner
            .responders
            .lock()
            .unwrap()
            .insert(path.to_owned(), Arc::new(responder));
    }

    pub fn set_gettoken_delay(&self, delay: Duration) {
        *self.inner.gettoken_delay.lock().unwrap() = delay;
    }

    /// Answers later gettoken calls with this `expires_in` (any JSON value) instead of 7200.
    pub fn set_token_expires_in(&self, expires_in: Value) {
        *self.inner.expires_in.lock().unwrap() = Some(expires_in);
    }

    pub fn gettoken_calls(&self) -> usize {
        self.inner.gettoken_calls.load(Ordering::SeqCst)
    }

    /// Every token issued so far is refused from now on with `code` (42001, 40014 or 41001).
    pub fn refuse_tokens(&self, code: i64) {
        for v in self.inner.tokens.lock().unwrap().values_mut() {
            *v = Some(code);
        }
    }

    /// Accepts `token` as if this server had issued it: a token another process fetched
    /// and shared through a token store.
    pub fn accept_token(&self, token: &str) {
        self.inner
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), None);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Requests to `path`, not counting gettoken.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let recorded = Recorded {
        method: method.as_str().to_owned(),
        path: path.clone(),
        query: query.clone(),
        headers,
        body: body_json,
        raw_body: body.clone(),
    };
    inner.requests.lock().unwrap().push(recorded.clone());
    if path == "/cgi-bin/gettoken" {
        inner.gettoken_calls.fetch_add(1, Ordering::SeqCst);
        let delay = *inner.gettoken_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        // A script for gettoken (`script("/cgi-bin/gettoken", …)`) answers first.
        let scripted = inner
            .scripts
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(VecDeque::pop_front);
        if let Some(Reply::Json(v)) = scripted {
            return axum::Json(v).into_response();
        }
        if query.get("corpid").map(String::as_str) != Some(CORP_ID)
            || query.get("corpsecret").map(String::as_str) != Some(SECRET)
        {
            return axum::Json(json!({"errcode": 40001, "errmsg": "invalid credential"}))
                .into_response();
        }
        let n = inner.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("ACCESS_TOKEN_{n}_xyz");
        inner.tokens.lock().unwrap().insert(token.clone(), None);
        let expires_in = inner.expires_in.lock().unwrap().clone();
        let expires_in = expires_in.unwrap_or_else(|| json!(7200));
        return axum::Json(
            json!({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}),
        )
        .into_response();
    }
    let token_state = query
        .get("access_token")
        .and_then(|t| inner.tokens.lock().unwrap().get(t).copied());
    match token_state {
        None if query.contains_key("access_token") => {
            return axum::Json(json!({"errcode": 40014, "errmsg": "invalid access_token"}))
                .into_response();
        }
        None => {
            return axum::Json(json!({"errcode": 41001, "errmsg": "access_token missing"}))
                .into_response();
        }
        Some(Some(code)) => {
            return axum::Json(json!({"errcode": code, "errmsg": "access_token refused"}))
                .into_response();
        }
        Some(None) => {}
    }
    let scripted = inner
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let responder = inner.responders.lock().unwrap().get(&path).cloned();
    let reply = scripted.or_else(|| responder.map(|respond| respond(&recorded)));
    match reply {
        Some(Reply::Json(v)) => axum::Json(v).into_response(),
        Some(Reply::Delayed(d, v)) => {
            tokio::time::sleep(d).await;
            axum::Json(v).into_response()
        }
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::Hangup) => hang_up(),
        None => axum::Json(default_reply(&path)).into_response(),
    }
}

fn default_reply(path: &str) -> Value {
    match path {
        "/cgi-bin/kf/sync_msg" => json!({
            "errcode": 0, "errmsg": "ok", "next_cursor": "CURSOR_1", "has_more": 0,
            "msg_list": [{"msgid": "m1", "open_kfid": "wk1", "external_userid": "wm1",
                          "send_time": 1615478585, "origin": 3, "msgtype": "text", "text": {"content": "hello"}}]
        }),
        "/cgi-bin/kf/send_msg" | "/cgi-bin/kf/send_msg_on_event" => {
            json!({"errcode": 0, "errmsg": "ok", "msgid": "MSG_ID_FROM_SERVER"})
        }
        _ => json!({"errcode": 0, "errmsg": "ok"}),
    }
}

/// Ends the connection without a response: hyper drops a connection whose handler panics.
/// The panic message is filtered from test output by [`quiet_hangups`].
fn hang_up() -> Response {
    std::panic::panic_any(Hangup)
}

struct Hangup;

/// Keeps the deliberate panics of [`Reply::Hangup`] out of the test output.
pub fn quiet_hangups() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Hangup>().is_none() {
                default(info);
            }
        }));
    });
}

/// A small seeded xorshift generator for the fuzz tests, so a failure can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
