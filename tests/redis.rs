//! Several processes, one access token, on a real `redis-server`: one `gettoken` for a cold
//! start across 8 clients, one refresh for a revoked token, tokens in hand kept (and typed
//! errors for clients without one) while Redis is down, foreign values, huge lifetimes, and
//! refreshes that outlive a cancelled caller or fail. The sync across replicas is in
//! `redis_sync.rs`.
//!
//! These tests start `redis-server` themselves and fail if it isn't installed
//! (`apt-get install redis-server`); they never skip.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::MockServer;
use common::redis_server::RedisServer;
use wecom_kf::{Client, CursorStore, Error};

/// `n` clients of one app, each with its own Redis connection: `n` processes.
async fn clients_sharing(server: &MockServer, redis: &RedisServer, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let store = redis.connect().await.token_store();
        clients.push(
            server
                .client_builder()
                .token_store(store)
                .build()
                .expect("client"),
        );
    }
    clients
}

/// 1,000 concurrent sends spread over `clients`; all must succeed.
async fn burst(clients: &[Client]) {
    let sends: Vec<_> = (0..1000)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            tokio::spawn(async move { client.send_text("wmALICE", "wkKF", "hi").await })
        })
        .collect();
    for send in sends {
        send.await.expect("task").expect("every send succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_share_one_token_and_one_refresh() {
    let redis = RedisServer::start();
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(100));
    let clients = clients_sharing(&server, &redis, 8).await;

    burst(&clients).await;
    assert_eq!(
        server.gettoken_calls(),
        1,
        "a cold start fetches one token for all"
    );

    // WeCom revokes the token: every process sees 42001, and exactly one refreshes.
    server.refuse_tokens(42001);
    burst(&clients).await;
    assert_eq!(
        server.gettoken_calls(),
        2,
        "one refresh across all processes"
    );

    // The shared token is keyed by a hash and sealed: neither the secret nor a usable token
    // is in Redis.
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw_connection(&redis).await)
        .await
        .expect("KEYS");
    keys.sort();
    assert!(
        keys.iter().any(|k| k.starts_with("test:token:")),
        "{keys:?}"
    );
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(&mut raw_connection(&redis).await)
        .await
        .expect("MGET");
    for text in keys
        .iter()
        .map(Some)
        .chain(values.iter().map(Option::as_ref))
        .flatten()
    {
        assert!(
            !text.contains(common::SECRET),
            "the secret leaked into Redis: {text}"
        );
        assert!(
            !text.contains("ACCESS_TOKEN_"),
            "an access token is in Redis in clear: {text}"
        );
    }
}

async fn raw_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}

/// A client that holds a valid token keeps sending while Redis is down; one that holds
/// none fails with a typed store error; both recover once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_warm_clients_keep_sending_and_cold_ones_fail_typed() {
    let mut redis = RedisServer::start();
    let server = MockServer::start().await;
    let shared = redis.connect().await;
    let client = server
        .client_builder()
        .token_store(shared.token_store())
        .build()
        .expect("client");
    let cold = server
        .client_builder()
        .token_store(redis.connect().await.token_store())
        .build()
        .expect("client");
    let cursors = shared.cursor_store();
    client
        .send_text("wmALICE", "wkKF", "before")
        .await
        .expect("send");
    let checkpoint = wecom_kf::sync::Checkpoint {
        cursor: Some("CURSOR-42".into()),
        handled: Vec::new(),
        ..wecom_kf::sync::Checkpoint::default()
    };
    cursors.save("wkKF", &checkpoint).await.expect("save");

    redis.stop();
    client
        .send_text("wmALICE", "wkKF", "during")
        .await
        .expect("the token in hand still works");
    let err = cold
        .send_text("wmALICE", "wkKF", "during")
        .await
        .expect_err("no token store, no token in hand");
    assert!(matches!(err, Error::TokenStore(_)), "{err:?}");
    assert!(cursors.load("wkKF").await.is_err(), "a typed store error");

    redis.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    for client in [&client, &cold] {
        loop {
            match client.send_text("wmALICE", "wkKF", "after").await {
                Ok(_) => break,
                Err(e) => {
                    assert!(Instant::now() < deadline, "did not recover: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    assert_eq!(
        cursors.load("wkKF").await.expect("load").cursor.as_deref(),
        Some("CURSOR-42"),
        "the cursor survives the restart, never moved back"
    );
    assert_eq!(server.gettoken_calls(), 1, "the stored token survived too");
}

/// A huge `expires_in` once overflowed Redis's `PX` (milliseconds above `i64::MAX`), so no
/// token was ever stored and every call failed; it is clamped, and the token is shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_expires_in_is_stored_clamped() {
    let redis = RedisServer::start();
    let server = MockServer::start().await;
    server.set_token_expires_in(serde_json::json!(10_000_000_000_000_000u64));
    let clients = clients_sharing(&server, &redis, 2).await;
    clients[0]
        .send_text("wmALICE", "wkKF", "hi")
        .await
        .expect("send");
    clients[1]
        .send_text("wmALICE", "wkKF", "hi")
        .await
        .expect("send from the other process");
    assert_eq!(
        server.gettoken_calls(),
        1,
        "the token was stored and shared"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:token:*")
        .query_async(&mut raw_connection(&redis).await)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut raw_connection(&redis).await)
        .await
        .expect("PTTL");
    assert!(
        ttl > 0 && ttl <= 24 * 3600 * 1000,
        "lives at most a day: {ttl} ms"
    );
}

/// The names of the keys matching `pattern`.
async fn keys(redis: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut raw_connection(redis).await)
        .await
        .expect("KEYS")
}

/// A caller cancelled while its process fetches the token (a timeout around a send, a
/// dropped handler): the fetch still finishes, the token is saved and the refresh lock let
/// go, so another process uses that token instead of waiting out the lock and fetching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_outlives_the_caller_that_started_it() {
    let redis = RedisServer::start();
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(300));
    let clients = clients_sharing(&server, &redis, 2).await;
    let caller = tokio::spawn({
        let client = clients[0].clone();
        async move { client.send_text("wmALICE", "wkKF", "given up").await }
    });
    while server.gettoken_calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    caller.abort();
    assert!(caller.await.expect_err("aborted").is_cancelled());

    clients[1]
        .send_text("wmALICE", "wkKF", "from the other process")
        .await
        .expect("send");
    assert_eq!(
        server.gettoken_calls(),
        1,
        "the other process used the cancelled caller's token"
    );
    assert!(
        keys(&redis, "test:token-lock:*").await.is_empty(),
        "the refresh lock was let go"
    );
    clients[0]
        .send_text("wmALICE", "wkKF", "and this one")
        .await
        .expect("send");
    assert_eq!(server.gettoken_calls(), 1);
}

/// A value at the token key that this version didn't write (another tool's, an old
/// format) is taken as no token: fetched again and overwritten, not an error on every call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_value_at_the_token_key_is_replaced() {
    let redis = RedisServer::start();
    let server = MockServer::start().await;
    let clients = clients_sharing(&server, &redis, 2).await;
    clients[0]
        .send_text("wmALICE", "wkKF", "hi")
        .await
        .expect("send");
    let token_keys = keys(&redis, "test:token:*").await;
    assert_eq!(token_keys.len(), 1, "{token_keys:?}");
    let spoil = || async {
        let () = redis::cmd("SET")
            .arg(&token_keys[0])
            .arg("not a token we wrote")
            .query_async(&mut raw_connection(&redis).await)
            .await
            .expect("SET");
    };

    spoil().await;
    clients[1]
        .send_text("wmALICE", "wkKF", "from another process")
        .await
        .expect("a foreign value is no token");
    assert_eq!(server.gettoken_calls(), 2, "fetched anew");
    let stored: String = redis::cmd("GET")
        .arg(&token_keys[0])
        .query_async(&mut raw_connection(&redis).await)
        .await
        .expect("GET");
    assert!(
        serde_json::from_str::<serde_json::Value>(&stored).is_ok(),
        "overwritten with a token: {stored}"
    );

    // Invalidating a refused token next to a foreign value doesn't fail either.
    spoil().await;
    server.refuse_tokens(42001);
    clients[0]
        .send_text("wmALICE", "wkKF", "after a refusal")
        .await
        .expect("refreshed");
    assert_eq!(server.gettoken_calls(), 3);
}

/// A wrong secret across processes: one `gettoken` in all, and the others wait out the
/// window it left in Redis instead of each trying in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_closes_fetching_for_every_process() {
    let redis = RedisServer::start();
    let server = MockServer::start().await;
    server.set_gettoken_delay(Duration::from_millis(100));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(
            server
                .client_builder()
                .secret("wrong")
                .token_failure_backoff(Duration::from_secs(60))
                .token_store(redis.connect().await.token_store())
                .build()
                .expect("client"),
        );
    }
    let sends: Vec<_> = (0..100)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            tokio::spawn(async move { client.send_text("wmALICE", "wkKF", "hi").await })
        })
        .collect();
    for send in sends {
        let err = send.await.expect("task").expect_err("wrong secret");
        assert_eq!(
            err.code(),
            Some(wecom_kf::ErrCode::InvalidCredential),
            "{err:?}"
        );
    }
    assert_eq!(server.gettoken_calls(), 1, "one fetch across all processes");
    let windows = keys(&redis, "test:token-fail:*").await;
    assert_eq!(windows.len(), 1, "the window is in Redis: {windows:?}");
    assert!(
        windows[0].contains('{') && windows[0].ends_with('}'),
        "hash-tagged like the token key: {}",
        windows[0]
    );

    // A process that starts now sees the window too.
    let late = server
        .client_builder()
        .secret("wrong")
        .token_store(redis.connect().await.token_store())
        .build()
        .expect("client");
    let err = late.access_token().await.expect_err("inside the window");
    assert!(
        matches!(&err, Error::TokenUnavailable { cause, .. } if matches!(**cause, Error::FetchFailedElsewhere { .. })),
        "{err:?}"
    );
    assert_eq!(err.code(), Some(wecom_kf::ErrCode::InvalidCredential));
    assert_eq!(server.gettoken_calls(), 1);
}
