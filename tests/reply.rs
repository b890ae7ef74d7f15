//! Replying like a good bot, against the simulator: the reply budget counted from the
//! customer's latest message, corrected by WeCom's refusals; the session tracker; event
//! codes and their expiry; customer input grouped into turns.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::json;
use wecom_kf::reply::{
    BudgetError, CodeKind, Composer, Customer, EventCode, Replier, ReplyBudget, ReplyError,
    SessionRefusal, SessionTracker, turns,
};
use wecom_kf::{
    Error, MemoryCursorStore, SyncStream,
    types::{Menu, MenuClick, ReceivedMsg, ServiceState, Text},
};
use wecom_kf_sim::{Fault, ServicerAvailability, Simulator};

/// Pulls everything new into the observers, as the sync stream does before handlers run.
async fn pull(sync: &SyncStream<MemoryCursorStore>, open_kfid: &str) -> Vec<ReceivedMsg> {
    let mut got = Vec::new();
    sync.run(open_kfid, |page| {
        got.extend(page.messages);
        async { Ok::<_, std::io::Error>(()) }
    })
    .await
    .expect("sync");
    got
}

fn stream(
    sim: &Simulator,
    budget: &ReplyBudget,
    sessions: &Arc<SessionTracker>,
) -> SyncStream<MemoryCursorStore> {
    SyncStream::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
    )
    .observe(budget.clone())
    .observe(sessions.clone())
}

fn item(value: serde_json::Value) -> ReceivedMsg {
    serde_json::from_value(value).expect("an item")
}

#[tokio::test]
async fn three_quick_messages_share_one_budget_and_a_sixth_reply_is_refused_locally() {
    let sim = Simulator::start().await.expect("simulator");
    let (kf, client) = (
        sim.open_kfid().to_owned(),
        sim.client_builder().build().expect("client"),
    );
    let budget = ReplyBudget::in_memory();
    let sync = stream(&sim, &budget, &Arc::new(SessionTracker::new()));
    let alice = Customer::new(&kf, "wmALICE");
    for text in ["hi", "are you there?", "my order 123"] {
        sim.customer_says(&kf, "wmALICE", text)
            .expect("customer writes");
    }
    pull(&sync, &kf).await;
    // One answer per message, as a newcomer's bot did: the budget is shared, 5 in all.
    let mut sent = 0;
    for _ in 0..3 {
        // Two parts each; the third answer gets only the one that is left.
        let mut permit = match budget.reserve(&alice, 2).await {
            Ok(permit) => permit,
            Err(BudgetError::NotEnough { left: 1, .. }) => {
                budget.reserve(&alice, 1).await.expect("one left")
            }
            Err(other) => panic!("{other}"),
        };
        while permit.left() > 0 {
            permit
                .send(client.send_text("wmALICE", &kf, "…"))
                .await
                .expect("accepted");
            sent += 1;
        }
    }
    assert_eq!(sent, 5);
    let refused = budget.reserve(&alice, 1).await;
    assert!(
        matches!(
            refused,
            Err(BudgetError::NotEnough {
                needed: 1,
                left: 0,
                ..
            })
        ),
        "{refused:?}"
    );
    assert_eq!(sim.sent().len(), 5, "the sixth never left");

    // The customer writes again, a second later: a fresh window. (Within the second of
    // the replies, the budget can't tell whether they came before the message, and
    // keeps them counted: see `replies_sent_after_a_message_not_yet_pulled_…`.)
    sim.advance(Duration::from_secs(1));
    sim.customer_says(&kf, "wmALICE", "thanks")
        .expect("customer writes");
    pull(&sync, &kf).await;
    assert_eq!(budget.allowance(&alice).await.expect("budget").left, 5);
}

#[tokio::test]
async fn a_reply_that_surely_did_not_leave_is_given_back_and_one_that_may_have_is_not() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let client = sim
        .client_builder()
        .request_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let budget = ReplyBudget::in_memory();
    let sync = stream(&sim, &budget, &Arc::new(SessionTracker::new()));
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "hi")
        .expect("customer writes");
    pull(&sync, &kf).await;

    let mut permit = budget.reserve(&alice, 3).await.expect("3 of 5");
    assert_eq!(
        budget.allowance(&alice).await.unwrap().left,
        2,
        "reserved counts as used"
    );
    // Refused before sending (over 2048 bytes): given back.
    let too_long = "字".repeat(1000);
    let invalid = permit
        .send(client.send_text("wmALICE", &kf, too_long))
        .await;
    assert!(
        matches!(
            invalid.as_ref().map_err(|e| e.client_error()),
            Err(Some(Error::Invalid(_)))
        ),
        "{invalid:?}"
    );
    // Timed out after the request left: it may have arrived, so it counts.
    sim.inject("kf/send_msg", Fault::Delay(Duration::from_secs(1)), 1);
    let timed_out = permit.send(client.send_text("wmALICE", &kf, "hello")).await;
    assert!(timed_out.is_err());
    // The third is not used: finishing gives it back.
    permit.finish().await;
    assert_eq!(
        budget.allowance(&alice).await.unwrap().left,
        4,
        "only the timed-out send counts"
    );
}

#[tokio::test]
async fn wecoms_refusal_corrects_a_budget_that_did_not_see_every_send() {
    let sim = Simulator::start().await.expect("simulator");
    let (kf, client) = (
        sim.open_kfid().to_owned(),
        sim.client_builder().build().expect("client"),
    );
    let budget = ReplyBudget::in_memory();
    let sync = stream(&sim, &budget, &Arc::new(SessionTracker::new()));
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "hi")
        .expect("customer writes");
    pull(&sync, &kf).await;
    // Another process (or an older bot) used the window without this budget.
    for _ in 0..5 {
        client
            .send_text("wmALICE", &kf, "elsewhere")
            .await
            .expect("accepted");
    }
    let mut permit = budget
        .reserve(&alice, 1)
        .await
        .expect("the budget doesn't know");
    let refused = permit
        .send(client.send_text("wmALICE", &kf, "one more"))
        .await;
    let code = refused
        .as_ref()
        .err()
        .and_then(|e| e.client_error())
        .and_then(Error::code);
    assert_eq!(code, Some(wecom_kf::ErrCode::SendCountLimit));
    assert!(matches!(
        budget.reserve(&alice, 1).await,
        Err(BudgetError::NotEnough { left: 0, .. })
    ));
    assert_eq!(sim.sent().len(), 5);
}

#[tokio::test]
async fn msg_send_fail_events_correct_the_budget_for_the_window_they_belong_to() {
    let budget = ReplyBudget::in_memory();
    let alice = Customer::new("wk1", "wmALICE");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let says = |at: u64| {
        item(
            json!({"msgid": format!("m{at}"), "open_kfid": "wk1", "external_userid": "wmALICE", "send_time": at, "origin": 3, "msgtype": "text", "text": {"content": "hi"}}),
        )
    };
    let failed = |at: u64, fail_type: u32| {
        item(
            json!({"msgid": format!("f{at}"), "send_time": at, "origin": 4, "msgtype": "event",
        "event": {"event_type": "msg_send_fail", "open_kfid": "wk1", "external_userid": "wmALICE", "fail_msgid": "x", "fail_type": fail_type}}),
        )
    };
    budget.observe(&says(now - 100)).await.unwrap();
    // Over the 5-message limit (6), reported after that message: nothing is left.
    budget.observe(&failed(now - 50, 6)).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, 0);
    budget.observe(&says(now - 40)).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, 5);
    // A failure of the old window, seen late, doesn't touch the new one.
    budget.observe(&failed(now - 60, 6)).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, 5);
    // Session expired (4): the window is closed.
    budget.observe(&failed(now - 10, 4)).await.unwrap();
    assert!(matches!(
        budget.reserve(&alice, 1).await,
        Err(BudgetError::NoWindow)
    ));
}

#[tokio::test]
async fn the_window_closes_48_hours_after_the_latest_message() {
    let now = Arc::new(Mutex::new(SystemTime::now()));
    let budget = ReplyBudget::in_memory().clock({
        let now = now.clone();
        move || *now.lock().unwrap()
    });
    let alice = Customer::new("wk1", "wmALICE");
    let at = now
        .lock()
        .unwrap()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let said = item(
        json!({"msgid": "m1", "open_kfid": "wk1", "external_userid": "wmALICE", "send_time": at, "origin": 3, "msgtype": "text", "text": {"content": "hi"}}),
    );
    budget.observe(&said).await.unwrap();
    let open = budget.allowance(&alice).await.unwrap();
    assert_eq!(open.left, 5);
    assert_eq!(
        open.closes_at,
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(at + 48 * 3600))
    );
    *now.lock().unwrap() += Duration::from_secs(48 * 3600 + 1);
    assert!(matches!(
        budget.reserve(&alice, 1).await,
        Err(BudgetError::NoWindow)
    ));
    // Nothing was ever said by bob.
    assert!(matches!(
        budget.reserve(&Customer::new("wk1", "wmBOB"), 1).await,
        Err(BudgetError::NoWindow)
    ));
}

#[tokio::test]
async fn the_session_tracker_knows_when_a_human_has_the_customer() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let sessions = Arc::new(SessionTracker::new());
    let sync = stream(&sim, &ReplyBudget::in_memory(), &sessions);
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "人工")
        .expect("customer writes");
    pull(&sync, &kf).await;
    assert!(sessions.view(&alice).bot_may_reply());

    let servicer = wecom_kf_sim::SimConfig::default().members[0].clone();
    sim.servicer_takes(&kf, "wmALICE", &servicer)
        .expect("taken");
    pull(&sync, &kf).await;
    let view = sessions.view(&alice);
    assert_eq!(view.state, Some(ServiceState::Servicer));
    assert!(!view.bot_may_reply());
    assert_eq!(
        SessionRefusal::for_state(&view),
        Some(SessionRefusal::HumanHasIt {
            servicer: Some(servicer.clone())
        })
    );
    // What the tracker predicts is what WeCom answers.
    let client = sim.client_builder().build().expect("client");
    let refused = client
        .send_text("wmALICE", &kf, "bot here")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(wecom_kf::ErrCode::SessionStateForbidsSending)
    );

    sim.session_ends(&kf, "wmALICE", &servicer).expect("ended");
    pull(&sync, &kf).await;
    assert_eq!(
        SessionRefusal::for_state(&sessions.view(&alice)),
        Some(SessionRefusal::Ended)
    );
    sim.customer_says(&kf, "wmALICE", "again")
        .expect("customer writes");
    pull(&sync, &kf).await;
    assert!(
        sessions.view(&alice).bot_may_reply(),
        "a new session, the bot's until told otherwise"
    );
}

#[tokio::test]
async fn event_codes_come_with_their_kind_and_expiry() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let code = sim
        .customer_enters(&kf, "wmALICE")
        .expect("enters")
        .expect("a welcome code");
    let sync = stream(
        &sim,
        &ReplyBudget::in_memory(),
        &Arc::new(SessionTracker::new()),
    );
    let got = pull(&sync, &kf).await;
    let welcome = got
        .iter()
        .find_map(EventCode::from_message)
        .expect("the code");
    assert_eq!(welcome.code.expose(), code);
    assert_eq!(welcome.kind, CodeKind::Welcome);
    assert_eq!(
        welcome
            .expires_at()
            .duration_since(welcome.issued_at)
            .unwrap(),
        Duration::from_secs(20)
    );
    assert!(!welcome.is_expired(welcome.issued_at + Duration::from_secs(19)));
    assert!(welcome.is_expired(welcome.issued_at + Duration::from_secs(20)));
    assert!(
        !format!("{welcome:?}").contains(&code),
        "the code is redacted"
    );
    assert_eq!(CodeKind::Pickup.lifetime(), Duration::from_secs(48 * 3600));
    assert!(!CodeKind::Pickup.allows_menu() && CodeKind::Closing.allows_menu());
}

#[test]
fn customer_input_is_grouped_into_turns_and_events_name_their_customer() {
    let says = |n: u32, who: &str| {
        item(
            json!({"msgid": format!("m{n}"), "open_kfid": "wk1", "external_userid": who, "send_time": 1_700_000_000 + n, "origin": 3, "msgtype": "text", "text": {"content": format!("#{n}")}}),
        )
    };
    // As real captures have it: the customer only inside the event.
    let entered = item(
        json!({"msgid": "e1", "send_time": 1_700_000_003, "origin": 4, "msgtype": "event",
        "event": {"event_type": "enter_session", "open_kfid": "wk1", "external_userid": "wmBOB"}}),
    );
    let servicer = item(
        json!({"msgid": "s1", "open_kfid": "wk1", "external_userid": "wmALICE", "send_time": 1_700_000_006, "origin": 5, "servicer_userid": "zhangsan", "msgtype": "text", "text": {"content": "人工"}}),
    );
    assert_eq!(entered.customer(), Some(Customer::new("wk1", "wmBOB")));
    assert!(!entered.is_customer_input() && !servicer.is_customer_input());
    let page = vec![
        says(1, "wmALICE"),
        says(2, "wmALICE"),
        entered,
        says(4, "wmBOB"),
        says(5, "wmALICE"),
        servicer,
        says(7, "wmALICE"),
    ];
    let turns = turns(page);
    let shape: Vec<(String, usize)> = turns
        .iter()
        .map(|t| (t.customer.external_userid.clone(), t.messages.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("wmALICE".into(), 2),
            ("wmBOB".into(), 1),
            ("wmALICE".into(), 1),
            ("wmALICE".into(), 1)
        ]
    );
    assert_eq!(turns[0].text(), "#1\n#2");
    assert_eq!(turns[0].last().map(|m| m.msgid.as_str()), Some("m2"));
}

#[tokio::test]
async fn a_page_handed_over_again_does_not_reopen_the_window() {
    let budget = ReplyBudget::in_memory();
    let alice = Customer::new("wk1", "wmALICE");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let says = |id: &str| {
        item(
            json!({"msgid": id, "open_kfid": "wk1", "external_userid": "wmALICE", "send_time": now, "origin": 3, "msgtype": "text", "text": {"content": "hi"}}),
        )
    };
    budget.observe(&says("m1")).await.unwrap();
    for _ in 0..3 {
        budget_spend(&budget, &alice).await;
    }
    let before = budget.allowance(&alice).await.unwrap().left;
    assert_eq!(before, 2);
    // The same message again (a page handed over after a crash) changes nothing; a new one
    // in the same second opens a new window, which keeps the replies of that second (they
    // may have come after it); one from a later second, after them, opens a fresh one.
    budget.observe(&says("m1")).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, before);
    budget.observe(&says("m2")).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, before);
    let later = item(
        json!({"msgid": "m3", "open_kfid": "wk1", "external_userid": "wmALICE", "send_time": now + 2, "origin": 3, "msgtype": "text", "text": {"content": "hi"}}),
    );
    budget.observe(&later).await.unwrap();
    assert_eq!(budget.allowance(&alice).await.unwrap().left, 5);
}

/// Counts one reply as sent without a client.
async fn budget_spend(budget: &ReplyBudget, customer: &Customer) {
    let mut permit = budget.reserve(customer, 1).await.expect("one left");
    permit
        .send(std::future::ready(Ok::<_, Error>(())))
        .await
        .expect("counted");
}

fn replier(sim: &Simulator) -> Replier {
    let clock = {
        let sim = sim.clone();
        move || sim.now()
    };
    Replier::new(sim.client_builder().build().expect("client")).clock(clock)
}

fn replier_stream(sim: &Simulator, replier: &Replier) -> SyncStream<MemoryCursorStore> {
    SyncStream::new(
        sim.client_builder().build().expect("client"),
        MemoryCursorStore::new(),
    )
    .observe(replier.clone())
}

#[tokio::test]
async fn a_95018_is_explained_and_the_next_send_is_refused_before_it_leaves() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let replier = replier(&sim);
    let sync = replier_stream(&sim, &replier);
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "人工")
        .expect("customer writes");
    pull(&sync, &kf).await;
    // A servicer takes her, and the bot hasn't pulled the event yet.
    sim.servicer_takes(&kf, "wmALICE", "lisi").expect("taken");
    let first = replier.send(&alice, Text::new("我来帮您")).await;
    assert!(
        matches!(&first, Err(ReplyError::Session(SessionRefusal::HumanHasIt { servicer: Some(s) })) if s == "lisi"),
        "{first:?}"
    );
    assert!(
        first
            .unwrap_err()
            .to_string()
            .contains("human servicer (lisi)")
    );
    let attempts = sim.sent().len();
    let second = replier.send(&alice, Text::new("还在吗")).await;
    assert!(matches!(second, Err(ReplyError::Session(_))));
    assert_eq!(sim.sent().len(), attempts, "refused locally");
    // The refused send was given back to the budget.
    assert_eq!(
        replier.reply_budget().allowance(&alice).await.unwrap().left,
        5
    );
}

#[tokio::test]
async fn a_welcome_code_is_answered_in_one_call_and_an_expired_one_never_sent() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let replier = replier(&sim);
    let sync = replier_stream(&sim, &replier);
    sim.customer_enters(&kf, "wmALICE").expect("enters");
    let entered = pull(&sync, &kf).await;
    let msgid = replier
        .welcome(&entered[0], "欢迎咨询")
        .await
        .expect("welcomed");
    assert!(msgid.is_some());
    assert_eq!(sim.sent().last().map(|m| m.via), Some("send_msg_on_event"));

    sim.customer_enters(&kf, "wmBOB").expect("enters");
    let entered = pull(&sync, &kf).await;
    sim.advance(Duration::from_secs(21));
    let late = replier.welcome(&entered[0], "欢迎咨询").await;
    assert!(
        matches!(
            late,
            Err(ReplyError::CodeExpired {
                kind: CodeKind::Welcome
            })
        ),
        "{late:?}"
    );
    assert_eq!(sim.sent().len(), 1, "nothing sent on the expired code");
}

#[tokio::test]
async fn handing_off_returns_the_code_and_keeps_the_bot_quiet() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let replier = replier(&sim);
    let sync = replier_stream(&sim, &replier);
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "转人工")
        .expect("customer writes");
    pull(&sync, &kf).await;
    replier
        .send(&alice, Text::new("好的，正在为您转接"))
        .await
        .expect("sent");
    let code = replier.hand_to_queue(&alice).await.expect("queued");
    let code = code.expect("WeCom gives a queue notice code");
    assert_eq!(code.kind, CodeKind::Queue);
    replier
        .answer_code(&code, Text::new("您前面还有 2 位"))
        .await
        .expect("queue notice");
    let refused = replier.send(&alice, Text::new("bot")).await;
    assert!(
        matches!(refused, Err(ReplyError::Session(SessionRefusal::Queued))),
        "{refused:?}"
    );
    let menu = Menu::new()
        .head_content("满意吗")
        .list([MenuClick::new("1", "满意")]);
    let no_menu = replier.answer_code(&code, menu).await;
    assert!(matches!(
        no_menu,
        Err(ReplyError::MenuNotAllowed {
            kind: CodeKind::Queue
        })
    ));

    // To a servicer who is receiving, then ended: each hand-off gives its code.
    let client = sim.client_builder().build().expect("client");
    client
        .servicer_add(&kf)
        .userid_list(["lisi"])
        .await
        .expect("servicer added");
    sim.servicer_becomes(&kf, "lisi", ServicerAvailability::Receiving)
        .expect("receiving");
    let bob = Customer::new(&kf, "wmBOB");
    sim.customer_says(&kf, "wmBOB", "人工")
        .expect("customer writes");
    pull(&sync, &kf).await;
    let pickup = replier
        .hand_to_servicer(&bob, "lisi")
        .await
        .expect("handed over");
    assert_eq!(pickup.map(|c| c.kind), Some(CodeKind::Pickup));
    let human = replier.send(&bob, Text::new("bot")).await;
    assert!(
        matches!(&human, Err(ReplyError::Session(SessionRefusal::HumanHasIt { servicer: Some(s) })) if s == "lisi"),
        "{human:?}"
    );
    let closing = replier.end_session(&bob).await.expect("ended");
    let closing = closing.expect("a closing code");
    assert_eq!(closing.kind, CodeKind::Closing);
    let survey = Menu::new()
        .head_content("满意吗")
        .list([MenuClick::new("1", "满意")]);
    replier
        .answer_code(&closing, survey)
        .await
        .expect("a menu may close a session");
}

/// What the bot's own bookkeeping says a send to `customer` would meet.
async fn predicted(replier: &Replier, customer: &Customer) -> Option<wecom_kf::ErrCode> {
    use wecom_kf::ErrCode;
    if SessionRefusal::for_state(&replier.session_tracker().view(customer)).is_some() {
        return Some(ErrCode::SessionStateForbidsSending);
    }
    let allowance = replier
        .reply_budget()
        .allowance(customer)
        .await
        .expect("budget");
    match (allowance.closes_at, allowance.left) {
        (None, _) => Some(ErrCode::SendTimeLimit),
        (Some(_), 0) => Some(ErrCode::SendCountLimit),
        _ => None,
    }
}

#[tokio::test]
async fn tracker_and_simulator_agree_over_a_randomized_conversation() {
    // New sessions go to a servicer who is receiving, as WeCom routes them.
    let config = wecom_kf_sim::SimConfig {
        route_new_sessions: true,
        ..wecom_kf_sim::SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let raw = sim.client_builder().build().expect("client");
    let replier = replier(&sim);
    let sync = replier_stream(&sim, &replier);
    let customers: Vec<String> = (0..5).map(|i| format!("wmC{i}")).collect();
    // REPLY_SEED=… replays another conversation.
    let seed = std::env::var("REPLY_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut rng = common::Rng(seed.unwrap_or(0x5eed_1234_abcd));
    // lisi serves the account when receiving (and zhangsan takes sessions by hand).
    raw.servicer_add(&kf)
        .userid_list(["lisi"])
        .await
        .expect("servicer added");
    // Everyone has written once: a customer WeCom never saw is 40096, not a closed window.
    for who in &customers {
        sim.customer_says(&kf, who, "hello")
            .expect("customer writes");
    }
    pull(&sync, &kf).await;
    let (mut replies, mut refused_locally, mut disagreements) = (0, 0, Vec::new());
    // Replies asked for while the session was routed to the online servicer.
    let mut routed = 0;
    let steps = 1000;
    for step in 0..steps {
        let who = &customers[rng.below(customers.len())];
        let customer = Customer::new(&kf, who.as_str());
        match rng.below(100) {
            0..40 => {
                // A second after the last reply: within it, the budget counts a reply
                // whose order with the message it can't know (the conservative side).
                sim.advance(Duration::from_secs(1));
                sim.customer_says(&kf, who, &format!("step {step}"))
                    .expect("customer writes");
            }
            40..75 => {
                let expected = predicted(&replier, &customer).await;
                if replier
                    .session_tracker()
                    .view(&customer)
                    .servicer
                    .as_deref()
                    == Some("lisi")
                {
                    routed += 1;
                }
                let before = sim.sent().len();
                let outcome = replier
                    .send(&customer, Text::new(format!("reply {step}")))
                    .await;
                let actual = match (&outcome, expected) {
                    (Ok(_), _) => None,
                    // Refused locally: ask the simulator what it would have said.
                    (Err(ReplyError::Session(_) | ReplyError::Budget(_)), Some(_))
                        if sim.sent().len() == before =>
                    {
                        refused_locally += 1;
                        let probe = raw.send_text(who.as_str(), &kf, "probe").await;
                        probe.err().and_then(|e| e.code())
                    }
                    (Err(ReplyError::Session(_)), None) => {
                        Some(wecom_kf::ErrCode::SessionStateForbidsSending)
                    }
                    (Err(ReplyError::Send { error, .. }), _) => error.code(),
                    (Err(other), _) => panic!("step {step}: {other}"),
                };
                if outcome.is_ok() {
                    replies += 1;
                }
                if actual != expected {
                    disagreements.push((step, who.clone(), expected, actual));
                }
            }
            75..82 => {
                let _ = sim.servicer_takes(&kf, who, "zhangsan");
            }
            82..88 => {
                let _ = sim.session_ends(&kf, who, "zhangsan");
            }
            88..91 => {
                let availability = if rng.below(2) == 0 {
                    ServicerAvailability::Receiving
                } else {
                    ServicerAvailability::Stopped
                };
                let _ = sim.servicer_becomes(&kf, "lisi", availability);
            }
            _ => {
                // Minutes to two days, never a whole number of hours: the 48-hour edge
                // falls between steps, not on one.
                let minutes = 1 + rng.below(48 * 60) as u64;
                sim.advance(Duration::from_secs(minutes * 60 + 7));
            }
        }
        // Whatever happened comes with a callback: the bot pulls, as a deployed bot does.
        pull(&sync, &kf).await;
    }
    println!(
        "{steps} steps: {replies} replies sent, {refused_locally} refused locally ({routed} while routed to a servicer), {} disagreements",
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "tracker and simulator disagree: {disagreements:?}"
    );
    assert!(
        replies > 25 && refused_locally > 20,
        "the conversation exercised both sides"
    );
    assert!(
        routed > 0,
        "no session was ever routed to the online servicer"
    );
}

/// About 6,000 bytes of the markdown an LLM answers with.
fn long_markdown_answer() -> String {
    let mut answer = String::from("# 退货说明\n\n");
    for i in 1..=50 {
        answer.push_str(&format!(
            "{i}. **第{i}步**：请在订单页面点击[申请退货](https://example.com/return/{i})，并保留好快递单号。\n"
        ));
    }
    answer.push_str("\n```\n订单号: 123456\n```\n\n> 如有疑问，请随时联系我们。\n");
    answer
}

#[tokio::test]
async fn a_long_markdown_answer_arrives_complete_in_parts_within_the_budget() {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let replier = replier(&sim);
    let sync = replier_stream(&sim, &replier);
    let alice = Customer::new(&kf, "wmALICE");
    sim.customer_says(&kf, "wmALICE", "怎么退货？")
        .expect("customer writes");
    pull(&sync, &kf).await;

    let answer = long_markdown_answer();
    assert!(answer.len() > 6_000, "{} bytes", answer.len());
    let msgids = replier.reply(&alice, &answer).await.expect("fits in 5");
    let sent: Vec<String> = sim
        .sent()
        .iter()
        .map(|m| m.payload["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(sent.len(), msgids.len());
    assert!(sent.len() > 1 && sent.iter().all(|part| part.len() <= 2048));
    let rendered = Composer::new().compose(&answer).text().to_owned();
    assert_eq!(sent.concat(), rendered, "nothing lost between the parts");
    assert!(!rendered.contains("**") && rendered.contains("https://example.com/return/1"));

    // Two replies left: a second long answer doesn't fit; the bot chooses to shorten it.
    replier
        .send(&alice, Text::new("还有别的问题吗？"))
        .await
        .expect("sent");
    let left = replier.reply_budget().allowance(&alice).await.unwrap().left;
    let over = match replier.reply(&alice, &answer).await {
        Err(ReplyError::TooLong(over)) => over,
        other => panic!("{other:?}"),
    };
    assert_eq!(over.left(), left);
    let before = sim.sent().len();
    let shortened = over.shorten();
    assert!(!shortened.dropped.is_empty(), "what was cut is reported");
    replier
        .send_texts(&alice, shortened.parts)
        .await
        .expect("sent");
    assert_eq!(sim.sent().len() - before, left as usize);
    assert!(matches!(
        replier.send(&alice, Text::new("x")).await,
        Err(ReplyError::Budget(_))
    ));
}

/// Real captures and other SDKs' samples (`../shared/peer-corpus/`, read in place, never
/// copied): events name their customer only inside `event`, and `customer()` finds it.
#[test]
fn events_in_real_captures_name_their_customer() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/peer-corpus/sync_msg_responses.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{} (shared/ must sit beside the checkout): {e}",
            path.display()
        )
    });
    let entries: Vec<serde_json::Value> = serde_json::from_str(&text).expect("the corpus is JSON");
    let (mut events, mut inputs) = (0, 0);
    for entry in entries {
        let page: wecom_kf::types::SyncMsgResponse =
            serde_json::from_value(entry["payload"].clone()).expect("a sync_msg answer");
        for (item, raw) in page
            .msg_list
            .iter()
            .zip(entry["payload"]["msg_list"].as_array().unwrap())
        {
            let inside = &raw["event"];
            if let (Some(kf), Some(user)) = (
                inside["open_kfid"].as_str(),
                inside["external_userid"].as_str(),
            ) {
                assert_eq!(item.customer(), Some(Customer::new(kf, user)), "{raw}");
                assert!(!item.is_customer_input());
                events += 1;
            }
            if raw["origin"] == 3 && raw["msgtype"] != "event" {
                assert!(item.is_customer_input(), "{raw}");
                inputs += 1;
            }
        }
    }
    assert!(
        events >= 10 && inputs >= 5,
        "{events} events, {inputs} customer messages"
    );
}

/// WeCom counts a reply against the latest customer message it had when the reply came.
/// A reply sent after a message this process hadn't pulled yet counts against that
/// message's window: learning of the message later must not hand those replies out again
/// (the bot chaos test met 95001s this way).
#[test]
fn replies_sent_after_a_message_not_yet_pulled_count_against_its_window() {
    use wecom_kf::reply::{Change, Window};
    let mut window = Window::default();
    window.apply(Change::CustomerWrote { at: 100, digest: 1 });
    assert!(window.apply(Change::Reserve { n: 3, now: 101 }));
    for _ in 0..3 {
        window.apply(Change::Sent { at: 103 });
    }
    // The customer wrote again at 102, before those three went out; pulled only now.
    window.apply(Change::CustomerWrote { at: 102, digest: 2 });
    assert_eq!(window.allowance(104).left, 2, "the three count against it");
    // A message after them opens a window of its own.
    window.apply(Change::CustomerWrote { at: 104, digest: 3 });
    assert_eq!(window.allowance(104).left, 5);
}
