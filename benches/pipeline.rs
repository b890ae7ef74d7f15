//! The bot pipeline against the simulator on loopback, each figure beside its floor from
//! the same run:
//!
//! - latency: a callback arriving at the router → the handler called with the message,
//!   against one raw `sync_msg` round trip (what any bot must spend between the two);
//! - throughput: 1,000 accounts × 10 customers, one message each, through the runtime
//!   with a handler that answers at once (one `send_msg` per message), against raw
//!   reqwest making the same `sync_msg` and `send_msg` calls with the same concurrency;
//! - memory: live heap per idle account (a cursor, a callback token, its sync state) and
//!   per customer in flight (recorded, its worker waiting on the handler), counted by a
//!   counting allocator.
//!
//! ```text
//! cargo bench --bench pipeline --features callback-server
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wecom_kf::bot::{Answer, Bot, MemoryBotStore};
use wecom_kf::callback::CallbackCrypto;
use wecom_kf::reply::Turn;
use wecom_kf::{CursorStore, MemoryCursorStore, sync::Checkpoint};
use wecom_kf_sim::{SimConfig, Simulator};

mod support;

/// Live heap bytes, for the memory figures, and allocations made, for the throughput's.
struct Counting;

/// The count, split so that each thread adds to a cache line of its own: one shared
/// counter would make every allocation of the throughput part contend for it, and the
/// side that allocates more would be slowed by the measuring.
#[repr(align(128))]
struct Shard {
    bytes: AtomicIsize,
    allocations: AtomicUsize,
}

static SHARDS: [Shard; 64] = [const {
    Shard {
        bytes: AtomicIsize::new(0),
        allocations: AtomicUsize::new(0),
    }
}; 64];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Counts `bytes` more live (fewer when negative), and one allocation more if `new`.
fn count(bytes: isize, new: bool) {
    // A thread being torn down has no thread-locals left: it counts on the first shard.
    let shard = SHARD
        .try_with(|shard| {
            if shard.get() == usize::MAX {
                shard.set(NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS.len());
            }
            shard.get()
        })
        .unwrap_or(0);
    SHARDS[shard].bytes.fetch_add(bytes, Ordering::Relaxed);
    if new {
        SHARDS[shard].allocations.fetch_add(1, Ordering::Relaxed);
    }
}

/// Live heap bytes now.
fn live() -> isize {
    SHARDS
        .iter()
        .map(|shard| shard.bytes.load(Ordering::SeqCst))
        .sum()
}

/// Allocations made so far (a reallocation counts as one).
fn allocations() -> usize {
    SHARDS
        .iter()
        .map(|shard| shard.allocations.load(Ordering::SeqCst))
        .sum()
}

// SAFETY: every call is passed to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, true);
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), false);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize, true);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TOKEN: &str = "PIPELINE";
const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

/// CPU time this process has used so far, every thread's, user and system.
fn cpu_used() -> Duration {
    // SAFETY: `getrusage` only writes the `rusage` it is given, which is plain data.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// A raw client's access token for `sim`.
async fn raw_token(http: &reqwest::Client, sim: &Simulator) -> String {
    let url = format!(
        "{}gettoken?corpid={}&corpsecret={}",
        sim.base_url(),
        sim.corp_id(),
        sim.secret()
    );
    let bytes = http
        .get(url)
        .send()
        .await
        .expect("gettoken")
        .bytes()
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&bytes).expect("json");
    answer["access_token"].as_str().expect("a token").to_owned()
}

async fn raw_call(
    http: &reqwest::Client,
    sim: &Simulator,
    path: &str,
    token: &str,
    body: &Value,
) -> Value {
    let bytes = http
        .post(format!("{}{path}?access_token={token}", sim.base_url()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).expect("encode"))
        .send()
        .await
        .expect("call")
        .bytes()
        .await
        .expect("body");
    let answer: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(answer["errcode"], 0, "{path}: {answer}");
    answer
}

async fn latency(samples: usize) {
    // The bot serves the first account; the floor pulls the second, which the bot never
    // hears of.
    let config = SimConfig {
        open_kfids: vec!["wkBOT".into(), "wkFLOOR".into()],
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let crypto = CallbackCrypto::new(TOKEN, AES_KEY, sim.corp_id()).expect("crypto");
    let called = Arc::new(tokio::sync::Notify::new());
    let handler_at = Arc::new(Mutex::new(Instant::now()));
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
        MemoryBotStore::new(),
        {
            let (called, handler_at) = (called.clone(), handler_at.clone());
            move |_turn: Turn| {
                *handler_at.lock().expect("stamp") = Instant::now();
                called.notify_one();
                async { Ok::<_, String>(Answer::Silence) }
            }
        },
    )
    .skip_history(false);
    let arrived_at = Arc::new(Mutex::new(Instant::now()));
    let app = bot.router(crypto.clone()).layer(axum::middleware::from_fn({
        let arrived_at = arrived_at.clone();
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            *arrived_at.lock().expect("stamp") = Instant::now();
            next.run(request)
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let token = raw_token(&http, &sim).await;
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    for i in 0..samples + 20 {
        // Ours: the callback reaches the router, the runtime pulls, records, and calls
        // the handler.
        let said = sim
            .customer_says(&kf, &format!("wmL{i}"), "在吗")
            .expect("customer writes");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let xml = format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><CreateTime>{now}</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
             <Token><![CDATA[{}]]></Token><OpenKfId><![CDATA[{kf}]]></OpenKfId></xml>",
            sim.corp_id(),
            said.callback_token
        );
        let (timestamp, nonce) = (now.to_string(), format!("n{i}"));
        let sealed = crypto.seal(&xml, &timestamp, &nonce).expect("seal");
        let handled = called.notified();
        let status = http
            .post(format!(
                "http://{addr}/?msg_signature={}&timestamp={timestamp}&nonce={nonce}",
                sealed.msg_signature
            ))
            .body(sealed.body)
            .send()
            .await
            .expect("callback")
            .status();
        assert_eq!(status, 200);
        handled.await;
        let took = handler_at
            .lock()
            .expect("stamp")
            .saturating_duration_since(*arrived_at.lock().expect("stamp"));
        // The floor: the one `sync_msg` a bot can't do without, raw, for a message of its
        // own on the second account.
        let said = sim
            .customer_says("wkFLOOR", &format!("wmF{i}"), "在吗")
            .expect("customer writes");
        let mut body = json!({"open_kfid": "wkFLOOR", "token": said.callback_token, "limit": 1000});
        if let Some(cursor) = &cursor {
            body["cursor"] = json!(cursor);
        }
        let start = Instant::now();
        let page = raw_call(&http, &sim, "kf/sync_msg", &token, &body).await;
        let raw = start.elapsed();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if i >= 20 {
            ours.push(took);
            floor.push(raw);
        }
    }
    ours.sort();
    floor.sort();
    let (p50, p99) = (percentile(&ours, 0.5), percentile(&ours, 0.99));
    let (f50, f99) = (percentile(&floor, 0.5), percentile(&floor, 0.99));
    println!("### Callback → handler ({samples} messages, one at a time)\n");
    println!("| | p50 | p99 |\n|---|---:|---:|");
    println!(
        "| raw `sync_msg` round trip (floor) | {} | {} |",
        ms(f50),
        ms(f99)
    );
    println!(
        "| callback arrives → handler called (ours) | {} | {} |",
        ms(p50),
        ms(p99)
    );
    println!(
        "| ours / floor | {:.2}× | {:.2}× |\n",
        p50.as_secs_f64() / f50.as_secs_f64(),
        p99.as_secs_f64() / f99.as_secs_f64()
    );
}

const ACCOUNTS: usize = 1000;
const CUSTOMERS: usize = 10;
/// Turns (and so sends) at once in the runtime, sends at once in the floor.
const IN_FLIGHT: usize = 64;

/// A simulator with `ACCOUNTS` accounts whose `CUSTOMERS` customers each wrote once.
async fn busy_simulator() -> (Simulator, Vec<String>) {
    let accounts: Vec<String> = (0..ACCOUNTS).map(|a| format!("wkT{a:04}")).collect();
    let config = SimConfig {
        open_kfids: accounts.clone(),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    for kf in &accounts {
        for c in 0..CUSTOMERS {
            sim.customer_says(kf, &format!("wmT{c}"), "hi")
                .expect("writes");
        }
    }
    (sim, accounts)
}

/// Messages the runtime answered, from its own `wecom_kf_messages_answered_total` counter:
/// polling the simulator's log of sends would copy it each time and slow both sides.
static ANSWERED: AtomicU64 = AtomicU64::new(0);

struct Answered;

impl metrics::CounterFn for Answered {
    fn increment(&self, value: u64) {
        ANSWERED.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, _: u64) {}
}

/// Hands the runtime's counters to [`Answered`] (only the one it counts).
struct Recorder;

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == "wecom_kf_messages_answered_total" {
            metrics::Counter::from_arc(Arc::new(Answered))
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// Waits for `n` more answers than `since`, a reading of [`ANSWERED`].
async fn wait_for_answers(since: u64, n: u64) {
    while ANSWERED.load(Ordering::SeqCst) < since + n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Rounds of the throughput part, the three sides in turn: one round of each is about a
/// second, and the median of seven is steadier than any one of them.
const THROUGHPUT_ROUNDS: usize = 7;

/// The three sides of the throughput part.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Floor,
    Client,
    Runtime,
}

impl Side {
    const ALL: [Side; 3] = [Side::Floor, Side::Client, Side::Runtime];

    fn name(self) -> &'static str {
        match self {
            Side::Floor => "floor",
            Side::Client => "client",
            Side::Runtime => "runtime",
        }
    }

    async fn round(self) -> Round {
        match self {
            Side::Floor => throughput_floor().await,
            Side::Client => throughput_client().await,
            Side::Runtime => throughput_ours().await,
        }
    }

    /// One round in a child process of its own (this binary, with `PIPELINE_SIDE`): each
    /// side starts from a fresh heap and runtime, with nothing another side left behind
    /// (freed memory, tasks winding down) in its way.
    fn round_in_child(self) -> Round {
        let output = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .env("PIPELINE_SIDE", self.name())
            .env_remove("PIPELINE_PART")
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("a child process");
        assert!(output.status.success(), "the {} round failed", self.name());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<u64> = stdout
            .split_whitespace()
            .map(|field| field.parse().expect("a number"))
            .collect();
        let [nanos, cpu_nanos, allocations] = fields[..] else {
            panic!("the {} round printed {stdout:?}", self.name());
        };
        Round {
            time: Duration::from_nanos(nanos),
            cpu: Duration::from_nanos(cpu_nanos),
            allocations: allocations as usize,
        }
    }
}

/// One side's round of the throughput part: how long it took, the CPU time the process
/// used meanwhile (every thread's: the simulator's too, the same on every side), and how
/// many allocations it made.
struct Round {
    time: Duration,
    cpu: Duration,
    allocations: usize,
}

/// Where a round started: the clock, the CPU used and the allocations made by then.
struct RoundStart {
    at: Instant,
    cpu: Duration,
    allocations: usize,
}

impl RoundStart {
    fn now() -> Self {
        RoundStart {
            at: Instant::now(),
            cpu: cpu_used(),
            allocations: allocations(),
        }
    }

    fn end(self) -> Round {
        Round {
            time: self.at.elapsed(),
            cpu: cpu_used().saturating_sub(self.cpu),
            allocations: allocations() - self.allocations,
        }
    }
}

async fn throughput() {
    let total = ACCOUNTS * CUSTOMERS;
    let (mut floors, mut clients, mut bots) = (Vec::new(), Vec::new(), Vec::new());
    let (mut client_ratios, mut bot_ratios) = (Vec::new(), Vec::new());
    for round in 0..THROUGHPUT_ROUNDS {
        // Each side goes first, second and third in turn.
        let mut order = Side::ALL;
        order.rotate_left(round % Side::ALL.len());
        let mut rounds = order.map(|side| (side, side.round_in_child()));
        rounds.sort_by_key(|(side, _)| Side::ALL.iter().position(|s| s == side));
        let [(_, floor), (_, client), (_, bot)] = rounds;
        client_ratios.push(floor.time.as_secs_f64() / client.time.as_secs_f64());
        bot_ratios.push(floor.time.as_secs_f64() / bot.time.as_secs_f64());
        floors.push(floor);
        clients.push(client);
        bots.push(bot);
    }
    // The medians of the rounds' time, and of their CPU (µs) and allocations per message.
    let median_of = |rounds: &mut Vec<Round>| {
        let median =
            |f: fn(&Round) -> f64| support::median(&mut rounds.iter().map(f).collect::<Vec<_>>());
        let per_message = total as f64;
        (
            Duration::from_secs_f64(median(|r| r.time.as_secs_f64())),
            median(|r| r.cpu.as_secs_f64() * 1e6) / per_message,
            median(|r| r.allocations as f64) / per_message,
        )
    };
    let ratio_of = |ratios: &mut Vec<f64>| {
        let median = support::median(ratios);
        let rounds: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
        format!("{median:.2}× (rounds: {})", rounds.join(", "))
    };
    let rate = |d: Duration| total as f64 / d.as_secs_f64();
    println!(
        "### Throughput ({ACCOUNTS} accounts × {CUSTOMERS} customers, a message each, each answered, {IN_FLIGHT} sends at once; median of {THROUGHPUT_ROUNDS} rounds, each side in a process of its own, in turn)\n"
    );
    println!(
        "CPU is the process's (the simulator's included, the same work on every side), over the round.\n"
    );
    println!(
        "| | time | messages/s | CPU per message | allocations per message | vs floor, median of the rounds' ratios |\n|---|---:|---:|---:|---:|---|"
    );
    let rows = [
        (
            "raw reqwest: `sync_msg` + `send_msg` (floor)",
            median_of(&mut floors),
            "".to_owned(),
        ),
        (
            "our client alone: `sync_msg` + `send_text`, no runtime",
            median_of(&mut clients),
            ratio_of(&mut client_ratios),
        ),
        (
            "bot runtime, handler answers at once (ours)",
            median_of(&mut bots),
            ratio_of(&mut bot_ratios),
        ),
    ];
    for (what, (time, cpu, allocations), ratio) in rows {
        println!(
            "| {what} | {} | {:.0} | {cpu:.0} µs | {allocations:.0} | {ratio} |",
            ms(time),
            rate(time)
        );
    }
    println!();
}

/// The floor: per account a `sync_msg`, then a `send_msg` per message, all accounts at
/// once and each account's sends at once, as the runtime does.
async fn throughput_floor() -> Round {
    let (sim, accounts) = busy_simulator().await;
    let http = reqwest::Client::new();
    let token = raw_token(&http, &sim).await;
    let start = RoundStart::now();
    let mut tasks = tokio::task::JoinSet::new();
    // As many sends at once as the runtime's turns.
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    for kf in accounts {
        let (http, sim, token, slots) = (http.clone(), sim.clone(), token.clone(), slots.clone());
        tasks.spawn(async move {
            let page = raw_call(&http, &sim, "kf/sync_msg", &token, &json!({"open_kfid": kf, "limit": 1000})).await;
            let mut sends = tokio::task::JoinSet::new();
            for item in page["msg_list"].as_array().cloned().unwrap_or_default() {
                let (http, sim, token, kf) = (http.clone(), sim.clone(), token.clone(), kf.clone());
                let slots = slots.clone();
                sends.spawn(async move {
                    let _slot = slots.acquire().await;
                    let body = json!({"touser": item["external_userid"], "open_kfid": kf, "msgtype": "text", "text": {"content": "ok"}});
                    raw_call(&http, &sim, "kf/send_msg", &token, &body).await;
                });
            }
            sends.join_all().await;
        });
    }
    tasks.join_all().await;
    let floor = start.end();
    assert_eq!(sim.sent().len(), ACCOUNTS * CUSTOMERS);
    floor
}

/// The floor's calls through our client, at the same concurrency: what the runtime's own
/// work costs is the difference between this and the runtime.
async fn throughput_client() -> Round {
    let (sim, accounts) = busy_simulator().await;
    let client = sim.client_builder().build().expect("client");
    client.access_token().await.expect("token");
    let start = RoundStart::now();
    let mut tasks = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    for kf in accounts {
        let (client, slots) = (client.clone(), slots.clone());
        tasks.spawn(async move {
            let page = client
                .sync_msg(kf.as_str())
                .limit(1000)
                .await
                .expect("sync_msg");
            let mut sends = tokio::task::JoinSet::new();
            for item in page.msg_list {
                let Some(customer) = item.external_userid else {
                    continue;
                };
                let (client, kf, slots) = (client.clone(), kf.clone(), slots.clone());
                sends.spawn(async move {
                    let _slot = slots.acquire().await;
                    client
                        .send_text(customer.as_str(), kf.as_str(), "ok")
                        .await
                        .expect("send_text");
                });
            }
            sends.join_all().await;
        });
    }
    tasks.join_all().await;
    let client = start.end();
    assert_eq!(sim.sent().len(), ACCOUNTS * CUSTOMERS);
    client
}

/// The bot runtime pulling every account, its handler answering each message at once.
async fn throughput_ours() -> Round {
    let (sim, accounts) = busy_simulator().await;
    let client = sim.client_builder().build().expect("client");
    // Both sides start with a token.
    client.access_token().await.expect("token");
    let bot = Bot::new(
        client,
        MemoryCursorStore::new(),
        MemoryBotStore::new(),
        |_turn: Turn| async { Ok::<_, String>(Answer::Text("ok".into())) },
    )
    .skip_history(false)
    .parallel_turns(IN_FLIGHT);
    let answered_before = ANSWERED.load(Ordering::SeqCst);
    let start = RoundStart::now();
    let mut pulls = tokio::task::JoinSet::new();
    for kf in accounts {
        let bot = bot.clone();
        pulls.spawn(async move { bot.pull(&kf).await.expect("pull") });
    }
    pulls.join_all().await;
    wait_for_answers(answered_before, (ACCOUNTS * CUSTOMERS) as u64).await;
    let ours = start.end();
    assert_eq!(sim.sent().len(), ACCOUNTS * CUSTOMERS);
    ours
}

async fn memory() {
    let (sim, accounts) = busy_simulator().await;
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let waiting = Arc::new(AtomicIsize::new(0));
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
        MemoryBotStore::new(),
        {
            let (release, waiting) = (release.clone(), waiting.clone());
            move |_turn: Turn| {
                let (release, waiting) = (release.clone(), waiting.clone());
                async move {
                    waiting.fetch_add(1, Ordering::SeqCst);
                    let _go = release.acquire().await;
                    Ok::<_, String>(Answer::Silence)
                }
            }
        },
    )
    .skip_history(false)
    .parallel_turns(ACCOUNTS * CUSTOMERS);
    let cursors = bot.sync().store();
    // Idle accounts: what the bot keeps for an account between its messages.
    let before = live();
    for kf in &accounts {
        cursors
            .save(
                kf,
                &Checkpoint {
                    cursor: Some("4gw7MepFLfgF2VC5npN".into()),
                    ..Checkpoint::default()
                },
            )
            .await
            .expect("save");
        bot.callback_token(kf, "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR");
    }
    let idle = (live() - before) as f64 / ACCOUNTS as f64;
    // Customers in flight: recorded, each worker waiting on its handler. Pulled a few
    // accounts at a time so the simulator's transient pages are gone before counting.
    let in_flight = 1000;
    let before = live();
    for kf in accounts.iter().take(in_flight / CUSTOMERS) {
        cursors
            .save(kf, &Checkpoint::default())
            .await
            .expect("reset");
        bot.pull(kf).await.expect("pull");
    }
    while waiting.load(Ordering::SeqCst) < in_flight as isize {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_customer = (live() - before) as f64 / in_flight as f64;
    release.add_permits(in_flight);
    println!("### Memory (live heap, counting allocator)\n");
    println!("| | bytes |\n|---|---:|");
    println!(
        "| per idle account (cursor, callback token, sync state), {ACCOUNTS} accounts | {idle:.0} |"
    );
    println!(
        "| per customer in flight (message recorded, worker waiting on the handler), {in_flight} customers | {per_customer:.0} |\n"
    );
}

fn main() {
    metrics::set_global_recorder(Recorder).expect("the only recorder");
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // A child process of the throughput part: one round of one side.
    if let Ok(side) = std::env::var("PIPELINE_SIDE") {
        let side = Side::ALL
            .into_iter()
            .find(|s| s.name() == side)
            .expect("PIPELINE_SIDE is floor, client or runtime");
        let round = runtime.block_on(side.round());
        println!(
            "{} {} {}",
            round.time.as_nanos(),
            round.cpu.as_nanos(),
            round.allocations
        );
        return;
    }
    runtime.block_on(async {
        println!("## Bot pipeline (`cargo bench --bench pipeline --features callback-server`)\n");
        // PIPELINE_PART=latency|throughput|memory runs one part, `runtime` only the
        // runtime's rounds of the throughput part (for a profiler).
        let part = std::env::var("PIPELINE_PART").unwrap_or_default();
        if part.is_empty() || part == "memory" {
            // First, so no earlier part's tasks are still freeing memory.
            memory().await;
        }
        if part.is_empty() || part == "latency" {
            latency(300).await;
        }
        if part.is_empty() || part == "throughput" {
            throughput().await;
        }
        if part == "runtime" {
            // Only the runtime's side of the throughput part, for a profiler.
            for _ in 0..THROUGHPUT_ROUNDS {
                let bot = throughput_ours().await;
                let per_message = bot.allocations as f64 / (ACCOUNTS * CUSTOMERS) as f64;
                println!(
                    "runtime: {} ({per_message:.0} allocations per message)",
                    ms(bot.time)
                );
            }
        }
    });
}
