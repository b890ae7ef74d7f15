//! Neither the secret nor an access token may appear in any `Debug`, `Display` or log
//! line, whatever happens: refreshes, retries, transport errors, API errors.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MockServer, Reply, SECRET};
use serde_json::json;

/// Collects everything every tracing subscriber layer writes, at TRACE level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_and_tokens_never_show() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut shown = vec![
        format!("{client:?}"),
        format!("{:?}", server.client_builder()),
    ];

    // A refresh, a retry, an API error, a transport error, and a plain success.
    client.send_text("wm1", "wk1", "hello").await.unwrap();
    server.refuse_tokens(42001);
    server.script(
        "/cgi-bin/kf/send_msg",
        [
            Reply::Json(json!({"errcode": -1, "errmsg": "busy"})),
            Reply::Json(json!({"errcode": 95018, "errmsg": "session status invalid"})),
            Reply::Delayed(Duration::from_secs(1), json!({"errcode": 0})),
        ],
    );
    let api_error = client.send_text("wm1", "wk1", "x").await.unwrap_err();
    let transport_error = client.send_text("wm1", "wk1", "x").await.unwrap_err();
    let token = client.access_token().await.unwrap();
    let token_response = client.gettoken().await.unwrap();
    for error in [&api_error, &transport_error] {
        shown.push(format!("{error}"));
        shown.push(format!("{error:?}"));
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            shown.push(format!("{inner} / {inner:?}"));
            source = inner.source();
        }
    }
    shown.push(format!("{token:?}"));
    shown.push(format!("{token_response:?}"));
    let wrong = common::MockServer::start()
        .await
        .client_builder()
        .secret("wrong-secret-zz")
        .build()
        .unwrap();
    let config_error = wrong.send_text("wm1", "wk1", "x").await.unwrap_err();
    shown.push(format!("{config_error} {config_error:?}"));

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying"),
        "the run logged its retries:\n{logs}"
    );
    let issued: Vec<String> = (0..server.gettoken_calls())
        .map(|n| format!("ACCESS_TOKEN_{n}_xyz"))
        .collect();
    assert!(issued.len() >= 2, "tokens were issued and refreshed");
    for text in shown.iter().chain(std::iter::once(&logs)) {
        assert!(!text.contains(SECRET), "secret leaked in: {text}");
        assert!(
            !text.contains("wrong-secret-zz"),
            "secret leaked in: {text}"
        );
        assert!(!text.contains("ACCESS_TOKEN_"), "token leaked in: {text}");
        assert!(
            !text.contains("access_token="),
            "token URL leaked in: {text}"
        );
    }
    assert!(
        token.expose().starts_with("ACCESS_TOKEN_"),
        "the token itself is usable"
    );
}

/// A response serialized (to log or cache it) keeps the token hidden.
#[test]
fn serialized_responses_hide_tokens() {
    let response = wecom_kf::types::AccessTokenResponse::new("ACCESS_TOKEN_in_a_response", 7200);
    let json = serde_json::to_string(&response).unwrap();
    assert!(
        !json.contains("ACCESS_TOKEN_"),
        "serialized in clear: {json}"
    );
    assert_eq!(
        serde_json::from_str::<wecom_kf::types::AccessTokenResponse>(
            r#"{"access_token": "ACCESS_TOKEN_read", "expires_in": 7200}"#
        )
        .unwrap()
        .access_token
        .expose(),
        "ACCESS_TOKEN_read",
        "reading keeps the value"
    );
}

/// The callback token in a `sync_msg` body is sent, and hidden from `Debug`.
#[test]
fn request_debug_hides_the_callback_token() {
    let request = wecom_kf::types::SyncMsgRequest::new("wk1")
        .token("CALLBACK_TOKEN_from_a_callback")
        .cursor("CURSOR");
    let shown = format!("{request:?}");
    assert!(!shown.contains("CALLBACK_TOKEN_"), "{shown}");
    assert!(
        shown.contains("token: Some(***)") && shown.contains("CURSOR"),
        "{shown}"
    );
    let body = String::from_utf8(wecom_kf::Request::to_body(&request).unwrap()).unwrap();
    assert!(
        body.contains("CALLBACK_TOKEN_from_a_callback"),
        "the token is still sent: {body}"
    );
}

/// Credentials in a base URL (a proxy's) show neither in configuration errors nor in `Debug`.
#[test]
fn config_errors_and_debug_hide_url_credentials() {
    for base_url in [
        "http://user:pa55word@host:99999/",
        "ftp://user:pa55word@host/",
    ] {
        let err = wecom_kf::Client::builder()
            .corp_id("ww1")
            .secret("s")
            .base_url(base_url)
            .build()
            .unwrap_err();
        assert!(matches!(err, wecom_kf::Error::Config(_)), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("pa55word"), "{shown}");
        assert!(shown.contains("host"), "still says which URL: {shown}");
    }
    let builder = wecom_kf::Client::builder()
        .corp_id("ww1")
        .secret("s")
        .base_url("http://user:pa55word@proxy/cgi-bin/?key=pa55word");
    let shown = format!("{builder:?}");
    let client = format!("{:?}", builder.build().unwrap());
    for shown in [shown, client] {
        assert!(!shown.contains("pa55word"), "{shown}");
    }
}
