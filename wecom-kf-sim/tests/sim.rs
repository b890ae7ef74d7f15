//! The client against the simulator: every generated method, every error code the
//! simulator produces, token expiry mid-run, one-time codes, paging, and each fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wecom_kf::{
    Client, Delivery, ErrCode, Error, RetryPolicy,
    types::{
        CaLink, Event, File, Gender, Image, Link, Location, Menu, MenuClick, MiniProgram, Received,
        ServiceState, ServicerListStatus, StopType, Text, UpgradeGroupChat, UpgradeMember,
        UpgradeType, Video, Voice,
    },
};
use wecom_kf_sim::{
    Fault, ServicerAvailability, SimConfig, SimUpgradeService, Simulator, UpgradeOffer,
};

const ALICE: &str = "wmALICE";

async fn setup() -> (Simulator, Client) {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim
        .client_builder()
        .retry_policy(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .expect("client");
    (sim, client)
}

/// A JSON request without reqwest's `json` feature, which the crate doesn't need.
async fn http_json(request: reqwest::RequestBuilder, body: Option<Value>) -> (u16, Value) {
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).expect("encode")),
        None => request,
    };
    let response = request.send().await.expect("http");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code_of(result: Result<impl std::fmt::Debug, Error>) -> ErrCode {
    match result {
        Err(e) => e.code().unwrap_or_else(|| panic!("not an API error: {e}")),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[tokio::test]
async fn every_send_method_is_accepted_and_recorded() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    client.send_text(ALICE, &kf, "one").await.expect("text");
    client.send_image(ALICE, &kf, "MEDIA").await.expect("image");
    client.send_voice(ALICE, &kf, "MEDIA").await.expect("voice");
    client
        .send_video(ALICE, &kf, "MEDIA")
        .msgid("video-1")
        .await
        .expect("video");
    client.send_file(ALICE, &kf, "MEDIA").await.expect("file");
    sim.customer_says(&kf, ALICE, "more").expect("customer");
    client
        .send_link(ALICE, &kf, Link::new("t", "https://example.com", "THUMB"))
        .await
        .expect("link");
    client
        .send_miniprogram(ALICE, &kf, MiniProgram::new("wx1", "THUMB", "pages/a.html"))
        .await
        .expect("miniprogram");
    client
        .send_menu(ALICE, &kf, Menu::new().list([MenuClick::new("1", "yes")]))
        .await
        .expect("menu");
    client
        .send_location(ALICE, &kf, Location::new(23.1, 113.3))
        .await
        .expect("location");
    client
        .send_ca_link(ALICE, &kf, CaLink::new("https://work.weixin.qq.com/ca/x"))
        .await
        .expect("ca_link");
    sim.customer_says(&kf, ALICE, "again").expect("customer");
    client
        .send_msg(ALICE, &kf, Text::new("typed"))
        .await
        .expect("send_msg");
    client
        .send_msg_raw(json!({"touser": ALICE, "open_kfid": kf, "msgtype": "text", "text": {"content": "raw"}}))
        .await
        .expect("raw");
    let welcome = sim
        .customer_enters(&kf, "wmBOB")
        .expect("enter")
        .expect("a welcome code");
    client
        .send_text_on_event(&welcome, "欢迎")
        .await
        .expect("text on event");
    let end = sim.session_ends(&kf, ALICE, "zhangsan").expect("end");
    client
        .send_menu_on_event(
            &end,
            Menu::new()
                .head_content("满意吗？")
                .list([MenuClick::new("1", "满意")]),
        )
        .await
        .expect("menu on event");

    let sent = sim.sent();
    let types: Vec<&str> = sent.iter().map(|m| m.msgtype.as_str()).collect();
    assert_eq!(
        types,
        [
            "text",
            "image",
            "voice",
            "video",
            "file",
            "link",
            "miniprogram",
            "msgmenu",
            "location",
            "ca_link",
            "text",
            "text",
            "text",
            "msgmenu"
        ]
    );
    assert_eq!(sent[3].msgid, "video-1", "the given msgid is kept");
    assert_eq!(sent[12].via, "send_msg_on_event");
    assert_eq!(sent[12].touser, "wmBOB", "the code named the customer");
    // Unused Image/Voice/Video/File imports would hide a missing shortcut; use them.
    let _ = (
        Image::new("m"),
        Voice::new("m"),
        Video::new("m"),
        File::new("m"),
    );
}

#[tokio::test]
async fn sync_msg_pages_with_cursor_and_limit() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    for i in 0..2500 {
        sim.customer_says(&kf, ALICE, &format!("#{i}"))
            .expect("customer");
    }
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let mut call = client.sync_msg(&kf).limit(1000);
        if let Some(c) = &cursor {
            call = call.cursor(c.as_str());
        }
        let page = call.await.expect("page");
        pages += 1;
        assert!(page.msg_list.len() <= 1000);
        seen.extend(page.msg_list.into_iter().map(|m| match m.content {
            Received::Text(t) => t.content,
            other => panic!("{other:?}"),
        }));
        cursor = Some(page.next_cursor);
        if page.has_more == 0 {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..2500).map(|i| format!("#{i}")).collect::<Vec<_>>());
    // Nothing new: an empty page, and the cursor stays put.
    let again = client
        .sync_msg(&kf)
        .cursor(cursor.clone().unwrap_or_default())
        .await
        .expect("again");
    assert_eq!((again.msg_list.len(), again.has_more), (0, 0));
    assert_eq!(Some(again.next_cursor), cursor);
}

#[tokio::test]
async fn messages_older_than_three_days_are_gone() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "old").expect("customer");
    sim.advance(Duration::from_secs(3 * 24 * 3600 + 60));
    sim.customer_says(&kf, ALICE, "new").expect("customer");
    let page = client.sync_msg(&kf).await.expect("page");
    assert_eq!(page.msg_list.len(), 1);
    assert!(matches!(&page.msg_list[0].content, Received::Text(t) if t.content == "new"));
}

#[tokio::test]
async fn callback_tokens_expire_after_ten_minutes() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let said = sim.customer_says(&kf, ALICE, "hi").expect("customer");
    client
        .sync_msg(&kf)
        .token(said.callback_token.as_str())
        .await
        .expect("fresh token");
    sim.advance(Duration::from_secs(601));
    let stale = client
        .sync_msg(&kf)
        .token(said.callback_token.as_str())
        .await;
    assert_eq!(code_of(stale), ErrCode::InvalidMsgToken);
}

#[tokio::test]
async fn the_window_and_the_five_message_cap() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    assert_eq!(
        code_of(client.send_text("wmSTRANGER", &kf, "hi").await),
        ErrCode::InvalidExternalUserId,
        "a customer who never wrote"
    );
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    for n in 0..5 {
        client
            .send_text(ALICE, &kf, format!("reply {n}"))
            .await
            .expect("within the cap");
    }
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "sixth").await),
        ErrCode::SendCountLimit
    );
    sim.customer_says(&kf, ALICE, "again").expect("customer");
    client
        .send_text(ALICE, &kf, "a new window")
        .await
        .expect("reset by the customer");
    sim.advance(Duration::from_secs(48 * 3600 + 1));
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "late").await),
        ErrCode::SendTimeLimit
    );
}

#[tokio::test]
async fn a_servicer_session_refuses_api_sends() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "人工").expect("customer");
    let pickup = sim.servicer_takes(&kf, ALICE, "zhangsan").expect("take");
    let refused = client.send_text(ALICE, &kf, "bot here").await;
    assert_eq!(code_of(refused), ErrCode::SessionStateForbidsSending);
    // The pickup code allows one text, not a menu.
    let menu = client
        .send_menu_on_event(&pickup, Menu::new().head_content("x"))
        .await;
    assert_eq!(code_of(menu), ErrCode::InvalidMessageType);
    client
        .send_text_on_event(&pickup, "您好，我是客服张三")
        .await
        .expect("pickup notice");
    // The event shows up in sync_msg with its code.
    let page = client.sync_msg(&kf).await.expect("page");
    let codes: Vec<Option<String>> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::SessionStatusChange(e)) => Some(e.msg_code.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [Some(pickup)]);
}

#[tokio::test]
async fn event_codes_are_single_use_and_expire() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let code = sim
        .customer_enters(&kf, ALICE)
        .expect("enter")
        .expect("code");
    client
        .send_text_on_event(&code, "欢迎")
        .await
        .expect("first use");
    assert_eq!(
        code_of(client.send_text_on_event(&code, "again").await),
        ErrCode::EventCodeUsedOrExpired
    );
    let late = sim
        .customer_enters(&kf, "wmBOB")
        .expect("enter")
        .expect("code");
    sim.advance(Duration::from_secs(21));
    assert_eq!(
        code_of(client.send_text_on_event(&late, "late").await),
        ErrCode::EventCodeUsedOrExpired
    );
    // A customer who wrote within 48 hours gets no welcome code.
    sim.customer_says(&kf, "wmCAROL", "hi").expect("customer");
    assert_eq!(sim.customer_enters(&kf, "wmCAROL").expect("enter"), None);
}

#[tokio::test]
async fn bodies_the_client_would_never_send_are_refused_like_the_server_does() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    let base = |msgtype: &str, payload: Value| json!({"touser": ALICE, "open_kfid": kf, "msgtype": msgtype, msgtype: payload});
    let menu_items = |n: usize, kind: &str| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"type": kind, kind: {"id": i.to_string(), "content": "x"}}))
            .collect();
        json!({"list": items})
    };
    let cases = [
        (base("news", json!({})), ErrCode::InvalidMessageType),
        (base("text", json!({"content": ""})), ErrCode::EmptyText),
        (
            base("text", json!({"content": "字".repeat(683)})),
            ErrCode::ContentTooLarge,
        ),
        (base("image", json!({})), ErrCode::MediaIdMissing),
        (
            base("msgmenu", menu_items(11, "click")),
            ErrCode::MenuItemCountLimit,
        ),
        (
            base("msgmenu", menu_items(1, "button")),
            ErrCode::InvalidMenuItemType,
        ),
        (
            base("location", json!({"latitude": 91, "longitude": 0})),
            ErrCode::InvalidParameter,
        ),
        (
            json!({"touser": ALICE, "open_kfid": "wkNOPE", "msgtype": "text", "text": {"content": "x"}}),
            ErrCode::InvalidOpenKfId,
        ),
        (
            json!({"touser": ALICE, "open_kfid": kf, "msgid": "bad id!", "msgtype": "text", "text": {"content": "x"}}),
            ErrCode::InvalidParameter,
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            code_of(client.send_msg_raw(body.clone()).await),
            expected,
            "{body}"
        );
    }
    assert!(sim.sent().is_empty(), "nothing refused was recorded");
    // A msgid may be used once per account.
    let with_id = json!({"touser": ALICE, "open_kfid": kf, "msgid": "once", "msgtype": "text", "text": {"content": "x"}});
    client.send_msg_raw(with_id.clone()).await.expect("first");
    assert_eq!(
        code_of(client.send_msg_raw(with_id).await),
        ErrCode::DuplicateMsgid
    );
    // sync_msg's own checks.
    assert_eq!(
        code_of(client.sync_msg("wkNOPE").await),
        ErrCode::InvalidOpenKfId
    );
    assert_eq!(
        code_of(client.sync_msg(&kf).cursor("garbage").await),
        ErrCode::InvalidCursor
    );
}

#[tokio::test]
async fn credentials_are_checked() {
    let sim = Simulator::start().await.expect("simulator");
    let wrong_secret = sim.client_builder().secret("nope").build().expect("client");
    assert_eq!(
        code_of(wrong_secret.access_token().await),
        ErrCode::InvalidCredential
    );
    let wrong_corp = sim
        .client_builder()
        .corp_id("wwOTHER")
        .build()
        .expect("client");
    assert_eq!(
        code_of(wrong_corp.access_token().await),
        ErrCode::InvalidCorpId
    );
    // Without a token at all (a raw HTTP call): 41001.
    let url = format!("{}kf/sync_msg", sim.base_url());
    let (_, answer) = http_json(
        reqwest::Client::new().post(url),
        Some(json!({"open_kfid": sim.open_kfid()})),
    )
    .await;
    assert_eq!(answer["errcode"], 41001);
}

#[tokio::test]
async fn tokens_expiring_or_revoked_mid_run_cost_one_refresh_each() {
    let config = SimConfig {
        token_lifetime: Duration::from_secs(600),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = sim.open_kfid().to_owned();
    client.sync_msg(&kf).await.expect("first call");
    assert_eq!(sim.gettoken_calls(), 1);
    // The simulator's clock passes the token's expiry; the client still thinks it fresh.
    sim.advance(Duration::from_secs(601));
    client.sync_msg(&kf).await.expect("refreshed after 42001");
    assert_eq!(sim.gettoken_calls(), 2);
    sim.revoke_tokens(40014);
    client.sync_msg(&kf).await.expect("refreshed after 40014");
    assert_eq!(sim.gettoken_calls(), 3);
    client.sync_msg(&kf).await.expect("no refresh needed");
    assert_eq!(sim.gettoken_calls(), 3);
}

#[tokio::test]
async fn injected_faults_behave_like_the_network() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");

    sim.inject("kf/send_msg", Fault::Busy, 2);
    client
        .send_text(ALICE, &kf, "after busy")
        .await
        .expect("busy is retried");
    assert_eq!(sim.sent().len(), 1);

    sim.inject("kf/sync_msg", Fault::Hangup, 1);
    client
        .sync_msg(&kf)
        .await
        .expect("an idempotent read survives a hangup");

    sim.inject("kf/send_msg", Fault::Hangup, 1);
    match client.send_text(ALICE, &kf, "lost?").await {
        Err(Error::Transport {
            delivery: Delivery::MaybeSent,
            ..
        }) => {}
        other => panic!("expected a MaybeSent transport error, got {other:?}"),
    }

    sim.inject("kf/send_msg", Fault::Status(502), 1);
    assert!(
        client.send_text(ALICE, &kf, "bad gateway").await.is_err(),
        "a 502 on a send is reported"
    );

    let impatient = sim
        .client_builder()
        .request_timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    sim.inject("kf/send_msg", Fault::Delay(Duration::from_millis(500)), 1);
    assert!(matches!(
        impatient.send_text(ALICE, &kf, "slow").await,
        Err(Error::Transport {
            delivery: Delivery::MaybeSent,
            ..
        })
    ));
    sim.inject("gettoken", Fault::Busy, 1);
    let fresh = sim.client_builder().build().expect("client");
    fresh
        .access_token()
        .await
        .expect("gettoken busy is retried");
    // The slow send did arrive: a timeout is not proof of failure.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let texts: Vec<String> = sim
        .sent()
        .iter()
        .map(|m| m.payload["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        texts,
        ["after busy", "slow"],
        "hangup and 502 sends were not accepted, none were re-sent"
    );
}

#[tokio::test]
async fn the_control_api_works_over_http() {
    let sim = Simulator::start().await.expect("simulator");
    let http = reqwest::Client::new();
    let root = format!("http://{}/sim", sim.addr());
    let kf = sim.open_kfid();
    let (_, entered) = http_json(
        http.post(format!("{root}/customer/enter")),
        Some(json!({"open_kfid": kf, "external_userid": ALICE})),
    )
    .await;
    assert!(
        entered["welcome_code"]
            .as_str()
            .is_some_and(|c| c.starts_with("SIMCODE"))
    );
    let (_, said) = http_json(
        http.post(format!("{root}/customer/message")),
        Some(json!({"open_kfid": kf, "external_userid": ALICE, "content": "hi"})),
    )
    .await;
    assert_eq!(
        said["callback_token"].as_str(),
        sim.latest_callback_token(kf).as_deref()
    );
    let (status, _) = http_json(
        http.post(format!("{root}/faults")),
        Some(json!({"path": "kf/send_msg", "fault": {"status": 503}, "times": 1})),
    )
    .await;
    assert_eq!(status, 200);
    let client = sim.client_builder().build().expect("client");
    assert!(
        client.send_text(ALICE, kf, "x").await.is_err(),
        "the injected 503"
    );
    client.send_text(ALICE, kf, "y").await.expect("then normal");
    let (_, sent) = http_json(http.get(format!("{root}/sent")), None).await;
    assert_eq!(sent.as_array().map(Vec::len), Some(1));
    assert_eq!(sent[0]["payload"]["content"], "y");
    let (status, refusal) = http_json(
        http.post(format!("{root}/customer/message")),
        Some(json!({"open_kfid": "wkNOPE", "external_userid": ALICE, "content": "hi"})),
    )
    .await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(95004)));
}

/// POSTs `body` to the control API route `/sim/{route}`.
async fn control(sim: &Simulator, route: &str, body: Value) -> (u16, Value) {
    let url = format!("http://{}/sim/{route}", sim.addr());
    http_json(reqwest::Client::new().post(url), Some(body)).await
}

/// `sync_msg` with `access_token`, bypassing the client so faults and refusals are seen
/// as they arrive, without retries. An error is a failed exchange (a hangup).
async fn raw_sync_msg(sim: &Simulator, access_token: &str) -> reqwest::Result<Value> {
    let url = format!(
        "http://{}/cgi-bin/kf/sync_msg?access_token={access_token}",
        sim.addr()
    );
    let body = serde_json::to_vec(&json!({"open_kfid": sim.open_kfid()})).expect("encode");
    let response = reqwest::Client::new().post(url).body(body).send().await?;
    let bytes = response.bytes().await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn session_codes(page: &wecom_kf::types::SyncMsgResponse) -> Vec<(Option<String>, Option<String>)> {
    page.msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::SessionStatusChange(e)) => Some((
                e.msg_code.clone(),
                e.new_servicer_userid
                    .clone()
                    .or_else(|| e.old_servicer_userid.clone()),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_control_api_hands_sessions_to_servicers_and_ends_them() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let conversation =
        json!({"open_kfid": kf, "external_userid": ALICE, "servicer_userid": "zhangsan"});
    sim.customer_says(&kf, ALICE, "人工").expect("customer");

    let (status, taken) = control(&sim, "servicer/take", conversation.clone()).await;
    assert_eq!(status, 200, "{taken}");
    let pickup = taken["msg_code"].as_str().expect("pickup code").to_owned();
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "bot here").await),
        ErrCode::SessionStateForbidsSending,
        "a servicer has the session"
    );

    let (status, ended) = control(&sim, "session/end", conversation).await;
    assert_eq!(status, 200, "{ended}");
    let closing = ended["msg_code"].as_str().expect("closing code").to_owned();
    assert_ne!(closing, pickup);
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "still there?").await),
        ErrCode::SessionStateForbidsSending,
        "an ended session is not the bot's to write in"
    );
    client
        .send_text_on_event(&closing, "感谢咨询，再见")
        .await
        .expect("the closing code allows a goodbye");

    let page = client.sync_msg(&kf).await.expect("page");
    assert_eq!(
        session_codes(&page),
        [
            (Some(pickup), Some("zhangsan".to_owned())),
            (Some(closing), Some("zhangsan".to_owned())),
        ]
    );

    let (status, refusal) = control(
        &sim,
        "servicer/take",
        json!({"open_kfid": "wkNOPE", "external_userid": ALICE, "servicer_userid": "zhangsan"}),
    )
    .await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(95004)));
}

#[tokio::test]
async fn the_control_api_moves_the_clock() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let said = sim.customer_says(&kf, ALICE, "hi").expect("customer");
    let (status, _) = control(&sim, "clock/advance", json!({"seconds": 599})).await;
    assert_eq!(status, 200);
    client
        .sync_msg(&kf)
        .token(said.callback_token.as_str())
        .await
        .expect("599 s: the callback token is still valid");
    control(&sim, "clock/advance", json!({"seconds": 2})).await;
    assert_eq!(
        code_of(
            client
                .sync_msg(&kf)
                .token(said.callback_token.as_str())
                .await
        ),
        ErrCode::InvalidMsgToken,
        "601 s: expired"
    );
    let (status, _) = control(&sim, "clock/advance", json!({"minutes": 5})).await;
    assert!(
        (400..500).contains(&status),
        "a body without `seconds` is refused: {status}"
    );
}

#[tokio::test]
async fn the_control_api_revokes_tokens() {
    let (sim, client) = setup().await;
    let old = client.access_token().await.expect("token");
    let (status, _) = control(&sim, "tokens/revoke", json!({"errcode": 40014})).await;
    assert_eq!(status, 200);
    let refused = raw_sync_msg(&sim, old.expose()).await.expect("answer");
    assert_eq!(refused["errcode"], 40014, "{refused}");
    client
        .sync_msg(sim.open_kfid())
        .await
        .expect("the client refreshes");
    assert_eq!(sim.gettoken_calls(), 2);
    let fresh = client.access_token().await.expect("token");
    assert_ne!(fresh, old);
    control(&sim, "tokens/revoke", json!({"errcode": 42001})).await;
    let refused = raw_sync_msg(&sim, fresh.expose()).await.expect("answer");
    assert_eq!(refused["errcode"], 42001, "the chosen code: {refused}");
}

#[tokio::test]
async fn the_control_api_injects_busy_hangup_and_delay() {
    let (sim, client) = setup().await;
    let token = client.access_token().await.expect("token");
    let token = token.expose();
    let inject = |fault: Value, times: Option<usize>| {
        let mut spec = json!({"path": "kf/sync_msg", "fault": fault});
        if let Some(times) = times {
            spec["times"] = json!(times);
        }
        control(&sim, "faults", spec)
    };

    assert_eq!(inject(json!("busy"), Some(2)).await.0, 200);
    for n in 1..=2 {
        let answer = raw_sync_msg(&sim, token).await.expect("answer");
        assert_eq!(answer["errcode"], -1, "busy {n} of 2: {answer}");
    }
    let answer = raw_sync_msg(&sim, token).await.expect("answer");
    assert_eq!(answer["errcode"], 0, "only `times` requests fail: {answer}");

    assert_eq!(inject(json!("hangup"), None).await.0, 200);
    assert!(
        raw_sync_msg(&sim, token).await.is_err(),
        "the connection drops"
    );
    let answer = raw_sync_msg(&sim, token)
        .await
        .expect("one hangup by default");
    assert_eq!(answer["errcode"], 0);

    assert_eq!(inject(json!({"delay_ms": 400}), None).await.0, 200);
    let started = std::time::Instant::now();
    let answer = raw_sync_msg(&sim, token).await.expect("answer");
    assert_eq!(answer["errcode"], 0, "late, not wrong: {answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "answered after {:?}",
        started.elapsed()
    );

    let (status, refusal) = inject(json!("meteor"), None).await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(40058)));
    let started = std::time::Instant::now();
    let answer = raw_sync_msg(&sim, token).await.expect("answer");
    assert_eq!(answer["errcode"], 0, "an unknown fault injects nothing");
    assert!(started.elapsed() < Duration::from_millis(400));

    let (status, _) = control(&sim, "faults", json!({"path": "gettoken", "fault": "busy"})).await;
    assert_eq!(status, 200);
    let url = format!(
        "http://{}/cgi-bin/gettoken?corpid={}&corpsecret={}",
        sim.addr(),
        sim.corp_id(),
        sim.secret()
    );
    let (_, busy) = http_json(reqwest::Client::new().get(url), None).await;
    assert_eq!(busy["errcode"], -1, "gettoken takes faults too: {busy}");
}

#[tokio::test]
async fn the_kf_sim_binary_serves_the_api() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
        .args([
            "--port",
            &port.to_string(),
            "--corp-id",
            "wwBIN",
            "--secret",
            "bin-secret",
            "--open-kfid",
            "wkBIN",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kf-sim");
    let client = Client::builder()
        .corp_id("wwBIN")
        .secret("bin-secret")
        .base_url(format!("http://127.0.0.1:{port}/cgi-bin/"))
        .build()
        .expect("client");
    let mut answer = None;
    for _ in 0..100 {
        match client.sync_msg("wkBIN").await {
            Ok(page) => {
                answer = Some(page);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let page = answer.expect("kf-sim answered within 5 s");
    assert_eq!((page.msg_list.len(), page.has_more), (0, 0));
    child.kill().await.ok();
}

#[tokio::test]
async fn the_kf_sim_binary_posts_encrypted_callbacks_when_given_a_url() {
    use wecom_kf::callback::{CallbackCrypto, CallbackEvent};
    const TOKEN: &str = "binCallbackToken";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    // The bot's callback URL: decrypts what arrives and keeps the callback tokens.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let callback_url = format!(
        "http://{}/kf/callback",
        listener.local_addr().expect("addr")
    );
    let crypto = CallbackCrypto::new(TOKEN, KEY, "wwBIN").expect("crypto");
    let app = axum::Router::new().route(
        "/kf/callback",
        axum::routing::post({
            let received = received.clone();
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >,
                  body: String| {
                let (received, crypto) = (received.clone(), crypto.clone());
                async move {
                    let opened =
                        crypto.open(&q["msg_signature"], &q["timestamp"], &q["nonce"], &body);
                    if let Ok(CallbackEvent::KfMsgOrEvent(event)) = opened {
                        received
                            .lock()
                            .expect("log")
                            .push(event.token.expose().to_owned());
                    }
                    "success"
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
        .args([
            "--port",
            &port.to_string(),
            "--corp-id",
            "wwBIN",
            "--open-kfid",
            "wkBIN",
        ])
        .args([
            "--callback-url",
            &callback_url,
            "--callback-token",
            TOKEN,
            "--callback-aes-key",
            KEY,
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kf-sim");
    let http = reqwest::Client::new();
    let mut said = None;
    for _ in 0..100 {
        let (status, answer) = async {
            match http
                .post(format!("http://127.0.0.1:{port}/sim/customer/message"))
                .header("content-type", "application/json")
                .body(r#"{"open_kfid": "wkBIN", "external_userid": "wmBOB", "content": "hi"}"#)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let bytes = response.bytes().await.unwrap_or_default();
                    (
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )
                }
                Err(_) => (0, Value::Null),
            }
        }
        .await;
        if status == 200 {
            said = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = said.expect("kf-sim answered within 5 s");
    let mut tokens = Vec::new();
    for _ in 0..100 {
        tokens = received.lock().expect("log").clone();
        if !tokens.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        tokens.first().map(String::as_str),
        said["callback_token"].as_str(),
        "the callback carried the message's token"
    );
    child.kill().await.ok();

    // Half a callback configuration is refused before the simulator starts.
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
        .args(["--port", "0", "--callback-url", &callback_url])
        .output()
        .await
        .expect("run kf-sim");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--callback-aes-key"));
}

// -- accounts, servicers, session states, customers and the upgrade service -------------

/// Calls `kf/{endpoint}` with a body the client would refuse to send, to reach the
/// simulator's own checks; returns WeCom's answer.
async fn raw_kf(sim: &Simulator, client: &Client, endpoint: &str, body: Value) -> Value {
    let token = client.access_token().await.expect("token");
    let url = format!(
        "http://{}/cgi-bin/kf/{endpoint}?access_token={}",
        sim.addr(),
        token.expose()
    );
    http_json(reqwest::Client::new().post(url), Some(body))
        .await
        .1
}

fn account_names(accounts: &wecom_kf::types::AccountListResponse) -> Vec<&str> {
    accounts
        .account_list
        .iter()
        .map(|a| a.name.as_str())
        .collect()
}

#[tokio::test]
async fn account_add_creates_an_account_customers_can_reach() {
    let (sim, client) = setup().await;
    let added = client
        .account_add("售后客服", "MEDIA_AVATAR")
        .await
        .expect("account_add");
    assert!(added.open_kfid.starts_with("wk"), "{}", added.open_kfid);
    let accounts = client.account_list().await.expect("account_list");
    let new = accounts
        .account_list
        .iter()
        .find(|a| a.open_kfid == added.open_kfid)
        .expect("listed");
    assert_eq!(new.name, "售后客服");
    assert!(new.avatar.contains("MEDIA_AVATAR"), "{}", new.avatar);
    sim.customer_says(&added.open_kfid, ALICE, "在吗")
        .expect("customer");
    client
        .send_text(ALICE, &added.open_kfid, "在的")
        .await
        .expect("the new account sends");

    let too_long = raw_kf(
        &sim,
        &client,
        "account/add",
        json!({"name": "名".repeat(17), "media_id": "MEDIA_AVATAR"}),
    )
    .await;
    assert_eq!(too_long["errcode"], 95006, "{too_long}");
    let no_avatar = raw_kf(&sim, &client, "account/add", json!({"name": "客服"})).await;
    assert_eq!(no_avatar["errcode"], 41006, "{no_avatar}");
}

#[tokio::test]
async fn account_del_removes_the_account_and_its_codes() {
    let (sim, client) = setup().await;
    let kf = client
        .account_add("临时客服", "MEDIA")
        .await
        .expect("account_add")
        .open_kfid;
    let welcome = sim
        .customer_enters(&kf, ALICE)
        .expect("enter")
        .expect("welcome code");
    client.account_del(&kf).await.expect("account_del");

    let accounts = client.account_list().await.expect("account_list");
    assert!(accounts.account_list.iter().all(|a| a.open_kfid != kf));
    assert_eq!(
        code_of(client.account_del(&kf).await),
        ErrCode::OpenKfIdNotFound,
        "deleted once"
    );
    assert_eq!(
        code_of(client.add_contact_way(&kf).await),
        ErrCode::OpenKfIdNotFound
    );
    assert_eq!(
        code_of(client.send_text_on_event(&welcome, "欢迎").await),
        ErrCode::EventCodeUsedOrExpired,
        "the account's codes went with it"
    );
}

#[tokio::test]
async fn account_update_renames_and_changes_the_avatar() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    client
        .account_update(&kf)
        .name("咨询客服")
        .await
        .expect("rename");
    let before = client.account_list().await.expect("list").account_list[0].clone();
    assert_eq!(
        (before.open_kfid.as_str(), before.name.as_str()),
        (kf.as_str(), "咨询客服")
    );
    client
        .account_update(&kf)
        .media_id("NEW_AVATAR")
        .await
        .expect("new avatar");
    let after = client.account_list().await.expect("list").account_list[0].clone();
    assert_eq!(after.name, "咨询客服", "an unset name is kept");
    assert!(after.avatar.contains("NEW_AVATAR"), "{}", after.avatar);
    assert_ne!(after.avatar, before.avatar);

    assert_eq!(
        code_of(client.account_update("wkNOPE").name("x").await),
        ErrCode::OpenKfIdNotFound
    );
    let empty_name = raw_kf(
        &sim,
        &client,
        "account/update",
        json!({"open_kfid": kf, "name": ""}),
    )
    .await;
    assert_eq!(empty_name["errcode"], 95006, "{empty_name}");
}

#[tokio::test]
async fn account_list_pages_in_creation_order() {
    let (sim, client) = setup().await;
    for name in ["二号", "三号", "四号"] {
        client.account_add(name, "MEDIA").await.expect("add");
    }
    let everything = client.account_list().await.expect("list");
    assert_eq!(
        account_names(&everything),
        ["客服1", "二号", "三号", "四号"]
    );
    assert_eq!(everything.account_list[0].open_kfid, sim.open_kfid());
    assert!(
        everything
            .account_list
            .iter()
            .all(|a| a.manage_privilege == Some(true))
    );
    let first = client.account_list().limit(2u32).await.expect("page 1");
    let second = client
        .account_list()
        .offset(2u32)
        .limit(2u32)
        .await
        .expect("page 2");
    let beyond = client.account_list().offset(4u32).await.expect("page 3");
    assert_eq!(account_names(&first), ["客服1", "二号"]);
    assert_eq!(account_names(&second), ["三号", "四号"]);
    assert!(beyond.account_list.is_empty());

    let too_big = raw_kf(&sim, &client, "account/list", json!({"limit": 101})).await;
    assert_eq!(too_big["errcode"], 40058, "{too_big}");
}

#[tokio::test]
async fn add_contact_way_links_bring_their_scene_into_enter_session() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let plain = client.add_contact_way(&kf).await.expect("plain link");
    let with_scene = client
        .add_contact_way(&kf)
        .scene("spring_sale")
        .await
        .expect("link with a scene");
    assert!(
        plain.url.starts_with("https://work.weixin.qq.com/kf/kfc") && !plain.url.contains('?'),
        "{}",
        plain.url
    );
    assert!(with_scene.url.contains("spring_sale"), "{}", with_scene.url);

    // The developer appends a URL-encoded scene_param ("来自官网"), the customer opens it.
    let opened = format!(
        "{}&scene_param=%E6%9D%A5%E8%87%AA%E5%AE%98%E7%BD%91",
        with_scene.url
    );
    let welcome = sim
        .customer_opens_link(&opened, ALICE)
        .expect("opens")
        .expect("a first visit gets a welcome code");
    client
        .send_text_on_event(&welcome, "欢迎")
        .await
        .expect("welcome");
    let page = client.sync_msg(&kf).await.expect("page");
    let entered: Vec<(Option<String>, Option<String>)> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::EnterSession(e)) => {
                Some((e.scene.clone(), e.scene_param.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        entered,
        [(Some("spring_sale".to_owned()), Some("来自官网".to_owned()))]
    );

    assert_eq!(
        code_of(client.add_contact_way("wkNOPE").await),
        ErrCode::OpenKfIdNotFound
    );
    let bad_scene = raw_kf(
        &sim,
        &client,
        "add_contact_way",
        json!({"open_kfid": kf, "scene": "春季"}),
    )
    .await;
    assert_eq!(bad_scene["errcode"], 40058, "{bad_scene}");
}

#[tokio::test]
async fn servicer_add_answers_row_by_row() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let added = client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "nobody"])
        .department_id_list([2u64])
        .await
        .expect("servicer_add")
        .result_list;
    let rows: Vec<(Option<&str>, Option<u64>, i64, &str)> = added
        .iter()
        .map(|r| {
            (
                r.userid.as_deref(),
                r.department_id,
                r.errcode,
                r.errmsg.as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some("zhangsan"), None, 0, "success"),
            (Some("nobody"), None, 60111, "userid not found"),
            (None, Some(2), 0, "success"),
        ]
    );
    let again = client
        .servicer_add(&kf)
        .userid_list(["zhangsan"])
        .await
        .expect("again")
        .result_list;
    assert_eq!((again[0].errcode, again[0].errmsg.as_str()), (0, "ignored"));
    let listed = client.servicer_list(&kf).await.expect("list").servicer_list;
    let who: Vec<(Option<&str>, Option<u64>)> = listed
        .iter()
        .map(|s| (s.userid.as_deref(), s.department_id))
        .collect();
    assert_eq!(who, [(Some("zhangsan"), None), (None, Some(2))]);

    assert_eq!(
        code_of(
            client
                .servicer_add("wkNOPE")
                .userid_list(["zhangsan"])
                .await
        ),
        ErrCode::OpenKfIdNotFound
    );
    let neither = raw_kf(&sim, &client, "servicer/add", json!({"open_kfid": kf})).await;
    assert_eq!(neither["errcode"], 40058, "{neither}");
}

#[tokio::test]
async fn servicer_del_removes_servicers_and_ignores_strangers() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "lisi"])
        .department_id_list([2u64, 4])
        .await
        .expect("add");
    let removed = client
        .servicer_del(&kf)
        .userid_list(["zhangsan", "wangwu"])
        .department_id_list([4u64])
        .await
        .expect("servicer_del")
        .result_list;
    let outcomes: Vec<&str> = removed.iter().map(|r| r.errmsg.as_str()).collect();
    assert_eq!(outcomes, ["success", "ignored", "success"]);
    let listed = client.servicer_list(&kf).await.expect("list").servicer_list;
    let who: Vec<(Option<&str>, Option<u64>)> = listed
        .iter()
        .map(|s| (s.userid.as_deref(), s.department_id))
        .collect();
    assert_eq!(who, [(Some("lisi"), None), (None, Some(2))]);
    assert_eq!(
        code_of(client.servicer_del("wkNOPE").userid_list(["lisi"]).await),
        ErrCode::OpenKfIdNotFound
    );
}

#[tokio::test]
async fn servicer_list_shows_who_is_receiving() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    assert!(
        client
            .servicer_list(&kf)
            .await
            .expect("empty list")
            .servicer_list
            .is_empty()
    );
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "lisi", "wangwu"])
        .await
        .expect("add");
    sim.servicer_becomes(&kf, "lisi", ServicerAvailability::Suspended)
        .expect("lisi pauses");
    sim.servicer_becomes(&kf, "wangwu", ServicerAvailability::Stopped)
        .expect("wangwu stops");
    let listed = client.servicer_list(&kf).await.expect("list").servicer_list;
    let states: Vec<(Option<ServicerListStatus>, Option<StopType>)> =
        listed.iter().map(|s| (s.status, s.stop_type)).collect();
    assert_eq!(
        states,
        [
            (Some(ServicerListStatus::Receiving), Some(StopType::Stopped)),
            (Some(ServicerListStatus::Stopped), Some(StopType::Suspended)),
            (Some(ServicerListStatus::Stopped), Some(StopType::Stopped)),
        ]
    );
    // The WeCom app's change shows up in sync_msg with the event's own 1/2 encoding.
    let page = client.sync_msg(&kf).await.expect("page");
    let events: Vec<(
        Option<String>,
        Option<wecom_kf::types::ServicerStatus>,
        Option<StopType>,
    )> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::ServicerStatusChange(e)) => {
                Some((e.servicer_userid.clone(), e.status, e.stop_type))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        events[0],
        (
            Some("lisi".to_owned()),
            Some(wecom_kf::types::ServicerStatus::Stopped),
            Some(StopType::Suspended)
        )
    );

    assert_eq!(
        code_of(client.servicer_list("wkNOPE").await),
        ErrCode::OpenKfIdNotFound
    );
    assert_eq!(
        sim.servicer_becomes(&kf, "nobody", ServicerAvailability::Receiving)
            .map_err(|r| r.code),
        Err(95014)
    );
}

#[tokio::test]
async fn service_state_get_follows_the_session() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    assert_eq!(
        code_of(client.service_state_get(&kf, ALICE).await),
        ErrCode::InvalidExternalUserId,
        "no session yet"
    );
    let state = || async { client.service_state_get(&kf, ALICE).await.expect("state") };
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    assert_eq!(state().await.service_state, ServiceState::New);
    client.send_text(ALICE, &kf, "bot").await.expect("send");
    assert_eq!(state().await.service_state, ServiceState::SmartAssistant);
    sim.servicer_takes(&kf, ALICE, "zhangsan").expect("take");
    let served = state().await;
    assert_eq!(
        (served.service_state, served.servicer_userid.as_deref()),
        (ServiceState::Servicer, Some("zhangsan"))
    );
    sim.session_ends(&kf, ALICE, "zhangsan").expect("end");
    let ended = state().await;
    assert_eq!(
        (ended.service_state, ended.servicer_userid),
        (ServiceState::Ended, None)
    );
    assert_eq!(
        code_of(client.service_state_get("wkNOPE", ALICE).await),
        ErrCode::OpenKfIdNotFound
    );
}

#[tokio::test]
async fn service_state_trans_follows_the_state_rules_and_hands_out_codes() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "转人工").expect("customer");
    let trans = |state: ServiceState, servicer: Option<&str>| {
        let mut call = client.service_state_trans(&kf, ALICE, state);
        if let Some(servicer) = servicer {
            call = call.servicer_userid(servicer);
        }
        call.send()
    };
    assert_eq!(
        code_of(trans(ServiceState::Servicer, Some("zhangsan")).await),
        ErrCode::NotAServicer,
        "not a servicer of this account yet"
    );
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "lisi"])
        .await
        .expect("servicers");
    sim.servicer_becomes(&kf, "lisi", ServicerAvailability::Stopped)
        .expect("lisi stops");
    assert_eq!(
        code_of(trans(ServiceState::Servicer, None).await),
        ErrCode::NotAServicer,
        "state 3 needs a servicer"
    );
    assert_eq!(
        code_of(trans(ServiceState::Servicer, Some("lisi")).await),
        ErrCode::ServicerStopped
    );

    // Into the queue: a queue code, good for one text while the session waits.
    let queued = trans(ServiceState::Queued, None).await.expect("queue");
    let queue_code = queued.msg_code.expect("first time queued: a code");
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "bot").await),
        ErrCode::SessionStateForbidsSending
    );
    client
        .send_text_on_event(&queue_code, "您前面还有2位")
        .await
        .expect("queue notice");
    assert_eq!(
        code_of(trans(ServiceState::SmartAssistant, None).await),
        ErrCode::StateTransitionNotAllowed,
        "the queue hands over to a servicer only"
    );

    // To a servicer: a pickup code, once; a transfer to another gets none.
    let served = trans(ServiceState::Servicer, Some("zhangsan"))
        .await
        .expect("serve");
    let pickup = served.msg_code.expect("first time served: a code");
    let state = client.service_state_get(&kf, ALICE).await.expect("state");
    assert_eq!(state.servicer_userid.as_deref(), Some("zhangsan"));
    sim.servicer_becomes(&kf, "lisi", ServicerAvailability::Receiving)
        .expect("lisi is back");
    let transferred = trans(ServiceState::Servicer, Some("lisi"))
        .await
        .expect("transfer");
    assert_eq!(transferred.msg_code, None);
    client
        .send_text_on_event(&pickup, "您好，我是客服")
        .await
        .expect("pickup notice");

    // The end: an end code that allows a menu, then no more changes.
    let ended = trans(ServiceState::Ended, None).await.expect("end");
    let end_code = ended.msg_code.expect("an end code");
    client
        .send_menu_on_event(
            &end_code,
            Menu::new()
                .head_content("满意吗？")
                .list([MenuClick::new("1", "满意")]),
        )
        .await
        .expect("survey");
    assert_eq!(
        code_of(trans(ServiceState::SmartAssistant, None).await),
        ErrCode::SessionEnded
    );

    // The customer writes again: a new conversation, whose first queueing gets a code.
    sim.customer_says(&kf, ALICE, "还有一个问题")
        .expect("customer");
    let requeued = trans(ServiceState::Queued, None)
        .await
        .expect("queue again");
    assert!(requeued.msg_code.is_some(), "a new conversation");
    assert_eq!(
        code_of(
            client
                .service_state_trans(&kf, "wmSTRANGER", ServiceState::Queued)
                .await
        ),
        ErrCode::InvalidExternalUserId
    );
}

#[tokio::test]
async fn customer_batchget_knows_customers_who_wrote() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let link = client
        .add_contact_way(&kf)
        .scene("ad42")
        .await
        .expect("link")
        .url;
    sim.customer_opens_link(&format!("{link}&scene_param=vip"), ALICE)
        .expect("alice enters");
    sim.customer_says(&kf, ALICE, "你好").expect("alice writes");
    sim.set_customer_profile(ALICE, "爱丽丝", 2);
    sim.customer_says(&kf, "wmCAROL", "hi")
        .expect("carol writes");
    sim.customer_enters(&kf, "wmBOB").expect("bob only looks");

    let found = client
        .customer_batchget([ALICE, "wmCAROL", "wmBOB", "wmNOBODY"])
        .need_enter_session_context(1u32)
        .await
        .expect("customer_batchget");
    let alice = &found.customer_list[0];
    assert_eq!(alice.external_userid, ALICE);
    assert_eq!(
        (alice.nickname.as_deref(), alice.gender),
        (Some("爱丽丝"), Some(Gender::Female))
    );
    let context = alice.enter_session_context.as_ref().expect("context");
    assert_eq!(
        (context.scene.as_deref(), context.scene_param.as_deref()),
        (Some("ad42"), Some("vip"))
    );
    let carol = &found.customer_list[1];
    assert_eq!(
        (carol.nickname.as_deref(), carol.gender),
        (Some("CAROL"), Some(Gender::Unknown))
    );
    assert_eq!(found.invalid_external_userid, ["wmBOB", "wmNOBODY"]);

    let without = client
        .customer_batchget([ALICE])
        .await
        .expect("without context");
    assert!(without.customer_list[0].enter_session_context.is_none());
    let too_many: Vec<String> = (0..101).map(|i| format!("wm{i}")).collect();
    let refused = raw_kf(
        &sim,
        &client,
        "customer/batchget",
        json!({"external_userid_list": too_many}),
    )
    .await;
    assert_eq!(refused["errcode"], 40058, "{refused}");
}

#[tokio::test]
async fn get_corp_qualification_reports_the_configured_binding() {
    let (sim, client) = setup().await;
    let default = client
        .get_corp_qualification()
        .await
        .expect("get_corp_qualification");
    assert!(!default.wechat_channels_binding, "a new corp has no 视频号");
    let bound = Simulator::start_with(
        SimConfig {
            wechat_channels_binding: true,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let answer = bound
        .client_builder()
        .build()
        .expect("client")
        .get_corp_qualification()
        .await
        .expect("bound");
    assert!(answer.wechat_channels_binding);

    let posted = raw_kf(&sim, &client, "get_corp_qualification", json!({})).await;
    assert_eq!(posted["errcode"], 40058, "a GET endpoint: {posted}");
}

#[tokio::test]
async fn get_upgrade_service_config_returns_the_configured_range() {
    let (sim, client) = setup().await;
    let default = client
        .get_upgrade_service_config()
        .await
        .expect("default config");
    let members = default.member_range.expect("member_range");
    assert_eq!(members.userid_list, ["zhangsan"]);
    assert_eq!(members.department_id_list, [2]);
    assert_eq!(
        default
            .groupchat_range
            .expect("groupchat_range")
            .chat_id_list,
        ["wrSIMULATEDCHAT"]
    );

    let configured = Simulator::start_with(
        SimConfig {
            upgrade_service: SimUpgradeService {
                userid_list: vec!["lisi".into(), "wangwu".into()],
                department_id_list: vec![],
                chat_id_list: vec!["wrVIP".into()],
            },
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    let config = configured
        .client_builder()
        .build()
        .expect("client")
        .get_upgrade_service_config()
        .await
        .expect("config");
    let members = config.member_range.expect("member_range");
    assert_eq!(members.userid_list, ["lisi", "wangwu"]);
    assert!(members.department_id_list.is_empty());
    assert_eq!(
        config
            .groupchat_range
            .expect("groupchat_range")
            .chat_id_list,
        ["wrVIP"]
    );

    let posted = raw_kf(
        &sim,
        &client,
        "customer/get_upgrade_service_config",
        json!({}),
    )
    .await;
    assert_eq!(posted["errcode"], 40058, "a GET endpoint: {posted}");
}

#[tokio::test]
async fn upgrade_service_offers_only_the_configured_range() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "想找专人").expect("customer");
    client
        .upgrade_service(&kf, ALICE, UpgradeType::Member)
        .member(UpgradeMember::new("zhangsan").wording("我是你的专属顾问"))
        .await
        .expect("a member in range");
    assert_eq!(
        sim.upgrade_offer(&kf, ALICE),
        Some(UpgradeOffer::Member {
            userid: "zhangsan".into(),
            wording: Some("我是你的专属顾问".into()),
        })
    );
    client
        .upgrade_service(&kf, ALICE, UpgradeType::GroupChat)
        .groupchat(UpgradeGroupChat::new("wrSIMULATEDCHAT"))
        .await
        .expect("a chat in range");
    assert!(matches!(
        sim.upgrade_offer(&kf, ALICE),
        Some(UpgradeOffer::GroupChat { chat_id, wording: None }) if chat_id == "wrSIMULATEDCHAT"
    ));

    assert_eq!(
        code_of(
            client
                .upgrade_service(&kf, ALICE, UpgradeType::Member)
                .member(UpgradeMember::new("lisi"))
                .await
        ),
        ErrCode::NotInUpgradeServiceRange
    );
    assert_eq!(
        code_of(
            client
                .upgrade_service(&kf, ALICE, UpgradeType::GroupChat)
                .groupchat(UpgradeGroupChat::new("wrOTHER"))
                .await
        ),
        ErrCode::NotInUpgradeServiceRange
    );
    assert_eq!(
        code_of(
            client
                .upgrade_service(&kf, "wmSTRANGER", UpgradeType::Member)
                .member(UpgradeMember::new("zhangsan"))
                .await
        ),
        ErrCode::InvalidExternalUserId
    );
    // The type decides which object counts.
    assert_eq!(
        code_of(
            client
                .upgrade_service(&kf, ALICE, UpgradeType::GroupChat)
                .member(UpgradeMember::new("zhangsan"))
                .await
        ),
        ErrCode::InvalidParameter
    );
}

#[tokio::test]
async fn cancel_upgrade_service_withdraws_the_offer() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    client
        .upgrade_service(&kf, ALICE, UpgradeType::Member)
        .member(UpgradeMember::new("zhangsan"))
        .await
        .expect("offer");
    assert!(sim.upgrade_offer(&kf, ALICE).is_some());
    client
        .cancel_upgrade_service(&kf, ALICE)
        .await
        .expect("cancel_upgrade_service");
    assert_eq!(sim.upgrade_offer(&kf, ALICE), None);
    assert_eq!(
        code_of(client.cancel_upgrade_service(&kf, "wmSTRANGER").await),
        ErrCode::InvalidExternalUserId
    );
    assert_eq!(
        code_of(client.cancel_upgrade_service("wkNOPE", ALICE).await),
        ErrCode::OpenKfIdNotFound
    );
}

#[tokio::test]
async fn the_control_api_opens_links_and_changes_servicer_status() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let link = client
        .add_contact_way(&kf)
        .scene("qr")
        .await
        .expect("link")
        .url;
    let (status, entered) = control(
        &sim,
        "customer/link",
        json!({"url": link, "external_userid": ALICE}),
    )
    .await;
    assert_eq!(status, 200, "{entered}");
    assert!(entered["welcome_code"].is_string(), "{entered}");
    let (status, refusal) = control(
        &sim,
        "customer/link",
        json!({"url": "https://example.com/kf/x", "external_userid": ALICE}),
    )
    .await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(40058)));

    client
        .servicer_add(&kf)
        .userid_list(["zhangsan"])
        .await
        .expect("servicer");
    let (status, _) = control(
        &sim,
        "servicer/status",
        json!({"open_kfid": kf, "servicer_userid": "zhangsan", "status": "stopped"}),
    )
    .await;
    assert_eq!(status, 200);
    let listed = client.servicer_list(&kf).await.expect("list").servicer_list;
    assert_eq!(listed[0].status, Some(ServicerListStatus::Stopped));
    let (status, refusal) = control(
        &sim,
        "servicer/status",
        json!({"open_kfid": kf, "servicer_userid": "zhangsan", "status": "asleep"}),
    )
    .await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(40058)));
}

#[tokio::test]
async fn uploads_become_media_the_bot_can_send() {
    let (sim, client) = setup().await;
    sim.customer_says(sim.open_kfid(), ALICE, "发张图片看看")
        .expect("customer writes");
    let image = wecom_kf::Upload::from_bytes("menu.png", b"\x89PNG fake image bytes".to_vec());
    let uploaded = client.upload_image(image).await.expect("upload_image");
    assert_eq!(uploaded.r#type, "image");
    let uploaded_at: u64 = uploaded.created_at.parse().expect("seconds as a string");
    assert!(uploaded_at > 1_600_000_000);
    client
        .send_image(ALICE, sim.open_kfid(), uploaded.media_id.as_str())
        .await
        .expect("send the uploaded image");
    let voice = wecom_kf::Upload::from_bytes("hello.amr", b"#!AMR\n....".to_vec());
    client.upload_voice(voice).await.expect("upload_voice");

    let media = sim.media();
    let kinds: Vec<(&str, &str, u64)> = media
        .iter()
        .map(|m| (m.kind.as_str(), m.file_name.as_str(), m.len))
        .collect();
    assert_eq!(
        kinds,
        [("image", "menu.png", 21), ("voice", "hello.amr", 10)]
    );
    let sent = sim.sent();
    assert_eq!(
        sent.last().map(|s| &s.payload),
        Some(&json!({"media_id": uploaded.media_id}))
    );
}

/// An upload the client would refuse before sending, posted by hand.
async fn raw_upload(sim: &Simulator, client: &Client, kind: &str, bytes: Vec<u8>) -> Value {
    let token = client.access_token().await.expect("token");
    let url = format!(
        "http://{}/cgi-bin/media/upload?access_token={}&type={kind}",
        sim.addr(),
        token.expose()
    );
    let part = reqwest::multipart::Part::bytes(bytes).file_name("x.bin");
    let form = reqwest::multipart::Form::new().part("media", part);
    let response = reqwest::Client::new()
        .post(url)
        .multipart(form)
        .send()
        .await
        .expect("http");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn uploads_the_client_would_refuse_are_refused_by_the_simulator_too() {
    let (sim, client) = setup().await;
    let cases = [
        ("image", vec![1u8; 5], 40006),
        ("image", vec![0u8; (10 << 20) + 1], 40009),
        ("voice", vec![0u8; (2 << 20) + 1], 45001),
        ("video", vec![0u8; (10 << 20) + 1], 40011),
        ("gif", vec![1u8; 100], 40005),
        ("file", Vec::new(), 44001),
    ];
    for (kind, bytes, code) in cases {
        let answer = raw_upload(&sim, &client, kind, bytes).await;
        assert_eq!(answer["errcode"], code, "{kind}: {answer}");
    }
    assert!(sim.media().is_empty(), "nothing refused was stored");
}

// -- values the simulator must refuse rather than crash on (L8) ---------------------------

#[tokio::test]
async fn the_control_api_refuses_a_clock_moved_past_its_range() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    for seconds in [u64::MAX, u64::MAX / 2, wecom_kf_sim::MAX_SPAN.as_secs() + 1] {
        let (status, refusal) = control(&sim, "clock/advance", json!({ "seconds": seconds })).await;
        assert_eq!(
            (status, refusal["errcode"].as_i64()),
            (400, Some(40058)),
            "{seconds}: {refusal}"
        );
    }
    // Not even a number of seconds: refused by the parser.
    let (status, _) = control(&sim, "clock/advance", json!({ "seconds": 1e30 })).await;
    assert!((400..500).contains(&status), "{status}");
    // The clock didn't move, and the simulator still answers.
    let said = sim
        .customer_says(&kf, ALICE, "still there?")
        .expect("customer");
    client
        .sync_msg(&kf)
        .token(said.callback_token.as_str())
        .await
        .expect("a callback token of just now is valid");
    // Up to the range, the clock moves; one second more is refused, and time still reads.
    let span = wecom_kf_sim::MAX_SPAN.as_secs();
    let (status, _) = control(&sim, "clock/advance", json!({ "seconds": span - 10 })).await;
    assert_eq!(status, 200);
    let (status, _) = control(&sim, "clock/advance", json!({ "seconds": 20 })).await;
    assert_eq!(status, 400);
    sim.advance(Duration::MAX);
    client
        .sync_msg(&kf)
        .await
        .expect("a century later, a new token and an empty page");
}

#[tokio::test]
async fn the_control_api_refuses_faults_for_absurdly_many_requests() {
    let (sim, client) = setup().await;
    let token = client.access_token().await.expect("token");
    for times in [1_000_000_001u64, u64::MAX] {
        let (status, refusal) = control(
            &sim,
            "faults",
            json!({"path": "kf/sync_msg", "fault": "busy", "times": times}),
        )
        .await;
        assert_eq!(
            (status, refusal["errcode"].as_i64()),
            (400, Some(40058)),
            "{times}: {refusal}"
        );
    }
    let answer = raw_sync_msg(&sim, token.expose()).await.expect("answer");
    assert_eq!(answer["errcode"], 0, "nothing was injected: {answer}");
    // A million is accepted, and costs one queue entry: the next requests fail.
    let (status, _) = control(
        &sim,
        "faults",
        json!({"path": "kf/sync_msg", "fault": "busy", "times": 1_000_000}),
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        let answer = raw_sync_msg(&sim, token.expose()).await.expect("answer");
        assert_eq!(answer["errcode"], -1, "{answer}");
    }
}

#[tokio::test]
async fn token_lifetimes_past_the_range_are_refused_before_starting() {
    let config = SimConfig {
        token_lifetime: Duration::from_secs(u64::MAX),
        ..SimConfig::default()
    };
    let refused = Simulator::start_with(config, ([127, 0, 0, 1], 0).into()).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::InvalidInput)
    );
    // The binary refuses it as an argument (and would otherwise serve, so wait bounded).
    for lifetime in ["18446744073709551615", "10000000000000000000", "-1"] {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
            .args(["--port", "0", "--token-lifetime", lifetime])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn kf-sim");
        let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kf-sim accepted --token-lifetime {lifetime}"))
            .expect("kf-sim");
        assert_eq!(output.status.code(), Some(2), "{lifetime}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("--token-lifetime"),
            "{lifetime}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test]
async fn send_msg_on_event_refuses_a_msgid_already_used() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let welcome = |customer: &str| {
        sim.customer_enters(&kf, customer)
            .expect("enter")
            .expect("a welcome code")
    };
    let (first, second, third) = (welcome(ALICE), welcome("wmBOB"), welcome("wmCAROL"));
    client
        .send_text_on_event(&first, "欢迎")
        .msgid("welcome-1")
        .await
        .expect("first use of the msgid");
    assert_eq!(
        code_of(
            client
                .send_text_on_event(&second, "欢迎")
                .msgid("welcome-1")
                .await
        ),
        ErrCode::DuplicateMsgid
    );
    // The refusal was the msgid's: the code is still good for a message with a new one.
    client
        .send_text_on_event(&second, "欢迎")
        .msgid("welcome-2")
        .await
        .expect("the code was not used up");
    // A msgid used by send_msg counts too: one set per account.
    sim.customer_says(&kf, "wmDAVE", "hi").expect("customer");
    client
        .send_text("wmDAVE", &kf, "hello")
        .msgid("order-42")
        .await
        .expect("send_msg");
    assert_eq!(
        code_of(
            client
                .send_text_on_event(&third, "欢迎")
                .msgid("order-42")
                .await
        ),
        ErrCode::DuplicateMsgid
    );
    let sent: Vec<String> = sim.sent().into_iter().map(|m| m.msgid).collect();
    assert_eq!(sent, ["welcome-1", "welcome-2", "order-42"]);
}

// -- callbacks for everything logged ---------------------------------------------------

/// A bot's callback URL for `sim`'s callbacks: decrypts each and keeps its token.
async fn callback_receiver() -> (wecom_kf_sim::SimCallback, Arc<Mutex<Vec<String>>>) {
    use wecom_kf::callback::{CallbackCrypto, CallbackEvent};
    const TOKEN: &str = "simCallbackToken";
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/kf", listener.local_addr().expect("addr"));
    let crypto = CallbackCrypto::new(TOKEN, KEY, &SimConfig::default().corp_id).expect("crypto");
    let app = axum::Router::new().route(
        "/kf",
        axum::routing::post({
            let received = received.clone();
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >,
                  body: String| {
                let (received, crypto) = (received.clone(), crypto.clone());
                async move {
                    let opened =
                        crypto.open(&q["msg_signature"], &q["timestamp"], &q["nonce"], &body);
                    if let Ok(CallbackEvent::KfMsgOrEvent(event)) = opened {
                        received
                            .lock()
                            .expect("log")
                            .push(event.token.expose().to_owned());
                    }
                    "success"
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (wecom_kf_sim::SimCallback::new(url, TOKEN, KEY), received)
}

/// Waits (at most 5 s) until `received` holds `count` tokens; returns them.
async fn wait_for_callbacks(received: &Mutex<Vec<String>>, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let tokens = received.lock().expect("log").clone();
        if tokens.len() >= count {
            return tokens;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    received.lock().expect("log").clone()
}

#[tokio::test]
async fn every_item_logged_for_sync_msg_triggers_a_callback_but_the_bots_own_changes_log_none() {
    let (callback, received) = callback_receiver().await;
    let config = SimConfig {
        callback: Some(callback),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = sim.open_kfid().to_owned();
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "lisi"])
        .await
        .expect("servicers");

    let mut expected = Vec::new();
    let latest = |sim: &Simulator| sim.latest_callback_token(sim.open_kfid()).expect("token");
    sim.customer_says(&kf, ALICE, "人工").expect("customer");
    expected.push(latest(&sim));
    sim.servicer_takes(&kf, ALICE, "zhangsan").expect("take");
    expected.push(latest(&sim));
    sim.session_ends(&kf, ALICE, "zhangsan").expect("end");
    expected.push(latest(&sim));
    sim.servicer_becomes(&kf, "lisi", ServicerAvailability::Suspended)
        .expect("lisi pauses");
    expected.push(latest(&sim));
    let pushed = sim
        .push_raw(
            &kf,
            json!({"msgid": "raw-1", "msgtype": "note", "note": {}}),
        )
        .expect("push");
    assert_eq!(
        pushed,
        latest(&sim),
        "push_raw returns its callback's token"
    );
    expected.push(pushed);
    let (_, png) = wecom_kf_sim::samples::sample(wecom_kf_sim::MediaKind::Image);
    let image = sim
        .customer_sends_image(&kf, "wmBOB", png, None)
        .expect("image");
    expected.push(image.callback_token.clone());
    // The bot moves Bob to the queue itself: WeCom logs no event for that.
    client
        .service_state_trans(&kf, "wmBOB", ServiceState::Queued)
        .await
        .expect("queue");
    sim.customer_says(&kf, "wmBOB", "还在吗").expect("customer");
    expected.push(latest(&sim));

    let tokens = wait_for_callbacks(&received, expected.len()).await;
    let mut sorted = tokens.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(
        sorted, expected,
        "one callback per logged item, each with its token"
    );

    let page = client.sync_msg(&kf).await.expect("page");
    assert_eq!(page.msg_list.len(), expected.len());
    let changes: Vec<String> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::SessionStatusChange(e)) => e.external_userid.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [ALICE, ALICE],
        "the servicer's take and end, not the bot's trans"
    );
    // Every token is good for sync_msg.
    for token in &tokens {
        client
            .sync_msg(&kf)
            .token(token.as_str())
            .await
            .expect("a callback's token");
    }
}

#[tokio::test]
async fn the_control_api_pushes_raw_items() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let item = json!({"msgid": "raw-1", "send_time": 1_700_000_000u64, "origin": 3, "msgtype": "hologram", "hologram": {}});
    let (status, pushed) = control(&sim, "push", json!({"open_kfid": kf, "item": item})).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(
        pushed["callback_token"].as_str(),
        sim.latest_callback_token(&kf).as_deref()
    );
    let page = client.sync_msg(&kf).await.expect("page");
    assert!(
        matches!(&page.msg_list[0].content, Received::Unknown { msgtype, .. } if msgtype == "hologram")
    );
    let (status, refusal) = control(&sim, "push", json!({"open_kfid": "wkNOPE", "item": {}})).await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(95004)));
}

// -- recall and asynchronous send failures ----------------------------------------------

#[tokio::test]
async fn recall_msg_takes_back_api_sends_within_two_minutes() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let said = sim.customer_says(&kf, ALICE, "hi").expect("customer");
    let first = client
        .send_text(ALICE, &kf, "oops")
        .msgid("oops-1")
        .await
        .expect("send");
    let recall = |msgid: &str, open_kfid: &str| {
        raw_kf(
            &sim,
            &client,
            "recall_msg",
            json!({"open_kfid": open_kfid, "msgid": msgid}),
        )
    };
    let answer = recall(&first.msgid, &kf).await;
    assert_eq!(answer, json!({"errcode": 0, "errmsg": "ok"}));
    let sent = sim.sent();
    assert!(sent[0].recalled_at.is_some_and(|t| t >= sent[0].send_time));
    // Nothing is logged for the customer's side.
    let page = client
        .sync_msg(&kf)
        .token(said.callback_token.as_str())
        .await
        .expect("page");
    assert_eq!(page.msg_list.len(), 1, "just the customer's message");

    let again = recall(&first.msgid, &kf).await;
    assert_eq!(again["errcode"], 40058, "{again}");
    let unknown = recall("never-sent", &kf).await;
    assert_eq!(unknown["errcode"], 40058, "{unknown}");
    let customers = recall(&said.msgid, &kf).await;
    assert_eq!(
        customers["errcode"], 40058,
        "only the bot's sends: {customers}"
    );
    let other_account = recall(&first.msgid, "wkNOPE").await;
    assert_eq!(other_account["errcode"], 95000, "{other_account}");
    let no_msgid = raw_kf(&sim, &client, "recall_msg", json!({"open_kfid": kf})).await;
    assert_eq!(no_msgid["errcode"], 40058, "{no_msgid}");

    // Two minutes is the window.
    let second = client.send_text(ALICE, &kf, "two").await.expect("send");
    let third = client.send_text(ALICE, &kf, "three").await.expect("send");
    sim.advance(wecom_kf_sim::RECALL_WINDOW - Duration::from_secs(5));
    assert_eq!(recall(&second.msgid, &kf).await["errcode"], 0);
    sim.advance(Duration::from_secs(6));
    let late = recall(&third.msgid, &kf).await;
    assert_eq!(late["errcode"], 40058, "{late}");
    assert!(
        late["errmsg"]
            .as_str()
            .is_some_and(|m| m.contains("time limit")),
        "{late}"
    );

    // A recalled message still counts toward the 5.
    client.send_text(ALICE, &kf, "four").await.expect("send");
    client.send_text(ALICE, &kf, "five").await.expect("send");
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "six").await),
        ErrCode::SendCountLimit,
        "oops-1 and two were recalled and still count"
    );
    let sent = sim.sent();
    let recalled: Vec<&str> = sent
        .iter()
        .filter(|m| m.recalled_at.is_some())
        .map(|m| m.payload["content"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(recalled, ["oops", "two"]);
    let recalled: Vec<Value> = sent
        .iter()
        .map(|m| serde_json::to_value(m).expect("json")["recalled_at"].clone())
        .collect();
    assert!(
        recalled[0].is_u64() && recalled[2].is_null(),
        "/sim/sent shows it: {recalled:?}"
    );
}

#[tokio::test]
async fn sends_to_a_customer_who_refuses_messages_fail_later_with_msg_send_fail() {
    let (callback, received) = callback_receiver().await;
    let config = SimConfig {
        callback: Some(callback),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    let (status, _) = control(
        &sim,
        "customer/refuse",
        json!({"open_kfid": kf, "external_userid": ALICE}),
    )
    .await;
    assert_eq!(status, 200);
    let sent = client
        .send_text(ALICE, &kf, "hello")
        .msgid("hello-1")
        .await
        .expect("accepted: errcode 0");
    assert_eq!(sent.msgid, "hello-1");
    let welcome = sim
        .customer_enters(&kf, "wmBOB")
        .expect("enter")
        .expect("code");
    sim.customer_refuses_messages(&kf, "wmBOB")
        .expect("bob refuses");
    let welcomed = client
        .send_text_on_event(&welcome, "欢迎")
        .await
        .expect("accepted");

    let page = client.sync_msg(&kf).await.expect("page");
    let refuses = wecom_kf::types::FailType::CustomerRefuses;
    let failures: Vec<(
        Option<String>,
        Option<String>,
        Option<wecom_kf::types::FailType>,
    )> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::MsgSendFail(e)) => {
                Some((e.external_userid.clone(), e.fail_msgid.clone(), e.fail_type))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        failures,
        [
            (
                Some(ALICE.to_owned()),
                Some("hello-1".to_owned()),
                Some(refuses)
            ),
            (
                Some("wmBOB".to_owned()),
                Some(welcomed.msgid),
                Some(refuses)
            ),
        ]
    );
    // Each failure came with its callback: Alice's message, Bob's enter_session and the
    // two failures.
    let tokens = wait_for_callbacks(&received, 4).await;
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    let latest = sim.latest_callback_token(&kf).expect("token");
    assert!(tokens.contains(&latest), "{tokens:?}");

    // The sends counted toward the 5; accepting again stops the failures.
    let (status, _) = control(
        &sim,
        "customer/refuse",
        json!({"open_kfid": kf, "external_userid": ALICE, "refuse": false}),
    )
    .await;
    assert_eq!(status, 200);
    client.send_text(ALICE, &kf, "again").await.expect("send");
    let page = client
        .sync_msg(&kf)
        .cursor(page.next_cursor)
        .await
        .expect("page");
    assert!(page.msg_list.is_empty(), "no new failure");
    let (status, refusal) = control(
        &sim,
        "customer/refuse",
        json!({"open_kfid": "wkNOPE", "external_userid": ALICE}),
    )
    .await;
    assert_eq!((status, refusal["errcode"].as_i64()), (400, Some(95004)));
}

// -- the rate limit without a token, and WeCom's routing ---------------------------------

/// `sync_msg` for `open_kfid` by hand, with `token` if given.
async fn raw_sync_for(
    sim: &Simulator,
    access_token: &str,
    open_kfid: &str,
    token: Option<&str>,
) -> Value {
    let url = format!(
        "http://{}/cgi-bin/kf/sync_msg?access_token={access_token}",
        sim.addr()
    );
    let mut body = json!({"open_kfid": open_kfid});
    if let Some(token) = token {
        body["token"] = json!(token);
    }
    http_json(reqwest::Client::new().post(url), Some(body))
        .await
        .1
}

#[tokio::test]
async fn sync_msg_without_a_token_is_limited_per_minute() {
    let config = SimConfig {
        open_kfids: vec!["wkONE".into(), "wkTWO".into()],
        untokened_sync_per_minute: 3,
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let access = client.access_token().await.expect("token");
    let access = access.expose();
    for n in 1..=3 {
        let answer = raw_sync_for(&sim, access, "wkONE", None).await;
        assert_eq!(answer["errcode"], 0, "call {n}: {answer}");
    }
    let limited = raw_sync_for(&sim, access, "wkONE", None).await;
    assert_eq!(limited["errcode"], 45009, "{limited}");
    // Another account has its own count; a callback token lifts the limit.
    let other = raw_sync_for(&sim, access, "wkTWO", None).await;
    assert_eq!(other["errcode"], 0, "{other}");
    let said = sim.customer_says("wkONE", ALICE, "hi").expect("customer");
    for _ in 0..5 {
        let tokened = raw_sync_for(&sim, access, "wkONE", Some(&said.callback_token)).await;
        assert_eq!(tokened["errcode"], 0, "{tokened}");
    }
    // The window is a minute of the simulator's clock.
    sim.advance(Duration::from_secs(50));
    let still = raw_sync_for(&sim, access, "wkONE", None).await;
    assert_eq!(still["errcode"], 45009, "{still}");
    sim.advance(Duration::from_secs(10));
    let again = raw_sync_for(&sim, access, "wkONE", None).await;
    assert_eq!(again["errcode"], 0, "{again}");

    let closed = Simulator::start_with(
        SimConfig {
            untokened_sync_per_minute: 0,
            ..SimConfig::default()
        },
        ([127, 0, 0, 1], 0).into(),
    )
    .await
    .expect("simulator");
    let client = closed.client_builder().build().expect("client");
    let access = client.access_token().await.expect("token");
    let answer = raw_sync_for(&closed, access.expose(), closed.open_kfid(), None).await;
    assert_eq!(answer["errcode"], 45009, "0: a token is always needed");
    // The default is generous: the paging test's calls pass.
    let (sim, client) = setup().await;
    for _ in 0..50 {
        client
            .sync_msg(sim.open_kfid())
            .await
            .expect("within the default");
    }
}

#[tokio::test]
async fn new_sessions_go_to_receiving_servicers_when_routing_is_on() {
    let config = SimConfig {
        route_new_sessions: true,
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = sim.open_kfid().to_owned();
    // No servicer receiving: the bot has the session.
    sim.customer_says(&kf, "wmEARLY", "hi").expect("customer");
    client
        .send_text("wmEARLY", &kf, "bot")
        .await
        .expect("nobody to route to");
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan", "lisi", "wangwu"])
        .await
        .expect("servicers");
    sim.servicer_becomes(&kf, "wangwu", ServicerAvailability::Stopped)
        .expect("wangwu stops");
    let start = client.sync_msg(&kf).await.expect("page").next_cursor;

    // Turns among those receiving.
    sim.customer_enters(&kf, ALICE).expect("enters");
    sim.customer_says(&kf, ALICE, "hi").expect("alice");
    sim.customer_says(&kf, "wmBOB", "hi").expect("bob");
    sim.customer_says(&kf, "wmCAROL", "hi").expect("carol");
    let served = |who: &str| {
        let who = who.to_owned();
        let client = client.clone();
        let kf = kf.clone();
        async move {
            let state = client.service_state_get(&kf, &who).await.expect("state");
            (state.service_state, state.servicer_userid)
        }
    };
    assert_eq!(
        served(ALICE).await,
        (ServiceState::Servicer, Some("zhangsan".to_owned()))
    );
    assert_eq!(
        served("wmBOB").await,
        (ServiceState::Servicer, Some("lisi".to_owned()))
    );
    assert_eq!(
        served("wmCAROL").await,
        (ServiceState::Servicer, Some("zhangsan".to_owned()))
    );
    assert_eq!(
        code_of(client.send_text(ALICE, &kf, "bot here").await),
        ErrCode::SessionStateForbidsSending
    );
    // Each pickup is logged after the message, with its code.
    let page = client.sync_msg(&kf).cursor(start).await.expect("page");
    let kinds: Vec<&str> = page.msg_list.iter().map(|m| m.content.tag()).collect();
    assert_eq!(
        kinds,
        ["event", "text", "event", "text", "event", "text", "event"],
        "enter_session, then each message and its routing"
    );
    let pickups = session_codes(&page);
    assert_eq!(pickups.len(), 3);
    let alice_code = pickups[0].0.clone().expect("a pickup code");
    assert_eq!(pickups[0].1.as_deref(), Some("zhangsan"));
    client
        .send_text_on_event(&alice_code, "您好，我是张三")
        .await
        .expect("the pickup code works");

    // Writing again in the same conversation routes nothing; after it ends, it does.
    sim.customer_says(&kf, ALICE, "in the same session")
        .expect("alice");
    sim.session_ends(&kf, ALICE, "zhangsan").expect("end");
    sim.customer_says(&kf, ALICE, "back again").expect("alice");
    assert_eq!(
        served(ALICE).await,
        (ServiceState::Servicer, Some("lisi".to_owned()))
    );
    let page = client
        .sync_msg(&kf)
        .cursor(page.next_cursor)
        .await
        .expect("page");
    let changes: Vec<Option<wecom_kf::types::ChangeType>> = page
        .msg_list
        .iter()
        .filter_map(|m| match &m.content {
            Received::Event(Event::SessionStatusChange(e)) => Some(e.change_type),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            Some(wecom_kf::types::ChangeType::Ended),
            Some(wecom_kf::types::ChangeType::PickedUp)
        ]
    );

    // Off by default: the same servicers, the bot keeps the session.
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    client
        .servicer_add(&kf)
        .userid_list(["zhangsan"])
        .await
        .expect("servicer");
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    let state = client.service_state_get(&kf, ALICE).await.expect("state");
    assert_eq!(state.service_state, ServiceState::New);
}

#[tokio::test]
async fn the_kf_sim_binary_takes_the_rate_limit_and_routing_flags() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
        .args(["--port", &port.to_string(), "--open-kfid", "wkBIN"])
        .args(["--untokened-sync-per-minute", "1", "--route-new-sessions"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn kf-sim");
    let base = format!("http://127.0.0.1:{port}");
    let defaults = SimConfig::default();
    let token_url = format!(
        "{base}/cgi-bin/gettoken?corpid={}&corpsecret={}",
        defaults.corp_id, defaults.secret
    );
    let mut token = None;
    for _ in 0..100 {
        if let Ok(response) = reqwest::Client::new().get(&token_url).send().await {
            let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                .unwrap_or(Value::Null);
            token = answer["access_token"].as_str().map(str::to_owned);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token.expect("kf-sim answered within 5 s");
    let sync_url = format!("{base}/cgi-bin/kf/sync_msg?access_token={token}");
    let sync = || {
        http_json(
            reqwest::Client::new().post(&sync_url),
            Some(json!({"open_kfid": "wkBIN"})),
        )
    };
    assert_eq!(sync().await.1["errcode"], 0);
    assert_eq!(sync().await.1["errcode"], 45009, "one call a minute");
    child.kill().await.ok();

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_kf-sim"))
        .args(["--port", "0", "--untokened-sync-per-minute", "-3"])
        .output()
        .await
        .expect("run kf-sim");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--untokened-sync-per-minute"));
}

// -- statistics ---------------------------------------------------------------------------

/// The 00:00 (UTC+8, the simulator's corp timezone) of the simulator's day, minus `days`.
fn midnight(sim: &Simulator, days_back: u64) -> u64 {
    const DAY: u64 = 86_400;
    let now = sim
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    (now + 8 * 3600) / DAY * DAY - 8 * 3600 - days_back * DAY
}

#[tokio::test]
async fn statistics_count_each_days_traffic() {
    let config = SimConfig {
        open_kfids: vec!["wkSTATS".into(), "wkQUIET".into()],
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = "wkSTATS";
    client
        .servicer_add(kf)
        .userid_list(["zhangsan", "lisi"])
        .await
        .expect("servicers");
    // Far from midnight, so the day's traffic all falls on one day.
    let now = sim
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let to_midnight = midnight(&sim, 0) + 86_400 - now;
    if to_midnight < 600 {
        sim.advance(Duration::from_secs(to_midnight + 1));
    }
    let day0 = midnight(&sim, 0);
    // Alice: two messages, the bot answers, she is queued and then served by zhangsan,
    // who offers her a member (the upgrade service), and she writes once more.
    sim.customer_says(kf, ALICE, "hi").expect("alice");
    sim.customer_says(kf, ALICE, "人工").expect("alice");
    client.send_text(ALICE, kf, "稍等").await.expect("bot");
    let trans = |who: &'static str, state: ServiceState, servicer: Option<&'static str>| {
        let mut call = client.service_state_trans(kf, who, state);
        if let Some(servicer) = servicer {
            call = call.servicer_userid(servicer);
        }
        call.send()
    };
    trans(ALICE, ServiceState::Queued, None)
        .await
        .expect("queue");
    trans(ALICE, ServiceState::Servicer, Some("zhangsan"))
        .await
        .expect("serve");
    client
        .upgrade_service(kf, ALICE, UpgradeType::Member)
        .member(UpgradeMember::new("zhangsan"))
        .await
        .expect("offer");
    sim.customer_says(kf, ALICE, "谢谢").expect("alice");
    // Bob: the bot answers, nothing more. Carol: lisi takes her in the app. Dave only looks.
    sim.customer_says(kf, "wmBOB", "hi").expect("bob");
    client.send_text("wmBOB", kf, "您好").await.expect("bot");
    sim.customer_says(kf, "wmCAROL", "hi").expect("carol");
    sim.servicer_takes(kf, "wmCAROL", "lisi").expect("lisi");
    sim.customer_enters(kf, "wmDAVE").expect("dave");
    // The next day, Alice's conversation goes on: a message, no new session.
    sim.advance(Duration::from_secs(86_400));
    sim.customer_says(kf, ALICE, "还有一件事").expect("alice");
    sim.advance(Duration::from_secs(86_400));
    let day1 = day0 + 86_400;
    assert_eq!(midnight(&sim, 1), day1, "day1 is yesterday now");

    let client = sim
        .client_builder()
        .build()
        .expect("a client with a fresh token");
    let corp = |body: Value| {
        let client = client.clone();
        let sim = sim.clone();
        async move { raw_kf(&sim, &client, "get_corp_statistic", body).await }
    };
    let answer = corp(json!({"open_kfid": kf, "start_time": day0, "end_time": day1})).await;
    assert_eq!(answer["errcode"], 0, "{answer}");
    let list = answer["statistic_list"].as_array().expect("list");
    assert_eq!(list.len(), 2, "{answer}");
    assert_eq!(list[0]["stat_time"], day0);
    assert_eq!(
        list[0]["statistic"],
        json!({
            "session_cnt": 3, "customer_cnt": 3, "customer_msg_cnt": 5,
            "upgrade_service_customer_cnt": 1, "ai_session_reply_cnt": 2,
            "ai_transfer_rate": 0.5, "msg_rejected_customer_cnt": 0,
        })
    );
    assert_eq!(list[1]["stat_time"], day1);
    assert_eq!(list[1]["statistic"]["customer_msg_cnt"], 1);
    assert_eq!(
        list[1]["statistic"]["session_cnt"], 0,
        "the conversation began on day0"
    );
    // A time inside a day counts as its 00:00; the whole corp without an account.
    let inside = corp(json!({"start_time": day0 + 3600, "end_time": day0 + 7200})).await;
    assert_eq!(inside["statistic_list"], json!([list[0]]), "{inside}");
    let quiet = corp(json!({"open_kfid": "wkQUIET", "start_time": day0, "end_time": day0})).await;
    assert_eq!(
        quiet["statistic_list"][0]["statistic"]["customer_msg_cnt"],
        0
    );

    let servicer = |who: Option<&str>| {
        let mut body = json!({"open_kfid": kf, "start_time": day0, "end_time": day0});
        if let Some(who) = who {
            body["servicer_userid"] = json!(who);
        }
        let (client, sim) = (client.clone(), sim.clone());
        async move {
            let answer = raw_kf(&sim, &client, "get_servicer_statistic", body).await;
            assert_eq!(answer["errcode"], 0, "{answer}");
            answer["statistic_list"][0]["statistic"].clone()
        }
    };
    let zhangsan = servicer(Some("zhangsan")).await;
    let counts = |s: &Value| {
        [
            "session_cnt",
            "customer_cnt",
            "customer_msg_cnt",
            "upgrade_service_customer_cnt",
            "upgrade_service_member_invite_cnt",
            "upgrade_service_member_customer_cnt",
            "upgrade_service_groupchat_invite_cnt",
        ]
        .map(|key| s[key].as_u64().unwrap_or(u64::MAX))
    };
    assert_eq!(counts(&zhangsan), [1, 1, 1, 1, 1, 1, 0], "{zhangsan}");
    assert_eq!(
        zhangsan["reply_rate"], 0.0,
        "servicers' replies aren't simulated"
    );
    let lisi = servicer(Some("lisi")).await;
    assert_eq!(counts(&lisi), [1, 0, 0, 0, 0, 0, 0], "{lisi}");
    let everyone = servicer(None).await;
    assert_eq!(counts(&everyone), [2, 1, 1, 1, 1, 1, 0], "{everyone}");

    let today = midnight(&sim, 0);
    let refusals = [
        (
            "get_corp_statistic",
            json!({"start_time": day0, "end_time": today}),
            40058,
        ),
        (
            "get_corp_statistic",
            json!({"start_time": day1, "end_time": day0}),
            40058,
        ),
        (
            "get_corp_statistic",
            json!({"start_time": today - 181 * 86_400, "end_time": day0}),
            40058,
        ),
        (
            "get_corp_statistic",
            json!({"start_time": day1 - 31 * 86_400, "end_time": day1}),
            40058,
        ),
        ("get_corp_statistic", json!({"end_time": day0}), 40058),
        (
            "get_corp_statistic",
            json!({"start_time": "yesterday", "end_time": day0}),
            40058,
        ),
        (
            "get_corp_statistic",
            json!({"start_time": u64::MAX, "end_time": u64::MAX}),
            40058,
        ),
        (
            "get_corp_statistic",
            json!({"open_kfid": "wkNOPE", "start_time": day0, "end_time": day0}),
            95004,
        ),
        (
            "get_servicer_statistic",
            json!({"servicer_userid": "nobody", "start_time": day0, "end_time": day0}),
            60111,
        ),
    ];
    for (endpoint, body, code) in refusals {
        let answer = raw_kf(&sim, &client, endpoint, body.clone()).await;
        assert_eq!(answer["errcode"], code, "{endpoint} {body}: {answer}");
    }
    // 31 days and 180 back are the limits, both included.
    let month = corp(json!({"start_time": day1 - 30 * 86_400, "end_time": day1})).await;
    assert_eq!(month["statistic_list"].as_array().map(Vec::len), Some(31));
    let oldest =
        corp(json!({"start_time": today - 180 * 86_400, "end_time": today - 180 * 86_400})).await;
    assert_eq!(oldest["errcode"], 0, "{oldest}");
}

// -- the knowledge base -------------------------------------------------------------------

/// Every page of `kf/knowledge/<endpoint>` with `limit`, following `next_cursor`; the
/// items under `key`, and the number of pages.
async fn list_all(
    sim: &Simulator,
    client: &Client,
    endpoint: &str,
    key: &str,
    mut body: Value,
) -> (Vec<Value>, usize) {
    let (mut items, mut pages) = (Vec::new(), 0);
    loop {
        let answer = raw_kf(sim, client, endpoint, body.clone()).await;
        assert_eq!(answer["errcode"], 0, "{answer}");
        pages += 1;
        items.extend(answer[key].as_array().cloned().unwrap_or_default());
        if answer["has_more"] == 0 {
            return (items, pages);
        }
        body["cursor"] = answer["next_cursor"].clone();
        assert!(pages < 100, "the cursor moves");
    }
}

#[tokio::test]
async fn knowledge_groups_are_added_renamed_listed_and_deleted() {
    let (sim, client) = setup().await;
    let kb = |endpoint: &'static str, body: Value| {
        let (sim, client) = (sim.clone(), client.clone());
        async move { raw_kf(&sim, &client, &format!("knowledge/{endpoint}"), body).await }
    };
    let listed = kb("list_group", json!({})).await;
    assert_eq!(listed["has_more"], 0, "{listed}");
    let default = listed["group_list"][0].clone();
    assert_eq!(
        (&default["name"], &default["is_default"]),
        (&json!("默认分组"), &json!(1))
    );

    let mut ids = Vec::new();
    for name in ["售后", "售前", "物流", "退换货"] {
        let added = kb("add_group", json!({"name": name})).await;
        assert_eq!(added["errcode"], 0, "{added}");
        ids.push(added["group_id"].as_str().expect("group_id").to_owned());
    }
    let renamed = kb("mod_group", json!({"group_id": ids[1], "name": "咨询"})).await;
    assert_eq!(renamed["errcode"], 0, "{renamed}");

    let (groups, pages) = list_all(
        &sim,
        &client,
        "knowledge/list_group",
        "group_list",
        json!({"limit": 2}),
    )
    .await;
    let names: Vec<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    assert_eq!(names, ["默认分组", "售后", "咨询", "物流", "退换货"]);
    assert_eq!(pages, 3);
    assert!(groups[1..].iter().all(|g| g["is_default"] == 0));
    let one = kb("list_group", json!({"group_id": ids[2]})).await;
    assert_eq!(one["group_list"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["group_list"][0]["name"], "物流");

    let deleted = kb("del_group", json!({"group_id": ids[0]})).await;
    assert_eq!(deleted["errcode"], 0, "{deleted}");
    let (groups, _) = list_all(
        &sim,
        &client,
        "knowledge/list_group",
        "group_list",
        json!({}),
    )
    .await;
    assert_eq!(groups.len(), 4);
    assert!(groups.iter().all(|g| g["group_id"] != json!(ids[0])));

    let default_id = default["group_id"].clone();
    let refusals = [
        ("add_group", json!({"name": "咨询"}), "a name in use"),
        (
            "add_group",
            json!({"name": "一二三四五六七八九十一二三"}),
            "13 characters",
        ),
        ("add_group", json!({"name": ""}), "empty"),
        ("add_group", json!({}), "no name"),
        (
            "mod_group",
            json!({"group_id": ids[2], "name": "咨询"}),
            "another's name",
        ),
        (
            "mod_group",
            json!({"group_id": "SIMKBG_NOPE", "name": "x"}),
            "unknown group",
        ),
        ("del_group", json!({"group_id": ids[0]}), "deleted already"),
        (
            "del_group",
            json!({"group_id": default_id}),
            "the default group",
        ),
        ("list_group", json!({"limit": 0}), "limit 0"),
        ("list_group", json!({"limit": 1001}), "limit 1001"),
        (
            "list_group",
            json!({"cursor": "garbage"}),
            "a cursor it never gave",
        ),
        (
            "list_group",
            json!({"group_id": "SIMKBG_NOPE"}),
            "unknown group",
        ),
    ];
    for (endpoint, body, why) in refusals {
        let answer = kb(endpoint, body.clone()).await;
        assert_eq!(
            answer["errcode"], 40058,
            "{why}: {endpoint} {body}: {answer}"
        );
    }
    // Twelve characters are fine, and a group keeps its own name.
    let twelve = kb("add_group", json!({"name": "一二三四五六七八九十一二"})).await;
    assert_eq!(twelve["errcode"], 0, "{twelve}");
    let same = kb("mod_group", json!({"group_id": ids[2], "name": "物流"})).await;
    assert_eq!(same["errcode"], 0, "{same}");
}

#[tokio::test]
async fn knowledge_intents_hold_a_question_similar_questions_and_an_answer() {
    let (sim, client) = setup().await;
    let kb = |endpoint: &'static str, body: Value| {
        let (sim, client) = (sim.clone(), client.clone());
        async move { raw_kf(&sim, &client, &format!("knowledge/{endpoint}"), body).await }
    };
    let group = kb("add_group", json!({"name": "物流"})).await["group_id"].clone();
    let other = kb("add_group", json!({"name": "其他"})).await["group_id"].clone();
    let (_, png) = wecom_kf_sim::samples::sample(wecom_kf_sim::MediaKind::Image);
    let image = client
        .upload_image(wecom_kf::Upload::from_bytes("faq.png", png.to_vec()))
        .await
        .expect("upload")
        .media_id;
    let text = |s: &str| json!({"text": {"content": s}});
    let answer = json!([{
        "text": {"content": "下单后48小时内发货。"},
        "attachments": [
            {"msgtype": "image", "image": {"media_id": image}},
            {"msgtype": "link", "link": {"title": "物流查询", "url": "https://example.com/track", "desc": "点此查看"}},
        ],
    }]);
    let added = kb(
        "add_intent",
        json!({
            "group_id": group, "question": text("什么时候发货？"),
            "similar_questions": {"items": [text("多久发货"), text("发货时间")]},
            "answers": answer,
        }),
    )
    .await;
    assert_eq!(added["errcode"], 0, "{added}");
    let intent = added["intent_id"].clone();
    let plain = kb(
        "add_intent",
        json!({"group_id": other, "question": text("在吗"), "answers": [{"text": {"content": "在的"}}]}),
    )
    .await;
    assert_eq!(plain["errcode"], 0, "{plain}");

    let listed = kb("list_intent", json!({"group_id": group})).await;
    assert_eq!(
        listed["intent_list"],
        json!([{
            "group_id": group, "intent_id": intent,
            "question": text("什么时候发货？"),
            "similar_questions": {"items": [text("多久发货"), text("发货时间")]},
            "answers": [{
                "text": {"content": "下单后48小时内发货。"},
                "attachments": [
                    {"msgtype": "image", "image": {"name": "faq.png"}},
                    {"msgtype": "link", "link": {"title": "物流查询", "url": "https://example.com/track", "desc": "点此查看"}},
                ],
            }],
        }]),
        "{listed}"
    );
    let (all, pages) = list_all(
        &sim,
        &client,
        "knowledge/list_intent",
        "intent_list",
        json!({"limit": 1}),
    )
    .await;
    assert_eq!((all.len(), pages), (2, 2));

    // A change replaces only what it gives.
    let changed = kb(
        "mod_intent",
        json!({"intent_id": intent, "question": text("几天发货？")}),
    )
    .await;
    assert_eq!(changed["errcode"], 0, "{changed}");
    let one = kb("list_intent", json!({"intent_id": intent})).await;
    let one = &one["intent_list"][0];
    assert_eq!(one["question"], text("几天发货？"));
    assert_eq!(
        one["similar_questions"]["items"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        one["answers"][0]["attachments"].as_array().map(Vec::len),
        Some(2)
    );
    let cleared = kb(
        "mod_intent",
        json!({"intent_id": intent, "similar_questions": {"items": []}, "answers": [{"text": {"content": "三天内"}}]}),
    )
    .await;
    assert_eq!(cleared["errcode"], 0, "{cleared}");
    let one = kb("list_intent", json!({"intent_id": intent})).await;
    let one = &one["intent_list"][0];
    assert_eq!(one["similar_questions"], json!({"items": []}));
    assert_eq!(
        one["answers"],
        json!([{"text": {"content": "三天内"}, "attachments": []}])
    );

    let question = text("问题");
    let refusals = [
        (
            json!({"group_id": group, "question": question, "answers": [{"text": {"content": "a"}, "attachments": [{"msgtype": "image", "image": {"media_id": "SIMMEDIA_NOPE"}}]}]}),
            40007,
        ),
        (
            json!({"group_id": group, "question": question, "answers": [{"text": {"content": "a"}}, {"text": {"content": "b"}}]}),
            40058,
        ),
        (
            json!({"group_id": group, "question": question, "answers": []}),
            40058,
        ),
        (
            json!({"group_id": group, "answers": [{"text": {"content": "a"}}]}),
            40058,
        ),
        (
            json!({"group_id": group, "question": text(&"问".repeat(201)), "answers": [{"text": {"content": "a"}}]}),
            40058,
        ),
        (
            json!({"group_id": "SIMKBG_NOPE", "question": question, "answers": [{"text": {"content": "a"}}]}),
            40058,
        ),
        (
            json!({"group_id": group, "question": question, "answers": [{"text": {"content": "a"}, "attachments": [{"msgtype": "voice", "voice": {"media_id": image}}]}]}),
            40058,
        ),
        (
            json!({"group_id": group, "question": question, "answers": [{"text": {"content": "a"}, "attachments": [{"msgtype": "link", "link": {"title": "t", "url": "ftp://x"}}]}]}),
            40058,
        ),
    ];
    for (body, code) in refusals {
        let answer = kb("add_intent", body.clone()).await;
        assert_eq!(answer["errcode"], code, "{body}: {answer}");
    }
    let (all, _) = list_all(
        &sim,
        &client,
        "knowledge/list_intent",
        "intent_list",
        json!({}),
    )
    .await;
    assert_eq!(all.len(), 2, "nothing refused was kept");

    // Deleting an intent, then a group with the other one in it.
    let deleted = kb("del_intent", json!({"intent_id": intent})).await;
    assert_eq!(deleted["errcode"], 0, "{deleted}");
    assert_eq!(
        kb("del_intent", json!({"intent_id": intent})).await["errcode"],
        40058
    );
    assert_eq!(
        kb(
            "mod_intent",
            json!({"intent_id": intent, "question": question})
        )
        .await["errcode"],
        40058
    );
    assert_eq!(
        kb("del_group", json!({"group_id": other})).await["errcode"],
        0
    );
    let (all, _) = list_all(
        &sim,
        &client,
        "knowledge/list_intent",
        "intent_list",
        json!({}),
    )
    .await;
    assert!(all.is_empty(), "the group's intents went with it: {all:?}");
}
