//! The sync stream: it follows `has_more` past empty pages, commits a cursor only after its
//! page was handled, and survives crashes without skipping a message.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{MockServer, Recorded, Reply};
use serde_json::{Value, json};
use wecom_kf::callback::KfMsgOrEvent;
use wecom_kf::{
    CursorStore, FileCursorStore, MemoryCursorStore, RetryPolicy, Secret, SyncStream,
    sync::{Checkpoint, Page, SyncError, SyncLease, SyncLock, SyncSummary},
    token::{BoxFuture, StoreError},
};

const SYNC: &str = "/cgi-bin/kf/sync_msg";

fn item(i: usize) -> Value {
    json!({
        "msgid": format!("m{i:05}"), "open_kfid": "wk1", "external_userid": "wmC",
        "send_time": 1_700_000_000 + i, "origin": 3, "msgtype": "text", "text": {"content": format!("#{i}")},
    })
}

fn ok_page(items: Vec<Value>, next_cursor: &str, has_more: bool) -> Reply {
    Reply::Json(json!({
        "errcode": 0, "errmsg": "ok", "next_cursor": next_cursor, "has_more": u32::from(has_more), "msg_list": items,
    }))
}

fn cursor_of(request: &Recorded) -> Option<String> {
    request
        .body
        .get("cursor")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn msgids(page: &Page) -> Vec<String> {
    page.messages.iter().map(|m| m.msgid.clone()).collect()
}

#[tokio::test]
async fn follows_has_more_past_empty_pages_and_commits_each_cursor() {
    let server = MockServer::start().await;
    server.script(
        SYNC,
        [
            ok_page(vec![item(0), item(1)], "c2", true),
            ok_page(vec![], "c2-empty", true),
            ok_page(vec![], "c2-empty-again", true),
            ok_page(vec![item(2)], "c3", false),
        ],
    );
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let summary = sync
        .run("wk1", |page| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().extend(msgids(&page));
                Ok::<_, std::convert::Infallible>(())
            }
        })
        .await
        .expect("run");
    assert_eq!(*seen.lock().unwrap(), ["m00000", "m00001", "m00002"]);
    assert_eq!((summary.pages, summary.messages), (4, 3));
    let cursors: Vec<_> = server.requests_to(SYNC).iter().map(cursor_of).collect();
    assert_eq!(
        cursors,
        [
            None,
            Some("c2".into()),
            Some("c2-empty".into()),
            Some("c2-empty-again".into())
        ]
    );
    assert_eq!(
        sync.store().load("wk1").await.unwrap().cursor.as_deref(),
        Some("c3")
    );
}

#[tokio::test]
async fn a_failed_handler_commits_nothing_and_gets_the_page_again() {
    let server = MockServer::start().await;
    server.script(
        SYNC,
        [
            ok_page(vec![item(0)], "c1", true),
            ok_page(vec![item(1)], "c2", false),
            ok_page(vec![item(1)], "c2", false),
        ],
    );
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new());
    let err = sync
        .run("wk1", |page| async move {
            if msgids(&page) == ["m00001"] {
                Err("disk full")
            } else {
                Ok(())
            }
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Handler("disk full")), "{err:?}");
    assert_eq!(
        sync.store().load("wk1").await.unwrap().cursor.as_deref(),
        Some("c1")
    );

    let again = Arc::new(Mutex::new(Vec::new()));
    sync.run("wk1", |page| {
        let again = again.clone();
        async move {
            again.lock().unwrap().extend(msgids(&page));
            Ok::<_, &str>(())
        }
    })
    .await
    .expect("second run");
    assert_eq!(*again.lock().unwrap(), ["m00001"]);
    let cursors: Vec<_> = server.requests_to(SYNC).iter().map(cursor_of).collect();
    assert_eq!(
        cursors[2],
        Some("c1".into()),
        "resumed from the last commit"
    );
}

#[tokio::test]
async fn run_each_skips_what_it_handled_before_a_stop() {
    let server = MockServer::start().await;
    let page = vec![item(0), item(1), item(2)];
    server.script(
        SYNC,
        [
            ok_page(page.clone(), "c3", false),
            ok_page(page, "c3", false),
        ],
    );
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new());
    let handled = Arc::new(Mutex::new(Vec::new()));
    let handler = |fail_on: Option<&'static str>| {
        let handled = handled.clone();
        move |msg: wecom_kf::types::ReceivedMsg| {
            let handled = handled.clone();
            async move {
                if Some(msg.msgid.as_str()) == fail_on {
                    return Err("boom");
                }
                handled.lock().unwrap().push(msg.msgid);
                Ok(())
            }
        }
    };
    let err = sync
        .run_each("wk1", handler(Some("m00002")))
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Handler("boom")));
    let checkpoint = sync.store().load("wk1").await.unwrap();
    assert_eq!(
        checkpoint,
        Checkpoint {
            cursor: None,
            handled: vec!["m00000".into(), "m00001".into()],
            ..Checkpoint::default()
        }
    );

    let summary = sync
        .run_each("wk1", handler(None))
        .await
        .expect("second run");
    assert_eq!(
        *handled.lock().unwrap(),
        ["m00000", "m00001", "m00002"],
        "each message once"
    );
    assert_eq!((summary.messages, summary.skipped), (1, 2));
    assert_eq!(
        sync.store().load("wk1").await.unwrap(),
        Checkpoint {
            cursor: Some("c3".into()),
            handled: vec![],
            ..Checkpoint::default()
        }
    );
}

#[tokio::test]
async fn the_newest_callback_token_is_used_and_a_stale_one_dropped() {
    let server = MockServer::start().await;
    server.script(
        SYNC,
        [
            Reply::Json(json!({"errcode": 95007, "errmsg": "invalid msg token"})),
            ok_page(vec![], "c1", false),
            ok_page(vec![], "c2", false),
        ],
    );
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new());
    sync.callback_token("wk1", "OLD");
    sync.callback_token("wk1", "NEWEST");
    let noop = |_: Page| async { Ok::<_, String>(()) };
    sync.run("wk1", noop).await.expect("falls back to no token");
    sync.run("wk1", noop).await.expect("second run");
    let tokens: Vec<Option<String>> = server
        .requests_to(SYNC)
        .iter()
        .map(|r| {
            r.body
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        tokens,
        [Some("NEWEST".into()), None, None],
        "the stale token is forgotten"
    );
}

fn token_of(request: &Recorded) -> Option<String> {
    request
        .body
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn a_late_callback_never_replaces_a_newer_token() {
    let server = MockServer::start().await;
    server.respond_with(SYNC, |_| ok_page(vec![], "c1", false));
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let callback = |token: &str, create_time: u64| KfMsgOrEvent {
        to_user_name: "ww1".into(),
        create_time,
        token: Secret::new(token),
        open_kfid: "wk1".into(),
    };
    sync.callback(&callback("NEWER", now - 10));
    // Delivered late (a retry, a replay): older than the token already here.
    sync.callback(&callback("OLDER", now - 60));
    sync.run("wk1", |_| async { Ok::<_, String>(()) })
        .await
        .expect("run");
    let tokens: Vec<_> = server.requests_to(SYNC).iter().map(token_of).collect();
    assert_eq!(tokens, [Some("NEWER".to_owned())]);
}

#[tokio::test]
async fn a_callback_during_a_run_is_pulled_by_that_run() {
    let server = MockServer::start().await;
    // The second message exists only once the handler of the first is running.
    let pulls = Arc::new(AtomicUsize::new(0));
    server.respond_with(SYNC, {
        let pulls = pulls.clone();
        move |_| match pulls.fetch_add(1, Ordering::SeqCst) {
            0 => ok_page(vec![item(1)], "c1", false),
            1 => ok_page(vec![item(2)], "c2", false),
            _ => ok_page(vec![], "c2", false),
        }
    });
    let sync = Arc::new(SyncStream::new(server.client(), MemoryCursorStore::new()));
    sync.callback_token("wk1", "T1");
    let mut handed = Vec::new();
    let summary = sync
        .run("wk1", |page| {
            if handed.is_empty() {
                // The customer writes again; the callback lands while this page is handled.
                sync.callback_token("wk1", "T2");
            }
            handed.extend(msgids(&page));
            async { Ok::<_, String>(()) }
        })
        .await
        .expect("run");
    assert_eq!(handed, ["m00001", "m00002"]);
    assert_eq!(summary.pages, 2, "one pull per callback, no more");
    let tokens: Vec<_> = server.requests_to(SYNC).iter().map(token_of).collect();
    assert_eq!(
        tokens,
        [Some("T1".into()), Some("T2".into())],
        "each pull with the newest token"
    );
    assert!(!sync.pending("wk1"));
}

#[tokio::test]
async fn run_each_hands_over_every_item_without_a_string_msgid_once() {
    let server = MockServer::start().await;
    let text =
        |n: u32| json!({"msgtype": "text", "origin": 3, "text": {"content": format!("#{n}")}});
    let mut odd = vec![text(1), text(2), text(1)];
    // Two identical items with no msgid: still two items.
    odd[2] = odd[0].clone();
    let mut numbered = text(3);
    numbered["msgid"] = json!(12345);
    let mut empty = text(4);
    empty["msgid"] = json!("");
    odd.extend([numbered, empty, item(5)]);
    let page = odd.clone();
    server.respond_with(SYNC, move |request| match cursor_of(request) {
        None => ok_page(page.clone(), "c1", false),
        Some(_) => ok_page(vec![], "c1", false),
    });
    let store = MemoryCursorStore::new();
    let sync = SyncStream::new(server.client(), store);
    let handled = AtomicUsize::new(0);
    // Fails on the fifth item the first time: the page comes again, the first four skipped.
    let fail_once = AtomicUsize::new(0);
    async fn run(
        sync: &SyncStream<MemoryCursorStore>,
        handled: &AtomicUsize,
        fail_once: &AtomicUsize,
    ) -> Result<SyncSummary, SyncError<&'static str>> {
        sync.run_each("wk1", |_message| {
            let n = handled.fetch_add(1, Ordering::SeqCst) + 1;
            let fail = n == 5 && fail_once.fetch_add(1, Ordering::SeqCst) == 0;
            async move { if fail { Err("not now") } else { Ok(()) } }
        })
        .await
    }
    let first = run(&sync, &handled, &fail_once).await;
    assert!(
        matches!(first, Err(SyncError::Handler("not now"))),
        "{first:?}"
    );
    let summary = run(&sync, &handled, &fail_once).await.expect("second run");
    assert_eq!(summary.skipped, 4, "the four handled before the stop");
    assert_eq!(summary.messages, 2);
    assert_eq!(
        handled.load(Ordering::SeqCst),
        7,
        "six items, the fifth twice"
    );
}

/// A [`SyncLock`] in memory that counts renewals and can be told to fail them.
#[derive(Default)]
struct TestLock {
    held: Mutex<Option<String>>,
    renewals: AtomicUsize,
    /// Renewals that answer an error before one succeeds again.
    failing_renewals: AtomicUsize,
    /// Answer every renewal with "lost".
    lose: std::sync::atomic::AtomicBool,
    every: Duration,
    /// The lock's lifetime, when it isn't three renewal periods.
    ttl: Option<Duration>,
}

impl TestLock {
    fn every(every: Duration) -> Shared {
        Shared(Arc::new(TestLock {
            every,
            ..TestLock::default()
        }))
    }
}

/// The lock as the stream holds it, and as the test looks at it.
#[derive(Clone)]
struct Shared(Arc<TestLock>);

impl std::ops::Deref for Shared {
    type Target = TestLock;
    fn deref(&self) -> &TestLock {
        &self.0
    }
}

impl SyncLock for Shared {
    fn try_lock<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncLease>, StoreError>> {
        let mut held = self.held.lock().unwrap();
        let lease = held.is_none().then(|| {
            *held = Some("me".into());
            SyncLease {
                open_kfid: open_kfid.into(),
                owner: "me".into(),
            }
        });
        Box::pin(async move { Ok(lease) })
    }

    fn renew<'a>(&'a self, _lease: &'a SyncLease) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .failing_renewals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let lost = self.lose.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                return Err("redis is slow".into());
            }
            Ok(!lost)
        })
    }

    fn unlock<'a>(&'a self, _lease: &'a SyncLease) -> BoxFuture<'a, Result<(), StoreError>> {
        *self.held.lock().unwrap() = None;
        Box::pin(async { Ok(()) })
    }

    fn renew_every(&self) -> Duration {
        self.every
    }

    fn expires_after(&self) -> Duration {
        self.ttl.unwrap_or(self.every * 3)
    }
}

async fn one_page_server() -> MockServer {
    let server = MockServer::start().await;
    server.respond_with(SYNC, |request| match cursor_of(request) {
        None => ok_page(vec![item(1)], "c1", false),
        Some(_) => ok_page(vec![], "c1", false),
    });
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_fails_is_retried_until_the_lock_would_expire() {
    let server = one_page_server().await;
    let lock = TestLock::every(Duration::from_millis(30));
    // Two slow answers from the store, then it answers again: well within the lock's 90 ms.
    lock.failing_renewals.store(2, Ordering::SeqCst);
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new()).with_lock(lock.clone());
    let summary = sync
        .run("wk1", |_| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok::<_, String>(())
        })
        .await
        .expect("the lock was never lost");
    assert_eq!(summary.pages, 1);
    assert!(lock.renewals.load(Ordering::SeqCst) >= 3);
    assert!(
        lock.held.lock().unwrap().is_none(),
        "released at the end of the run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lock_hands_no_page_to_the_handler() {
    let server = MockServer::start().await;
    let lock = TestLock::every(Duration::from_millis(10));
    lock.lose.store(true, Ordering::SeqCst);
    // The pull is slow: the lock is lost (renewal refused) before the page arrives.
    server.respond_with(SYNC, |_| {
        let page = json!({"errcode": 0, "errmsg": "ok", "next_cursor": "c1", "has_more": 0, "msg_list": [item(1)]});
        Reply::Delayed(Duration::from_millis(150), page)
    });
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new()).with_lock(lock.clone());
    let handed = AtomicUsize::new(0);
    let outcome = sync
        .run("wk1", |_| {
            handed.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(()) }
        })
        .await;
    assert!(matches!(outcome, Err(SyncError::LockLost)), "{outcome:?}");
    assert_eq!(
        handed.load(Ordering::SeqCst),
        0,
        "another process may be handling it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_renewal_period_is_zero_is_still_renewed() {
    let server = one_page_server().await;
    let lock = Shared(Arc::new(TestLock {
        ttl: Some(Duration::from_secs(1)),
        ..TestLock::default()
    }));
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new()).with_lock(lock.clone());
    sync.run("wk1", |_| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, String>(())
    })
    .await
    .expect("run");
    assert!(
        lock.renewals.load(Ordering::SeqCst) > 0,
        "the renewer did not die"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_hangs_times_out_and_gets_the_page_again() {
    let server = one_page_server().await;
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new())
        .handler_timeout(Duration::from_millis(100));
    let outcome = sync
        .run("wk1", |_| std::future::pending::<Result<(), String>>())
        .await;
    assert!(
        matches!(outcome, Err(SyncError::HandlerTimedOut(_))),
        "{outcome:?}"
    );
    let mut again = Vec::new();
    sync.run("wk1", |page| {
        again.extend(msgids(&page));
        async { Ok::<_, String>(()) }
    })
    .await
    .expect("the next run");
    assert_eq!(again, ["m00001"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_blocks_its_thread_stops_the_renewals() {
    let server = one_page_server().await;
    let lock = TestLock::every(Duration::from_millis(10));
    // Renewed for at most 2 × 50 ms + 30 ms without a commit.
    let sync = SyncStream::new(server.client(), MemoryCursorStore::new())
        .with_lock(lock.clone())
        .handler_timeout(Duration::from_millis(50));
    let outcome = sync
        .run("wk1", |_| {
            // Sync code in a handler: the timeout can't fire while it runs, the renewer can.
            std::thread::sleep(Duration::from_millis(1500));
            async { Ok::<_, String>(()) }
        })
        .await;
    let renewals = lock.renewals.load(Ordering::SeqCst);
    // Renewing the whole 1.5 s would take ~150 renewals; the limit allows ~13.
    assert!(
        renewals <= 30,
        "{renewals} renewals while the handler blocked"
    );
    assert!(
        matches!(outcome, Err(SyncError::LockLost)),
        "nothing committed: {outcome:?}"
    );
}

/// A run that starts at `cursor` against a server that always answers `page`.
async fn run_against_a_stuck_cursor(
    page: Vec<Value>,
    has_more: bool,
) -> (SyncSummary, usize, usize) {
    let server = MockServer::start().await;
    server.respond_with(SYNC, move |_| ok_page(page.clone(), "same", has_more));
    let store = MemoryCursorStore::new();
    let at_same = Checkpoint {
        cursor: Some("same".into()),
        ..Checkpoint::default()
    };
    store.save("wk1", &at_same).await.unwrap();
    let sync = SyncStream::new(server.client(), store);
    let handed = AtomicUsize::new(0);
    // Bounded: a run that spins on the cursor fails here instead of hanging the suite.
    let summary = tokio::time::timeout(
        Duration::from_secs(20),
        sync.run("wk1", |page| {
            handed.fetch_add(page.messages.len(), Ordering::SeqCst);
            async { Ok::<_, String>(()) }
        }),
    )
    .await
    .expect("the run ends")
    .expect("run");
    (summary, server.requests_to(SYNC).len(), handed.into_inner())
}

#[tokio::test]
async fn an_empty_page_that_does_not_move_the_cursor_is_retried_then_reported() {
    let (summary, requests, _) = run_against_a_stuck_cursor(vec![], true).await;
    assert!(summary.stalled, "reported: {summary:?}");
    // WeCom said there is more: three retries with backoff, then the run stops.
    assert_eq!(requests, 4);
    assert_eq!(summary.pages, 4);
}

#[tokio::test]
async fn a_page_with_items_that_does_not_move_the_cursor_is_handled_once_and_reported() {
    for has_more in [true, false] {
        let (summary, requests, handed) =
            run_against_a_stuck_cursor(vec![item(1), item(2)], has_more).await;
        assert!(summary.stalled, "reported: {summary:?}");
        assert_eq!(requests, 1, "has_more {has_more}: pulled once");
        assert_eq!(handed, 2, "has_more {has_more}: each item handed once");
    }
}

#[tokio::test]
async fn the_end_of_the_messages_is_not_a_stall() {
    let (summary, requests, _) = run_against_a_stuck_cursor(vec![], false).await;
    assert!(!summary.stalled);
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn file_store_round_trips_atomically_and_keeps_names_inside_its_dir() {
    let dir = temp_dir("roundtrip");
    let store = FileCursorStore::new(&dir).expect("dir");
    assert_eq!(store.load("wk1").await.unwrap(), Checkpoint::default());
    let checkpoint = Checkpoint {
        cursor: Some("c9".into()),
        handled: vec!["m1".into()],
        ..Checkpoint::default()
    };
    store.save("wk1", &checkpoint).await.unwrap();
    assert_eq!(
        FileCursorStore::new(&dir)
            .unwrap()
            .load("wk1")
            .await
            .unwrap(),
        checkpoint
    );
    let escaped = store.path_of("../../etc/passwd");
    assert_eq!(escaped.parent(), Some(dir.as_path()));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["wk1.json"], "no temp file left behind");
    std::fs::remove_dir_all(&dir).ok();
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wecom-kf-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

// ---------------------------------------------------------------------------------------
// Crash test: 5,000 messages, 20 kills of four kinds, restarts from the cursor file.
// ---------------------------------------------------------------------------------------

const TOTAL: usize = 5_000;
const KILLS: usize = 20;

/// A deterministic "server log": the page a cursor gets depends only on the cursor.
/// Cursors are `c<index>` with `~` appended for each empty page in a row.
fn page_for(cursor: Option<&str>, limit: usize) -> (Vec<Value>, String, bool) {
    let cursor = cursor.unwrap_or("c0");
    let start: usize = cursor
        .trim_start_matches('c')
        .trim_end_matches('~')
        .parse()
        .unwrap_or(0);
    let hash = cursor.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    if hash % 6 == 0 && start < TOTAL {
        return (vec![], format!("{cursor}~"), true);
    }
    // Mostly small pages, a full one now and then.
    let size = if hash % 10 == 1 {
        1000
    } else {
        1 + (hash / 10 % 300) as usize
    };
    let end = (start + size.min(limit)).min(TOTAL);
    (
        (start..end).map(item).collect(),
        format!("c{end}"),
        end < TOTAL,
    )
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// The task is aborted while its handler holds a page.
    Abort { at_message: usize },
    /// The handler returns an error partway through a page.
    HandlerFails { at_message: usize },
    /// The server closes the connection instead of answering the n-th request.
    Hangup { at_request: usize },
    /// The server answers the n-th request with errcode -1.
    Busy { at_request: usize },
}

#[derive(Default)]
struct Log {
    /// Every msgid a handler was given and got to, in order, duplicates included.
    handled: Vec<String>,
    /// msgids of the pages a handler held when it was killed.
    in_flight_at_kill: HashSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_twenty_times_loses_nothing() {
    common::quiet_hangups();
    let server = MockServer::start().await;
    let fault: Arc<Mutex<Option<(usize, Reply)>>> = Arc::new(Mutex::new(None));
    let requests = Arc::new(Mutex::new(0usize));
    let empty_pages = Arc::new(Mutex::new(0usize));
    {
        let (fault, requests, empty_pages) = (fault.clone(), requests.clone(), empty_pages.clone());
        server.respond_with(SYNC, move |request| {
            let n = {
                let mut count = requests.lock().unwrap();
                *count += 1;
                *count
            };
            let mut fault = fault.lock().unwrap();
            if let Some((at, _)) = fault.as_ref()
                && *at == n
            {
                return fault
                    .take()
                    .map(|(_, reply)| reply)
                    .unwrap_or(Reply::Status(500));
            }
            let limit = request
                .body
                .get("limit")
                .and_then(Value::as_u64)
                .unwrap_or(1000) as usize;
            let (items, next, more) = page_for(cursor_of(request).as_deref(), limit);
            assert!(items.len() <= 1000);
            if items.is_empty() && more {
                *empty_pages.lock().unwrap() += 1;
            }
            ok_page(items, &next, more)
        });
    }
    let client = server
        .client_builder()
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let dir = temp_dir("crash");
    let log = Arc::new(Mutex::new(Log::default()));
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        1 + (rng % n as u64) as usize
    };
    let mut kills_done: HashMap<&'static str, usize> = HashMap::new();

    for life in 0..=KILLS {
        let progress = log.lock().unwrap().handled.len();
        let kill = (life < KILLS).then(|| match life % 4 {
            0 => Kill::Abort {
                at_message: progress + next(200),
            },
            1 => Kill::HandlerFails {
                at_message: progress + next(200),
            },
            2 => Kill::Hangup {
                at_request: *requests.lock().unwrap() + next(2),
            },
            _ => Kill::Busy {
                at_request: *requests.lock().unwrap() + next(2),
            },
        });
        match kill {
            Some(Kill::Hangup { at_request }) => {
                *fault.lock().unwrap() = Some((at_request, Reply::Hangup))
            }
            Some(Kill::Busy { at_request }) => {
                *fault.lock().unwrap() = Some((
                    at_request,
                    Reply::Json(json!({"errcode": -1, "errmsg": "system busy"})),
                ))
            }
            _ => *fault.lock().unwrap() = None,
        }
        // A fresh process: a new stream over a store reopened from the same directory.
        let sync = Arc::new(SyncStream::new(
            client.clone(),
            FileCursorStore::new(&dir).expect("dir"),
        ));
        let killed = Arc::new(tokio::sync::Notify::new());
        let mut task = {
            let (sync, log, killed) = (sync.clone(), log.clone(), killed.clone());
            tokio::spawn(async move {
                sync.run("wk1", move |page: Page| {
                    let (log, killed) = (log.clone(), killed.clone());
                    async move {
                        for msgid in msgids(&page) {
                            let count = {
                                let mut log = log.lock().unwrap();
                                log.handled.push(msgid);
                                log.handled.len()
                            };
                            match kill {
                                Some(Kill::Abort { at_message }) if count == at_message => {
                                    log.lock().unwrap().in_flight_at_kill.extend(msgids(&page));
                                    killed.notify_one();
                                    std::future::pending::<()>().await;
                                }
                                Some(Kill::HandlerFails { at_message }) if count == at_message => {
                                    log.lock().unwrap().in_flight_at_kill.extend(msgids(&page));
                                    return Err("handler failed");
                                }
                                _ => {}
                            }
                        }
                        Ok(())
                    }
                })
                .await
            })
        };
        let outcome = match kill {
            Some(Kill::Abort { .. }) => {
                tokio::select! {
                    _ = killed.notified() => { task.abort(); "abort" }
                    done = &mut task => panic!("life {life}: finished before the abort: {done:?}"),
                }
            }
            _ => match task.await.expect("task") {
                Ok(_) if kill.is_none() => "finished",
                Ok(summary) => panic!("life {life}: {kill:?} never happened ({summary:?})"),
                Err(SyncError::Handler(_)) => "handler",
                Err(SyncError::Client(e)) if e.code() == Some(wecom_kf::ErrCode::SystemBusy) => {
                    "busy"
                }
                Err(SyncError::Client(wecom_kf::Error::Transport { .. })) => "hangup",
                Err(other) => panic!("life {life}: {other:?}"),
            },
        };
        *kills_done.entry(outcome).or_default() += 1;
    }

    let log = log.lock().unwrap();
    let mut first_seen = Vec::new();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for msgid in &log.handled {
        if seen.insert(msgid.clone()) {
            first_seen.push(msgid.clone());
        } else {
            duplicates += 1;
            assert!(
                log.in_flight_at_kill.contains(msgid),
                "{msgid} was handed over twice but was not in a page being handled at a kill"
            );
        }
    }
    let expected: Vec<String> = (0..TOTAL).map(|i| format!("m{i:05}")).collect();
    assert_eq!(
        first_seen.len(),
        TOTAL,
        "messages lost: {}",
        TOTAL - first_seen.len()
    );
    assert_eq!(first_seen, expected, "every message, in order");
    assert_eq!(kills_done.get("finished"), Some(&1));
    let kills: usize = kills_done
        .iter()
        .filter(|(k, _)| **k != "finished")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(kills, KILLS, "{kills_done:?}");
    assert!(
        *empty_pages.lock().unwrap() > 0,
        "the log has empty pages with has_more = 1"
    );
    for kind in ["abort", "handler", "hangup", "busy"] {
        assert_eq!(kills_done.get(kind), Some(&5), "{kind}: {kills_done:?}");
    }
    println!(
        "crash test: {KILLS} kills {kills_done:?}, {TOTAL} messages, {} hand-overs, {duplicates} duplicates, 0 lost, {} empty pages",
        log.handled.len(),
        empty_pages.lock().unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The newest callback token outlives the process with the file store: a restarted bot's
/// first pull uses it (here the simulator answers 45009 to any pull without a token).
#[tokio::test]
async fn a_restarted_stream_pulls_with_the_callback_token_the_file_store_kept() {
    use wecom_kf_sim::{SimConfig, Simulator};
    let config = SimConfig {
        untokened_sync_per_minute: 0,
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let dir = std::env::temp_dir().join(format!("wecom-kf-callback-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let client = sim.client_builder().build().expect("client");
    let said = sim
        .customer_says(&kf, "wmALICE", "一")
        .expect("customer writes");
    {
        let first = SyncStream::new(client.clone(), FileCursorStore::new(&dir).expect("store"));
        first.callback_token(&kf, said.callback_token);
        let summary = first.run(&kf, |_page| async { Ok::<_, String>(()) }).await;
        assert_eq!(summary.expect("pulled with the token").messages, 1);
    }
    // The process restarts; the callback of the next message was lost with it.
    sim.customer_says(&kf, "wmALICE", "二")
        .expect("customer writes");
    let restarted = SyncStream::new(client.clone(), FileCursorStore::new(&dir).expect("store"));
    let pulled = restarted
        .run(&kf, |_page| async { Ok::<_, String>(()) })
        .await
        .expect("pulled with the kept token, not refused 45009");
    assert_eq!(pulled.messages, 1);
    // In memory only, the same restart has no token to pull with.
    let forgetful = SyncStream::new(client, MemoryCursorStore::new());
    let refused = forgetful
        .run(&kf, |_page| async { Ok::<_, String>(()) })
        .await;
    assert!(refused.is_err(), "no token: 45009");
    let _ = std::fs::remove_dir_all(&dir);
}
