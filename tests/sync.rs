//! The sync stream: it follows `has_more` past empty pages, commits a cursor only after its
//! page was handled, and survives crashes without skipping a message.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::{MockServer, Recorded, Reply};
use serde_json::{Value, json};
use wecom_kf::{
    Checkpoint, CursorStore, FileCursorStore, MemoryCursorStore, Page, RetryPolicy, SyncError,
    SyncStream,
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
        move |msg: wecom_kf::ReceivedMsg| {
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
            handled: vec!["m00000".into(), "m00001".into()]
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
            handled: vec![]
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

#[tokio::test]
async fn an_empty_page_that_does_not_move_the_cursor_ends_the_run() {
    let server = MockServer::start().await;
    server.respond_with(SYNC, |_| ok_page(vec![], "same", true));
    let store = MemoryCursorStore::new();
    store
        .save(
            "wk1",
            &Checkpoint {
                cursor: Some("same".into()),
                handled: vec![],
            },
        )
        .await
        .unwrap();
    let sync = SyncStream::new(server.client(), store);
    let summary = sync
        .run("wk1", |_| async { Ok::<_, String>(()) })
        .await
        .expect("run");
    assert_eq!(summary.pages, 1);
    assert_eq!(server.requests_to(SYNC).len(), 1);
}

#[tokio::test]
async fn file_store_round_trips_atomically_and_keeps_names_inside_its_dir() {
    let dir = temp_dir("roundtrip");
    let store = FileCursorStore::new(&dir).expect("dir");
    assert_eq!(store.load("wk1").await.unwrap(), Checkpoint::default());
    let checkpoint = Checkpoint {
        cursor: Some("c9".into()),
        handled: vec!["m1".into()],
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
