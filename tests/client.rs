//! The client's runtime promises, against a local HTTP server: single-flight tokens,
//! refresh on stale tokens, retries only where safe, validation before sending, and
//! errors that explain themselves.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{MockServer, Reply};
use serde_json::json;
use wecom_kf::{
    Client, Delivery, ErrCode, Error, RetryPolicy, Secret, TokenStore,
    token::{BoxFuture, CachedToken, StoreError},
    types::Text,
};

fn busy() -> Reply {
    Reply::Json(json!({"errcode": -1, "errmsg": "system busy"}))
}

#[tokio::test]
async fn concurrent_first_calls_fetch_the_token_once() {
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(200));
    let client = server.client();
    let calls = (0..100).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.send_text("wm1", "wk1", format!("hi {i}")).await })
    });
    for call in calls {
        call.await.expect("task").expect("send");
    }
    assert_eq!(server.gettoken_calls(), 1);
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 100);
}

async fn refresh_once_on(code: i64) {
    let server = MockServer::start().await;
    let client = server.client();
    client
        .send_text("wm1", "wk1", "first")
        .await
        .expect("first send");
    server.refuse_tokens(code);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.send_text("wm1", "wk1", "again").await })
        })
        .collect();
    for call in calls {
        call.await.expect("task").expect("send after refresh");
    }
    assert_eq!(
        server.gettoken_calls(),
        2,
        "exactly one refresh after errcode {code}"
    );
}

#[tokio::test]
async fn expired_token_42001_is_refreshed_once() {
    refresh_once_on(42001).await;
}

#[tokio::test]
async fn invalid_token_40014_is_refreshed_once() {
    refresh_once_on(40014).await;
}

#[tokio::test]
async fn missing_token_41001_is_refreshed_once() {
    refresh_once_on(41001).await;
}

/// 41001 normally means no token was sent; when it answers a call that did carry one,
/// the token is still the suspect: drop it, fetch one, retry once with the new one.
#[tokio::test]
async fn a_41001_to_a_call_carrying_a_token_drops_it_and_retries_once() {
    let server = MockServer::start().await;
    let client = server.client();
    let first = client.access_token().await.expect("token");
    server.script(
        "/cgi-bin/kf/send_msg",
        [Reply::Json(
            json!({"errcode": 41001, "errmsg": "access_token missing"}),
        )],
    );
    let sent = client
        .send_text("wm1", "wk1", "hi")
        .await
        .expect("send after the refresh");
    assert_eq!(sent.msgid, "MSG_ID_FROM_SERVER");
    assert_eq!(server.gettoken_calls(), 2, "exactly one refresh");
    let tokens: Vec<Option<String>> = server
        .requests_to("/cgi-bin/kf/send_msg")
        .into_iter()
        .map(|r| r.query.get("access_token").cloned())
        .collect();
    assert_eq!(tokens.len(), 2, "one try and one retry: {tokens:?}");
    assert_eq!(
        tokens[0].as_deref(),
        Some(first.expose()),
        "the refused call carried a token"
    );
    assert!(
        tokens[1].is_some() && tokens[1] != tokens[0],
        "the retry carried the new token: {tokens:?}"
    );
    let cached = client.access_token().await.expect("token");
    assert_eq!(
        Some(cached.expose()),
        tokens[1].as_deref(),
        "the new token is cached"
    );
    assert_eq!(server.gettoken_calls(), 2);
}

#[tokio::test]
async fn a_token_refused_twice_is_an_error_not_a_loop() {
    let server = MockServer::start().await;
    let client = server.client();
    client.access_token().await.expect("token");
    server.script(
        "/cgi-bin/kf/send_msg",
        [
            Reply::Json(json!({"errcode": 42001, "errmsg": "expired"})),
            Reply::Json(json!({"errcode": 42001, "errmsg": "expired"})),
        ],
    );
    let err = client.send_text("wm1", "wk1", "x").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::AccessTokenExpired));
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 2);
}

#[tokio::test]
async fn busy_is_retried_with_backoff() {
    let server = MockServer::start().await;
    server.script("/cgi-bin/kf/send_msg", [busy(), busy()]);
    let sent = server
        .client()
        .send_text("wm1", "wk1", "hi")
        .await
        .expect("send");
    assert_eq!(sent.msgid, "MSG_ID_FROM_SERVER");
    let ids = msgids(&server, "/cgi-bin/kf/send_msg");
    assert_eq!(ids.len(), 3, "sent three times");
    assert!(is_retry_id(&ids[0]), "the client set an id: {ids:?}");
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "every attempt carries the same id: {ids:?}"
    );
}

/// The `msgid` of each request to `path` ("" when there is none).
fn msgids(server: &MockServer, path: &str) -> Vec<String> {
    server
        .requests_to(path)
        .iter()
        .map(|r| r.body["msgid"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What the client generates: 32 hex digits, a valid `msgid`.
fn is_retry_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// WeCom answered "busy" but had queued the message: the retry, with the same id, is
/// refused as a duplicate. That is "may have arrived", not a plain failure.
#[tokio::test]
async fn a_retry_refused_as_a_duplicate_may_have_been_delivered() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/send_msg",
        [
            busy(),
            Reply::Json(json!({"errcode": 40058, "errmsg": "msgid duplicated"})),
        ],
    );
    let err = server
        .client()
        .send_text("wm1", "wk1", "hi")
        .await
        .unwrap_err();
    assert_eq!(err.delivery(), Delivery::MaybeSent, "{err:?}");
    assert_eq!(
        err.code(),
        Some(ErrCode::DuplicateMsgid),
        "the refusal's code, told apart by its errmsg"
    );
    let ids = msgids(&server, "/cgi-bin/kf/send_msg");
    match &err {
        Error::MaybeDelivered {
            endpoint, retry_id, ..
        } => {
            assert_eq!(*endpoint, "send_msg");
            assert_eq!(retry_id.as_deref(), Some(ids[0].as_str()));
        }
        other => panic!("expected MaybeDelivered, got {other:?}"),
    }
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);

    // Without a busy answer before it, the same refusal is a plain one.
    server.script(
        "/cgi-bin/kf/send_msg",
        [Reply::Json(
            json!({"errcode": 40058, "errmsg": "msgid duplicated"}),
        )],
    );
    let err = server
        .client()
        .send_text("wm1", "wk1", "hi")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    assert_eq!(err.delivery(), Delivery::NotSent);
}

/// Every send gets an id before its first attempt, whichever way it is sent; one the
/// caller chose is kept.
#[tokio::test]
async fn sends_carry_an_id_set_once_per_call() {
    let server = MockServer::start().await;
    let client = server.client();
    client.send_text("wm1", "wk1", "a").await.expect("send");
    client.send_text("wm1", "wk1", "b").await.expect("send");
    client
        .send_text("wm1", "wk1", "c")
        .msgid("order-42")
        .await
        .expect("send");
    client
        .send_msg_raw(json!({"touser": "wm1", "open_kfid": "wk1", "msgtype": "text", "text": {"content": "d"}}))
        .await
        .expect("raw send");
    let ids = msgids(&server, "/cgi-bin/kf/send_msg");
    assert!(
        is_retry_id(&ids[0]) && is_retry_id(&ids[1]) && is_retry_id(&ids[3]),
        "{ids:?}"
    );
    assert_ne!(ids[0], ids[1], "one id per call");
    assert_eq!(ids[2], "order-42");

    server.script("/cgi-bin/kf/send_msg_on_event", [busy()]);
    client
        .send_text_on_event("WELCOME_CODE", "hi")
        .await
        .expect("send on event");
    let ids = msgids(&server, "/cgi-bin/kf/send_msg_on_event");
    assert_eq!(ids.len(), 2);
    assert!(is_retry_id(&ids[0]) && ids[0] == ids[1], "{ids:?}");
}

#[tokio::test]
async fn busy_gives_up_after_the_policy_allows() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/sync_msg",
        [busy(), busy(), busy(), busy(), busy()],
    );
    let err = server.client().sync_msg("wk1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::SystemBusy));
    assert_eq!(
        server.requests_to("/cgi-bin/kf/sync_msg").len(),
        4,
        "1 try + 3 retries"
    );
}

#[tokio::test]
async fn a_send_that_timed_out_is_not_sent_again() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    client.access_token().await.expect("token");
    server.script(
        "/cgi-bin/kf/send_msg",
        [Reply::Delayed(
            Duration::from_secs(1),
            json!({"errcode": 0, "errmsg": "ok", "msgid": "late"}),
        )],
    );
    let err = client.send_text("wm1", "wk1", "hi").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                delivery: Delivery::MaybeSent,
                ..
            }
        ),
        "{err:?}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 1);
}

#[tokio::test]
async fn an_idempotent_read_that_timed_out_is_retried() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .request_timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    server.script(
        "/cgi-bin/kf/sync_msg",
        [Reply::Delayed(
            Duration::from_secs(1),
            json!({"errcode": 0, "errmsg": "ok"}),
        )],
    );
    let page = client.sync_msg("wk1").await.expect("sync");
    assert_eq!(page.next_cursor, "CURSOR_1");
    assert_eq!(server.requests_to("/cgi-bin/kf/sync_msg").len(), 2);
}

#[tokio::test]
async fn a_server_error_status_on_a_send_is_not_retried() {
    let server = MockServer::start().await;
    server.script("/cgi-bin/kf/send_msg", [Reply::Status(502)]);
    let err = server
        .client()
        .send_text("wm1", "wk1", "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                delivery: Delivery::MaybeSent,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 1);
}

#[tokio::test]
async fn connection_refused_is_retried_until_the_server_is_up() {
    // Reserve a port, free it, and start the server there only after the first attempts failed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = wecom_kf::Client::builder()
        .corp_id(common::CORP_ID)
        .secret(common::SECRET)
        .base_url(format!("http://127.0.0.1:{port}/cgi-bin"))
        .retry_policy(wecom_kf::RetryPolicy {
            max_retries: 8,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(200),
        })
        .build()
        .expect("client");
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("rebind");
        MockServer::serve(listener).await
    });
    let sent = client
        .send_text("wm1", "wk1", "hi")
        .await
        .expect("send after connect retries");
    assert_eq!(sent.msgid, "MSG_ID_FROM_SERVER");
    let server = starter.await.expect("server");
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 1);
}

#[tokio::test]
async fn invalid_input_never_reaches_the_server() {
    let server = MockServer::start().await;
    let client = server.client();
    let cases: Vec<(&str, Result<_, Error>)> = vec![
        (
            "msgid",
            client
                .send_text("wm1", "wk1", "hi")
                .msgid("bad!id")
                .await
                .map(drop),
        ),
        (
            "msgid",
            client
                .send_text("wm1", "wk1", "hi")
                .msgid("a".repeat(33))
                .await
                .map(drop),
        ),
        (
            "text.content",
            client
                .send_text("wm1", "wk1", "长".repeat(683))
                .await
                .map(drop),
        ),
        ("limit", client.sync_msg("wk1").limit(0).await.map(drop)),
        ("limit", client.sync_msg("wk1").limit(1001).await.map(drop)),
        ("touser", client.send_text("", "wk1", "hi").await.map(drop)),
        ("code", client.send_text_on_event("", "hi").await.map(drop)),
        (
            "location.latitude",
            client
                .send_location("wm1", "wk1", wecom_kf::types::Location::new(91.0, 0.0))
                .await
                .map(drop),
        ),
        (
            "msgmenu.list[1].click.id",
            client
                .send_menu(
                    "wm1",
                    "wk1",
                    wecom_kf::types::Menu::new().list([
                        wecom_kf::types::MenuClick::new("1", "ok"),
                        wecom_kf::types::MenuClick::new("", "empty id"),
                    ]),
                )
                .await
                .map(drop),
        ),
        (
            "msgmenu.list",
            client
                .send_menu(
                    "wm1",
                    "wk1",
                    wecom_kf::types::Menu::new()
                        .list((0..11).map(|i| wecom_kf::types::MenuClick::new(i.to_string(), "x"))),
                )
                .await
                .map(drop),
        ),
    ];
    for (field, result) in cases {
        match result {
            Err(Error::Invalid(invalid)) => {
                assert_eq!(invalid.field, field, "reason: {}", invalid.reason);
                assert!(!invalid.reason.is_empty());
            }
            other => panic!("{field}: expected Error::Invalid, got {other:?}"),
        }
    }
    assert!(
        server.requests().is_empty(),
        "nothing may reach the server, not even gettoken"
    );
    // The byte limit is exact: 2048 bytes pass.
    client
        .send_text("wm1", "wk1", "a".repeat(2048))
        .await
        .expect("2048 bytes are fine");
}

#[tokio::test]
async fn window_and_session_errors_explain_themselves() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/send_msg",
        [
            Reply::Json(json!({"errcode": 95001, "errmsg": "send msg count limit"})),
            Reply::Json(json!({"errcode": 95002, "errmsg": "send msg time limit"})),
            Reply::Json(json!({"errcode": 95018, "errmsg": "send msg session status invalid"})),
            Reply::Json(json!({"errcode": 99999, "errmsg": "something new"})),
        ],
    );
    let client = server.client();
    let mut texts = Vec::new();
    for expected in [
        ErrCode::SendCountLimit,
        ErrCode::SendTimeLimit,
        ErrCode::SessionStateForbidsSending,
        ErrCode::Other(99999),
    ] {
        let err = client
            .send_text("wm1", "wk1", Text::new("hi"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(expected));
        assert!(!expected.is_retryable());
        texts.push(err.to_string());
    }
    assert!(
        texts[0].contains("95001") && texts[0].contains("5 messages"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("95002") && texts[1].contains("48 hours"),
        "{}",
        texts[1]
    );
    assert!(
        texts[2].contains("95018") && texts[2].contains("session"),
        "{}",
        texts[2]
    );
    assert!(
        texts[3].contains("99999") && texts[3].contains("something new"),
        "{}",
        texts[3]
    );
    assert_eq!(
        server.requests_to("/cgi-bin/kf/send_msg").len(),
        4,
        "none retried"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_reported_as_such() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .secret("wrong")
        .build()
        .expect("client");
    let err = client.send_text("wm1", "wk1", "hi").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::InvalidCredential));
    assert_eq!(server.gettoken_calls(), 1, "a config error is not retried");
    assert!(
        !err.to_string().contains("wrong"),
        "the secret is not echoed: {err}"
    );
}

#[tokio::test]
async fn a_body_that_does_not_decode_names_the_path() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/sync_msg",
        [Reply::Json(
            json!({"errcode": 0, "errmsg": "ok", "next_cursor": "c", "has_more": "yes"}),
        )],
    );
    let err = server.client().sync_msg("wk1").await.unwrap_err();
    match err {
        Error::Decode { path, endpoint, .. } => {
            assert_eq!(path, "has_more");
            assert_eq!(endpoint, "sync_msg");
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn a_shared_http_client_is_the_one_that_sends() {
    let server = MockServer::start().await;
    let http = reqwest::Client::builder()
        .user_agent("shared-pool/1.0")
        .build()
        .expect("http client");
    let client = server
        .client_builder()
        .http_client(http)
        .build()
        .expect("client");
    client.send_text("wm1", "wk1", "hi").await.expect("send");
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/cgi-bin/gettoken", "/cgi-bin/kf/send_msg"]);
    for request in &requests {
        assert_eq!(
            request.headers.get("user-agent").map(String::as_str),
            Some("shared-pool/1.0"),
            "{} went through another HTTP client",
            request.path
        );
    }
}

/// No retries and no overall timeout, so only the connect timeout can end a hanging connect.
fn impatient_client(addr: std::net::SocketAddr, connect_timeout: Duration) -> Client {
    Client::builder()
        .corp_id(common::CORP_ID)
        .secret(common::SECRET)
        .base_url(format!("http://{addr}/cgi-bin/"))
        .connect_timeout(connect_timeout)
        .request_timeout(None)
        .retry_policy(RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        })
        .build()
        .expect("client")
}

/// The call failed because the token couldn't be fetched: `TokenUnavailable`, whose
/// cause is the fetch's own error.
fn token_fetch_error(err: &Error) -> &Error {
    match err {
        Error::TokenUnavailable { cause, .. } => cause,
        other => panic!("expected TokenUnavailable, got {other:?}"),
    }
}

fn assert_not_sent(err: &Error) {
    assert_eq!(err.delivery(), Delivery::NotSent);
    match token_fetch_error(err) {
        Error::Transport {
            endpoint,
            delivery: Delivery::NotSent,
            source,
        } => {
            assert_eq!(*endpoint, "gettoken", "the token comes first");
            assert!(source.is_connect(), "{source:?}");
        }
        other => panic!("expected a NotSent transport error, got {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(common::SECRET),
        "the gettoken URL carries the secret; the error must not: {shown}"
    );
}

#[tokio::test]
async fn a_closed_port_fails_fast_as_not_sent() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port");
    let client = impatient_client(addr, Duration::from_secs(5));
    let started = Instant::now();
    let err = client.send_text("wm1", "wk1", "hi").await.unwrap_err();
    assert_not_sent(&err);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused connection is reported at once, took {:?}",
        started.elapsed()
    );
}

/// A listener whose accept queue is full, and the connections filling it. The kernel
/// drops further handshakes, so a new connect is neither accepted nor refused: it hangs.
async fn saturated_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let mut held = Vec::new();
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(e)) => panic!("connect to the listener failed instead of hanging: {e}"),
            Err(_hung) => return (listener, held),
        }
        assert!(held.len() < 64, "the accept queue never filled");
    }
}

#[tokio::test]
async fn connect_timeout_ends_a_connect_that_hangs_as_not_sent() {
    let (listener, _held) = saturated_listener().await;
    let addr = listener.local_addr().expect("local addr");
    let client = impatient_client(addr, Duration::from_millis(300));
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(15),
        client.send_text("wm1", "wk1", "hi"),
    )
    .await
    .expect("the connect timeout ended the call");
    let elapsed = started.elapsed();
    let err = result.unwrap_err();
    assert_not_sent(&err);
    match token_fetch_error(&err) {
        Error::Transport { source, .. } => assert!(source.is_timeout(), "{source:?}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "gave up after {elapsed:?}, not after the 300 ms connect timeout"
    );
}

/// What a token store shared between processes holds, and what the client asked of it.
#[derive(Default)]
struct StoreState {
    token: Mutex<Option<CachedToken>>,
    keys: Mutex<Vec<String>>,
    saved: Mutex<Vec<String>>,
    invalidated: Mutex<Vec<String>>,
}

/// A stand-in for an external store (Redis, a database): clones share one state.
#[derive(Clone, Default)]
struct SharedStore(Arc<StoreState>);

impl SharedStore {
    /// A store that already holds `token`, fetched by another process.
    fn seeded(token: &str) -> Self {
        let store = SharedStore::default();
        let now = SystemTime::now();
        *store.0.token.lock().expect("token") = Some(CachedToken {
            token: Secret::new(token),
            fetched_at: now,
            expires_at: now + Duration::from_secs(7200),
        });
        store
    }

    fn current(&self) -> Option<String> {
        let token = self.0.token.lock().expect("token");
        token.as_ref().map(|c| c.token.expose().to_owned())
    }

    fn log(list: &Mutex<Vec<String>>) -> Vec<String> {
        list.lock().expect("log").clone()
    }
}

impl TokenStore for SharedStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        Box::pin(async move {
            self.0.keys.lock().expect("keys").push(key.to_owned());
            Ok(self.0.token.lock().expect("token").clone())
        })
    }

    fn save<'a>(
        &'a self,
        _key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let value = token.token.expose().to_owned();
            self.0.saved.lock().expect("saved").push(value);
            *self.0.token.lock().expect("token") = Some(token);
            Ok(())
        })
    }

    fn invalidate<'a>(
        &'a self,
        _key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut token = self.0.token.lock().expect("token");
            if token.as_ref().is_some_and(|c| &c.token == failed) {
                *token = None;
            }
            let value = failed.expose().to_owned();
            self.0.invalidated.lock().expect("invalidated").push(value);
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_custom_token_store_is_read_first_and_written_on_refresh() {
    const SHARED: &str = "TOKEN_FETCHED_BY_ANOTHER_PROCESS";
    let server = MockServer::start().await;
    server.accept_token(SHARED);
    let store = SharedStore::seeded(SHARED);
    let client = server
        .client_builder()
        .token_store(store.clone())
        .build()
        .expect("client");

    client.send_text("wm1", "wk1", "hi").await.expect("send");
    assert_eq!(server.gettoken_calls(), 0, "the stored token was used");
    let sends = server.requests_to("/cgi-bin/kf/send_msg");
    assert_eq!(
        sends[0].query.get("access_token").map(String::as_str),
        Some(SHARED)
    );
    let keys = SharedStore::log(&store.0.keys);
    assert!(
        !keys.is_empty()
            && keys
                .iter()
                .all(|k| k.starts_with(common::CORP_ID) && !k.contains(common::SECRET)),
        "{keys:?}"
    );

    server.refuse_tokens(42001);
    client
        .send_text("wm1", "wk1", "again")
        .await
        .expect("send after refresh");
    assert_eq!(server.gettoken_calls(), 1);
    assert_eq!(SharedStore::log(&store.0.invalidated), [SHARED]);
    let saved = SharedStore::log(&store.0.saved);
    assert_eq!(
        saved.len(),
        1,
        "the refreshed token is written once: {saved:?}"
    );
    assert_ne!(saved[0], SHARED);
    assert_eq!(store.current().as_deref(), Some(saved[0].as_str()));
    let sends = server.requests_to("/cgi-bin/kf/send_msg");
    let last = sends.last().expect("a send");
    assert_eq!(last.query.get("access_token"), Some(&saved[0]));

    // Another process on the same store picks up the refreshed token without fetching.
    let other = server
        .client_builder()
        .token_store(store.clone())
        .build()
        .expect("client");
    other
        .send_text("wm1", "wk1", "from elsewhere")
        .await
        .expect("send");
    assert_eq!(server.gettoken_calls(), 1);
}

/// `expires_in` is WeCom's number: a huge one must not panic or overflow, and 0 must not
/// turn every call into a `gettoken`.
#[tokio::test]
async fn odd_expires_in_values_are_clamped_not_fatal() {
    for (expires_in, lifetime) in [
        (json!(u64::MAX), Duration::from_secs(24 * 3600)),
        (
            json!(10_000_000_000_000_000u64),
            Duration::from_secs(24 * 3600),
        ),
        (json!(0), Duration::from_secs(60)),
    ] {
        let server = MockServer::start().await;
        server.set_token_expires_in(expires_in.clone());
        let store = SharedStore::default();
        let client = server
            .client_builder()
            .token_store(store.clone())
            .build()
            .expect("client");
        let call = tokio::spawn({
            let client = client.clone();
            async move {
                client.send_text("wm1", "wk1", "first").await?;
                client.send_text("wm1", "wk1", "second").await
            }
        });
        call.await
            .unwrap_or_else(|e| panic!("expires_in {expires_in}: the call panicked: {e}"))
            .unwrap_or_else(|e| panic!("expires_in {expires_in}: {e}"));
        assert_eq!(
            server.gettoken_calls(),
            1,
            "expires_in {expires_in}: the token was cached"
        );
        let stored = store.0.token.lock().expect("token").clone().expect("saved");
        assert_eq!(
            stored.expires_at.duration_since(stored.fetched_at).ok(),
            Some(lifetime),
            "expires_in {expires_in}"
        );
    }
}

/// Answers every request with a redirect to `target` (302 for GET, 307 for POST), as a
/// captive portal or a misconfigured gateway would.
async fn redirecting_server(target: String) -> std::net::SocketAddr {
    use axum::http::{Method, StatusCode, Uri, header};
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
        let location = format!("{target}{uri}");
        async move {
            let status = if method == Method::GET {
                StatusCode::FOUND
            } else {
                StatusCode::TEMPORARY_REDIRECT
            };
            (status, [(header::LOCATION, location)])
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    addr
}

#[tokio::test]
async fn redirects_are_refused_and_carry_nothing_elsewhere() {
    let elsewhere = MockServer::start().await;
    let portal = redirecting_server(format!("http://{}", elsewhere.addr)).await;
    let builder = || {
        Client::builder()
            .corp_id(common::CORP_ID)
            .secret(common::SECRET)
            .base_url(format!("http://{portal}/cgi-bin/"))
            .retry_policy(RetryPolicy::none())
    };

    // gettoken: the secret is in the URL.
    let err = builder()
        .build()
        .expect("client")
        .access_token()
        .await
        .unwrap_err();
    assert!(
        chain(&err).contains("redirect (HTTP 302)"),
        "a typed redirect error: {err:?}"
    );
    // A send with a token at hand: the token is in the URL, the body would be posted again.
    let err = builder()
        .token_store(SharedStore::seeded("TOKEN_FROM_A_STORE"))
        .build()
        .expect("client")
        .send_text("wm1", "wk1", "hi")
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Redirected { status: 307, .. }),
        "{err:?}"
    );
    assert_eq!(err.delivery(), Delivery::MaybeSent);
    assert!(
        elsewhere.requests().is_empty(),
        "the redirect target got requests: {:?}",
        elsewhere.requests()
    );
}

/// An error with all its sources, as a log line that walks the chain shows it.
fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(" / ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// A server whose every answer is too large: it declares 1 GiB and then stalls, or it
/// streams 64 MiB of valid JSON (whitespace) without a length.
async fn oversized_server(declare_length: bool) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = r#"{"errcode":0,"errmsg":"ok","next_cursor":"c","has_more":0"#;
                if declare_length {
                    let headers = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
                    let _ = stream.write_all(headers.as_bytes()).await;
                    let _ = stream.write_all(head.as_bytes()).await;
                    // Stall until the client gives up on the connection.
                    let _ = stream.read(&mut buf).await;
                    return;
                }
                let headers = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                let _ = stream.write_all(headers.as_bytes()).await;
                let chunk = |data: &[u8]| {
                    let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
                    framed.extend_from_slice(data);
                    framed.extend_from_slice(b"\r\n");
                    framed
                };
                let _ = stream.write_all(&chunk(head.as_bytes())).await;
                let spaces = chunk(&vec![b' '; 1 << 20]);
                for _ in 0..64 {
                    if stream.write_all(&spaces).await.is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(&chunk(b"}")).await;
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    for declare_length in [true, false] {
        let addr = oversized_server(declare_length).await;
        let client = Client::builder()
            .corp_id(common::CORP_ID)
            .secret(common::SECRET)
            .base_url(format!("http://{addr}/cgi-bin/"))
            .token_store(SharedStore::seeded("TOKEN_FROM_A_STORE"))
            .request_timeout(Duration::from_secs(5))
            .retry_policy(RetryPolicy::none())
            .build()
            .expect("client");
        let err = client.sync_msg("wk1").await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { endpoint: "sync_msg", limit } if limit == wecom_kf::client::MAX_RESPONSE_BYTES),
            "declared length {declare_length}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_answer_without_errcode_is_no_success() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/account/del",
        [Reply::Json(json!({"message": "blocked"}))],
    );
    let err = server.client().account_del("wk1").await.unwrap_err();
    match err {
        Error::Decode { endpoint, path, .. } => {
            assert_eq!((endpoint, path.as_str()), ("account_del", "errcode"));
        }
        other => panic!("expected a Decode error, got {other:?}"),
    }
}

fn rate_limited() -> Reply {
    Reply::Json(json!({"errcode": 45009, "errmsg": "api freq out of limit"}))
}

/// 45009 waits `rate_limit_backoff`, not the policy's short backoff: with a first wait
/// longer than the call's deadline it isn't retried at all, while "busy" still is.
#[tokio::test]
async fn rate_limits_wait_longer_within_the_call_deadline() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .rate_limit_backoff(Duration::from_secs(30))
        .call_deadline(Duration::from_secs(5))
        .build()
        .expect("client");
    client.access_token().await.expect("token");
    server.script("/cgi-bin/kf/sync_msg", [rate_limited(), busy()]);
    let err = client.sync_msg("wk1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::RateLimited));
    assert_eq!(
        server.requests_to("/cgi-bin/kf/sync_msg").len(),
        1,
        "a wait past the deadline is not started"
    );
    client.sync_msg("wk1").await.expect("busy is retried");
    assert_eq!(server.requests_to("/cgi-bin/kf/sync_msg").len(), 3);

    // With a short rate-limit wait, 45009 is retried like any busy answer.
    let quick = server
        .client_builder()
        .rate_limit_backoff(Duration::from_millis(20))
        .build()
        .expect("client");
    server.script("/cgi-bin/kf/sync_msg", [rate_limited(), rate_limited()]);
    quick.sync_msg("wk1").await.expect("retried after the wait");
    assert_eq!(server.requests_to("/cgi-bin/kf/sync_msg").len(), 6);
}

/// The deadline covers the whole call: retries stop once the next wait would pass it.
#[tokio::test]
async fn no_retry_starts_past_the_call_deadline() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .retry_policy(RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_secs(4),
            max_backoff: Duration::from_secs(4),
        })
        .call_deadline(Duration::from_secs(1))
        .build()
        .expect("client");
    client.access_token().await.expect("token");
    server.script("/cgi-bin/kf/sync_msg", [busy(), busy()]);
    let err = client.sync_msg("wk1").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::SystemBusy));
    assert_eq!(server.requests_to("/cgi-bin/kf/sync_msg").len(), 1);
}

/// A store that reads (nothing) but can't write: a read-only replica, a full disk.
struct UnwritableStore;

impl TokenStore for UnwritableStore {
    fn load<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn save<'a>(
        &'a self,
        _key: &'a str,
        _token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Err("read-only".into()) })
    }

    fn invalidate<'a>(
        &'a self,
        _key: &'a str,
        _failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A token fetched but not saved is still used: by this call, and by the next ones.
#[tokio::test]
async fn a_token_that_could_not_be_saved_is_used_anyway() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .token_store(UnwritableStore)
        .build()
        .expect("client");
    client.send_text("wm1", "wk1", "a").await.expect("send");
    client.send_text("wm1", "wk1", "b").await.expect("send");
    assert_eq!(server.gettoken_calls(), 1, "kept in memory");
}

/// WeCom hands out the same token until it expires. Refetched inside the refresh margin,
/// the token comes back with its remaining lifetime: it is then used until it expires,
/// not refetched on every call as that lifetime shrinks (nor believed past its expiry).
#[tokio::test]
async fn a_token_handed_out_again_is_kept_until_it_expires() {
    const SAME: &str = "TOKEN_STILL_VALID";
    let server = MockServer::start().await;
    server.accept_token(SAME);
    let now = SystemTime::now();
    let expires_at = now + Duration::from_secs(200);
    let store = SharedStore::default();
    *store.0.token.lock().expect("token") = Some(CachedToken {
        token: Secret::new(SAME),
        fetched_at: now - Duration::from_secs(7000),
        expires_at,
    });
    server.script(
        "/cgi-bin/gettoken",
        [Reply::Json(
            json!({"errcode": 0, "errmsg": "ok", "access_token": SAME, "expires_in": 7200}),
        )],
    );
    let client = server
        .client_builder()
        .token_store(store.clone())
        .build()
        .expect("client");
    for text in ["a", "b", "c"] {
        client.send_text("wm1", "wk1", text).await.expect("send");
    }
    assert_eq!(server.gettoken_calls(), 1, "one refetch, then kept");
    let sends = server.requests_to("/cgi-bin/kf/send_msg");
    assert!(
        sends
            .iter()
            .all(|r| r.query.get("access_token").map(String::as_str) == Some(SAME)),
        "the same token throughout"
    );
    let stored = store.0.token.lock().expect("token").clone().expect("token");
    assert_eq!(
        stored.expires_at, expires_at,
        "still expires when it always did, not 7200 s from now"
    );
}
