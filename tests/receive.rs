//! Receiving: every documented message and event parses into its variant, and nothing the
//! server sends is ever lost: unknown or malformed items are kept with their JSON.
//!
//! `fixtures/received_examples.json` holds the examples of doc 94670's messages and events; where an
//! example shows only the payload, the item envelope (`msgid`, `origin`) was added.

mod common;

use common::{MockServer, Reply, Rng};
use serde_json::{Value, json};
use wecom_kf::types::{
    ChangeType, ChannelsScene, ChannelsSubType, Event, FailType, MenuItem, Origin, Received,
    ReceivedMsg, RejectSwitch, ServicerStatus, StopType, SyncMsgResponse,
};

fn examples() -> serde_json::Map<String, Value> {
    match serde_json::from_str(include_str!("fixtures/received_examples.json")) {
        Ok(Value::Object(map)) => map,
        other => panic!("fixture is not a JSON object: {other:?}"),
    }
}

/// Matches `$msg.content` against a pattern or fails the test with the item.
macro_rules! expect {
    ($msg:expr, $pattern:pat => $body:expr) => {
        match &$msg.content {
            $pattern => $body,
            other => panic!("{}: unexpected content {other:?}", $msg.msgid),
        }
    };
}

type Check = fn(&ReceivedMsg);

#[test]
fn every_documented_example_parses_into_its_variant() {
    let rows: &[(&str, Check)] = &[
        ("text", |m| {
            assert_eq!(m.msgid, "from_msgid_4622416642169452483");
            assert_eq!(
                m.open_kfid.as_deref(),
                Some("wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q")
            );
            assert_eq!(
                m.external_userid.as_deref(),
                Some("wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw")
            );
            assert_eq!(m.send_time, Some(1615478585));
            assert_eq!(m.origin, Some(Origin::Customer));
            expect!(m, Received::Text(t) => {
                assert_eq!(t.content, "hello");
                assert_eq!(t.menu_id, None);
            });
        }),
        ("text_menu_click", |m| {
            expect!(m, Received::Text(t) => assert_eq!((t.content.as_str(), t.menu_id.as_deref()), ("满意", Some("101"))));
        }),
        ("image", |m| {
            expect!(m, Received::Image(i) => assert_eq!(i.media_id, "2iSLeVyqzk4eX0IB5kTi9Ljfa2rt9dwfq5WKRQ4Nvvgw"));
        }),
        (
            "voice",
            |m| expect!(m, Received::Voice(v) => assert_eq!(v.media_id, "MEDIA_ID")),
        ),
        (
            "video",
            |m| expect!(m, Received::Video(v) => assert_eq!(v.media_id, "MEDIA_ID")),
        ),
        (
            "file",
            |m| expect!(m, Received::File(f) => assert_eq!(f.media_id, "MEDIA_ID")),
        ),
        ("location", |m| {
            expect!(m, Received::Location(l) => {
                assert_eq!((l.latitude, l.longitude), (23.1060218811035, 113.320503234863), "the documented coordinates, to f64 precision");
                assert_eq!(l.name.as_deref(), Some("广州国际媒体港(广州市海珠区)"));
                assert_eq!(l.address.as_deref(), Some("广东省广州市海珠区滨江东路"));
            });
        }),
        ("link", |m| {
            expect!(m, Received::Link(l) => {
                assert_eq!(l.title.as_deref(), Some("TITLE"));
                assert_eq!(l.desc.as_deref(), Some("DESC"));
                assert_eq!(l.url.as_deref(), Some("URL"));
                assert_eq!(l.pic_url.as_deref(), Some("PIC_URL"));
            });
        }),
        (
            "business_card",
            |m| expect!(m, Received::BusinessCard(c) => assert_eq!(c.userid, "USERID")),
        ),
        ("miniprogram", |m| {
            expect!(m, Received::MiniProgram(p) => {
                assert_eq!(p.title.as_deref(), Some("TITLE"));
                assert_eq!((p.appid.as_str(), p.pagepath.as_str()), ("APPID", "PAGE_PATH"));
                assert_eq!(p.thumb_media_id, "THUMB_MEDIA_ID");
            });
        }),
        ("msgmenu", |m| {
            assert_eq!(m.origin, Some(Origin::Servicer));
            assert_eq!(m.servicer_userid.as_deref(), Some("zhangsan"));
            expect!(m, Received::Menu(menu) => {
                assert_eq!(menu.head_content.as_deref(), Some("您对本次服务是否满意呢?"));
                assert_eq!(menu.tail_content.as_deref(), Some("欢迎再次光临"));
                let tags: Vec<&str> = menu.list.iter().map(MenuItem::tag).collect();
                assert_eq!(tags, ["click", "view", "miniprogram", "text"]);
                match &menu.list[0] {
                    MenuItem::MenuClick(c) => assert_eq!((c.id.as_str(), c.content.as_str()), ("101", "满意")),
                    other => panic!("{other:?}"),
                }
            });
        }),
        ("channels_shop_product", |m| {
            expect!(m, Received::ChannelsShopProduct(p) => {
                assert_eq!(p.product_id.as_deref(), Some("PRODUCT_ID"));
                assert_eq!(p.head_image.as_deref(), Some("PRODUCT_IMAGE_URL"));
                assert_eq!(p.sales_price.as_deref(), Some("SALES_PRICE"));
                assert_eq!(p.shop_head_image.as_deref(), Some("SHOP_HEAD_IMAGE"));
            });
        }),
        ("channels_shop_product_other_keys", |m| {
            expect!(m, Received::ChannelsShopProduct(p) => {
                assert_eq!(p.head_image.as_deref(), Some("PRODUCT_IMAGE_URL"), "head_img is accepted");
                assert_eq!(p.shop_head_image.as_deref(), Some("SHOP_HEAD_IMAGE"), "shop_head_img is accepted");
                assert_eq!(p.sales_price.as_deref(), Some("1999"), "a numeric price is kept as text");
            });
        }),
        ("channels_shop_order", |m| {
            expect!(m, Received::ChannelsShopOrder(o) => {
                assert_eq!(o.order_id.as_deref(), Some("ORDER_ID"));
                assert_eq!(o.price_wording.as_deref(), Some("PRICE_WORDING"));
                assert_eq!(o.shop_nickname.as_deref(), Some("SHOP_NICKNAME"));
            });
        }),
        ("merged_msg", |m| {
            expect!(m, Received::MergedMsg(r) => {
                assert_eq!(r.title.as_deref(), Some("群聊的聊天记录"));
                assert_eq!(r.item.len(), 1);
                assert_eq!(r.item[0].send_time, Some(1665649618));
                assert_eq!(r.item[0].sender_name.as_deref(), Some("发送者"));
                let inner: Value = serde_json::from_str(r.item[0].msg_content.as_deref().unwrap_or("")).expect("inner JSON");
                assert_eq!(inner["text"]["content"], "消息内容");
            });
        }),
        ("channels", |m| {
            expect!(m, Received::Channels(c) => {
                assert_eq!(c.sub_type, Some(ChannelsSubType::Post));
                assert_eq!(c.nickname.as_deref(), Some("视频号名称"));
                assert_eq!(c.title.as_deref(), Some("动态标题"));
            });
        }),
        ("meeting", |m| expect!(m, Received::Meeting(_) => {})),
        ("schedule", |m| expect!(m, Received::Schedule(_) => {})),
        ("note", |m| expect!(m, Received::Note(_) => {})),
        ("enter_session", |m| {
            assert_eq!(m.origin, Some(Origin::System));
            assert_eq!(
                m.open_kfid, None,
                "events carry the account inside the event"
            );
            expect!(m, Received::Event(Event::EnterSession(e)) => {
                assert_eq!(e.open_kfid.as_deref(), Some("wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"));
                assert_eq!(e.external_userid.as_deref(), Some("wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw"));
                assert_eq!((e.scene.as_deref(), e.scene_param.as_deref()), (Some("123"), Some("abc")));
                assert_eq!(e.welcome_code.as_deref(), Some("aaaaaa"));
                let channels = e.wechat_channels.as_ref().expect("wechat_channels");
                assert_eq!(channels.nickname.as_deref(), Some("进入会话的视频号名称"));
                assert_eq!(channels.shop_nickname.as_deref(), Some("视频号小店名称"));
                assert_eq!(channels.scene, Some(ChannelsScene::Profile));
            });
        }),
        ("msg_send_fail", |m| {
            expect!(m, Received::Event(Event::MsgSendFail(e)) => {
                assert_eq!(e.fail_msgid.as_deref(), Some("FAIL_MSGID"));
                assert_eq!(e.fail_type, Some(FailType::SessionExpired));
            });
        }),
        ("servicer_status_change", |m| {
            expect!(m, Received::Event(Event::ServicerStatusChange(e)) => {
                assert_eq!(e.servicer_userid.as_deref(), Some("zhangsan"));
                assert_eq!(e.status, Some(ServicerStatus::Stopped));
                assert_eq!(e.stop_type, Some(StopType::Suspended));
            });
        }),
        ("session_status_change", |m| {
            expect!(m, Received::Event(Event::SessionStatusChange(e)) => {
                assert_eq!(e.change_type, Some(ChangeType::Ended));
                assert_eq!(e.old_servicer_userid.as_deref(), Some("zhangsan"));
                assert_eq!(e.new_servicer_userid, None);
                assert_eq!(e.msg_code.as_deref(), Some("MSG_CODE"));
            });
        }),
        ("user_recall_msg", |m| {
            expect!(m, Received::Event(Event::UserRecallMsg(e)) => assert_eq!(e.recall_msgid.as_deref(), Some("RECALL_MSGID")));
        }),
        ("servicer_recall_msg", |m| {
            expect!(m, Received::Event(Event::ServicerRecallMsg(e)) => {
                assert_eq!(e.recall_msgid.as_deref(), Some("RECALL_MSGID"));
                assert_eq!(e.servicer_userid.as_deref(), Some("SERVICER_USERID"));
            });
        }),
        ("reject_customer_msg_switch_change", |m| {
            expect!(m, Received::Event(Event::RejectCustomerMsgSwitchChange(e)) => {
                assert_eq!(e.servicer_userid.as_deref(), Some("zhangsan"));
                assert_eq!(e.reject_switch, Some(RejectSwitch::On));
            });
        }),
    ];
    let examples = examples();
    assert_eq!(rows.len(), examples.len(), "one row per fixture");
    for (name, check) in rows {
        let raw = examples
            .get(*name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        let msg: ReceivedMsg = serde_json::from_value(raw.clone()).expect("items never fail");
        assert_eq!(&msg.raw, raw, "{name}: raw is the item as received");
        check(&msg);
    }
}

/// Items that no typed variant fits, each with what it must come back as.
fn odd_page() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"msgid": "u1", "origin": 3, "msgtype": "hologram", "hologram": {"x": 1}}),
            "Unknown:hologram",
        ),
        (
            json!({"msgid": "u2", "origin": 3, "msgtype": "text", "text": {}}),
            "Unknown:text",
        ),
        (
            json!({"msgid": "u3", "origin": 3, "msgtype": "image", "image": {"media_id": 5}}),
            "Unknown:image",
        ),
        (
            json!({"msgid": "u4", "msgtype": "text", "text": {"content": "hi", "mood": "happy"}, "extra": [1, 2]}),
            "Text",
        ),
        (
            json!({"msgid": "u5", "msgtype": "event", "event": {"event_type": "teleport", "open_kfid": "wk"}}),
            "Event::Unknown:teleport",
        ),
        (
            json!({"msgid": "u6", "msgtype": "event", "event": {"event_type": "msg_send_fail", "fail_type": "late"}}),
            "Event::Unknown:msg_send_fail",
        ),
        (
            json!({"msgid": "u7", "send_time": "yesterday", "origin": "customer", "msgtype": "text", "text": {"content": "x"}}),
            "Text",
        ),
        (
            json!({"msgid": "u8", "text": {"content": "no msgtype"}}),
            "Unknown:",
        ),
        (json!({"msgid": "u9", "msgtype": 7}), "Unknown:"),
        (
            json!({"msgid": "u10", "msgtype": "event"}),
            "Event::Unknown:",
        ),
        (
            json!({"msgid": "u11", "msgtype": "event", "event": {"event_type": "msg_send_fail", "fail_type": 99}}),
            "Event::MsgSendFail",
        ),
    ]
}

fn describe(content: &Received) -> String {
    match content {
        Received::Unknown { msgtype, .. } => format!("Unknown:{msgtype}"),
        Received::Event(Event::Unknown { event_type, .. }) => {
            format!("Event::Unknown:{event_type}")
        }
        Received::Event(Event::MsgSendFail(_)) => "Event::MsgSendFail".into(),
        Received::Text(_) => "Text".into(),
        other => format!("{other:?}"),
    }
}

#[test]
fn odd_items_are_kept_with_their_json_and_never_fail_the_page() {
    let items = odd_page();
    let page = json!({
        "errcode": 0, "errmsg": "ok", "next_cursor": "c1", "has_more": 0,
        "msg_list": items.iter().map(|(item, _)| item.clone()).collect::<Vec<_>>(),
    });
    let page: SyncMsgResponse = serde_json::from_value(page).expect("a page of odd items parses");
    assert_eq!(page.msg_list.len(), items.len());
    for (msg, (item, expected)) in page.msg_list.iter().zip(&items) {
        assert_eq!(
            Some(msg.msgid.as_str()),
            item["msgid"].as_str(),
            "msgid kept"
        );
        assert_eq!(&msg.raw, item, "{}: raw JSON kept", msg.msgid);
        assert_eq!(describe(&msg.content), *expected, "{}", msg.msgid);
    }
    // What a malformed field loses from the typed view stays in `raw`.
    let u7 = &page.msg_list[6];
    assert_eq!((u7.send_time, u7.origin), (None, None));
    assert_eq!(u7.raw.to_value()["send_time"], "yesterday");
    // Unknown enum values are kept as numbers.
    match &page.msg_list[10].content {
        Received::Event(Event::MsgSendFail(e)) => {
            assert_eq!(e.fail_type, Some(FailType::Other(99)))
        }
        other => panic!("{other:?}"),
    }
    // The unknown item's own payload is still there for whoever understands it.
    match &page.msg_list[0].content {
        Received::Unknown { raw, .. } => assert_eq!(raw["hologram"]["x"], 1),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sync_msg_returns_typed_items() {
    let server = MockServer::start().await;
    let examples = examples();
    let list: Vec<Value> = examples.values().cloned().collect();
    server.script(
        "/cgi-bin/kf/sync_msg",
        [Reply::Json(json!({"errcode": 0, "errmsg": "ok", "next_cursor": "NEXT", "has_more": 1, "msg_list": list}))],
    );
    let page = server.client().sync_msg("wk").await.expect("sync");
    assert_eq!((page.next_cursor.as_str(), page.has_more), ("NEXT", 1));
    assert_eq!(page.msg_list.len(), examples.len());
    let unknown = page
        .msg_list
        .iter()
        .filter(|m| {
            matches!(
                m.content,
                Received::Unknown { .. } | Received::Event(Event::Unknown { .. })
            )
        })
        .count();
    assert_eq!(unknown, 0, "every documented example has a typed variant");
}

const KEYS: &[&str] = &[
    "msgid",
    "msgtype",
    "event",
    "event_type",
    "text",
    "content",
    "origin",
    "send_time",
    "image",
    "media_id",
    "msgmenu",
    "list",
    "type",
    "click",
    "location",
    "latitude",
    "fail_type",
    "merged_msg",
    "item",
    "wechat_channels",
    "scene",
    "sales_price",
    "head_img",
];
const TAGS: &[&str] = &[
    "text",
    "image",
    "event",
    "msgmenu",
    "location",
    "merged_msg",
    "enter_session",
    "msg_send_fail",
    "click",
    "channels_shop_product",
    "",
    "?",
];

fn arbitrary(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth == 0;
    match rng.below(if leaf { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(rng.next() as i64 >> rng.below(64)),
        3 => json!((rng.next() as f64) / 7.0 - 1e18),
        4 => json!(TAGS[rng.below(TAGS.len())]),
        5 => json!(format!("s{}", rng.next() % 1000)),
        6 => Value::Array(
            (0..rng.below(4))
                .map(|_| arbitrary(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(6))
                .map(|_| {
                    (
                        KEYS[rng.below(KEYS.len())].to_owned(),
                        arbitrary(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

/// Replaces one random node of `value` with an arbitrary one.
fn mutate(rng: &mut Rng, value: &mut Value) {
    let replace = rng.below(4) == 0;
    match value {
        Value::Object(map) if !map.is_empty() && !replace => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(child) = map.get_mut(&key) {
                mutate(rng, child);
            }
        }
        Value::Array(items) if !items.is_empty() && !replace => {
            let i = rng.below(items.len());
            mutate(rng, &mut items[i]);
        }
        _ => *value = arbitrary(rng, 3),
    }
}

#[test]
fn arbitrary_json_never_panics_and_object_pages_never_fail() {
    let cases: usize = std::env::var("KF_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let seeds: Vec<Value> = examples().into_values().collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for case in 0..cases {
        let item = if case % 2 == 0 {
            arbitrary(&mut rng, 4)
        } else {
            let mut item = seeds[rng.below(seeds.len())].clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut item);
            }
            item
        };
        // Any JSON at all: parsing may refuse it, but never panics.
        let _ = serde_json::from_value::<ReceivedMsg>(item.clone());
        let _ = serde_json::from_value::<Received>(item.clone());
        // Items of a page: whatever they hold, the page parses and keeps them.
        let page = json!({"next_cursor": "c", "has_more": 0, "msg_list": [item.clone()]});
        let text = page.to_string();
        let parsed: SyncMsgResponse = serde_json::from_value(page)
            .unwrap_or_else(|e| panic!("case {case}: page refused ({e}) for item {item}"));
        assert_eq!(parsed.msg_list[0].raw, item, "case {case}: item not kept");
        // The same page from its text, as the client reads it, gives the same items.
        let from_text: SyncMsgResponse = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("case {case}: page text refused ({e}) for item {item}"));
        assert_eq!(from_text, parsed, "case {case}: text and value disagree");
        // The client's reading of the body reads what serde_json does, spaced out too.
        let from_body = SyncMsgResponse::from_body(text.as_bytes())
            .unwrap_or_else(|e| panic!("case {case}: body refused ({e}) for item {item}"));
        assert_eq!(
            from_body, parsed,
            "case {case}: from_body and value disagree"
        );
        let pretty = serde_json::to_string_pretty(&json!({
            "msg_list": [item.clone(), item.clone()], "next_cursor": "c", "has_more": 0,
        }))
        .unwrap_or_default();
        let by_serde: SyncMsgResponse = serde_json::from_str(&pretty)
            .unwrap_or_else(|e| panic!("case {case}: pretty page refused ({e})"));
        let from_body = SyncMsgResponse::from_body(pretty.as_bytes())
            .unwrap_or_else(|e| panic!("case {case}: pretty body refused ({e})"));
        assert_eq!(
            from_body, by_serde,
            "case {case}: pretty page read differently"
        );
    }
}

/// Bodies out of the ordinary: the client's reading (`from_body`) reads what
/// `serde_json::from_slice` reads, or refuses what it refuses.
#[test]
fn from_body_reads_what_serde_json_reads() {
    let item = r#"{"msgid":"m1","msgtype":"text","text":{"content":"hi"}}"#;
    let odd = r#"{"msgid":"m2","msgtype":"text","msgtype":"image","image":{"media_id":"x"}}"#;
    let bodies = [
        format!(r#"{{"next_cursor":"c","has_more":1,"msg_list":[{item},{odd}]}}"#),
        format!(
            " \n{{ \"msg_list\" : [ {item} , 7, \"x\", null, [] ] ,\"has_more\":0, \"next_cursor\":\"c\"}} \n"
        ),
        r#"{"errcode":0,"errmsg":"ok","next_cursor":"c","has_more":0,"msg_list":[]}"#.to_owned(),
        r#"{"next_cursor":"c","has_more":0}"#.to_owned(),
        format!(
            r#"{{"next_cursor":"\u0063","has_more":0,"msg\u005flist":[{item}],"x":{{"y":[1,2]}}}}"#
        ),
        // Refused by both: the list twice, a list that is no list, missing fields,
        // trailing text, a trailing comma, a truncated body, not an object.
        format!(r#"{{"next_cursor":"c","has_more":0,"msg_list":[{item}],"msg_list":[]}}"#),
        r#"{"next_cursor":"c","has_more":0,"msg_list":null}"#.to_owned(),
        format!(r#"{{"has_more":0,"msg_list":[{item}]}}"#),
        format!(r#"{{"next_cursor":"c","has_more":0,"msg_list":[{item}]}} x"#),
        format!(r#"{{"next_cursor":"c","has_more":0,"msg_list":[{item},]}}"#),
        format!(r#"{{"next_cursor":"c","has_more":0,"msg_list":[{item}"#),
        format!(r#"[{item}]"#),
        String::new(),
    ];
    for body in &bodies {
        let by_serde = serde_json::from_slice::<SyncMsgResponse>(body.as_bytes()).ok();
        let from_body = SyncMsgResponse::from_body(body.as_bytes()).ok();
        assert_eq!(from_body, by_serde, "{body}");
    }
    let page = SyncMsgResponse::from_body(bodies[1].as_bytes()).expect("a page");
    let raws: Vec<&str> = page.msg_list.iter().map(|m| m.raw.as_str()).collect();
    assert_eq!(raws, [item, "7", "\"x\"", "null", "[]"]);
    // Invalid UTF-8 in a string: left to serde_json, which refuses it.
    let mut bytes = bodies[0].clone().into_bytes();
    let at = bodies[0].find("hi").expect("the text");
    bytes[at] = 0xff;
    assert!(SyncMsgResponse::from_body(&bytes).is_err());
}

#[test]
fn raw_is_the_item_text_byte_for_byte() {
    // Spacing and a number too large for u64/f64 survive: `raw` is the text, not a re-encoding.
    let item = r#"{"msgid": "m1",  "msgtype":"text","text":{"content":"hi"},"big":12345678901234567890123}"#;
    let page = format!(r#"{{"next_cursor":"c","has_more":0,"msg_list":[ {item} ]}}"#);
    let parsed: SyncMsgResponse = serde_json::from_str(&page).expect("the page parses");
    assert_eq!(parsed.msg_list[0].raw.as_str(), item);
    assert!(matches!(parsed.msg_list[0].content, Received::Text(_)));
    let from_body = SyncMsgResponse::from_body(page.as_bytes()).expect("the page parses");
    assert_eq!(from_body.msg_list[0].raw.as_str(), item);
    assert_eq!(from_body.msg_list[0].raw.detach(), parsed.msg_list[0].raw);
    assert_eq!(from_body, parsed);
}
