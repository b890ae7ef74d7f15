//! Several replicas, one account, on a real `redis-server`: one worker at a time (with
//! takeover when the holder dies), fenced commits, and callback tokens handed to the holder.
//!
//! These tests start `redis-server` themselves and fail if it isn't installed
//! (`apt-get install redis-server`); they never skip.
#![cfg(all(feature = "redis", feature = "callback-server"))]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::callbacks::{crypto, post_callback};
use common::redis_server::RedisServer;
use wecom_kf::callback::server;
use wecom_kf::redis::{Redis, RedisSyncLock};
use wecom_kf::{
    CursorStore, SyncStream,
    sync::{Page, SyncLease, SyncLock},
    token::{BoxFuture, StoreError},
};
use wecom_kf_sim::Simulator;

/// Counts handlers running at once for one account, from any worker.
#[derive(Default)]
struct Watch {
    running: AtomicUsize,
    overlaps: AtomicUsize,
    /// Each hand-over, with when it happened.
    handled: Mutex<Vec<(String, Instant)>>,
    /// When each handler call began.
    entries: Mutex<Vec<Instant>>,
    /// How long each handler call with messages takes, beyond 3 ms.
    slow: Duration,
}

/// Marks a handler running until dropped, even when a killed worker drops it mid-page.
struct Running<'a>(&'a Watch);

impl<'a> Running<'a> {
    fn enter(watch: &'a Watch) -> Self {
        if watch.running.fetch_add(1, Ordering::SeqCst) != 0 {
            watch.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        Running(watch)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A replica process: its own runtime, client, Redis connection, stream and callback
/// router on a loopback port. It pulls only when a callback comes, as a deployed bot
/// does. Killing shuts its runtime down at once, so like a crashed process it never
/// releases its lock.
struct Worker {
    addr: SocketAddr,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const LOCK_TTL: Duration = Duration::from_millis(600);

impl Worker {
    fn spawn(sim: &Simulator, redis_url: String, watch: Arc<Watch>) -> Self {
        Self::spawn_with(sim, redis_url, watch, |lock| lock)
    }

    /// A replica whose sync lock is wrapped by `wrap` (to hold an unlock back).
    fn spawn_with<L: SyncLock>(
        sim: &Simulator,
        redis_url: String,
        watch: Arc<Watch>,
        wrap: impl FnOnce(RedisSyncLock) -> L + Send + 'static,
    ) -> Self {
        let client = sim.client_builder().build().expect("client");
        let crypto = crypto(sim);
        let (kill, killed) = tokio::sync::oneshot::channel();
        let (ready, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("worker runtime");
            runtime.block_on(async move {
                let redis = Redis::connect(&redis_url)
                    .await
                    .expect("connect")
                    .prefix("test:");
                let stream = Arc::new(
                    SyncStream::new(client, redis.cursor_store())
                        .limit(20)
                        .with_lock(wrap(redis.sync_lock().ttl(LOCK_TTL))),
                );
                let app = server::router(crypto, stream, move |page: Page| {
                    let watch = watch.clone();
                    async move {
                        let _running = Running::enter(&watch);
                        watch.entries.lock().expect("times").push(Instant::now());
                        let slow = if page.messages.is_empty() {
                            Duration::ZERO
                        } else {
                            watch.slow
                        };
                        tokio::time::sleep(Duration::from_millis(3) + slow).await;
                        let mut handled = watch.handled.lock().expect("log");
                        let now = Instant::now();
                        handled.extend(page.messages.iter().map(|m| (m.msgid.clone(), now)));
                        Ok::<_, std::io::Error>(())
                    }
                });
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a port");
                ready
                    .send(listener.local_addr().expect("addr"))
                    .expect("the test waits");
                tokio::select! {
                    served = axum::serve(listener, app) => served.expect("serve"),
                    _ = killed => {}
                }
            });
            // Tasks still queued (the lock's release among them) die with the runtime.
            runtime.shutdown_background();
        });
        let addr = addr.recv().expect("the worker starts");
        Worker {
            addr,
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            kill.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// Waits until every message in `sent` was handled; the longest any waited.
async fn all_handled(watch: &Watch, sent: &[(String, Instant)], within: Duration) -> Duration {
    let deadline = Instant::now() + within;
    loop {
        let (missing, longest) = {
            let handled = watch.handled.lock().expect("log");
            let mut first: std::collections::HashMap<&str, Instant> = Default::default();
            for (msgid, at) in handled.iter() {
                first.entry(msgid.as_str()).or_insert(*at);
            }
            let missing = sent
                .iter()
                .filter(|(m, _)| !first.contains_key(m.as_str()))
                .count();
            let longest = sent
                .iter()
                .filter_map(|(m, said)| {
                    first
                        .get(m.as_str())
                        .map(|at| at.saturating_duration_since(*said))
                })
                .max()
                .unwrap_or_default();
            (missing, longest)
        };
        if missing == 0 {
            return longest;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} messages never handled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_one_account_one_at_a_time_nothing_lost_and_one_pull_per_callback() {
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
    let (http, crypto) = (reqwest::Client::new(), crypto(&sim));
    let kf = sim.open_kfid().to_owned();
    let watch = Arc::new(Watch::default());
    let mut workers: Vec<Worker> = (0..4)
        .map(|_| Worker::spawn(&sim, redis.url(), watch.clone()))
        .collect();

    let mut sent = Vec::new();
    let mut kills = 0;
    let mut takeovers = Vec::new();
    let started = Instant::now();
    for i in 0..400 {
        let said = sim
            .customer_says(&kf, &format!("wm{:03}", i % 50), &format!("message {i}"))
            .expect("customer writes");
        sent.push((said.msgid, Instant::now()));
        // The callback lands on any replica, as behind a load balancer.
        let to = workers[i % workers.len()].addr;
        post_callback(&http, &crypto, to, &kf, &said.callback_token).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        if i % 80 == 79 {
            // Kill whichever replica; if it held the lock, the others wait out its TTL.
            let victim = workers.remove(kills % workers.len());
            let killed_at = Instant::now();
            tokio::task::spawn_blocking(move || victim.kill())
                .await
                .expect("kill");
            kills += 1;
            workers.push(Worker::spawn(&sim, redis.url(), watch.clone()));
            takeovers.push(killed_at);
        }
    }
    // Every message reaches a handler, at least once, with no replica polling.
    let longest_wait = all_handled(&watch, &sent, Duration::from_secs(60)).await;
    let handled = watch.handled.lock().expect("log").len();
    let pulls = sim.sync_msg_calls();
    let callbacks = sent.len();
    for worker in workers {
        tokio::task::spawn_blocking(move || worker.kill())
            .await
            .expect("kill");
    }
    assert_eq!(
        watch.overlaps.load(Ordering::SeqCst),
        0,
        "two replicas handled the account at once"
    );
    // No spin (C1): pulls are bounded by callbacks, each answered by a pull or two.
    assert!(
        pulls <= 2 * callbacks,
        "{pulls} sync_msg calls for {callbacks} callbacks"
    );
    // After each kill, how long until a handler ran again (the lock's TTL when the
    // victim held it).
    let entries = watch.entries.lock().expect("times").clone();
    let gaps: Vec<Duration> = takeovers
        .iter()
        .filter_map(|killed| entries.iter().find(|e| *e > killed).map(|e| *e - *killed))
        .collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest < LOCK_TTL * 5,
        "a dead holder kept the account locked for {longest:?}"
    );
    println!(
        "{callbacks} messages and callbacks, {pulls} sync_msg calls ({:.2} per callback), {kills} replicas killed, {handled} hand-overs ({} duplicates), longest takeover {longest:?} (lock TTL {LOCK_TTL:?}), longest a message waited {longest_wait:?}, all delivered in {:.1} s",
        pulls as f64 / callbacks as f64,
        handled - callbacks,
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_on_another_replica_while_the_holder_pulls_costs_one_more_pull() {
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
    let (http, crypto) = (reqwest::Client::new(), crypto(&sim));
    let kf = sim.open_kfid().to_owned();
    let watch = Arc::new(Watch {
        slow: Duration::from_millis(300),
        ..Watch::default()
    });
    let holder = Worker::spawn(&sim, redis.url(), watch.clone());
    let other = Worker::spawn(&sim, redis.url(), watch.clone());

    let first = sim
        .customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    post_callback(&http, &crypto, holder.addr, &kf, &first.callback_token).await;
    while watch.entries.lock().expect("times").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // While the holder handles the first page, the next callback lands elsewhere.
    let second = sim
        .customer_says(&kf, "wmBOB", "在吗")
        .expect("customer writes");
    post_callback(&http, &crypto, other.addr, &kf, &second.callback_token).await;
    let sent = [
        (first.msgid, Instant::now()),
        (second.msgid, Instant::now()),
    ];
    all_handled(&watch, &sent, LOCK_TTL * 10).await;
    // Time for a spinning holder to show itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pulls = sim.sync_msg_calls();
    for worker in [holder, other] {
        tokio::task::spawn_blocking(move || worker.kill())
            .await
            .expect("kill");
    }
    // The first pull, the one for the handed-over callback, and at most one more.
    assert!(pulls <= 3, "{pulls} sync_msg calls for 2 callbacks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_deferred_to_a_holder_that_died_is_pulled_once_its_lock_expires() {
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
    let (http, crypto) = (reqwest::Client::new(), crypto(&sim));
    let kf = sim.open_kfid().to_owned();
    let watch = Arc::new(Watch::default());
    // A holder that took the account's lock and died: it never pulls, never lets go.
    let dead = redis.connect().await.sync_lock().ttl(LOCK_TTL);
    let _lease = dead.try_lock(&kf).await.expect("redis").expect("free");
    let replica = Worker::spawn(&sim, redis.url(), watch.clone());

    let said = sim
        .customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    let at = Instant::now();
    post_callback(&http, &crypto, replica.addr, &kf, &said.callback_token).await;
    // No other callback comes: the replica that deferred must take over by itself.
    let waited = all_handled(&watch, &[(said.msgid, at)], LOCK_TTL * 10).await;
    tokio::task::spawn_blocking(move || replica.kill())
        .await
        .expect("kill");
    assert!(
        waited >= LOCK_TTL / 2,
        "pulled while the lock was held? {waited:?}"
    );
    println!("a callback deferred to a dead holder waited {waited:?} (lock TTL {LOCK_TTL:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_tokens_live_in_redis_only_as_long_as_they_are_valid() {
    use wecom_kf::{Secret, sync::CallbackToken};
    let redis = RedisServer::start();
    let store = redis.connect().await.cursor_store();
    let mut raw = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let issued = |ago: u64, token: &str| CallbackToken {
        token: Secret::new(token),
        issued_at: std::time::SystemTime::now() - Duration::from_secs(ago),
    };
    // Nine minutes old: at most 30 s of its 9.5 minutes are left, and that is all Redis keeps.
    store
        .publish_callback("wkKF", &issued(9 * 60, "OLD"))
        .await
        .expect("redis");
    let left: i64 = redis::cmd("PTTL")
        .arg("test:callback-token:{wkKF}")
        .query_async(&mut raw)
        .await
        .expect("redis");
    assert!((1..=30_000).contains(&left), "kept for {left} ms");
    // An older token does not replace a newer one; both callbacks count.
    store
        .publish_callback("wkKF", &issued(5, "NEW"))
        .await
        .expect("redis");
    store
        .publish_callback("wkKF", &issued(60, "LATE"))
        .await
        .expect("redis");
    let shared = store.shared_callbacks("wkKF").await.expect("redis");
    assert_eq!(shared.generation, 3);
    assert_eq!(shared.newest.map(|t| t.token), Some(Secret::new("NEW")));
    // WeCom refused it (95007): dropped for every process, but only while it is that token.
    store
        .forget_callback_token("wkKF", &Secret::new("OTHER"))
        .await
        .expect("redis");
    assert!(
        store
            .shared_callbacks("wkKF")
            .await
            .expect("redis")
            .newest
            .is_some()
    );
    store
        .forget_callback_token("wkKF", &Secret::new("NEW"))
        .await
        .expect("redis");
    assert_eq!(
        store.shared_callbacks("wkKF").await.expect("redis").newest,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_one_script_touches_share_a_cluster_slot() {
    use wecom_kf::sync::SyncLock as _;
    let redis = RedisServer::start();
    let shared = redis.connect().await;
    let lease = shared
        .sync_lock()
        .try_lock("wkKF")
        .await
        .expect("redis")
        .expect("free");
    let checkpoint = wecom_kf::sync::Checkpoint::default();
    assert!(
        shared
            .cursor_store()
            .save_if_held("wkKF", &checkpoint, &lease)
            .await
            .expect("redis")
    );
    let mut raw = redis::Client::open(redis.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:*")
        .query_async(&mut raw)
        .await
        .expect("redis");
    // The list of accounts with a checkpoint is one key for all, written by a command of
    // its own, outside any script.
    let (listing, keys): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|k| k == "test:cursor-accounts");
    assert_eq!(listing.len(), 1, "the account is listed");
    assert_eq!(keys.len(), 2, "{keys:?}");
    // Redis Cluster hashes only what is inside the first `{…}`.
    let tag = |key: &str| {
        key.split_once('{')
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(tag, _)| tag.to_owned())
    };
    for key in &keys {
        assert_eq!(tag(key).as_deref(), Some("wkKF"), "{key}");
    }
}

/// A sync lock whose `unlock` waits until the test lets it go, and says when it is there:
/// the moment between a holder's last check for callbacks and its release.
#[derive(Clone)]
struct HeldBackUnlock {
    inner: RedisSyncLock,
    at_unlock: Arc<tokio::sync::Notify>,
    go: Arc<tokio::sync::Semaphore>,
}

impl SyncLock for HeldBackUnlock {
    fn try_lock<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncLease>, StoreError>> {
        self.inner.try_lock(open_kfid)
    }

    fn renew<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.renew(lease)
    }

    fn unlock<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.at_unlock.notify_one();
            self.go.acquire().await.expect("open").forget();
            self.inner.unlock(lease).await
        })
    }

    fn renew_every(&self) -> Duration {
        self.inner.renew_every()
    }

    fn expires_after(&self) -> Duration {
        self.inner.expires_after()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_lands_while_the_holder_lets_go_is_pulled() {
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
    let (http, crypto) = (reqwest::Client::new(), crypto(&sim));
    let kf = sim.open_kfid().to_owned();
    let watch = Arc::new(Watch::default());
    let at_unlock = Arc::new(tokio::sync::Notify::new());
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let holder = Worker::spawn_with(&sim, redis.url(), watch.clone(), {
        let (at_unlock, go) = (at_unlock.clone(), go.clone());
        move |inner| HeldBackUnlock {
            inner,
            at_unlock,
            go,
        }
    });
    let other = Worker::spawn(&sim, redis.url(), watch.clone());

    let first = sim
        .customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    post_callback(&http, &crypto, holder.addr, &kf, &first.callback_token).await;
    // The holder pulled, handled, found nothing new, and is about to let go.
    at_unlock.notified().await;
    let second = sim
        .customer_says(&kf, "wmBOB", "在吗")
        .expect("customer writes");
    post_callback(&http, &crypto, other.addr, &kf, &second.callback_token).await;
    // The other replica finds the lock still taken and hands its callback over (counted in
    // Redis); only then does the holder let go.
    let shared = redis.connect().await.cursor_store();
    while shared
        .shared_callbacks(&kf)
        .await
        .expect("redis")
        .generation
        < 2
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    go.add_permits(1000);

    let sent = [
        (first.msgid, Instant::now()),
        (second.msgid, Instant::now()),
    ];
    // Well inside the lock's lifetime: the holder's check after letting go catches it.
    all_handled(&watch, &sent, LOCK_TTL * 10).await;
    println!("sync_msg calls: {}", sim.sync_msg_calls());
    for worker in [holder, other] {
        tokio::task::spawn_blocking(move || worker.kill())
            .await
            .expect("kill");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lock_can_neither_commit_renew_nor_release_it() {
    use wecom_kf::sync::{Checkpoint, SyncLock};
    let redis = RedisServer::start();
    let (a, b) = (redis.connect().await, redis.connect().await);
    let lock_a = a.sync_lock().ttl(Duration::from_millis(100));
    let lock_b = b.sync_lock().ttl(Duration::from_secs(10));
    let lease_a = lock_a.try_lock("wkKF").await.expect("redis").expect("free");
    assert!(
        lock_b.try_lock("wkKF").await.expect("redis").is_none(),
        "held by a"
    );
    let at = |cursor: &str| Checkpoint {
        cursor: Some(cursor.into()),
        handled: Vec::new(),
        ..Checkpoint::default()
    };
    let cursors = a.cursor_store();
    assert!(
        cursors
            .save_if_held("wkKF", &at("A1"), &lease_a)
            .await
            .expect("redis")
    );

    // a stalls past its TTL; b takes over.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lease_b = lock_b
        .try_lock("wkKF")
        .await
        .expect("redis")
        .expect("expired");
    assert!(
        !cursors
            .save_if_held("wkKF", &at("A2"), &lease_a)
            .await
            .expect("redis")
    );
    assert!(
        !lock_a.renew(&lease_a).await.expect("redis"),
        "a can't renew b's lock"
    );
    lock_a.unlock(&lease_a).await.expect("redis");
    assert!(
        lock_b.renew(&lease_b).await.expect("redis"),
        "a's unlock left b's lock alone"
    );
    assert!(
        b.cursor_store()
            .save_if_held("wkKF", &at("B1"), &lease_b)
            .await
            .expect("redis")
    );
    assert_eq!(
        cursors.load("wkKF").await.expect("redis").cursor.as_deref(),
        Some("B1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_on_a_replica_without_the_lock_hands_its_token_to_the_holder() {
    use wecom_kf::CursorStore as _;
    use wecom_kf::sync::SyncLock;
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let shared = redis.connect().await;
    // Another replica holds the account's lock.
    let holder = shared
        .sync_lock()
        .try_lock(&kf)
        .await
        .expect("redis")
        .expect("free");

    let replica = SyncStream::new(
        sim.client_builder().build().expect("client"),
        shared.cursor_store(),
    )
    .with_lock(shared.sync_lock());
    let said = sim
        .customer_says(&kf, "wmALICE", "在吗")
        .expect("customer writes");
    replica.callback_token(&kf, said.callback_token.clone());
    let summary = replica
        .run(&kf, |_page| async { Ok::<_, std::io::Error>(()) })
        .await
        .expect("run");
    assert!(summary.deferred, "the holder syncs, not this replica");
    assert_eq!(summary.pages, 0);
    assert_eq!(
        shared
            .cursor_store()
            .shared_callbacks(&kf)
            .await
            .expect("redis")
            .newest
            .map(|t| t.token.expose().to_owned()),
        Some(said.callback_token),
        "the token went to the holder through Redis"
    );

    // Once the lock is free, the replica syncs and gets the message.
    shared.sync_lock().unlock(&holder).await.expect("redis");
    let mut got = Vec::new();
    let summary = replica
        .run(&kf, |page| {
            got.extend(page.messages.into_iter().map(|m| m.msgid));
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .expect("run");
    assert!(!summary.deferred);
    assert_eq!(got, [said.msgid]);
}
