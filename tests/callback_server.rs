//! The callback router end to end: the simulator checks the URL and POSTs encrypted
//! callbacks; the router answers at once and pulls in the background; retried and repeated
//! callbacks never hand a message over twice.
#![cfg(all(feature = "callback-server", feature = "sim"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wecom_kf::callback::{CallbackCrypto, server};
use wecom_kf::sim::{SimCallback, SimConfig, Simulator};
use wecom_kf::{MemoryCursorStore, Page, SyncStream};

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
