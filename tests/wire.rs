//! Every request body (a GET's query), compared as JSON with the examples of the official
//! docs (copied into `tests/fixtures/request_examples.json`), sent through a real HTTP
//! server to check the method, path and `access_token` query as well; and every response
//! example of the management pages (`tests/fixtures/response_examples.json`) read back
//! through the client. Where a page gives only a field table (account del/update, servicer
//! del, service_state get, the upgrade-service config and a group-chat upgrade, cancel),
//! the fixture is built from that table.

mod common;

use common::{MockServer, Reply, normalize};
use serde_json::Value;
use wecom_kf::{
    Client, Error,
    types::{
        CaLink, Gender, Link, Location, Menu, MenuClick, MenuItem, MenuMiniProgram, MenuText,
        MenuView, MiniProgram, ServiceState, ServicerListStatus, StopType, UpgradeGroupChat,
        UpgradeMember, UpgradeType, VoiceFormat,
    },
};

fn examples() -> Value {
    let text = include_str!("fixtures/request_examples.json");
    serde_json::from_str(text).expect("fixture is JSON")
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

/// Sends every example through `client`, returning (fixture name, method, API path) in order.
async fn send_all(client: &Client) -> Vec<(&'static str, &'static str, &'static str)> {
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
    send_management(client).await;
    let post = |name, path| (name, "POST", path);
    vec![
        post("sync_msg", "/cgi-bin/kf/sync_msg"),
        post("send_msg_text", "/cgi-bin/kf/send_msg"),
        post("send_msg_image", "/cgi-bin/kf/send_msg"),
        post("send_msg_voice", "/cgi-bin/kf/send_msg"),
        post("send_msg_video", "/cgi-bin/kf/send_msg"),
        post("send_msg_file", "/cgi-bin/kf/send_msg"),
        post("send_msg_link", "/cgi-bin/kf/send_msg"),
        post("send_msg_miniprogram", "/cgi-bin/kf/send_msg"),
        post("send_msg_msgmenu", "/cgi-bin/kf/send_msg"),
        post("send_msg_location", "/cgi-bin/kf/send_msg"),
        post("send_msg_ca_link", "/cgi-bin/kf/send_msg"),
        post("send_msg_on_event_text", "/cgi-bin/kf/send_msg_on_event"),
        post("send_msg_on_event_msgmenu", "/cgi-bin/kf/send_msg_on_event"),
        post("account_add", "/cgi-bin/kf/account/add"),
        post("account_del", "/cgi-bin/kf/account/del"),
        post("account_update", "/cgi-bin/kf/account/update"),
        post("account_list", "/cgi-bin/kf/account/list"),
        post("add_contact_way", "/cgi-bin/kf/add_contact_way"),
        post("servicer_add", "/cgi-bin/kf/servicer/add"),
        post("servicer_del", "/cgi-bin/kf/servicer/del"),
        ("servicer_list", "GET", "/cgi-bin/kf/servicer/list"),
        post("service_state_get", "/cgi-bin/kf/service_state/get"),
        post("service_state_trans", "/cgi-bin/kf/service_state/trans"),
        post("customer_batchget", "/cgi-bin/kf/customer/batchget"),
        (
            "get_corp_qualification",
            "GET",
            "/cgi-bin/kf/get_corp_qualification",
        ),
        (
            "get_upgrade_service_config",
            "GET",
            "/cgi-bin/kf/customer/get_upgrade_service_config",
        ),
        post(
            "upgrade_service_member",
            "/cgi-bin/kf/customer/upgrade_service",
        ),
        post(
            "upgrade_service_groupchat",
            "/cgi-bin/kf/customer/upgrade_service",
        ),
        post(
            "cancel_upgrade_service",
            "/cgi-bin/kf/customer/cancel_upgrade_service",
        ),
    ]
}

const NEW_KF: &str = "wkAJ2GCAAAZSfhHCt7IFSvLKtMPxyJTw";
const AVATAR: &str = "294DpAog3YA5b9rTK4PjjfRfYLO0L5qpDHAJIzhhQ2jAEWjb9i661Q4lk8oFnPtmj";

fn response_examples() -> Value {
    let text = include_str!("fixtures/response_examples.json");
    serde_json::from_str(text).expect("fixture is JSON")
}

/// Where each response example of the management pages is answered.
const RESPONSE_PATHS: &[(&str, &str)] = &[
    ("account_add", "/cgi-bin/kf/account/add"),
    ("account_del", "/cgi-bin/kf/account/del"),
    ("account_update", "/cgi-bin/kf/account/update"),
    ("account_list", "/cgi-bin/kf/account/list"),
    ("add_contact_way", "/cgi-bin/kf/add_contact_way"),
    ("servicer_add", "/cgi-bin/kf/servicer/add"),
    ("servicer_del", "/cgi-bin/kf/servicer/del"),
    ("servicer_list", "/cgi-bin/kf/servicer/list"),
    ("service_state_get", "/cgi-bin/kf/service_state/get"),
    ("service_state_trans", "/cgi-bin/kf/service_state/trans"),
    ("customer_batchget", "/cgi-bin/kf/customer/batchget"),
    (
        "get_corp_qualification",
        "/cgi-bin/kf/get_corp_qualification",
    ),
    (
        "get_upgrade_service_config",
        "/cgi-bin/kf/customer/get_upgrade_service_config",
    ),
    ("upgrade_service", "/cgi-bin/kf/customer/upgrade_service"),
    (
        "cancel_upgrade_service",
        "/cgi-bin/kf/customer/cancel_upgrade_service",
    ),
];

/// Makes `server` answer the next call to each §9 path with its response example.
fn script_response_examples(server: &MockServer) {
    let examples = response_examples();
    assert_eq!(
        examples.as_object().map(|o| o.len()),
        Some(RESPONSE_PATHS.len()),
        "every response example has a path"
    );
    for (name, path) in RESPONSE_PATHS {
        let example = examples
            .get(*name)
            .unwrap_or_else(|| panic!("no response fixture {name}"));
        server.script(path, [Reply::Json(example.clone())]);
    }
}

/// The management pages' examples: accounts, servicers, sessions, customers, the upgrade service.
/// Needs [`script_response_examples`]: several responses have required fields.
async fn send_management(client: &Client) {
    client
        .account_add("新建的客服帐号", AVATAR)
        .await
        .expect("account_add");
    client.account_del(NEW_KF).await.expect("account_del");
    client
        .account_update(NEW_KF)
        .name("售后客服")
        .media_id(AVATAR)
        .await
        .expect("account_update");
    client
        .account_list()
        .offset(0u32)
        .limit(100u32)
        .await
        .expect("account_list");
    client
        .add_contact_way("OPEN_KFID")
        .scene("12345")
        .await
        .expect("add_contact_way");
    client
        .servicer_add("kfxxxxxxxxxxxxxx")
        .userid_list(["zhangsan", "lisi"])
        .department_id_list([2u64, 4])
        .await
        .expect("servicer_add");
    client
        .servicer_del("kfxxxxxxxxxxxxxx")
        .userid_list(["zhangsan", "lisi"])
        .department_id_list([2u64, 4])
        .await
        .expect("servicer_del");
    client
        .servicer_list("kfxxxxxxxxxxxxxx")
        .await
        .expect("servicer_list");
    let (kf, user) = ("wkxxxxxxxxxxxxxxxxxx", "wmxxxxxxxxxxxxxxxxxx");
    client
        .service_state_get(kf, user)
        .await
        .expect("service_state_get");
    client
        .service_state_trans(kf, user, ServiceState::Servicer)
        .servicer_userid("zhangsan")
        .await
        .expect("service_state_trans");
    client
        .customer_batchget(["wmxxxxxxxxxxxxxxxxxxxxxx", "zhangsan"])
        .need_enter_session_context(0u32)
        .await
        .expect("customer_batchget");
    client
        .get_corp_qualification()
        .await
        .expect("get_corp_qualification");
    client
        .get_upgrade_service_config()
        .await
        .expect("get_upgrade_service_config");
    let kf = "kfxxxxxxxxxxxxxx";
    client
        .upgrade_service(kf, user, UpgradeType::Member)
        .member(UpgradeMember::new("zhangsan").wording("你好，我是你的专属服务专员zhangsan"))
        .await
        .expect("upgrade_service member");
    client
        .upgrade_service(kf, user, UpgradeType::GroupChat)
        .groupchat(UpgradeGroupChat::new("wraaaaaaaaaaaaaaaa").wording("欢迎加入你的专属服务群"))
        .await
        .expect("upgrade_service groupchat");
    client
        .cancel_upgrade_service(kf, user)
        .await
        .expect("cancel_upgrade_service");
}

#[tokio::test]
async fn every_request_matches_the_official_example() {
    let server = MockServer::start().await;
    script_response_examples(&server);
    let client = server.client();
    let expected = send_all(&client).await;
    let examples = examples();
    let sent: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path != "/cgi-bin/gettoken")
        .collect();
    assert_eq!(sent.len(), expected.len(), "one request per example");
    for (request, (name, method, path)) in sent.iter().zip(&expected) {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            (*method, *path),
            "{name}: method and path"
        );
        assert_eq!(
            request.query.get("access_token").map(String::as_str),
            Some("ACCESS_TOKEN_0_xyz"),
            "{name}: access_token query"
        );
        let example = examples
            .get(*name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        // A GET carries its fields in the query, beside the token, and has no body.
        let fields = if *method == "GET" {
            assert_eq!(request.body, Value::Null, "{name}: GET has no body");
            let query = request
                .query
                .iter()
                .filter(|(key, _)| *key != "access_token")
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect();
            Value::Object(query)
        } else {
            assert_eq!(
                request.query.len(),
                1,
                "{name}: only the token in the query"
            );
            without_generated_msgid(request, Some(example))
        };
        assert_eq!(
            normalize(fields),
            normalize(example.clone()),
            "{name}: request differs from the official example"
        );
    }
    // The fixture has no case this test doesn't send.
    assert_eq!(examples.as_object().map(|o| o.len()), Some(expected.len()));
}

#[tokio::test]
async fn every_management_response_example_is_read() {
    let server = MockServer::start().await;
    script_response_examples(&server);
    let client = server.client();

    let added = client
        .account_add("客服", AVATAR)
        .await
        .expect("account_add");
    assert_eq!(added.open_kfid, NEW_KF);
    client.account_del(NEW_KF).await.expect("account_del");
    client
        .account_update(NEW_KF)
        .name("x")
        .await
        .expect("account_update");
    let accounts = client.account_list().await.expect("account_list");
    assert_eq!(accounts.account_list.len(), 1);
    assert_eq!(accounts.account_list[0].name, "咨询客服");
    assert_eq!(
        accounts.account_list[0].open_kfid,
        "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q"
    );
    assert_eq!(accounts.account_list[0].manage_privilege, Some(false));
    let way = client
        .add_contact_way(NEW_KF)
        .await
        .expect("add_contact_way");
    assert!(way.url.ends_with("?enc_scene=ENCGFSDF567DF"), "{}", way.url);

    for (call, name) in [
        (
            client
                .servicer_add(NEW_KF)
                .userid_list(["zhangsan"])
                .send()
                .await,
            "add",
        ),
        (
            client
                .servicer_del(NEW_KF)
                .userid_list(["zhangsan"])
                .send()
                .await,
            "del",
        ),
    ] {
        let results = call.expect(name).result_list;
        assert_eq!(results.len(), 2, "{name}");
        assert_eq!(results[0].userid.as_deref(), Some("zhangsan"), "{name}");
        assert_eq!(
            (results[0].errcode, results[0].errmsg.as_str()),
            (0, "success")
        );
        assert_eq!(
            (results[1].userid.as_deref(), results[1].department_id),
            (None, Some(2))
        );
    }
    let servicers = client
        .servicer_list(NEW_KF)
        .await
        .expect("servicer_list")
        .servicer_list;
    assert_eq!(servicers[0].userid.as_deref(), Some("zhangsan"));
    assert_eq!(servicers[0].status, Some(ServicerListStatus::Receiving));
    assert_eq!(servicers[0].stop_type, Some(StopType::Stopped));
    assert_eq!(
        (servicers[1].department_id, servicers[1].status),
        (Some(2), None)
    );

    let state = client
        .service_state_get(NEW_KF, "wm1")
        .await
        .expect("service_state_get");
    assert_eq!(state.service_state, ServiceState::Servicer);
    assert_eq!(state.servicer_userid.as_deref(), Some("zhangsan"));
    let moved = client
        .service_state_trans(NEW_KF, "wm1", ServiceState::Ended)
        .await
        .expect("service_state_trans");
    assert_eq!(moved.msg_code.as_deref(), Some("MSG_CODE"));

    let customers = client
        .customer_batchget(["wmxxxxxxxxxxxxxxxxxxxxxx", "zhangsan"])
        .await
        .expect("customer_batchget");
    let customer = &customers.customer_list[0];
    assert_eq!(customer.nickname.as_deref(), Some("张三"));
    assert_eq!(customer.gender, Some(Gender::Male));
    assert_eq!(customer.unionid.as_deref(), Some("oxasdaosaosdasdasdasd"));
    let context = customer
        .enter_session_context
        .as_ref()
        .expect("enter_session_context");
    assert_eq!(
        (context.scene.as_deref(), context.scene_param.as_deref()),
        (Some("123"), Some("abc"))
    );
    assert_eq!(
        context
            .wechat_channels
            .as_ref()
            .and_then(|c| c.nickname.as_deref()),
        Some("进入会话的视频号名称")
    );
    assert_eq!(customers.invalid_external_userid, ["zhangsan"]);

    let qualification = client
        .get_corp_qualification()
        .await
        .expect("get_corp_qualification");
    assert!(qualification.wechat_channels_binding);
    let config = client
        .get_upgrade_service_config()
        .await
        .expect("get_upgrade_service_config");
    let members = config.member_range.expect("member_range");
    assert_eq!(members.userid_list, ["zhangsan", "lisi"]);
    assert_eq!(members.department_id_list, [2, 3]);
    assert_eq!(
        config
            .groupchat_range
            .expect("groupchat_range")
            .chat_id_list,
        ["wraaaaaaaaaaaaaaaa", "wrbbbbbbbbbbbbbbbb"]
    );
    client
        .upgrade_service(NEW_KF, "wm1", UpgradeType::Member)
        .member(UpgradeMember::new("zhangsan"))
        .await
        .expect("upgrade_service");
    client
        .cancel_upgrade_service(NEW_KF, "wm1")
        .await
        .expect("cancel_upgrade_service");
}

#[tokio::test]
async fn one_of_groups_are_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    let client = server.client();
    fn field_of<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
        match result {
            Err(Error::Invalid(invalid)) => {
                assert!(invalid.reason.contains("at least one of"), "{invalid}");
                invalid.field
            }
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }
    let no_servicer = client.servicer_add("wk1").send().await;
    assert_eq!(field_of(no_servicer), "userid_list");
    // An empty list is as good as none.
    let empty = client
        .servicer_del("wk1")
        .userid_list(Vec::<String>::new())
        .send()
        .await;
    assert_eq!(field_of(empty), "userid_list");
    let no_offer = client
        .upgrade_service("wk1", "wm1", UpgradeType::Member)
        .send()
        .await;
    assert_eq!(field_of(no_offer), "member");
    assert!(
        server.requests().is_empty(),
        "nothing was sent, not even gettoken"
    );
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

/// A send's body without the `msgid` the client set because the caller (and `example`)
/// gave none; every send carries one, so it is checked and removed, not ignored.
fn without_generated_msgid(request: &common::Recorded, example: Option<&Value>) -> Value {
    let mut body = request.body.clone();
    let sends = ["/cgi-bin/kf/send_msg", "/cgi-bin/kf/send_msg_on_event"];
    let given = example.is_some_and(|e| e.get("msgid").is_some());
    if sends.contains(&request.path.as_str()) && !given {
        let id = body
            .as_object_mut()
            .and_then(|fields| fields.remove("msgid"));
        let id = id.as_ref().and_then(Value::as_str).unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}: the client sets a msgid, got {id:?}",
            request.path
        );
    }
    body
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
        .iter()
        .filter(|r| r.path != "/cgi-bin/gettoken")
        .map(|r| without_generated_msgid(r, None))
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
    let request = &server.requests_to("/cgi-bin/kf/send_msg")[0];
    assert_eq!(
        without_generated_msgid(request, None),
        body,
        "as given, plus the retry id"
    );
    let with_id = serde_json::json!({"touser": "wm1", "open_kfid": "wk1", "msgid": 7, "msgtype": "text", "text": {"content": "hi"}});
    server
        .client()
        .send_msg_raw(with_id.clone())
        .await
        .expect("raw");
    assert_eq!(
        server.requests_to("/cgi-bin/kf/send_msg")[1].body,
        with_id,
        "a msgid the caller gave, even an odd one, is sent as given"
    );
}

#[test]
fn outgoing_messages_round_trip_through_serde() {
    let msg = wecom_kf::types::OutgoingMsg::from(menu_example("head"));
    let json = serde_json::to_value(&msg).expect("serialize");
    assert_eq!(json["msgtype"], "msgmenu");
    let back: wecom_kf::types::OutgoingMsg = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, msg);
    let unknown = serde_json::from_value::<wecom_kf::types::OutgoingMsg>(
        serde_json::json!({"msgtype": "news", "news": {}}),
    );
    assert!(
        unknown
            .unwrap_err()
            .to_string()
            .contains("unknown msgtype `news`")
    );
}
