//! Several processes, one access token, on a real `redis-server`: one `gettoken` for a cold
//! start across 8 clients, one refresh for a revoked token, and typed errors while Redis is
//! down. The sync across replicas is in `redis_sync.rs`.
//!
//! These tests start `redis-server` themselves and fail if it isn't installed
//! (`apt-get install redis-server`); they never skip.
#![cfg(all(feature = "redis", feature = "sim"))]

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_down_calls_fail_typed_and_recover_when_it_is_back() {
    let mut redis = RedisServer::start();
    let server = MockServer::start().await;
    let shared = redis.connect().await;
    let client = server
        .client_builder()
        .token_store(shared.token_store())
        .build()
        .expect("client");
    let cursors = shared.cursor_store();
    client
        .send_text("wmALICE", "wkKF", "before")
        .await
        .expect("send");
    let checkpoint = wecom_kf::Checkpoint {
        cursor: Some("CURSOR-42".into()),
        handled: Vec::new(),
    };
    cursors.save("wkKF", &checkpoint).await.expect("save");

    redis.stop();
    let err = client
        .send_text("wmALICE", "wkKF", "during")
        .await
        .expect_err("no token store, no token");
    assert!(matches!(err, Error::TokenStore(_)), "{err:?}");
    assert!(cursors.load("wkKF").await.is_err(), "a typed store error");

    redis.launch();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.send_text("wmALICE", "wkKF", "after").await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
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
