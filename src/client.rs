//! The client: one shared HTTP connection pool, the token cache, and the request loop
//! that validates, sends, classifies the answer and retries only what is safe to retry.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument as _;

use crate::error::{Delivery, RetryClass};
use crate::observe::Attempt;
use crate::retry::{DEFAULT_CALL_DEADLINE, DEFAULT_RATE_LIMIT_BACKOFF, Retries, Wait};
use crate::rt::endpoint::{Auth, Endpoint, HttpMethod, Request};
use crate::token::{
    CorpSecret, FIRST_FAILURE_WINDOW, MemoryTokenStore, TokenCache, TokenSource, TokenStore,
};
use crate::{ErrCode, Error, Invalid, RetryPolicy, Secret};

mod json_path;

/// WeCom's API root; every endpoint path is relative to it.
pub const DEFAULT_BASE_URL: &str = "https://qyapi.weixin.qq.com/cgi-bin/";

/// The largest response body read ([`Error::TooLarge`] past it): a full `sync_msg` page of
/// 1000 items is well under a megabyte, and a proxy streaming without end must not fill
/// memory.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// A WeCom kf client. Cheap to clone: clones share the connection pool and the token.
///
/// ```no_run
/// # async fn run() -> Result<(), wecom_kf::Error> {
/// let client = wecom_kf::Client::builder().corp_id("ww123").secret("…").build()?;
/// let sent = client.send_text("wmUSER", "wkKFID", "您好").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: String,
    corp_id: String,
    /// `None` when the tokens come from a [`TokenSource`] of the caller's.
    secret: Option<Secret>,
    tokens: TokenCache,
    retries: Retries,
    request_timeout: Option<Duration>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("corp_id", &self.inner.corp_id)
            .field("secret", &self.inner.secret)
            .field("base_url", &shown_url(&self.inner.base_url))
            .field("retries", &self.inner.retries)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`]; only the corp id and the secret (or a [`TokenSource`]) are required.
#[must_use]
pub struct ClientBuilder {
    corp_id: Option<String>,
    secret: Option<Secret>,
    token_source: Option<Arc<dyn TokenSource>>,
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    rate_limit_backoff: Duration,
    call_deadline: Option<Duration>,
    token_store: Option<Arc<dyn TokenStore>>,
    refresh_margin: Duration,
    token_failure_backoff: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("corp_id", &self.corp_id)
            .field("secret", &self.secret)
            .field(
                "token_source",
                &self.token_source.as_ref().map(|_| "custom"),
            )
            .field("base_url", &shown_url(&self.base_url))
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            corp_id: None,
            secret: None,
            token_source: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(30)),
            http: None,
            retry: RetryPolicy::default(),
            rate_limit_backoff: DEFAULT_RATE_LIMIT_BACKOFF,
            call_deadline: Some(DEFAULT_CALL_DEADLINE),
            token_store: None,
            refresh_margin: Duration::from_secs(300),
            token_failure_backoff: FIRST_FAILURE_WINDOW,
        }
    }
}

impl ClientBuilder {
    /// The corp id (企业ID), `ww…`.
    pub fn corp_id(mut self, corp_id: impl Into<String>) -> Self {
        self.corp_id = Some(corp_id.into());
        self
    }

    /// The secret of the app authorised for 微信客服.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Gets access tokens from `source` instead of `gettoken` with the secret: for a service
    /// provider's or a 代开发 app's own token flow. Caching, the shared refresh, the failure
    /// window, the refresh after a refused token and the token store work as with the secret,
    /// which is then not needed.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.token_source = Some(Arc::new(source));
        self
    }

    /// Where the API lives, `https://qyapi.weixin.qq.com/cgi-bin/` by default. Point it at
    /// the simulator or a proxy; a missing trailing `/` is added.
    pub fn base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    /// How long to wait for a connection (default 10 s). Ignored with [`http_client`](Self::http_client).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take in all (default 30 s); `None` waits forever.
    pub fn request_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.request_timeout = timeout.into();
        self
    }

    /// Shares an existing `reqwest::Client` (its pool, proxy and TLS settings).
    ///
    /// Build it as the default one is: with `.redirect(reqwest::redirect::Policy::none())`
    /// and `.referer(false)`, because request URLs carry the access token or the secret and
    /// a followed redirect hands them (in the URL and the `Referer`) to another host, and a
    /// 307 posts a send again; and without a retry policy (`ClientBuilder::retry`), because
    /// this client decides what is safe to send twice. Its timeouts apply besides
    /// [`request_timeout`](Self::request_timeout).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// When to retry; see [`RetryPolicy`].
    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The first wait after WeCom's rate limit (45009) and other codes of the
    /// `rate_limited` class (default 5 s): it doubles per retry up to a minute, since such
    /// a block lasts about that long. The number of retries is the policy's.
    pub fn rate_limit_backoff(mut self, wait: Duration) -> Self {
        self.rate_limit_backoff = wait;
        self
    }

    /// How long one call may take with its retries (default 60 s): no retry starts whose
    /// wait would end past it, and the last error is returned instead. `None`: retries
    /// stop only when the policy's are used up. One attempt is bounded by
    /// [`request_timeout`](Self::request_timeout).
    pub fn call_deadline(mut self, deadline: impl Into<Option<Duration>>) -> Self {
        self.call_deadline = deadline.into();
        self
    }

    /// Where access tokens are kept (memory by default).
    pub fn token_store(mut self, store: impl TokenStore) -> Self {
        self.token_store = Some(Arc::new(store));
        self
    }

    /// Refresh tokens this long before they expire (default 5 minutes, at most half a
    /// token's lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// After a failed token fetch, how long no new fetch starts (default 1 s): calls
    /// meanwhile fail at once with [`Error::TokenUnavailable`]. The window doubles with each
    /// failure in a row, up to 5 minutes, and is shared through a token store that can.
    pub fn token_failure_backoff(mut self, window: Duration) -> Self {
        self.token_failure_backoff = window;
        self
    }

    /// The client; [`Error::Config`] when `corp_id` or the secret (or a token source) is
    /// missing, or a setting is unusable.
    pub fn build(self) -> Result<Client, Error> {
        let corp_id = self
            .corp_id
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::Config("`corp_id` is required".into()))?;
        let secret = self.secret.filter(|s| !s.expose().is_empty());
        let source: Arc<dyn TokenSource> = match (self.token_source, &secret) {
            (Some(source), _) => source,
            (None, Some(secret)) => Arc::new(CorpSecret {
                corp_id: corp_id.clone(),
                secret: secret.clone(),
            }),
            (None, None) => {
                return Err(Error::Config(
                    "`secret` is required, or a `token_source`".into(),
                ));
            }
        };
        let mut base_url = self.base_url;
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        let shown = shown_url(&base_url);
        let url = reqwest::Url::parse(&base_url)
            .map_err(|e| Error::Config(format!("invalid base URL `{shown}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "the base URL `{shown}` is not http(s)"
            )));
        }
        let http = match self.http {
            Some(http) => http,
            // No redirects and no Referer: URLs carry credentials (see `http_client`).
            None => reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .referer(false)
                .build()
                .map_err(|e| Error::Config(format!("can't build the HTTP client: {e}")))?,
        };
        let store = self
            .token_store
            .unwrap_or_else(|| Arc::new(MemoryTokenStore::new()));
        let tokens = TokenCache::new(
            store,
            source,
            self.refresh_margin,
            self.token_failure_backoff,
        );
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                corp_id,
                secret,
                tokens,
                retries: Retries {
                    policy: self.retry,
                    rate_limit_backoff: self.rate_limit_backoff,
                    deadline: self.call_deadline,
                },
                request_timeout: self.request_timeout,
            }),
        })
    }
}

/// What a request carries besides its query string; built once, sent on every attempt.
pub(crate) enum Payload {
    None,
    Json(Bytes),
    /// Each attempt builds its form again: a form is consumed by sending it.
    Multipart(Vec<(&'static str, crate::Upload)>),
}

/// The `errcode`/`errmsg` every response carries. A JSON answer without `errcode` is not
/// WeCom's (a WAF or proxy page such as `{"message":"blocked"}`), so it is no success.
#[derive(Deserialize)]
struct Envelope {
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
}

/// One HTTP exchange: a body, or the transport's failure (classified by the caller).
enum Exchange {
    /// A JSON body; with its answer's head for a binary endpoint, whose file it may be.
    Body(Bytes, Option<Head>),
    /// A binary endpoint's file, not read yet.
    File(reqwest::Response),
    Failed(reqwest::Error),
}

/// What a call ended with: WeCom's JSON answer, or the file of a binary endpoint.
pub(crate) enum Answer {
    /// The body, and for a binary endpoint the head (the body is then the file itself: a
    /// JSON-typed file, or an envelope without an error).
    Json(Bytes, Option<Head>),
    File(reqwest::Response),
}

/// The status and headers of an answer whose body was read.
pub(crate) struct Head {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
}

/// The largest answer of a binary endpoint read as a possible JSON error: WeCom's errors
/// are tens of bytes, so a larger body is the file.
const ERROR_BODY_LIMIT: u64 = 64 << 10;

impl Client {
    /// A builder: set `corp_id` and `secret`, then [`build`](ClientBuilder::build).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The corp id the client was built with.
    pub fn corp_id(&self) -> &str {
        &self.inner.corp_id
    }

    /// A valid access token, for calls the API file doesn't describe. Send it only to
    /// WeCom: a URL with the token in it, handed to anything else (a browser, an LLM, a
    /// log), works as the app's credential until the token expires. Files are fetched with
    /// [`download_media`](Self::download_media), which never hands the URL out.
    pub async fn access_token(&self) -> Result<Secret, Error> {
        self.inner.tokens.get(self).await
    }

    pub(crate) fn token_cache(&self) -> &TokenCache {
        &self.inner.tokens
    }

    /// Validates and sends a typed request body; what every generated builder calls.
    ///
    /// An endpoint with a [`retry_key`](Endpoint::retry_key) (`send_msg`'s `msgid`) gets
    /// a fresh id there first if the request has none, so every attempt carries it; the
    /// response echoes it.
    pub async fn execute<R: Request>(&self, request: &R) -> Result<R::Response, Error> {
        let endpoint = &R::ENDPOINT;
        // Only the encoding and the decoding are the request type's: the rest of the call
        // is one piece of code for every endpoint, not a copy per type in every build.
        let sent = prepare(request)?;
        let retry_id = sent.retry_id.as_deref();
        let bytes = self
            .call(endpoint, &sent.payload, &sent.query, retry_id)
            .await?;
        // A body that doesn't read the fast way is read again by serde_json, to say where
        // it broke.
        R::read_response(&bytes).or_else(|_| decode(endpoint, &bytes))
    }

    /// The retry settings every call follows (downloads too, between ranged requests).
    pub(crate) fn retries(&self) -> &Retries {
        &self.inner.retries
    }

    /// One answer of a binary endpoint, `range` asked for: through the request loop, so
    /// the token is refreshed when refused, busy answers and failed connections are
    /// retried, and a JSON error is [`Error::Api`].
    pub(crate) async fn fetch_file(
        &self,
        endpoint: &Endpoint,
        payload: &Payload,
        query: &[(String, String)],
        range: &str,
    ) -> Result<Answer, Error> {
        let mut answered_busy = false;
        self.attempts(endpoint, payload, query, Some(range), &mut answered_busy)
            .await
    }

    /// Sends a raw JSON body to an endpoint, without validation. Its retry key, if the
    /// endpoint has one, is filled as in [`execute`](Self::execute) when absent or empty.
    pub(crate) async fn execute_raw<R: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        body: &Value,
    ) -> Result<R, Error> {
        let filled = endpoint.retry_key.and_then(|key| {
            let Value::Object(fields) = body else {
                return None;
            };
            let unset = match fields.get(key) {
                None | Some(Value::Null) => true,
                Some(Value::String(id)) => id.is_empty(),
                Some(_) => false,
            };
            unset.then(|| {
                let mut fields = fields.clone();
                fields.insert(key.to_owned(), Value::String(fresh_retry_id()));
                Value::Object(fields)
            })
        });
        let body = filled.as_ref().unwrap_or(body);
        let retry_id = endpoint
            .retry_key
            .and_then(|key| body.get(key))
            .and_then(Value::as_str);
        let (payload, query) = payload(endpoint, body)?;
        let bytes = self.call(endpoint, &payload, &query, retry_id).await?;
        decode(endpoint, &bytes)
    }

    /// The request loop, and what its failure means: a request that isn't safe to
    /// repeat, answered "busy" along the way, may have taken effect whatever came after.
    async fn call(
        &self,
        endpoint: &Endpoint,
        payload: &Payload,
        query: &[(String, String)],
        retry_id: Option<&str>,
    ) -> Result<Bytes, Error> {
        let mut answered_busy = false;
        let outcome = self
            .attempts(endpoint, payload, query, None, &mut answered_busy)
            .await
            .and_then(|answer| match answer {
                Answer::Json(bytes, _) => Ok(bytes),
                // Only binary endpoints answer with a file, and they aren't `Request`s.
                Answer::File(_) => Err(Error::Decode {
                    endpoint: endpoint.name,
                    path: ".".to_owned(),
                    message: "a file where a JSON answer was expected".to_owned(),
                }),
            });
        match outcome {
            Err(cause)
                if answered_busy
                    && !endpoint.idempotent
                    && cause.delivery() == Delivery::NotSent =>
            {
                Err(Error::MaybeDelivered {
                    endpoint: endpoint.name,
                    retry_id: retry_id.map(str::to_owned),
                    cause: Box::new(cause),
                })
            }
            outcome => outcome,
        }
    }

    /// Sends until an answer with `errcode` 0 (or a file), a final error, or the retries are
    /// used up. `answered_busy` records a busy (`Backoff`) answer.
    async fn attempts(
        &self,
        endpoint: &Endpoint,
        payload: &Payload,
        query: &[(String, String)],
        range: Option<&str>,
        answered_busy: &mut bool,
    ) -> Result<Answer, Error> {
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        let mut refreshed_token = false;
        loop {
            let token = match endpoint.auth {
                Auth::AccessToken => Some(self.inner.tokens.get(self).await?),
                Auth::CorpSecret => None,
            };
            let attempt = Attempt::start(endpoint.name, retries + 1);
            let outcome = self
                .send_once(endpoint, token.as_ref(), payload, query, range)
                .instrument(attempt.span())
                .await?;
            let ended = |outcome, errcode| attempt.end(outcome, errcode);
            let (failure, class) = match outcome {
                Exchange::File(response) => {
                    ended("ok", None);
                    return Ok(Answer::File(response));
                }
                Exchange::Body(bytes, head) => {
                    let envelope = if endpoint.binary {
                        match serde_json::from_slice::<Envelope>(&bytes) {
                            Ok(envelope) => envelope,
                            // A binary endpoint's body that isn't an envelope is the file.
                            Err(_) => return Ok(Answer::Json(bytes, head)),
                        }
                    } else {
                        decode::<Envelope>(endpoint, &bytes)?
                    };
                    let errcode = match envelope.errcode {
                        Some(code) if code != 0 => code,
                        // Success; or, from a binary endpoint, a body that is the file.
                        Some(_) => {
                            ended("ok", Some(0));
                            return Ok(Answer::Json(bytes, head));
                        }
                        None if endpoint.binary => {
                            ended("ok", None);
                            return Ok(Answer::Json(bytes, head));
                        }
                        None => {
                            ended("decode", None);
                            return Err(Error::Decode {
                                endpoint: endpoint.name,
                                path: "errcode".to_owned(),
                                message: "missing: every WeCom answer carries one, so this came from something else (a proxy or firewall page?)".to_owned(),
                            });
                        }
                    };
                    ended("api", Some(errcode));
                    let code = ErrCode::from_answer(errcode, &envelope.errmsg);
                    let error = Error::Api {
                        code,
                        message: envelope.errmsg,
                    };
                    match (code.retry_class(), token) {
                        // WeCom refused the request, so sending it again is safe.
                        (RetryClass::RefreshToken, Some(stale)) if !refreshed_token => {
                            refreshed_token = true;
                            tracing::info!(
                                endpoint = endpoint.name,
                                errcode = code.value(),
                                "access token refused; refreshing once"
                            );
                            self.inner.tokens.invalidate(&stale).await?;
                            continue;
                        }
                        (RetryClass::Backoff, _) => {
                            *answered_busy = true;
                            (error, Wait::Backoff)
                        }
                        (RetryClass::RateLimited, _) => (error, Wait::RateLimited),
                        _ => return Err(error),
                    }
                }
                Exchange::Failed(error) => {
                    ended("transport", None);
                    let delivery = if error.is_connect() {
                        Delivery::NotSent
                    } else {
                        Delivery::MaybeSent
                    };
                    let error = Error::Transport {
                        endpoint: endpoint.name,
                        delivery,
                        source: error.without_url(),
                    };
                    let safe = delivery == Delivery::NotSent || endpoint.idempotent;
                    if !safe {
                        return Err(error);
                    }
                    (error, Wait::Backoff)
                }
            };
            let Some(wait) = self.inner.retries.next(class, retries, started.elapsed()) else {
                return Err(failure);
            };
            retries += 1;
            tracing::warn!(endpoint = endpoint.name, retry = retries, wait_ms = wait.as_millis() as u64, error = %failure, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt. An `Err` is ours and final: a file that can't be read (nothing was
    /// sent), a redirect or a body over [`MAX_RESPONSE_BYTES`] (an answer that isn't
    /// WeCom's); the exchange's own failures are classified by the caller.
    async fn send_once(
        &self,
        endpoint: &Endpoint,
        token: Option<&Secret>,
        payload: &Payload,
        query: &[(String, String)],
        range: Option<&str>,
    ) -> Result<Exchange, Error> {
        let mut url = format!("{}{}", self.inner.base_url, endpoint.path);
        let credentials = match (token, &self.inner.secret) {
            (Some(token), _) => vec![("access_token", token.expose())],
            (None, Some(secret)) => vec![
                ("corpid", self.inner.corp_id.as_str()),
                ("corpsecret", secret.expose()),
            ],
            (None, None) => {
                return Err(Error::Config(format!(
                    "`{}` needs the corp secret, and this client gets its tokens from a token source",
                    endpoint.name
                )));
            }
        };
        let fixed = endpoint.query.iter().copied();
        let fields = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        append_query(&mut url, credentials.into_iter().chain(fixed).chain(fields));
        let request = match (endpoint.method, payload) {
            (HttpMethod::Get, _) => self.inner.http.get(url),
            (HttpMethod::Post, Payload::Json(body)) => self
                .inner
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
            (HttpMethod::Post, Payload::Multipart(files)) => {
                let (content_type, len, body) = crate::upload::multipart_body(files).await?;
                self.inner
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(body)
            }
            (HttpMethod::Post, Payload::None) => self.inner.http.post(url),
        };
        let request = match self.inner.request_timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        };
        let request = match range {
            Some(range) => request.header(reqwest::header::RANGE, range),
            None => request,
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Ok(Exchange::Failed(error)),
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(Error::Redirected {
                endpoint: endpoint.name,
                status: status.as_u16(),
            });
        }
        if endpoint.binary {
            // 206 is a range of the file, 416 a range past its end: the download reads them.
            let ranged = matches!(status.as_u16(), 206 | 416);
            if ranged || (status.is_success() && !may_be_json_error(&response)) {
                return Ok(Exchange::File(response));
            }
        }
        let response = match response.error_for_status() {
            Ok(response) => response,
            Err(error) => return Ok(Exchange::Failed(error)),
        };
        let head = endpoint.binary.then(|| Head {
            status: response.status(),
            headers: response.headers().clone(),
        });
        match read_capped(endpoint, response).await? {
            Ok(bytes) => Ok(Exchange::Body(bytes, head)),
            Err(error) => Ok(Exchange::Failed(error)),
        }
    }
}

/// A fresh id for a [`retry_key`](Endpoint::retry_key): 32 hex digits of randomness,
/// within `msgid`'s 32 bytes of `[0-9a-zA-Z_-]`.
pub(crate) fn fresh_retry_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: std's randomly keyed hasher (new keys per call) still gives
        // ids that don't repeat.
        use std::hash::{BuildHasher as _, Hasher as _};
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_usize(i);
            chunk.copy_from_slice(&hasher.finish().to_le_bytes());
        }
    }
    crate::encode::hex(&bytes)
}

/// Whether a binary endpoint's answer may be WeCom's JSON error rather than the file: no
/// `Content-Disposition`, a JSON or plain-text type (WeCom sends errors as both), and small.
fn may_be_json_error(response: &reqwest::Response) -> bool {
    let headers = response.headers();
    let textual = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .map(str::to_ascii_lowercase)
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/plain"));
    let small = response
        .content_length()
        .is_none_or(|len| len <= ERROR_BODY_LIMIT);
    !headers.contains_key(reqwest::header::CONTENT_DISPOSITION) && textual && small
}

/// The body, up to [`MAX_RESPONSE_BYTES`]: a `Content-Length` above it is refused before
/// reading, and a body without one stops being read at the cap. The inner error is the
/// transport's, for the caller to classify.
async fn read_capped(
    endpoint: &Endpoint,
    mut response: reqwest::Response,
) -> Result<Result<Bytes, reqwest::Error>, Error> {
    let too_large = || Error::TooLarge {
        endpoint: endpoint.name,
        limit: MAX_RESPONSE_BYTES,
    };
    let declared = response.content_length();
    if declared.is_some_and(|len| len > MAX_RESPONSE_BYTES as u64) {
        return Err(too_large());
    }
    // At most the cap: the declared length is the server's word.
    let expected = declared.map_or(0, |len| usize::try_from(len).unwrap_or(0));
    let mut body = Vec::with_capacity(expected.min(MAX_RESPONSE_BYTES));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Ok(Bytes::from(body))),
            Err(error) => return Ok(Err(error)),
        }
    }
}

/// A URL as errors and `Debug` show it: without credentials (`user:pass@`), a query or a
/// fragment, which a proxy or gateway URL may carry. Works on text that doesn't parse.
fn shown_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rfind('@') {
        // `@` is one byte, so `at + 1` is a char boundary.
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    format!("{scheme}{host}{path}")
}

fn append_query<'a>(url: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    for (i, (key, value)) in pairs.enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(key);
        url.push('=');
        // Everything but RFC 3986's unreserved characters is escaped.
        crate::encode::percent_encode(url, value, b"-_.~");
    }
}

/// What a typed request sends: its payload, query parameters and retry id.
struct Prepared {
    payload: Payload,
    query: Vec<(String, String)>,
    retry_id: Option<String>,
}

/// A typed request, validated and its retry id filled, as what is sent.
fn prepare<R: Request>(request: &R) -> Result<Prepared, Error> {
    request.validate()?;
    let endpoint = &R::ENDPOINT;
    let filled = match endpoint.retry_key {
        Some(_) if request.retry_id().is_none() => request.with_retry_id(&fresh_retry_id()),
        _ => None,
    };
    let request = filled.as_ref().unwrap_or(request);
    let fields = encode(endpoint, request)?;
    Prepared::new(endpoint, fields, request.files(), request.retry_id())
}

impl Prepared {
    /// The rest of [`prepare`], the same for every request type.
    fn new(
        endpoint: &Endpoint,
        fields: Vec<u8>,
        files: Vec<(&'static str, &crate::Upload)>,
        retry_id: Option<&str>,
    ) -> Result<Self, Error> {
        let (payload, query) = if endpoint.multipart {
            let files = files.into_iter();
            let files = files.map(|(name, upload)| (name, upload.clone())).collect();
            (Payload::Multipart(files), query_pairs(endpoint, &fields)?)
        } else {
            split_payload(endpoint, fields)?
        };
        Ok(Prepared {
            payload,
            query,
            retry_id: retry_id.map(str::to_owned),
        })
    }
}

/// A request's body and query parameters: its fields as JSON for a POST, as parameters for
/// a GET.
pub(crate) fn payload<T: serde::Serialize + ?Sized>(
    endpoint: &Endpoint,
    body: &T,
) -> Result<(Payload, Vec<(String, String)>), Error> {
    split_payload(endpoint, encode(endpoint, body)?)
}

fn split_payload(
    endpoint: &Endpoint,
    fields: Vec<u8>,
) -> Result<(Payload, Vec<(String, String)>), Error> {
    match endpoint.method {
        HttpMethod::Post => Ok((Payload::Json(Bytes::from(fields)), Vec::new())),
        HttpMethod::Get => Ok((Payload::None, query_pairs(endpoint, &fields)?)),
    }
}

fn encode<T: serde::Serialize + ?Sized>(endpoint: &Endpoint, body: &T) -> Result<Vec<u8>, Error> {
    crate::rt::endpoint::json_body(body).map_err(|e| not_encoded(endpoint, "JSON", &e))
}

fn not_encoded(endpoint: &Endpoint, what: &str, error: &serde_json::Error) -> Error {
    Error::Invalid(Invalid::new(
        endpoint.name,
        format!("can't be encoded as {what}: {error}"),
    ))
}

/// A GET request's fields, read back from their JSON, as query parameters (check.rs
/// allows only scalars there). From the JSON rather than the typed request: one reading
/// for every request type instead of a second encoder per type.
fn query_pairs(endpoint: &Endpoint, json: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let fields = match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Ok(Vec::new()),
        Err(e) => return Err(not_encoded(endpoint, "query parameters", &e)),
    };
    Ok(fields
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// Decodes a response; a failure names the JSON path where it broke.
fn decode<T: DeserializeOwned>(endpoint: &Endpoint, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|error| decode_error(endpoint, bytes, &error))
}

fn decode_error(endpoint: &Endpoint, bytes: &[u8], error: &serde_json::Error) -> Error {
    Error::Decode {
        endpoint: endpoint.name,
        path: json_path::path_at(bytes, error.line(), error.column()),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::shown_url;

    #[test]
    fn shown_urls_carry_no_credentials() {
        assert_eq!(
            shown_url("http://user:pass@proxy:8080/cgi-bin/?key=k#f"),
            "http://***@proxy:8080/cgi-bin/"
        );
        assert_eq!(shown_url("user:pass@host/x"), "***@host/x");
        assert_eq!(
            shown_url("https://qyapi.weixin.qq.com/cgi-bin/"),
            "https://qyapi.weixin.qq.com/cgi-bin/"
        );
    }
}
