//! The bot runtime against the simulator: customers answered in parallel and each in
//! order, bursts answered as one turn, journaled replies resumed without asking the
//! handler again, failing turns retried then dead-lettered, history and humans left alone.

mod common;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wecom_kf::bot::{
    Answer, Bot, BotStore, Claim, Done, Entry, Journaled, MemoryBotStore, PlannedPart, Recorded,
    Work,
};
use wecom_kf::reply::{BudgetStore, Change, Customer, MemoryBudgetStore, Turn, Window};
use wecom_kf::token::{BoxFuture, StoreError};
use wecom_kf::{MemoryCursorStore, types::Text};
use wecom_kf_sim::Simulator;

/// Counts handlers running at once and records each turn's texts.
#[derive(Default)]
struct Llm {
    running: AtomicUsize,
    most_at_once: AtomicUsize,
    calls: AtomicUsize,
    turns: Mutex<Vec<(String, Vec<String>)>>,
}

impl Llm {
    async fn answer(&self, turn: Turn, takes: Duration) -> Answer {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let texts: Vec<String> = turn.text().lines().map(str::to_owned).collect();
        self.turns
            .lock()
            .unwrap()
            .push((turn.customer.external_userid.clone(), texts.clone()));
        tokio::time::sleep(takes).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Answer::Text(format!("答复：{}", texts.join(" / ")))
    }
}

/// The handler of the tests' bots, boxed so one type serves every test.
type Handler =
    Box<dyn Fn(Turn) -> Pin<Box<dyn Future<Output = Result<Answer, String>> + Send>> + Send + Sync>;

type TestBot = Bot<MemoryCursorStore>;

fn bot(sim: &Simulator, store: impl BotStore, llm: Arc<Llm>, takes: Duration) -> TestBot {
    let handler: Handler = Box::new(move |turn| {
        let llm = llm.clone();
        Box::pin(async move { Ok(llm.answer(turn, takes).await) })
    });
    Bot::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
        store,
        handler,
    )
    .skip_history(false)
}

/// Waits until `done` holds; fails past a generous bound instead of hanging.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn texts_to(sim: &Simulator, user: &str) -> Vec<String> {
    sim.sent()
        .iter()
        .filter(|m| m.touser == user)
        .map(|m| m.payload["content"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_customers_are_answered_in_parallel_and_each_once() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let llm = Arc::new(Llm::default());
    let bot = bot(
        &sim,
        MemoryBotStore::new(),
        llm.clone(),
        Duration::from_millis(600),
    );
    let customers: Vec<String> = (0..6).map(|i| format!("wmC{i}")).collect();
    for who in &customers {
        let said = sim
            .customer_says(&kf, who, "在吗")
            .expect("customer writes");
        bot.callback_token(&kf, said.callback_token);
    }
    bot.pull(&kf).await.expect("pull");
    until("six answers", || sim.sent().len() == 6).await;
    // One slow answer never held another customer back: all six LLM calls ran together.
    assert_eq!(llm.most_at_once.load(Ordering::SeqCst), 6);
    for who in &customers {
        assert_eq!(texts_to(&sim, who), ["答复：在吗"], "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_customer_writes_while_answered_is_seen_together_next() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let llm = Arc::new(Llm::default());
    let bot = bot(
        &sim,
        MemoryBotStore::new(),
        llm.clone(),
        Duration::from_millis(300),
    );
    sim.customer_says(&kf, "wmALICE", "hi")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("the first turn to start", || {
        llm.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    // While the first answer is being made, two more messages come.
    for text in ["are you there?", "my order 123"] {
        sim.customer_says(&kf, "wmALICE", text)
            .expect("customer writes");
    }
    bot.pull(&kf).await.expect("pull");
    until("two answers", || sim.sent().len() == 2).await;
    let turns = llm.turns.lock().unwrap().clone();
    assert_eq!(
        turns,
        [
            ("wmALICE".to_owned(), vec!["hi".to_owned()]),
            (
                "wmALICE".to_owned(),
                vec!["are you there?".to_owned(), "my order 123".to_owned()]
            ),
        ],
        "in order, the burst as one question"
    );
    assert_eq!(
        llm.most_at_once.load(Ordering::SeqCst),
        1,
        "one turn at a time per customer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_reply_is_resumed_without_asking_the_handler_again() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let client = sim.client_builder().build().expect("client");
    let store = Arc::new(MemoryBotStore::new());
    // As a crashed runtime left it: the message in the inbox, its reply journaled, part 0
    // sent and marked, part 1 sent but not marked (in flight at the crash), part 2 not sent.
    let said = recorded_elsewhere(&sim, &store, "wmALICE", "退货").await;
    let alice = Customer::new(&kf, "wmALICE");
    let part = |i: usize, sent: bool| PlannedPart {
        msgid: format!("reply{i}of{}", said.msgid.len()),
        message: Text::new(format!("第{i}段")).into(),
        sent,
    };
    for i in 0..2 {
        client
            .send_text("wmALICE", &kf, format!("第{i}段"))
            .msgid(part(i, false).msgid)
            .await
            .expect("sent before the crash");
    }
    let journal = Journaled {
        turn: said.msgid.clone(),
        covers: vec![said.msgid.clone()],
        parts: vec![part(0, true), part(1, false), part(2, false)],
    };
    let claim = store.claim(&alice, Duration::from_secs(5)).await.unwrap();
    let claim = claim.expect("nobody else works on alice");
    store.journal(&claim, journal).await.unwrap();
    store.release(&claim).await.unwrap();

    let llm = Arc::new(Llm::default());
    let bot = bot(&sim, store.clone(), llm.clone(), Duration::ZERO);
    assert_eq!(bot.resume().await.expect("store"), 1);
    until("the last part", || texts_to(&sim, "wmALICE").len() == 3).await;
    until("the turn to close", || {
        store.customers_with_work_blocking().is_empty()
    })
    .await;
    assert_eq!(
        texts_to(&sim, "wmALICE"),
        ["第0段", "第1段", "第2段"],
        "each part once, in order"
    );
    assert_eq!(
        llm.calls.load(Ordering::SeqCst),
        0,
        "the handler was not asked again"
    );
    // A pull of the same page adds nothing: the message is done, not new.
    bot.pull(&kf).await.expect("pull");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(llm.calls.load(Ordering::SeqCst), 0);
}

/// `customers_with_work`, for a test's wait loop.
trait Blocking {
    fn customers_with_work_blocking(&self) -> Vec<Customer>;
}

impl Blocking for Arc<MemoryBotStore> {
    fn customers_with_work_blocking(&self) -> Vec<Customer> {
        futures_lite(self.customers_with_work()).unwrap_or_default()
    }
}

/// `user` writes `text`, and the message goes into `store` as another runtime would put
/// it there: pulled and recorded, never shown to a budget of the test's bot. Returns what
/// the customer sent.
async fn recorded_elsewhere(
    sim: &Simulator,
    store: &MemoryBotStore,
    user: &str,
    text: &str,
) -> wecom_kf_sim::CustomerMessage {
    let kf = sim.open_kfid();
    let said = sim.customer_says(kf, user, text).expect("customer writes");
    let client = sim.client_builder().build().expect("client");
    let page = client.sync_msg(kf).await.expect("pull");
    let message = page.msg_list.into_iter().next_back().expect("the message");
    store
        .record(vec![Entry {
            key: said.msgid.clone(),
            customer: Customer::new(kf, user),
            message,
        }])
        .await
        .unwrap();
    said
}

/// Runs a future that is ready at once (the memory store's are).
fn futures_lite<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the memory store answers at once"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_keeps_failing_is_retried_then_dead_lettered_and_the_customer_goes_on() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let calls = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(Mutex::new(Vec::new()));
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
        MemoryBotStore::new(),
        {
            let calls = calls.clone();
            move |turn: Turn| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if turn.text().contains("poison") {
                        Err("the LLM is down".to_owned())
                    } else {
                        Ok(Answer::Text("ok".to_owned()))
                    }
                }
            }
        },
    )
    .skip_history(false)
    .max_attempts(3, Duration::from_millis(20))
    .on_dead_letter({
        let dead = dead.clone();
        move |letter| {
            let text = Turn {
                customer: letter.customer.clone(),
                messages: letter.messages,
            }
            .text();
            dead.lock()
                .unwrap()
                .push((letter.customer.external_userid, letter.error, text))
        }
    });
    sim.customer_says(&kf, "wmALICE", "poison")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("the dead letter", || !dead.lock().unwrap().is_empty()).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "tried 3 times");
    assert_eq!(
        dead.lock().unwrap().clone(),
        [(
            "wmALICE".to_owned(),
            "the LLM is down".to_owned(),
            "poison".to_owned()
        )]
    );
    // The customer is not blocked for good: the next message is answered.
    sim.customer_says(&kf, "wmALICE", "hello")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("an answer", || texts_to(&sim, "wmALICE") == ["ok"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_before_the_start_and_customers_a_human_serves_are_left_alone() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, "wmOLD", "three days ago")
        .expect("customer writes");
    // `send_time` has whole seconds: let the old message be a second older than the bot.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A bot started now, skipping history (the default).
    let llm = Arc::new(Llm::default());
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
        MemoryBotStore::new(),
        {
            let llm = llm.clone();
            move |turn: Turn| {
                let llm = llm.clone();
                async move { Ok::<_, String>(llm.answer(turn, Duration::ZERO).await) }
            }
        },
    );
    sim.customer_says(&kf, "wmNEW", "hi")
        .expect("customer writes");
    sim.customer_says(&kf, "wmHUMAN", "人工")
        .expect("customer writes");
    sim.servicer_takes(&kf, "wmHUMAN", "zhangsan")
        .expect("taken");
    sim.customer_says(&kf, "wmHUMAN", "还在吗")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("the new customer's answer", || {
        texts_to(&sim, "wmNEW").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        texts_to(&sim, "wmOLD").is_empty(),
        "history is not answered"
    );
    assert!(
        texts_to(&sim, "wmHUMAN").is_empty(),
        "a human has this customer"
    );
    let asked: Vec<String> = llm
        .turns
        .lock()
        .unwrap()
        .iter()
        .map(|(who, _)| who.clone())
        .collect();
    assert_eq!(asked, ["wmNEW"]);
}

#[cfg(feature = "callback-server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callback_url_serves_two_accounts_and_drains_with_503() {
    let config = wecom_kf_sim::SimConfig {
        open_kfids: vec!["wkSHOP".into(), "wkSUPPORT".into()],
        ..wecom_kf_sim::SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let llm = Arc::new(Llm::default());
    let bot = bot(&sim, MemoryBotStore::new(), llm.clone(), Duration::ZERO);
    let crypto = common::callbacks::crypto(&sim);
    let app = bot.router(crypto.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    for (kf, who) in [("wkSHOP", "wmALICE"), ("wkSUPPORT", "wmBOB")] {
        let said = sim.customer_says(kf, who, "你好").expect("customer writes");
        common::callbacks::post_callback(&http, &crypto, addr, kf, &said.callback_token).await;
    }
    until("both accounts answered", || sim.sent().len() == 2).await;
    let accounts: std::collections::HashSet<String> =
        sim.sent().iter().map(|m| m.open_kfid.clone()).collect();
    assert_eq!(accounts.len(), 2, "{accounts:?}");

    assert_eq!(
        bot.shutdown(Duration::from_secs(5)).await,
        0,
        "nothing was in progress"
    );
    let said = sim
        .customer_says("wkSHOP", "wmALICE", "还在吗")
        .expect("customer writes");
    let answer =
        common::callbacks::try_post_callback(&http, &crypto, addr, "wkSHOP", &said.callback_token)
            .await;
    assert_eq!(answer, 503, "draining: WeCom retries later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_who_opens_the_chat_is_welcomed_and_events_go_to_their_hook() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let events = Arc::new(Mutex::new(Vec::new()));
    let llm = Arc::new(Llm::default());
    let bot = bot(&sim, MemoryBotStore::new(), llm.clone(), Duration::ZERO)
        .welcome("您好，欢迎咨询！")
        .on_event({
            let events = events.clone();
            move |item| events.lock().unwrap().push(item.content.tag().to_owned())
        });
    sim.customer_enters(&kf, "wmALICE").expect("enters");
    bot.pull(&kf).await.expect("pull");
    until("the welcome", || !sim.sent().is_empty()).await;
    let welcome = &sim.sent()[0];
    assert_eq!(welcome.via, "send_msg_on_event");
    assert_eq!(welcome.payload["content"], "您好，欢迎咨询！");
    assert_eq!(events.lock().unwrap().clone(), ["event"]);
    assert_eq!(
        llm.calls.load(Ordering::SeqCst),
        0,
        "events never reach the turn handler"
    );
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wecom-kf-bot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_file_stores_a_restarted_bot_answers_what_the_dead_one_took_in() {
    use wecom_kf::FileCursorStore;
    use wecom_kf::bot::FileBotStore;
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let (cursors, inbox) = (temp_dir("cursors"), temp_dir("inbox"));
    sim.customer_says(&kf, "wmALICE", "我的订单")
        .expect("customer writes");

    // A process that pulls, then dies while its LLM thinks: its runtime is shut down.
    let dying = {
        let (sim, kf, cursors, inbox) = (sim.clone(), kf.clone(), cursors.clone(), inbox.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let bot = Bot::new(
                    sim.client_builder().build().expect("client"),
                    FileCursorStore::new(&cursors).expect("dir"),
                    FileBotStore::new(&inbox).expect("dir"),
                    |_turn: Turn| std::future::pending::<Result<Answer, String>>(),
                )
                .skip_history(false);
                bot.pull(&kf).await.expect("pull");
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
            runtime.shutdown_background();
        })
    };
    dying.join().expect("the first process");
    assert!(sim.sent().is_empty(), "it died before answering");

    // The next process: same directories; the message is answered without a new callback.
    let llm = Arc::new(Llm::default());
    let handler = {
        let llm = llm.clone();
        move |turn: Turn| {
            let llm = llm.clone();
            async move { Ok::<_, String>(llm.answer(turn, Duration::ZERO).await) }
        }
    };
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        FileCursorStore::new(&cursors).expect("dir"),
        FileBotStore::new(&inbox).expect("dir"),
        handler,
    )
    .skip_history(false);
    assert_eq!(bot.resume().await.expect("store"), 1);
    until("the answer", || texts_to(&sim, "wmALICE").len() == 1).await;
    // Pulling again finds nothing new: the cursor had moved past it, and its key is seen.
    bot.pull(&kf).await.expect("pull");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(llm.calls.load(Ordering::SeqCst), 1);
    assert_eq!(texts_to(&sim, "wmALICE"), ["答复：我的订单"]);
    let _ = std::fs::remove_dir_all(&cursors);
    let _ = std::fs::remove_dir_all(&inbox);
}

#[tokio::test]
async fn the_file_store_keeps_a_journal_across_a_reopen() {
    use wecom_kf::bot::FileBotStore;
    let dir = temp_dir("journal");
    let alice = Customer::new("wk1", "wmALICE");
    let message: wecom_kf::types::ReceivedMsg = serde_json::from_str(
        r#"{"msgid":"m1","open_kfid":"wk1","external_userid":"wmALICE","send_time":1700000000,"origin":3,"msgtype":"text","text":{"content":"你好"},"extra":{"kept":true}}"#,
    )
    .unwrap();
    {
        let store = FileBotStore::new(&dir).unwrap();
        let entry = Entry {
            key: "m1".into(),
            customer: alice.clone(),
            message: message.clone(),
        };
        let woken = store.record(vec![entry.clone()]).await.unwrap();
        assert_eq!(woken.customers, std::slice::from_ref(&alice));
        assert_eq!((woken.added, woken.duplicates), (1, 0));
        assert!(
            store
                .record(vec![entry])
                .await
                .unwrap()
                .customers
                .is_empty(),
            "seen once"
        );
        let part = |i: usize| PlannedPart {
            msgid: format!("r{i}"),
            message: Text::new("x").into(),
            sent: false,
        };
        let journal = Journaled {
            turn: "m1".into(),
            covers: vec!["m1".into()],
            parts: vec![part(0), part(1)],
        };
        let claim = store.claim(&alice, Duration::from_secs(5)).await.unwrap();
        let claim = claim.expect("nobody else works on alice");
        store.journal(&claim, journal).await.unwrap();
        store.part_sent(&claim, "m1", 0).await.unwrap();
    }
    let store = FileBotStore::new(&dir).unwrap();
    let with_work = store.customers_with_work().await.unwrap();
    assert_eq!(with_work, std::slice::from_ref(&alice));
    let work = store.work(&alice).await.unwrap();
    let journaled = work.journaled.expect("journaled");
    assert_eq!(
        journaled.parts.iter().map(|p| p.sent).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(work.pending.len(), 1);
    assert_eq!(
        work.pending[0].message.raw.as_str(),
        message.raw.as_str(),
        "the message byte for byte"
    );
    // Claims live in the process that made them: the new store hands out its own.
    let claim = store.claim(&alice, Duration::from_secs(5)).await.unwrap();
    let claim = claim.expect("a fresh store has no claims");
    let done = store.done(&claim, "m1", &["m1".to_owned()]).await.unwrap();
    assert_eq!((done.depth, done.has_work), (0, false));
    assert!(store.customers_with_work().await.unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_catches_up_every_stored_account_and_each_account_has_its_handler() {
    let config = wecom_kf_sim::SimConfig {
        open_kfids: vec!["wkSHOP".into(), "wkSUPPORT".into()],
        ..wecom_kf_sim::SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    // A bot ran before: it left a checkpoint for the shop, and the support account has a
    // handler of its own.
    let cursors = MemoryCursorStore::new();
    wecom_kf::CursorStore::save(&cursors, "wkSHOP", &wecom_kf::sync::Checkpoint::default())
        .await
        .expect("save");
    sim.customer_says("wkSHOP", "wmALICE", "营业吗")
        .expect("customer writes");
    sim.customer_says("wkSUPPORT", "wmBOB", "坏了")
        .expect("customer writes");
    let bot = Bot::new(
        sim.client_builder().build().expect("client"),
        cursors,
        MemoryBotStore::new(),
        |turn: Turn| async move { Ok::<_, String>(Answer::Text(format!("店：{}", turn.text()))) },
    )
    .route("wkSUPPORT", |turn: Turn| async move {
        Ok::<_, String>(Answer::Text(format!("售后：{}", turn.text())))
    })
    .skip_history(false);
    // No callback came since the restart, and nobody pulls: start catches both up.
    let started = bot.start().await.expect("start");
    assert_eq!(started.accounts, ["wkSHOP", "wkSUPPORT"]);
    until("both answered", || sim.sent().len() == 2).await;
    assert_eq!(texts_to(&sim, "wmALICE"), ["店：营业吗"]);
    assert_eq!(texts_to(&sim, "wmBOB"), ["售后：坏了"]);
}

#[cfg(feature = "callback-server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_are_not_kf_reach_their_hook_typed_and_a_panicking_hook_harms_nothing() {
    use wecom_kf::callback::CallbackEvent;
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let llm = Arc::new(Llm::default());
    let bot = bot(&sim, MemoryBotStore::new(), llm, Duration::ZERO).on_callback({
        let seen = seen.clone();
        move |event| {
            let panics = matches!(&event, CallbackEvent::Other { .. });
            seen.lock().unwrap().push(event);
            assert!(!panics, "a hook with a bug");
        }
    });
    let crypto = common::callbacks::crypto(&sim);
    let app = bot.router(crypto.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let corp = crypto.receive_id().to_owned();
    let auth_change = format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><CreateTime>1700000000</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_account_auth_change]]></Event>\
         <AuthAddOpenKfId><![CDATA[wkNEW1]]></AuthAddOpenKfId>\
         <AuthAddOpenKfId><![CDATA[wkNEW2]]></AuthAddOpenKfId>\
         <AuthDelOpenKfId><![CDATA[wkOLD]]></AuthDelOpenKfId></xml>"
    );
    let unknown = format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><CreateTime>1700000000</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[something_new]]></Event></xml>"
    );
    for xml in [&auth_change, &unknown] {
        let status = common::callbacks::post_sealed(&http, &crypto, addr, xml).await;
        assert_eq!(status, 200, "answered, whatever the hook does");
    }
    // The router still works after the hook panicked.
    let said = sim
        .customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    common::callbacks::post_callback(&http, &crypto, addr, &kf, &said.callback_token).await;
    until("the answer", || sim.sent().len() == 1).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let CallbackEvent::KfAccountAuthChange(change) = &seen[0] else {
        panic!("typed: {:?}", seen[0]);
    };
    assert_eq!(change.added, ["wkNEW1", "wkNEW2"]);
    assert_eq!(change.removed, ["wkOLD"]);
    assert_eq!(change.create_time, 1_700_000_000);
    assert!(
        matches!(&seen[1], CallbackEvent::Other { event: Some(e), .. } if e == "something_new"),
        "{:?}",
        seen[1]
    );
}

/// A handler that takes many claim TTLs (an LLM that thinks long) keeps its customer: the
/// bot renews the claims its workers hold, so the answer goes out, once, without a sweep
/// (`start` isn't called) to take the customer up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_longer_than_the_claim_ttl_keeps_its_claim_and_answers_once() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let llm = Arc::new(Llm::default());
    let store = Arc::new(MemoryBotStore::new());
    let bot = bot(&sim, store.clone(), llm.clone(), Duration::from_millis(400))
        .claim_ttl(Duration::from_millis(60));
    for user in ["wmALICE", "wmBOB"] {
        sim.customer_says(&kf, user, "想一想")
            .expect("customer writes");
    }
    bot.pull(&kf).await.expect("pull");
    // Mid-turn, the claim is still the worker's: nobody else can take the customer.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let alice = wecom_kf::reply::Customer::new(&kf, "wmALICE");
    assert!(
        store
            .claim(&alice, Duration::from_secs(1))
            .await
            .unwrap()
            .is_none(),
        "the claim was renewed"
    );
    until("both answers", || {
        texts_to(&sim, "wmALICE").len() == 1 && texts_to(&sim, "wmBOB").len() == 1
    })
    .await;
    assert_eq!(llm.calls.load(Ordering::SeqCst), 2, "each asked once");
}

/// A replica with more customers than turn slots claims only the customers it is serving:
/// the others stay free for a replica with slots to spare, instead of waiting, claimed,
/// behind this one's slow handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_backlog_claims_only_the_customers_it_serves() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let llm = Arc::new(Llm::default());
    let store = Arc::new(MemoryBotStore::new());
    let bot = bot(&sim, store.clone(), llm.clone(), Duration::from_secs(2)).parallel_turns(1);
    let users = ["wmALICE", "wmBOB", "wmCAROL"];
    for user in users {
        sim.customer_says(&kf, user, "在吗")
            .expect("customer writes");
    }
    bot.pull(&kf).await.expect("pull");
    until("the first turn", || llm.running.load(Ordering::SeqCst) == 1).await;
    // Another replica tries each customer: the one being served is taken, the two
    // waiting for a slot are not.
    let mut taken_over = Vec::new();
    for user in users {
        let customer = Customer::new(&kf, user);
        if let Some(claim) = store
            .claim(&customer, Duration::from_secs(5))
            .await
            .unwrap()
        {
            taken_over.push(claim);
        }
    }
    assert_eq!(
        taken_over.len(),
        2,
        "only the customer in the handler is claimed by the busy replica"
    );
    for claim in &taken_over {
        store.release(claim).await.unwrap();
    }
}

/// The calls made to a store, by name.
type Calls = Arc<Mutex<std::collections::BTreeMap<&'static str, usize>>>;

/// A store that counts the calls made to it; a budget store that may say it is shared.
struct Counted<S> {
    inner: S,
    calls: Calls,
    shared: bool,
}

impl<S> Counted<S> {
    fn new(inner: S) -> (Self, Calls) {
        let calls = Calls::default();
        let counted = Counted {
            inner,
            calls: calls.clone(),
            shared: false,
        };
        (counted, calls)
    }

    fn count(&self, call: &'static str) {
        *self.calls.lock().unwrap().entry(call).or_default() += 1;
    }
}

fn calls(calls: &Calls) -> Vec<(&'static str, usize)> {
    calls.lock().unwrap().clone().into_iter().collect()
}

impl<S: BotStore> BotStore for Counted<S> {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        self.count("record");
        self.inner.record(entries)
    }
    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        self.count("work");
        self.inner.work(customer)
    }
    fn claim<'a>(
        &'a self,
        customer: &'a Customer,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
        self.count("claim");
        self.inner.claim(customer, ttl)
    }
    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.count("renew");
        self.inner.renew(claim, ttl)
    }
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.count("release");
        self.inner.release(claim)
    }
    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count("journal");
        self.inner.journal(claim, reply)
    }
    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.count("part_sent");
        self.inner.part_sent(claim, turn, index)
    }
    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>> {
        self.count("done");
        self.inner.done(claim, turn, keys)
    }
    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>> {
        self.count("failed");
        self.inner.failed(claim)
    }
    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        self.count("customers_with_work");
        self.inner.customers_with_work()
    }
    fn only_its_runtime_records(&self) -> bool {
        self.inner.only_its_runtime_records()
    }
}

impl<S: BudgetStore> BudgetStore for Counted<S> {
    fn update<'a>(
        &'a self,
        customer: &'a Customer,
        change: Change,
    ) -> BoxFuture<'a, Result<(bool, Window), StoreError>> {
        self.count(match change {
            Change::CustomerWrote { .. } => "customer_wrote",
            Change::Reserve { .. } => "reserve",
            Change::Sent { .. } => "sent",
            _ => "other change",
        });
        self.inner.update(customer, change)
    }
    fn window<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Window, StoreError>> {
        self.count("window");
        self.inner.window(customer)
    }
    fn is_shared(&self) -> bool {
        self.shared
    }
}

/// One customer message answered by a bot over `store` and `budget`, its answer one part.
async fn answer_one_message(store: impl BotStore, budget: impl BudgetStore) {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let client = sim.client_builder().build().expect("client");
    let bot = Bot::with_replier(
        wecom_kf::reply::Replier::new(client.clone())
            .budget(wecom_kf::reply::ReplyBudget::new(budget)),
        wecom_kf::SyncStream::new(client, MemoryCursorStore::new()),
        store,
        |turn: Turn| async move { Ok::<_, String>(Answer::Text(format!("收到：{}", turn.text()))) },
    )
    .skip_history(false);
    sim.customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("the answer", || texts_to(&sim, "wmALICE").len() == 1).await;
    // The turn ends, and its worker lets go of the claim.
    assert_eq!(bot.shutdown(Duration::from_secs(10)).await, 0);
}

/// What a one-part answer to one message costs in store calls, each a round trip to a
/// shared store: six of the bot store, three of the budget. The last part of a reply is
/// not marked sent before the turn closes it; the budget beside a store only this runtime
/// records into isn't shown a turn's messages a second time, nor asked what is left for
/// an answer that needs no fitting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_part_answer_costs_six_inbox_calls_and_three_budget_calls() {
    let (store, store_calls) = Counted::new(MemoryBotStore::new());
    let (budget, budget_calls) = Counted::new(MemoryBudgetStore::new());
    answer_one_message(store, budget).await;
    assert_eq!(
        calls(&store_calls),
        [
            ("claim", 1),
            ("done", 1),
            ("journal", 1),
            ("record", 1),
            ("release", 1),
            ("work", 1)
        ]
    );
    assert_eq!(
        calls(&budget_calls),
        [("customer_wrote", 1), ("reserve", 1), ("sent", 1)]
    );
}

/// A store other runtimes may record into (here, shared through an `Arc`) holds messages
/// a budget of this runtime's own may not have seen: the turn shows them to it. A budget
/// every replica shares saw them when they were pulled, and isn't shown them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_shows_its_messages_to_the_budget_only_when_it_may_not_have_seen_them() {
    let (budget, own) = Counted::new(MemoryBudgetStore::new());
    answer_one_message(Arc::new(MemoryBotStore::new()), budget).await;
    assert_eq!(
        own.lock().unwrap()["customer_wrote"],
        2,
        "at the pull and in the turn"
    );

    let (mut budget, shared) = Counted::new(MemoryBudgetStore::new());
    budget.shared = true;
    answer_one_message(Arc::new(MemoryBotStore::new()), budget).await;
    assert_eq!(
        shared.lock().unwrap()["customer_wrote"],
        1,
        "at the pull only"
    );
}

/// A memory store shared through an `Arc` may hold what another runtime recorded: its
/// messages are shown to this runtime's budget in the turn, which then lets the answer out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_another_runtime_recorded_are_shown_to_the_budget_before_the_answer() {
    let sim = Simulator::start().await.expect("simulator");
    let store = Arc::new(MemoryBotStore::new());
    // Recorded by another runtime: this one's budget never saw the message.
    recorded_elsewhere(&sim, &store, "wmALICE", "退货").await;
    let llm = Arc::new(Llm::default());
    let bot = bot(&sim, store.clone(), llm.clone(), Duration::ZERO);
    assert_eq!(bot.resume().await.expect("store"), 1);
    until("the answer", || texts_to(&sim, "wmALICE").len() == 1).await;
    assert_eq!(texts_to(&sim, "wmALICE"), ["答复：退货"]);
}

/// With no reply left, an answer is not sent, whether it is one part (refused at the send)
/// or several (fitted to nothing), and the turn ends: the customer's inbox is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_the_budget_is_not_sent_and_the_turn_ends() {
    for answer in ["好的", &"很长的回答。".repeat(1000)] {
        let sim = Simulator::start().await.expect("simulator");
        let kf = sim.open_kfid().to_owned();
        let client = sim.client_builder().build().expect("client");
        let budget = wecom_kf::reply::ReplyBudget::in_memory();
        let store = Arc::new(MemoryBotStore::new());
        let answer = answer.to_owned();
        let bot = Bot::with_replier(
            wecom_kf::reply::Replier::new(client.clone()).budget(budget.clone()),
            wecom_kf::SyncStream::new(client.clone(), MemoryCursorStore::new()),
            store.clone(),
            move |_turn: Turn| {
                let answer = answer.clone();
                async move { Ok::<_, String>(Answer::Text(answer)) }
            },
        )
        .skip_history(false);
        sim.customer_says(&kf, "wmALICE", "你好")
            .expect("customer writes");
        // The five replies the message allows are taken already.
        let page = client.sync_msg(&kf).await.expect("pull");
        budget.observe(&page.msg_list[0]).await.expect("budget");
        let alice = Customer::new(&kf, "wmALICE");
        std::mem::forget(budget.reserve(&alice, 5).await.expect("five left"));
        bot.pull(&kf).await.expect("pull");
        until("the turn to end", || {
            store.customers_with_work_blocking().is_empty()
        })
        .await;
        assert_eq!(bot.shutdown(Duration::from_secs(10)).await, 0);
        assert!(sim.sent().is_empty());
    }
}
