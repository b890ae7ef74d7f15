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

#[cfg(feature = "callback-server")]
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
    /// Any status, headers and body: a file, or JSON with another content type.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// A body sent in parts as they come: each `Part::Wait` holds the rest back until
    /// notified. A `Content-Length` in `headers` above what the parts hold cuts the
    /// connection at their end, as a broken transfer does.
    Streamed {
        status: u16,
        headers: Vec<(String, String)>,
        parts: Vec<Part>,
    },
}

/// A piece of a [`Reply::Streamed`] body.
#[derive(Debug, Clone)]
pub enum Part {
    Bytes(Bytes),
    /// Send nothing more until this is notified.
    Wait(Arc<tokio::sync::Notify>),
}

/// A temporary media file `media/get` serves once [`MockServer::serve_media`] has it.
#[derive(Debug, Clone)]
pub struct MediaFile {
    pub bytes: Bytes,
    pub content_type: String,
    /// The `Content-Disposition` header, if any.
    pub disposition: Option<String>,
    /// Answer a `Range` with 206 and that range, as WeCom does; `false` sends the whole
    /// file (200) whatever was asked, as a server that ignores ranges would.
    pub ranges: bool,
    /// Cut the first answer after this many of its bytes (its full length still announced),
    /// once the `Notify` is notified: a test lets the bytes reach the client first.
    pub cut_first: Option<(usize, Arc<tokio::sync::Notify>)>,
}

impl MediaFile {
    pub fn new(bytes: impl Into<Bytes>, content_type: &str) -> Self {
        MediaFile {
            bytes: bytes.into(),
            content_type: content_type.to_owned(),
            disposition: None,
            ranges: true,
            cut_first: None,
        }
    }

    pub fn disposition(mut self, value: &str) -> Self {
        self.disposition = Some(value.to_owned());
        self
    }

    /// Cuts the first answer after `after` bytes, once `when` is notified.
    pub fn cut_first(mut self, after: usize, when: Arc<tokio::sync::Notify>) -> Self {
        self.cut_first = Some((after, when));
        self
    }
}

/// The largest range `media/get` serves, and the largest file it serves without one:
/// WeCom's 20 MB (doc 96486), past which it answers 830002.
pub const MEDIA_RANGE_LIMIT: usize = 20 << 20;

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
    /// What `media/get` serves, by `media_id`; with none, it answers like any path.
    media: Mutex<HashMap<String, MediaFile>>,
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

    /// Serves `file` at `media/get?media_id=<media_id>`, honouring `Range` like WeCom; other
    /// ids answer 40007 from then on.
    pub fn serve_media(&self, media_id: &str, file: MediaFile) {
        self.inner
            .media
            .lock()
            .unwrap()
            .insert(media_id.to_owned(), file);
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
    let reply = scripted
        .or_else(|| responder.map(|respond| respond(&recorded)))
        .or_else(|| media_reply(&inner, &recorded));
    match reply {
        Some(Reply::Json(v)) => axum::Json(v).into_response(),
        Some(Reply::Delayed(d, v)) => {
            tokio::time::sleep(d).await;
            axum::Json(v).into_response()
        }
        Some(Reply::Status(code)) => StatusCode::from_u16(code).unwrap().into_response(),
        Some(Reply::Hangup) => hang_up(),
        Some(Reply::Raw {
            status,
            headers,
            body,
        }) => with_head(status, &headers)
            .body(axum::body::Body::from(body))
            .unwrap(),
        Some(Reply::Streamed {
            status,
            headers,
            parts,
        }) => with_head(status, &headers)
            .body(streamed_body(parts))
            .unwrap(),
        None => axum::Json(default_reply(&path)).into_response(),
    }
}

fn with_head(status: u16, headers: &[(String, String)]) -> axum::http::response::Builder {
    headers.iter().fold(
        axum::http::Response::builder().status(status),
        |builder, (name, value)| builder.header(name.as_str(), value.as_str()),
    )
}

/// A body written by a task of its own, part by part, ending when the parts do.
fn streamed_body(parts: Vec<Part>) -> axum::body::Body {
    use tokio::io::AsyncWriteExt as _;
    let (mut writer, reader) = tokio::io::duplex(64 << 10);
    tokio::spawn(async move {
        for part in parts {
            match part {
                Part::Bytes(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Part::Wait(gate) => gate.notified().await,
            }
        }
    });
    axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader))
}

/// `media/get` for the files of [`MockServer::serve_media`], as WeCom answers it: a JSON
/// error on HTTP 200 for an unknown id (40007) or an unranged request past 20 MB (830002),
/// 206 with `Content-Range` for a range, 416 for one past the end.
fn media_reply(inner: &Inner, request: &Recorded) -> Option<Reply> {
    if request.path != "/cgi-bin/media/get" {
        return None;
    }
    let mut media = inner.media.lock().unwrap();
    if media.is_empty() {
        return None;
    }
    let id = request.query.get("media_id").cloned().unwrap_or_default();
    let Some(file) = media.get_mut(&id) else {
        return Some(Reply::Json(
            json!({"errcode": 40007, "errmsg": "invalid media_id"}),
        ));
    };
    let len = file.bytes.len();
    let asked = request
        .headers
        .get("range")
        .filter(|_| file.ranges)
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.split_once('-'))
        .and_then(|(first, last)| {
            let first: usize = first.parse().ok()?;
            let last = if last.is_empty() {
                len.saturating_sub(1)
            } else {
                last.parse::<usize>().ok()?.min(len.saturating_sub(1))
            };
            Some((first, last))
        });
    let mut headers = vec![("content-type".to_owned(), file.content_type.clone())];
    if let Some(disposition) = &file.disposition {
        headers.push(("content-disposition".to_owned(), disposition.clone()));
    }
    let (status, body) = match asked {
        Some((first, last)) if first >= len || last < first => {
            headers.push(("content-range".to_owned(), format!("bytes */{len}")));
            return Some(Reply::Raw {
                status: 416,
                headers,
                body: Bytes::new(),
            });
        }
        Some((first, last)) if last + 1 - first > MEDIA_RANGE_LIMIT => {
            return Some(Reply::Json(
                json!({"errcode": 830002, "errmsg": "range too large"}),
            ));
        }
        Some((first, last)) => {
            headers.push((
                "content-range".to_owned(),
                format!("bytes {first}-{last}/{len}"),
            ));
            (206, file.bytes.slice(first..=last))
        }
        None if len > MEDIA_RANGE_LIMIT && file.ranges => {
            return Some(Reply::Json(
                json!({"errcode": 830002, "errmsg": "file too large, use range"}),
            ));
        }
        None => (200, file.bytes.clone()),
    };
    headers.push(("content-length".to_owned(), body.len().to_string()));
    Some(match file.cut_first.take() {
        Some((after, when)) => Reply::Streamed {
            status,
            headers,
            parts: vec![
                Part::Bytes(body.slice(..after.min(body.len()))),
                Part::Wait(when),
            ],
        },
        None => Reply::Raw {
            status,
            headers,
            body,
        },
    })
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

/// JSON to compare bodies with: numbers by value (`0` equals `0.0`), everything else
/// exactly.
pub fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
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
