//! Several replicas, one account, on a real `redis-server`: one worker at a time (with
//! takeover when the holder dies), fenced commits, and callback tokens handed to the holder.
//!
//! These tests start `redis-server` themselves and fail if it isn't installed
//! (`apt-get install redis-server`); they never skip.
#![cfg(all(feature = "redis", feature = "sim"))]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use wecom_kf::redis::Redis;
use wecom_kf::sim::Simulator;
use wecom_kf::{CursorStore, SyncStream};

/// Counts handlers running at once for one account, from any worker.
#[derive(Default)]
struct Watch {
    running: AtomicUsize,
    overlaps: AtomicUsize,
    handled: Mutex<Vec<String>>,
    /// When each handler call began.
    entries: Mutex<Vec<Instant>>,
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

/// A worker process: its own runtime, client, Redis connection and stream, syncing the
/// account in a loop until killed. Killing shuts its runtime down at once, so like a
/// crashed process it never releases its lock.
struct Worker {
    stream: Arc<SyncStream<wecom_kf::redis::RedisCursorStore>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const LOCK_TTL: Duration = Duration::from_millis(600);

impl Worker {
    fn spawn(sim: &Simulator, redis_url: String, watch: Arc<Watch>) -> Self {
        let client = sim.client_builder().build().expect("client");
        let kf = sim.open_kfid().to_owned();
        let (kill, killed) = tokio::sync::oneshot::channel();
        let (ready, stream) = std::sync::mpsc::channel();
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
                        .with_lock(redis.sync_lock().ttl(LOCK_TTL)),
                );
                ready.send(stream.clone()).expect("the test waits");
                let work = async {
                    loop {
                        let watch = watch.clone();
                        let _ = stream
                            .run(&kf, move |page| {
                                let watch = watch.clone();
                                async move {
                                    let _running = Running::enter(&watch);
                                    watch.entries.lock().expect("times").push(Instant::now());
                                    tokio::time::sleep(Duration::from_millis(3)).await;
                                    let mut handled = watch.handled.lock().expect("log");
                                    handled.extend(page.messages.iter().map(|m| m.msgid.clone()));
                                    Ok::<_, std::io::Error>(())
                                }
                            })
                            .await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                };
                tokio::select! {
                    () = work => {}
                    _ = killed => {}
                }
            });
            // Tasks still queued (the lock's release among them) die with the runtime.
            runtime.shutdown_background();
        });
        let stream = stream.recv().expect("the worker starts");
        Worker {
            stream,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_one_account_one_at_a_time_and_nothing_lost_when_they_die() {
    let redis = RedisServer::start();
    let sim = Simulator::start().await.expect("simulator");
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
            .customer_says(
                sim.open_kfid(),
                &format!("wm{:03}", i % 50),
                &format!("message {i}"),
            )
            .expect("customer writes");
        sent.push(said.msgid);
        // The callback lands on any worker.
        workers[i % workers.len()]
            .stream
            .callback_token(sim.open_kfid(), said.callback_token);
        tokio::time::sleep(Duration::from_millis(5)).await;
        if i % 80 == 79 {
            // Kill whichever worker; if it held the lock, the others wait out its TTL.
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
    // Every message reaches a handler, at least once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let handled: HashSet<String> =
                watch.handled.lock().expect("log").iter().cloned().collect();
            sent.iter().filter(|m| !handled.contains(*m)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} messages never handled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let handled = watch.handled.lock().expect("log").len();
    for worker in workers {
        tokio::task::spawn_blocking(move || worker.kill())
            .await
            .expect("kill");
    }
    assert_eq!(
        watch.overlaps.load(Ordering::SeqCst),
        0,
        "two workers handled the account at once"
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
        "{} messages, {kills} workers killed, {handled} hand-overs ({} duplicates), longest takeover {longest:?} (lock TTL {LOCK_TTL:?}), all delivered in {:.1} s",
        sent.len(),
        handled - sent.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_lost_its_lock_can_neither_commit_renew_nor_release_it() {
    use wecom_kf::{Checkpoint, SyncLock};
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
    use wecom_kf::SyncLock;
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
