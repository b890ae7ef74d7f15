//! The token refresh under failure and cancellation: one `gettoken` however many callers
//! wait, its error shared by all of them, a window without fetches after a failure, and a
//! refresh that finishes for the others when the caller that started it gives up.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::MockServer;
use tokio::sync::Notify;
use wecom_kf::{
    Client, Delivery, ErrCode, Error, Secret, TokenStore,
    token::{BoxFuture, CachedToken, StoreError},
};

/// `n` concurrent sends on `client`; their errors (every send must fail).
async fn failing_burst(client: &Client, n: usize) -> Vec<Error> {
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.send_text("wm1", "wk1", format!("hi {i}")).await })
        })
        .collect();
    let mut errors = Vec::new();
    for send in sends {
        errors.push(send.await.expect("task").expect_err("no token, no send"));
    }
    errors
}

#[tokio::test]
async fn a_wrong_secret_costs_one_gettoken_however_many_callers() {
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(100));
    let client = server
        .client_builder()
        .secret("wrong")
        .token_failure_backoff(Duration::from_secs(60))
        .build()
        .expect("client");

    let errors = failing_burst(&client, 100).await;
    assert_eq!(
        server.gettoken_calls(),
        1,
        "every caller waited on the same fetch"
    );
    for err in &errors {
        assert!(
            matches!(err, Error::TokenUnavailable { .. }),
            "the shared result: {err:?}"
        );
        assert_eq!(err.code(), Some(ErrCode::InvalidCredential), "{err:?}");
        assert_eq!(err.delivery(), Delivery::NotSent);
    }

    // Inside the window: refused at once, without asking WeCom again.
    let errors = failing_burst(&client, 100).await;
    assert_eq!(server.gettoken_calls(), 1, "no fetch inside the window");
    for err in &errors {
        match err {
            Error::TokenUnavailable { retry_in, .. } => {
                assert!(!retry_in.is_zero(), "{err:?}");
            }
            other => panic!("expected TokenUnavailable, got {other:?}"),
        }
        assert_eq!(err.code(), Some(ErrCode::InvalidCredential), "{err:?}");
    }
    assert!(server.requests_to("/cgi-bin/kf/send_msg").is_empty());
}

#[tokio::test]
async fn after_the_window_the_next_call_fetches_again() {
    let server = MockServer::start().await;
    let client = server
        .client_builder()
        .secret("wrong")
        .token_failure_backoff(Duration::from_millis(1))
        .build()
        .expect("client");
    client.access_token().await.expect_err("wrong secret");
    assert_eq!(server.gettoken_calls(), 1);
    // Well past the 1 ms window (the second one would be 2 ms).
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.access_token().await.expect_err("still wrong");
    assert_eq!(server.gettoken_calls(), 2, "the window ended");
}

/// A caller that gives up while `gettoken` is slow leaves the refresh running; the next
/// caller gets its token instead of fetching another.
#[tokio::test]
async fn a_cancelled_caller_leaves_the_refresh_to_finish() {
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(300));
    let client = server.client();
    let caller = tokio::spawn({
        let client = client.clone();
        async move { client.send_text("wm1", "wk1", "given up").await }
    });
    while server.gettoken_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());

    client
        .send_text("wm1", "wk1", "next")
        .await
        .expect("the refresh finished for the next caller");
    assert_eq!(server.gettoken_calls(), 1, "one fetch, shared");
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 1);
}

/// WeCom busy on `gettoken`: one refresh retries it as the policy says; the other
/// callers wait on that refresh instead of running their own retries.
#[tokio::test]
async fn a_busy_gettoken_is_retried_by_one_refresh_for_all_callers() {
    let server = MockServer::start().await;
    let busy = || common::Reply::Json(serde_json::json!({"errcode": -1, "errmsg": "system busy"}));
    server.script("/cgi-bin/gettoken", (0..10).map(|_| busy()));
    let client = server
        .client_builder()
        .token_failure_backoff(Duration::from_secs(60))
        .build()
        .expect("client");
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.access_token().await })
        })
        .collect();
    for call in calls {
        let err = call.await.expect("task").expect_err("busy throughout");
        assert_eq!(err.code(), Some(ErrCode::SystemBusy), "{err:?}");
    }
    assert_eq!(
        server.gettoken_calls(),
        4,
        "one try and the policy's 3 retries, for all 100 callers"
    );
}

/// Where a paused load signals it was reached, and what releases it.
type Gate = (Arc<Notify>, Arc<Notify>);

/// A token store in memory whose chosen loads pause (after reading) until released, to
/// interleave callers exactly.
#[derive(Clone, Default)]
struct GatedStore {
    token: Arc<Mutex<Option<CachedToken>>>,
    loads: Arc<AtomicUsize>,
    gates: Arc<Mutex<HashMap<usize, Gate>>>,
}

impl GatedStore {
    /// Pauses load number `n` (from 1): the first `Notify` fires when it is reached, the
    /// second releases it.
    fn gate(&self, n: usize) -> Gate {
        let gate = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        self.gates.lock().unwrap().insert(n, gate.clone());
        gate
    }
}

impl TokenStore for GatedStore {
    fn load<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        Box::pin(async move {
            let value = self.token.lock().unwrap().clone();
            let n = self.loads.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = self.gates.lock().unwrap().remove(&n);
            if let Some((reached, release)) = gate {
                reached.notify_one();
                release.notified().await;
            }
            Ok(value)
        })
    }

    fn save<'a>(
        &'a self,
        _key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        *self.token.lock().unwrap() = Some(token);
        Box::pin(async { Ok(()) })
    }

    fn invalidate<'a>(
        &'a self,
        _key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut token = self.token.lock().unwrap();
        if token.as_ref().is_some_and(|c| &c.token == failed) {
            *token = None;
        }
        Box::pin(async { Ok(()) })
    }
}

/// A caller that loaded the token just before WeCom refused it must not bring it back
/// for the caller that saw the refusal: that one's single retry needs a new token.
#[tokio::test]
async fn a_refused_token_loaded_just_before_is_not_used_again() {
    const OLD: &str = "TOKEN_ABOUT_TO_BE_REFUSED";
    let server = MockServer::start().await;
    server.accept_token(OLD);
    let store = GatedStore::default();
    let now = SystemTime::now();
    *store.token.lock().unwrap() = Some(CachedToken {
        token: Secret::new(OLD),
        fetched_at: now,
        expires_at: now + Duration::from_secs(7200),
    });
    let client = server
        .client_builder()
        .token_store(store.clone())
        .build()
        .expect("client");
    let (y_loaded, release_y) = store.gate(1);
    let (x_reloads, release_x) = store.gate(3);

    // Y reads the old token and pauses before it can use it.
    let y = tokio::spawn({
        let client = client.clone();
        async move { client.access_token().await }
    });
    y_loaded.notified().await;
    server.refuse_tokens(42001);
    // X sends with the old token (load 2), is refused, drops it, and loads again (load 3).
    let x = tokio::spawn({
        let client = client.clone();
        async move { client.send_text("wm1", "wk1", "hi").await }
    });
    x_reloads.notified().await;
    release_y.notify_one();
    let y_token = y.await.expect("task").expect("token");
    assert_ne!(
        y_token.expose(),
        OLD,
        "Y read it before the refusal, but checks it after: not the refused token"
    );
    release_x.notify_one();
    x.await
        .expect("task")
        .expect("X's retry carries a new token");
    assert_eq!(server.gettoken_calls(), 1);
}
