//! The callback router end to end: the simulator checks the URL and POSTs encrypted
//! callbacks; the router answers at once and pulls in the background; retried and repeated
//! callbacks never hand a message over twice.
#![cfg(feature = "callback-server")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wecom_kf::callback::{CallbackCrypto, server};
use wecom_kf::{MemoryCursorStore, SyncStream, sync::Page};
use wecom_kf_sim::{SimCallback, SimConfig, Simulator};

const TOKEN: &str = "cbTOKEN";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

struct Bot {
    sim: Simulator,
    handled: Arc<Mutex<Vec<String>>>,
    /// Pages handed to the handler, empty ones included: one or more per pull.
    pages: Arc<AtomicUsize>,
    callback_url: String,
}

/// A router on a free port (optionally slow to answer its first `slow_first` POSTs) and a
/// simulator that calls it back.
async fn start(slow_first: usize, answer_within: Duration) -> Bot {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let callback_url = format!(
        "http://{}/kf/callback",
        listener.local_addr().expect("addr")
    );
    let mut callback = SimCallback::new(callback_url.clone(), TOKEN, KEY);
    callback.answer_within = answer_within;
    let config = SimConfig {
        callback: Some(callback),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");

    let crypto = CallbackCrypto::new(TOKEN, KEY, sim.corp_id()).expect("crypto");
    let sync = Arc::new(SyncStream::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
    ));
    let handled = Arc::new(Mutex::new(Vec::new()));
    let pages = Arc::new(AtomicUsize::new(0));
    let router = {
        let (handled, pages) = (handled.clone(), pages.clone());
        server::router(crypto, sync, move |page: Page| {
            let handled = handled.clone();
            pages.fetch_add(1, Ordering::SeqCst);
            async move {
                handled
                    .lock()
                    .unwrap()
                    .extend(page.messages.iter().map(|m| m.msgid.clone()));
                Ok::<_, std::io::Error>(())
            }
        })
    };
    let posts = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .nest("/kf/callback", router)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let posts = posts.clone();
                async move {
                    if request.method() == axum::http::Method::POST
                        && posts.fetch_add(1, Ordering::SeqCst) < slow_first
                    {
                        tokio::time::sleep(answer_within * 2).await;
                    }
                    next.run(request).await
                }
            },
        ));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    Bot {
        sim,
        handled,
        pages,
        callback_url,
    }
}

fn unix_now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        .to_string()
}

/// The `kf_msg_or_event` WeCom would send for `token`.
fn kf_event(bot: &Bot, token: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><CreateTime>1700000000</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
         <Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{}]]></OpenKfId></xml>",
        bot.sim.corp_id(),
        bot.sim.open_kfid()
    )
}

/// POSTs `body` to the callback URL with `query`; the status.
async fn post(bot: &Bot, query: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{}?{query}", bot.callback_url))
        .body(body)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_url_check_is_answered() {
    let bot = start(0, Duration::from_secs(5)).await;
    bot.sim.verify_callback_url().await.expect("URL check");
}

#[tokio::test]
async fn a_customer_message_reaches_the_handler_through_the_callback() {
    let bot = start(0, Duration::from_secs(5)).await;
    let kf = bot.sim.open_kfid().to_owned();
    let first = bot
        .sim
        .customer_says(&kf, "wmALICE", "hello")
        .expect("customer");
    wait_for("the first message", || {
        bot.handled.lock().unwrap().contains(&first.msgid)
    })
    .await;
    let second = bot
        .sim
        .customer_says(&kf, "wmALICE", "again")
        .expect("customer");
    wait_for("the second message", || {
        bot.handled.lock().unwrap().contains(&second.msgid)
    })
    .await;
    assert_eq!(
        *bot.handled.lock().unwrap(),
        [first.msgid, second.msgid],
        "each once, in order"
    );
    let stats = bot.sim.callback_stats();
    assert_eq!((stats.delivered, stats.failed), (2, 0));
}

#[tokio::test]
async fn a_retried_callback_does_not_hand_messages_over_twice() {
    // The first POST is answered too late, so the simulator retries it, as WeCom does.
    let bot = start(1, Duration::from_millis(300)).await;
    let kf = bot.sim.open_kfid().to_owned();
    let said = bot
        .sim
        .customer_says(&kf, "wmALICE", "hello")
        .expect("customer");
    wait_for("the retry to be answered", || {
        bot.sim.callback_stats().delivered == 1
    })
    .await;
    // Let the slow first delivery finish its background pull too.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = bot.sim.callback_stats();
    assert!(stats.attempts >= 2, "{stats:?}");
    assert_eq!(
        *bot.handled.lock().unwrap(),
        [said.msgid],
        "handed over exactly once"
    );
}

#[tokio::test]
async fn tampered_and_unsigned_callbacks_are_refused() {
    let bot = start(0, Duration::from_secs(5)).await;
    let crypto = CallbackCrypto::new(TOKEN, KEY, bot.sim.corp_id()).expect("crypto");
    let now = unix_now();
    let sealed = crypto
        .seal("<xml><Event>kf_msg_or_event</Event></xml>", &now, "42")
        .expect("seal");
    let good_query = format!(
        "msg_signature={}&timestamp={now}&nonce=42",
        sealed.msg_signature
    );
    let tampered = sealed.body.replace(&sealed.encrypt[..8], "AAAAAAAA");
    assert_eq!(post(&bot, &good_query, tampered).await, 403);
    let unsigned = format!("msg_signature=00&timestamp={now}&nonce=42");
    assert_eq!(post(&bot, &unsigned, sealed.body.clone()).await, 403);
    // Correctly sealed, but years old: a recorded request replayed.
    let old = crypto
        .seal(
            "<xml><Event>kf_msg_or_event</Event></xml>",
            "1700000000",
            "43",
        )
        .expect("seal");
    let old_query = format!(
        "msg_signature={}&timestamp=1700000000&nonce=43",
        old.msg_signature
    );
    assert_eq!(post(&bot, &old_query, old.body).await, 403);
    // Correctly sealed, but not a kf event: answered, and nothing pulled.
    assert_eq!(post(&bot, &good_query, sealed.body).await, 200);
    assert!(bot.handled.lock().unwrap().is_empty());
    assert_eq!(bot.pages.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_replayed_callback_is_answered_but_not_acted_on() {
    let bot = start(0, Duration::from_secs(5)).await;
    let kf = bot.sim.open_kfid().to_owned();
    let said = bot
        .sim
        .customer_says(&kf, "wmALICE", "hello")
        .expect("customer");
    wait_for("the message", || {
        bot.handled.lock().unwrap().contains(&said.msgid)
    })
    .await;
    // A callback of our own, taken once: it starts one more pull (an empty page)...
    let crypto = CallbackCrypto::new(TOKEN, KEY, bot.sim.corp_id()).expect("crypto");
    let now = unix_now();
    let sealed = crypto
        .seal(&kf_event(&bot, &said.callback_token), &now, "replayed")
        .expect("seal");
    let query = format!(
        "msg_signature={}&timestamp={now}&nonce=replayed",
        sealed.msg_signature
    );
    let before = bot.pages.load(Ordering::SeqCst);
    assert_eq!(post(&bot, &query, sealed.body.clone()).await, 200);
    wait_for("the pull it starts", || {
        bot.pages.load(Ordering::SeqCst) > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_first = bot.pages.load(Ordering::SeqCst);
    // ...and the same request again, five times, starts none.
    for _ in 0..5 {
        assert_eq!(post(&bot, &query, sealed.body.clone()).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bot.pages.load(Ordering::SeqCst),
        after_first,
        "a replay started a pull"
    );
    assert_eq!(*bot.handled.lock().unwrap(), [said.msgid]);
}

#[tokio::test]
async fn repeated_callbacks_arriving_together_pull_each_message_once() {
    let bot = start(0, Duration::from_secs(5)).await;
    let kf = bot.sim.open_kfid().to_owned();
    let said = bot
        .sim
        .customer_says(&kf, "wmALICE", "hello")
        .expect("customer");
    // WeCom may repeat or coalesce callbacks: the same event 8 more times at once, each
    // a request of its own (its own nonce), signed now.
    let crypto = CallbackCrypto::new(TOKEN, KEY, bot.sim.corp_id()).expect("crypto");
    let xml = kf_event(&bot, &said.callback_token);
    let now = unix_now();
    let http = reqwest::Client::new();
    let posts = (0..8).map(|n| {
        let nonce = format!("repeat{n}");
        let sealed = crypto.seal(&xml, &now, &nonce).expect("seal");
        let url = format!(
            "{}?msg_signature={}&timestamp={now}&nonce={nonce}",
            bot.callback_url, sealed.msg_signature
        );
        let (http, body) = (http.clone(), sealed.body);
        tokio::spawn(async move {
            http.post(url)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    for post in posts {
        assert_eq!(post.await.expect("task").ok(), Some(200));
    }
    wait_for("the message", || {
        bot.handled.lock().unwrap().contains(&said.msgid)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *bot.handled.lock().unwrap(),
        [said.msgid],
        "nine callbacks, one hand-over"
    );
}

// -- limits: bodies the router reads itself, headers `serve` times out, quiet refusals ----

/// A router with `limits` inside an app that lifts axum's body limit (as apps with upload
/// routes do), served by `axum::serve`, which has no timeouts of its own: whatever bounds a
/// request here is the router's. Returns its address.
async fn start_limited(limits: server::Limits) -> (std::net::SocketAddr, Simulator) {
    let sim = Simulator::start().await.expect("simulator");
    let crypto = CallbackCrypto::new(TOKEN, KEY, sim.corp_id()).expect("crypto");
    let sync = Arc::new(SyncStream::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
    ));
    let router = server::router_with_limits(
        crypto,
        sync,
        |_: Page| async { Ok::<_, std::io::Error>(()) },
        limits,
    );
    let app = axum::Router::new()
        .nest("/kf/callback", router)
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (addr, sim)
}

/// What one raw exchange came to: the answer's head, and whether the server closed.
struct Exchange {
    answer: String,
    closed: bool,
}

/// Sends `head`, then `body` from a task of its own that keeps the connection open
/// afterwards (the server may answer before it read everything, or never), and reads the
/// answer's head, for at most 10 s.
async fn exchange(addr: std::net::SocketAddr, head: String, body: Vec<u8>) -> Exchange {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.expect("head");
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&body).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(write);
    });
    let mut answer = Vec::new();
    let mut closed = false;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    closed = true;
                    return;
                }
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    writer.abort();
    Exchange {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        closed,
    }
}

fn post_head(framing: &str) -> String {
    format!(
        "POST /kf/callback?msg_signature=00&timestamp={}&nonce=1 HTTP/1.1\r\n\
         Host: localhost\r\n{framing}\r\n\r\n",
        unix_now()
    )
}

#[tokio::test]
async fn a_megabyte_body_is_refused_with_413_even_without_an_outer_body_limit() {
    let (addr, _sim) = start_limited(server::Limits::default()).await;
    let megabyte = vec![b'<'; 1 << 20];
    // Declared: refused before it is read.
    let declared = exchange(
        addr,
        post_head(&format!("Content-Length: {}", megabyte.len())),
        megabyte.clone(),
    )
    .await;
    assert!(
        declared.answer.starts_with("HTTP/1.1 413"),
        "declared: {:?}",
        declared.answer
    );
    // Streamed without a length: refused once 64 KiB have come.
    let mut chunked = Vec::new();
    for chunk in megabyte.chunks(16 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = exchange(addr, post_head("Transfer-Encoding: chunked"), chunked).await;
    assert!(
        streamed.answer.starts_with("HTTP/1.1 413"),
        "streamed: {:?}",
        streamed.answer
    );
    // Within the limit, the same request is read and refused for its signature only.
    let small = b"<xml><Encrypt>AAAA</Encrypt></xml>".to_vec();
    let fine = exchange(
        addr,
        post_head(&format!("Content-Length: {}", small.len())),
        small,
    )
    .await;
    assert!(fine.answer.starts_with("HTTP/1.1 403"), "{:?}", fine.answer);
}

#[tokio::test]
async fn a_body_that_never_finishes_is_answered_408() {
    let limits = server::Limits::default().read_timeout(Duration::from_millis(300));
    let (addr, _sim) = start_limited(limits).await;
    // Headers in full, 10 bytes of the 1000 announced, then nothing.
    let slow = exchange(addr, post_head("Content-Length: 1000"), vec![b'<'; 10]).await;
    assert!(
        slow.answer.starts_with("HTTP/1.1 408"),
        "no answer within 10 s, or another: {:?}",
        slow.answer
    );
}

#[tokio::test]
async fn serve_closes_a_connection_whose_headers_never_finish() {
    let (_, sim) = start_limited(server::Limits::default()).await;
    let crypto = CallbackCrypto::new(TOKEN, KEY, sim.corp_id()).expect("crypto");
    let sync = Arc::new(SyncStream::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
    ));
    let app = axum::Router::new().nest(
        "/kf/callback",
        server::router(crypto, sync, |_: Page| async {
            Ok::<_, std::io::Error>(())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let served = server::serve(listener, app).header_read_timeout(Duration::from_millis(300));
    tokio::spawn(served.into_future());
    // Half a request line and one header, never the blank line.
    let stalled = exchange(
        addr,
        "GET /kf/callback?msg_signature=0 HTTP/1.1\r\nHost: localhost\r\n".into(),
        Vec::new(),
    )
    .await;
    assert!(
        stalled.closed && stalled.answer.is_empty(),
        "closed: {}, answer: {:?}",
        stalled.closed,
        stalled.answer
    );
    // A whole request on the same server is answered (here: the URL check, refused).
    let whole = exchange(
        addr,
        format!(
            "GET /kf/callback?msg_signature=0&timestamp={}&nonce=1&echostr=AAAA HTTP/1.1\r\n\
             Host: localhost\r\n\r\n",
            unix_now()
        ),
        Vec::new(),
    )
    .await;
    assert!(
        whole.answer.starts_with("HTTP/1.1 403"),
        "{:?}",
        whole.answer
    );
}

/// Everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn refusals_are_warned_about_once_per_window() {
    // A current-thread runtime: the server's tasks log on this thread, to this subscriber.
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let bot = start(0, Duration::from_secs(5)).await;
    let now = unix_now();
    for nonce in 0..20 {
        let query = format!("msg_signature=00&timestamp={now}&nonce={nonce}");
        let body = "<xml><Encrypt>AAAA</Encrypt></xml>".to_owned();
        assert_eq!(post(&bot, &query, body).await, 403);
    }
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let refusal = |line: &&str| line.contains("refused a callback");
    let warned = text
        .lines()
        .filter(refusal)
        .filter(|l| l.contains("WARN"))
        .count();
    let folded = text
        .lines()
        .filter(refusal)
        .filter(|l| l.contains("DEBUG"))
        .count();
    println!("20 refused callbacks: {warned} warned about, {folded} logged at debug");
    assert_eq!((warned, folded), (1, 19), "{text}");
}
