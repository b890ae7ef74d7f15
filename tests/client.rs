//! The client's runtime promises, against a local HTTP server: single-flight tokens,
//! refresh on stale tokens, retries only where safe, validation before sending, and
//! errors that explain themselves.

mod common;

use std::time::Duration;

use common::{MockServer, Reply};
use serde_json::json;
use wecom_kf::{Delivery, ErrCode, Error, Text};

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
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 3);
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
                .send_location("wm1", "wk1", wecom_kf::Location::new(91.0, 0.0))
                .await
                .map(drop),
        ),
        (
            "msgmenu.list[1].click.id",
            client
                .send_menu(
                    "wm1",
                    "wk1",
                    wecom_kf::Menu::new().list([
                        wecom_kf::MenuClick::new("1", "ok"),
                        wecom_kf::MenuClick::new("", "empty id"),
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
                    wecom_kf::Menu::new()
                        .list((0..11).map(|i| wecom_kf::MenuClick::new(i.to_string(), "x"))),
                )
                .await
                .map(drop),
        ),
    ];
    for (field, result) in cases {
        match result {
            Err(Error::Invalid { field: f, reason }) => {
                assert_eq!(f, field, "reason: {reason}");
                assert!(!reason.is_empty());
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
