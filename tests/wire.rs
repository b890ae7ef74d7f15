//! Every request body, compared as JSON with the examples of the official docs (copied into
//! `tests/fixtures/request_examples.json` from kf-api.md), sent through a real HTTP server
//! to check the path and the `access_token` query as well.

mod common;

use common::MockServer;
use serde_json::Value;
use wecom_kf::{
    CaLink, Client, Link, Location, Menu, MenuClick, MenuItem, MenuMiniProgram, MenuText, MenuView,
    MiniProgram, VoiceFormat,
};

fn examples() -> Value {
    let text = include_str!("fixtures/request_examples.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Numbers compare by value (`0` equals `0.0`); everything else exactly.
fn normalize(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, normalize(v))).collect())
        }
        other => other,
    }
}

fn menu_example(head: &str) -> Menu {
    Menu::new()
        .head_content(head)
        .list([
            MenuItem::from(MenuClick::new("101", "满意")),
            MenuClick::new("102", "不满意").into(),
            MenuView::new("https://work.weixin.qq.com", "点击跳转到自助查询页面").into(),
            MenuMiniProgram::new(
                "wx123123123123123",
                "pages/index?userid=zhangsan&orderid=123123123",
                "点击打开小程序查询更多",
            )
            .into(),
            MenuText::new("纯文本，支持\n换行").no_newline(0u32).into(),
        ])
        .tail_content("欢迎再次光临")
}

/// Sends every example through `client`, returning (fixture name, API path) pairs in order.
async fn send_all(client: &Client) -> Vec<(&'static str, &'static str)> {
    let (user, kf) = ("EXTERNAL_USERID", "OPEN_KFID");
    client
        .sync_msg("wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q")
        .cursor("4gw7MepFLfgF2VC5npN")
        .token("ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR")
        .limit(1000)
        .voice_format(VoiceFormat::Amr)
        .await
        .expect("sync_msg");
    client
        .send_text(
            user,
            kf,
            "你购买的物品已发货，可点击链接查看物流状态http://work.weixin.qq.com/xxxxxx",
        )
        .msgid("MSGID")
        .await
        .expect("text");
    client
        .send_image(user, kf, "MEDIA_ID")
        .await
        .expect("image");
    client
        .send_voice(user, kf, "MEDIA_ID")
        .await
        .expect("voice");
    client
        .send_video(user, kf, "MEDIA_ID")
        .await
        .expect("video");
    client
        .send_file(user, kf, "1Yv-zXfHjSjU-7LH-GwtYqDGS-zz6w22KmWAT5COgP7o")
        .await
        .expect("file");
    client
        .send_link(
            user,
            kf,
            Link::new(
                "企业如何增长？企业微信给出3个答案",
                "https://work.weixin.qq.com",
                "MEDIA_ID",
            )
            .desc("今年中秋节公司有豪礼相送"),
        )
        .await
        .expect("link");
    client
        .send_miniprogram(
            user,
            kf,
            MiniProgram::new("APPID", "MEDIA_ID", "PAGE_PATH").title("欢迎报名夏令营"),
        )
        .await
        .expect("miniprogram");
    client
        .send_menu(user, kf, menu_example("您对本次服务是否满意呢? "))
        .await
        .expect("menu");
    client
        .send_location(
            user,
            kf,
            Location::new(0.0, 0.0)
                .name("测试小区")
                .address("实例小区，不真实存在，经纬度无意义"),
        )
        .await
        .expect("location");
    client
        .send_ca_link(
            user,
            kf,
            CaLink::new("https://work.weixin.qq.com/ca/xxxxxx"),
        )
        .await
        .expect("ca_link");
    client
        .send_text_on_event("CODE", "欢迎咨询")
        .msgid("MSG_ID")
        .await
        .expect("text on event");
    client
        .send_menu_on_event(
            "CODE",
            Menu::new()
                .head_content("欢迎咨询")
                .list([
                    MenuClick::new("101", "接入人工"),
                    MenuClick::new("102", "继续跟机器人聊天"),
                ])
                .tail_content("如有问题，随时转人工服务"),
        )
        .await
        .expect("menu on event");
    vec![
        ("sync_msg", "/cgi-bin/kf/sync_msg"),
        ("send_msg_text", "/cgi-bin/kf/send_msg"),
        ("send_msg_image", "/cgi-bin/kf/send_msg"),
        ("send_msg_voice", "/cgi-bin/kf/send_msg"),
        ("send_msg_video", "/cgi-bin/kf/send_msg"),
        ("send_msg_file", "/cgi-bin/kf/send_msg"),
        ("send_msg_link", "/cgi-bin/kf/send_msg"),
        ("send_msg_miniprogram", "/cgi-bin/kf/send_msg"),
        ("send_msg_msgmenu", "/cgi-bin/kf/send_msg"),
        ("send_msg_location", "/cgi-bin/kf/send_msg"),
        ("send_msg_ca_link", "/cgi-bin/kf/send_msg"),
        ("send_msg_on_event_text", "/cgi-bin/kf/send_msg_on_event"),
        ("send_msg_on_event_msgmenu", "/cgi-bin/kf/send_msg_on_event"),
    ]
}

#[tokio::test]
async fn every_request_matches_the_official_example() {
    let server = MockServer::start().await;
    let client = server.client();
    let expected = send_all(&client).await;
    let examples = examples();
    let sent: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path != "/cgi-bin/gettoken")
        .collect();
    assert_eq!(sent.len(), expected.len(), "one request per example");
    for (request, (name, path)) in sent.iter().zip(&expected) {
        assert_eq!(request.path, *path, "{name}: path");
        assert_eq!(
            request.query.get("access_token").map(String::as_str),
            Some("ACCESS_TOKEN_0_xyz"),
            "{name}: access_token query"
        );
        assert_eq!(
            request.query.len(),
            1,
            "{name}: only the token in the query"
        );
        let example = examples
            .get(*name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        assert_eq!(
            normalize(request.body.clone()),
            normalize(example.clone()),
            "{name}: body differs from the official example"
        );
    }
    // The fixture has no case this test doesn't send.
    assert_eq!(examples.as_object().map(|o| o.len()), Some(expected.len()));
}

#[tokio::test]
async fn gettoken_sends_credentials_in_the_query_only() {
    let server = MockServer::start().await;
    server.client().access_token().await.expect("token");
    let requests = server.requests_to("/cgi-bin/gettoken");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].query.get("corpid").map(String::as_str),
        Some(common::CORP_ID)
    );
    assert_eq!(
        requests[0].query.get("corpsecret").map(String::as_str),
        Some(common::SECRET)
    );
    assert_eq!(requests[0].body, Value::Null, "GET has no body");
}

#[tokio::test]
async fn unset_optional_fields_are_left_out() {
    let server = MockServer::start().await;
    let client = server.client();
    client.sync_msg("wk1").await.expect("sync");
    client
        .send_menu("wm1", "wk1", Menu::new().head_content("hi"))
        .await
        .expect("menu");
    let bodies: Vec<Value> = server
        .requests()
        .into_iter()
        .filter(|r| r.path != "/cgi-bin/gettoken")
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies[0], serde_json::json!({"open_kfid": "wk1"}));
    assert_eq!(
        bodies[1],
        serde_json::json!({"touser": "wm1", "open_kfid": "wk1", "msgtype": "msgmenu", "msgmenu": {"head_content": "hi"}})
    );
}

#[tokio::test]
async fn raw_bodies_are_sent_as_given() {
    let server = MockServer::start().await;
    let body = serde_json::json!({"touser": "wm1", "open_kfid": "wk1", "msgtype": "business_card", "business_card": {"userid": "zhangsan"}});
    let sent = server
        .client()
        .send_msg_raw(body.clone())
        .await
        .expect("raw");
    assert_eq!(sent.msgid, "MSG_ID_FROM_SERVER");
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg")[0].body, body);
}

#[test]
fn outgoing_messages_round_trip_through_serde() {
    let msg = wecom_kf::OutgoingMsg::from(menu_example("head"));
    let json = serde_json::to_value(&msg).expect("serialize");
    assert_eq!(json["msgtype"], "msgmenu");
    let back: wecom_kf::OutgoingMsg = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, msg);
    let unknown = serde_json::from_value::<wecom_kf::OutgoingMsg>(
        serde_json::json!({"msgtype": "news", "news": {}}),
    );
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown msgtype `news`")
    );
}
