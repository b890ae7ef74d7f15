//! Tokens from a source of the caller's (a service provider's or a 代开发 app's own flow):
//! the cache, the single shared fetch, the failure window and the refresh after a refused
//! token work as with the corp secret.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use common::MockServer;
use wecom_kf::{
    Client, ErrCode, Error, MemoryTokenStore, Secret, TokenStore,
    token::{BoxFuture, CachedToken, StoreError, TokenIdentity, TokenSource},
    types::AccessTokenResponse,
};

/// Hands out `SOURCE_TOKEN_<n>`, which `server` then accepts, and counts its fetches.
#[derive(Clone)]
struct Counting {
    server: MockServer,
    fetches: Arc<AtomicUsize>,
    /// How long a fetch takes, so concurrent callers arrive while it runs.
    delay: Duration,
    /// Answer every fetch with this error instead.
    fail_with: Option<i64>,
}

impl Counting {
    fn new(server: &MockServer) -> Self {
        Counting {
            server: server.clone(),
            fetches: Arc::default(),
            delay: Duration::ZERO,
            fail_with: None,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl TokenSource for Counting {
    fn identity(&self) -> TokenIdentity {
        TokenIdentity::new("ww-corp/suite-7", "permanent-code-never-shown")
    }

    fn fetch<'a>(
        &'a self,
        _client: &'a Client,
    ) -> BoxFuture<'a, Result<AccessTokenResponse, Error>> {
        Box::pin(async move {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if let Some(code) = self.fail_with {
                return Err(Error::Api {
                    code: ErrCode::from_value(code),
                    message: "suite_access_token expired".into(),
                });
            }
            let token = format!("SOURCE_TOKEN_{n}");
            self.server.accept_token(&token);
            Ok(AccessTokenResponse::new(token, 7200))
        })
    }
}

fn client_with(server: &MockServer, source: Counting) -> Client {
    Client::builder()
        .corp_id(common::CORP_ID)
        .base_url(server.base_url())
        .token_source(source)
        .build()
        .expect("a client without a secret")
}

#[tokio::test]
async fn a_hundred_callers_share_one_fetch() {
    let server = MockServer::start().await;
    let source = Counting {
        delay: Duration::from_millis(50),
        ..Counting::new(&server)
    };
    let client = client_with(&server, source.clone());
    let sends: Vec<_> = (0..100)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.send_text("wm1", "wk1", format!("hi {i}")).await })
        })
        .collect();
    for send in sends {
        send.await
            .expect("task")
            .expect("sent with the source's token");
    }
    assert_eq!(source.fetches(), 1, "one fetch for every caller");
    let sent = server.requests_to("/cgi-bin/kf/send_msg");
    assert_eq!(sent.len(), 100);
    assert!(
        sent.iter()
            .all(|r| r.query["access_token"] == "SOURCE_TOKEN_0")
    );
    assert_eq!(server.gettoken_calls(), 0, "gettoken is never called");
}

#[tokio::test]
async fn a_refused_token_asks_the_source_again_once() {
    let server = MockServer::start().await;
    let source = Counting::new(&server);
    let client = client_with(&server, source.clone());
    client.send_text("wm1", "wk1", "first").await.expect("sent");
    assert_eq!(source.fetches(), 1);

    server.refuse_tokens(42001);
    client
        .send_text("wm1", "wk1", "second")
        .await
        .expect("sent after a refresh");
    assert_eq!(source.fetches(), 2, "asked again once");
    let tokens: Vec<String> = server
        .requests_to("/cgi-bin/kf/send_msg")
        .iter()
        .map(|r| r.query["access_token"].clone())
        .collect();
    assert_eq!(
        tokens,
        ["SOURCE_TOKEN_0", "SOURCE_TOKEN_0", "SOURCE_TOKEN_1"]
    );

    client.send_text("wm1", "wk1", "third").await.expect("sent");
    assert_eq!(source.fetches(), 2, "the new token is cached");
}

#[tokio::test]
async fn a_failing_source_is_asked_once_and_its_error_shared() {
    let server = MockServer::start().await;
    let source = Counting {
        delay: Duration::from_millis(50),
        fail_with: Some(42001),
        ..Counting::new(&server)
    };
    let client = Client::builder()
        .corp_id(common::CORP_ID)
        .base_url(server.base_url())
        .token_source(source.clone())
        .token_failure_backoff(Duration::from_secs(60))
        .build()
        .expect("client");
    let sends: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.send_text("wm1", "wk1", "hi").await })
        })
        .collect();
    for send in sends {
        let err = send.await.expect("task").expect_err("no token");
        assert!(matches!(err, Error::TokenUnavailable { .. }), "{err:?}");
        assert_eq!(err.code(), Some(ErrCode::AccessTokenExpired));
    }
    assert_eq!(source.fetches(), 1);
    // Inside the window nothing asks the source.
    assert!(client.send_text("wm1", "wk1", "hi").await.is_err());
    assert_eq!(source.fetches(), 1);
    assert!(server.requests_to("/cgi-bin/kf/send_msg").is_empty());
}

/// Calls back into the client for something that needs a token.
struct Reentrant;

impl TokenSource for Reentrant {
    fn identity(&self) -> TokenIdentity {
        TokenIdentity::new("ww-corp", "s")
    }

    fn fetch<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<AccessTokenResponse, Error>> {
        Box::pin(async move {
            client.access_token().await?;
            Ok(AccessTokenResponse::new("never", 7200))
        })
    }
}

#[tokio::test]
async fn a_source_that_needs_a_token_fails_instead_of_waiting_on_itself() {
    let server = MockServer::start().await;
    let client = Client::builder()
        .corp_id(common::CORP_ID)
        .base_url(server.base_url())
        .token_source(Reentrant)
        .build()
        .expect("client");
    // Without the guard this waits forever: bound it, so that is a failure, not a hang.
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        client.send_text("wm1", "wk1", "hi"),
    )
    .await
    .expect("the source's call failed instead of waiting on its own fetch")
    .unwrap_err();
    let Error::TokenUnavailable { cause, .. } = &err else {
        panic!("expected TokenUnavailable, got {err:?}");
    };
    assert!(
        matches!(cause.as_ref(), Error::Config(why) if why.contains("its own fetch")),
        "{cause:?}"
    );
}

/// Records the keys it is asked for.
#[derive(Clone, Default)]
struct Keys {
    inner: Arc<MemoryTokenStore>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl TokenStore for Keys {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        self.seen.lock().unwrap().push(key.to_owned());
        self.inner.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.save(key, token)
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.invalidate(key, failed)
    }
}

#[tokio::test]
async fn the_store_key_names_the_source_and_hides_its_secret() {
    let server = MockServer::start().await;
    let keys = Keys::default();
    let client = Client::builder()
        .corp_id(common::CORP_ID)
        .base_url(server.base_url())
        .token_source(Counting::new(&server))
        .token_store(keys.clone())
        .build()
        .expect("client");
    client.access_token().await.expect("a token");
    let seen = keys.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    for key in &seen {
        assert!(key.starts_with("ww-corp/suite-7:"), "{key}");
        assert!(!key.contains("permanent-code"), "{key}");
    }
    assert!(!format!("{client:?}").contains("permanent-code"));
}

#[tokio::test]
async fn a_client_needs_a_secret_or_a_source() {
    let server = MockServer::start().await;
    let err = Client::builder()
        .corp_id(common::CORP_ID)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Config(why) if why.contains("token_source")),
        "{err}"
    );
    // Without the secret, gettoken can't be called directly.
    let client = client_with(&server, Counting::new(&server));
    let err = client.gettoken().await.unwrap_err();
    assert!(
        matches!(&err, Error::Config(why) if why.contains("corp secret")),
        "{err}"
    );
    assert!(server.requests().is_empty(), "nothing was sent");
}
