//! Statistics, the knowledge base and recall on the wire: request bodies against the docs'
//! shapes and the other SDKs' samples of the peer corpus (`../shared/peer-corpus/`, read in
//! place, never copied), their answers read back without a counter lost, and the limits
//! (the statistics' window of days, the knowledge base's lengths) refused before sending.

mod common;

use common::{MockServer, Reply, normalize};
use serde_json::{Value, json};
use wecom_kf::{
    Error, Validate,
    types::{
        GetCorpStatisticRequest, GetServicerStatisticRequest, IntentAnswer, IntentAttachment,
        IntentImage, IntentLink, IntentMiniProgram, IntentQuestion, IntentSimilarQuestions,
        IntentVideo,
    },
};

/// The entries of a peer-corpus file whose `key` (`endpoint` or `path`) is `path`.
fn corpus(file: &str, key: &str, path: &str) -> Vec<Value> {
    let location = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/peer-corpus")
        .join(file);
    let text = std::fs::read_to_string(&location).unwrap_or_else(|e| {
        panic!(
            "{} (shared/ must sit beside the checkout): {e}",
            location.display()
        )
    });
    let entries: Vec<Value> = serde_json::from_str(&text).expect("the corpus is JSON");
    entries.into_iter().filter(|e| e[key] == path).collect()
}

fn bodies(endpoint: &str) -> Vec<Value> {
    let found: Vec<Value> = corpus("send_bodies.json", "endpoint", endpoint)
        .into_iter()
        .map(|e| e["body"].clone())
        .collect();
    assert!(!found.is_empty(), "the corpus has a {endpoint} body");
    found
}

fn answers(path: &str) -> Vec<Value> {
    let found: Vec<Value> = corpus("other_responses.json", "path", path)
        .into_iter()
        .map(|e| e["payload"].clone())
        .collect();
    assert!(!found.is_empty(), "the corpus has a {path} answer");
    found
}

/// The envelope's keys removed: what the typed response should hold.
fn without_envelope(mut answer: Value) -> Value {
    if let Some(fields) = answer.as_object_mut() {
        fields.remove("errcode");
        fields.remove("errmsg");
    }
    answer
}

const DAY: u64 = 86_400;
const CHINA: u64 = 8 * 3600;

/// 00:00 in UTC+08:00 of the day `days_ago` days before today there.
fn day_start(days_ago: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let today = (now + CHINA) / DAY * DAY - CHINA;
    today - days_ago * DAY
}

#[test]
fn statistics_bodies_have_the_peer_samples_shape() {
    for body in bodies("kf/get_corp_statistic") {
        let request = GetCorpStatisticRequest::new(
            body["open_kfid"].as_str().unwrap(),
            body["start_time"].as_u64().unwrap(),
            body["end_time"].as_u64().unwrap(),
        );
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
        // The samples' days (February 2022) are long past the 180 days WeCom keeps.
        let refused = request.validate().unwrap_err();
        assert_eq!(refused.field, "start_time");
        assert!(refused.reason.contains("days ago"), "{}", refused.reason);
    }
    for body in bodies("kf/get_servicer_statistic") {
        let request = GetServicerStatisticRequest::new(
            body["open_kfid"].as_str().unwrap(),
            body["start_time"].as_u64().unwrap(),
            body["end_time"].as_u64().unwrap(),
        )
        .servicer_userid(body["servicer_userid"].as_str().unwrap());
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
    }
}

#[tokio::test]
async fn statistics_answers_are_read_without_losing_a_counter() {
    let server = MockServer::start().await;
    let client = server.client();
    let (start, end) = (day_start(8), day_start(1));
    for answer in answers("kf/get_corp_statistic") {
        server.script(
            "/cgi-bin/kf/get_corp_statistic",
            [Reply::Json(answer.clone())],
        );
        let days = client
            .get_corp_statistic("wkKFID", start, end)
            .await
            .expect("get_corp_statistic");
        assert!(!days.statistic_list.is_empty());
        assert_eq!(
            normalize(serde_json::to_value(&days).unwrap()),
            normalize(without_envelope(answer)),
            "every counter has a field"
        );
    }
    for answer in answers("kf/get_servicer_statistic") {
        server.script(
            "/cgi-bin/kf/get_servicer_statistic",
            [Reply::Json(answer.clone())],
        );
        let days = client
            .get_servicer_statistic("wkKFID", start, end)
            .servicer_userid("zhangsan")
            .await
            .expect("get_servicer_statistic");
        let first = days.statistic_list[0].statistic.as_ref().expect("counters");
        assert_eq!(first.first_reply_average_sec, Some(17.0));
        assert_eq!(
            normalize(serde_json::to_value(&days).unwrap()),
            normalize(without_envelope(answer)),
            "every counter has a field"
        );
    }
    let corp = &server.requests_to("/cgi-bin/kf/get_corp_statistic")[0];
    assert_eq!(
        corp.body,
        json!({"open_kfid": "wkKFID", "start_time": start, "end_time": end})
    );
    let servicer = &server.requests_to("/cgi-bin/kf/get_servicer_statistic")[0];
    assert_eq!(
        servicer.body,
        json!({"open_kfid": "wkKFID", "servicer_userid": "zhangsan", "start_time": start, "end_time": end})
    );
}

#[tokio::test]
async fn a_window_wecom_would_not_answer_is_refused_before_sending() {
    let server = MockServer::start().await;
    let client = server.client();
    let (field, reason) = refused(
        client
            .get_corp_statistic("wk1", day_start(200), day_start(190))
            .await,
    );
    assert_eq!(field, "start_time");
    assert!(reason.contains("200 days ago in UTC+08:00"), "{reason}");
    let (field, reason) = refused(
        client
            .get_corp_statistic("wk1", day_start(2), day_start(0) + 2 * DAY)
            .await,
    );
    assert_eq!(field, "end_time");
    assert!(reason.contains("days ahead"), "{reason}");
    // Midnight in UTC is 08:00 in China: not the start of a day there.
    let (field, reason) = refused(
        client
            .get_corp_statistic("wk1", day_start(3) + CHINA, day_start(1))
            .await,
    );
    assert_eq!(field, "start_time");
    assert!(reason.contains("08:00:00 in UTC+08:00"), "{reason}");
    let (field, reason) = refused(
        client
            .get_servicer_statistic("wk1", day_start(2), day_start(3))
            .await,
    );
    assert_eq!(field, "end_time");
    assert!(reason.contains("before `start_time`"), "{reason}");
    let (field, reason) = refused(
        client
            .get_servicer_statistic("wk1", day_start(40), day_start(8))
            .await,
    );
    assert_eq!(field, "end_time");
    assert_eq!(
        reason,
        "is 2764800 after `start_time`; at most 2678400 allowed"
    );
    assert!(
        server.requests().is_empty(),
        "nothing was sent, not even gettoken"
    );

    // 31 days apart is the widest window.
    server.script(
        "/cgi-bin/kf/get_servicer_statistic",
        [Reply::Json(
            json!({"errcode": 0, "errmsg": "ok", "statistic_list": []}),
        )],
    );
    client
        .get_servicer_statistic("wk1", day_start(32), day_start(1))
        .await
        .expect("31 days apart");
}

/// The field and reason of an error that must be `Invalid`.
fn refused<T: std::fmt::Debug>(result: Result<T, Error>) -> (String, String) {
    match result {
        Err(Error::Invalid(invalid)) => (invalid.field, invalid.reason),
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn attachments() -> Vec<IntentAttachment> {
    vec![
        IntentImage::new().media_id("MEDIA_ID").into(),
        IntentVideo::new().media_id("MEDIA_ID").into(),
        IntentLink::new("消息标题", "https://example.link.com/path")
            .pic_url("https://example.pic.com/path")
            .desc("消息描述")
            .into(),
        IntentMiniProgram::new("wx8bd80126147dfAAA", "/path/index.html")
            .title("欢迎报名夏令营")
            .thumb_media_id("THUMB_MEDIA_ID")
            .into(),
    ]
}

fn similar() -> IntentSimilarQuestions {
    IntentSimilarQuestions::new().items([
        IntentQuestion::new("相似问题1"),
        IntentQuestion::new("相似问题2"),
    ])
}

/// The body sent to `path`, the `n`th time.
fn sent(server: &MockServer, path: &str, n: usize) -> Value {
    server.requests_to(&format!("/cgi-bin/{path}"))[n]
        .body
        .clone()
}

#[tokio::test]
async fn knowledge_requests_match_the_peer_samples() {
    let server = MockServer::start().await;
    for (path, reply) in [
        (
            "add_group",
            json!({"errcode": 0, "errmsg": "ok", "group_id": "GROUP_ID"}),
        ),
        (
            "add_intent",
            json!({"errcode": 0, "errmsg": "ok", "intent_id": "INTENT_ID"}),
        ),
    ] {
        let path = format!("/cgi-bin/kf/knowledge/{path}");
        server.script(&path, (0..2).map(|_| Reply::Json(reply.clone())));
    }
    let client = server.client();
    client
        .knowledge_add_group("分组名")
        .await
        .expect("add_group");
    client
        .knowledge_del_group("GROUP_ID")
        .await
        .expect("del_group");
    client
        .knowledge_mod_group("GROUP_ID", "分组名")
        .await
        .expect("mod_group");
    client
        .knowledge_list_group()
        .cursor("CURSOR")
        .limit(100u32)
        .group_id("GROUP_ID")
        .await
        .expect("list_group");
    let answer = IntentAnswer::new("问题的回复").attachments(attachments());
    client
        .knowledge_add_intent("GROUP_ID", IntentQuestion::new("主问题"), [answer.clone()])
        .similar_questions(similar())
        .await
        .expect("add_intent");
    client
        .knowledge_add_intent(
            "GROUP_ID",
            IntentQuestion::new("主问题"),
            [
                IntentAnswer::new("问题的回复").attachments([IntentAttachment::from(
                    IntentImage::new().media_id("MEDIA_ID"),
                )]),
            ],
        )
        .similar_questions(similar())
        .await
        .expect("add_intent, one attachment");
    client
        .knowledge_del_intent("INTENT_ID")
        .await
        .expect("del_intent");
    client
        .knowledge_mod_intent("INTENT_ID")
        .question(IntentQuestion::new("主问题"))
        .similar_questions(similar())
        .answers([answer])
        .await
        .expect("mod_intent");
    client
        .knowledge_list_intent()
        .cursor("CURSOR")
        .limit(100u32)
        .group_id("GROUP_ID")
        .intent_id("INTENT_ID")
        .await
        .expect("list_intent");

    let mut compared = 0;
    for (endpoint, sent_at) in [
        ("kf/knowledge/add_group", vec![0]),
        ("kf/knowledge/del_group", vec![0]),
        ("kf/knowledge/mod_group", vec![0]),
        ("kf/knowledge/list_group", vec![0]),
        ("kf/knowledge/add_intent", vec![0, 1]),
        ("kf/knowledge/del_intent", vec![0]),
        ("kf/knowledge/mod_intent", vec![0]),
        ("kf/knowledge/list_intent", vec![0]),
    ] {
        let ours: Vec<Value> = sent_at
            .iter()
            .map(|n| sent(&server, endpoint, *n))
            .collect();
        for body in bodies(endpoint) {
            assert!(
                ours.contains(&body),
                "{endpoint}: the sample {body} is none of what was sent: {ours:#?}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared} samples compared");
}

#[tokio::test]
async fn knowledge_answers_are_read_whole() {
    let server = MockServer::start().await;
    let client = server.client();
    for answer in answers("kf/knowledge/add_group") {
        server.script("/cgi-bin/kf/knowledge/add_group", [Reply::Json(answer)]);
        let added = client
            .knowledge_add_group("分组名")
            .await
            .expect("add_group");
        assert_eq!(added.group_id, "GROUP_ID");
    }
    for answer in answers("kf/knowledge/add_intent") {
        server.script("/cgi-bin/kf/knowledge/add_intent", [Reply::Json(answer)]);
        let added = client
            .knowledge_add_intent("G", IntentQuestion::new("q"), [IntentAnswer::new("a")])
            .await
            .expect("add_intent");
        assert_eq!(added.intent_id, "INTENT_ID");
    }
    for answer in answers("kf/knowledge/list_group") {
        server.script(
            "/cgi-bin/kf/knowledge/list_group",
            [Reply::Json(answer.clone())],
        );
        let page = client.knowledge_list_group().await.expect("list_group");
        assert_eq!(page.has_more, Some(1));
        assert_eq!(page.group_list[0].is_default, Some(1));
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            without_envelope(answer)
        );
    }
    for answer in answers("kf/knowledge/list_intent") {
        server.script(
            "/cgi-bin/kf/knowledge/list_intent",
            [Reply::Json(answer.clone())],
        );
        let page = client.knowledge_list_intent().await.expect("list_intent");
        let intent = &page.intent_list[0];
        let attached = &intent.answers[0].attachments;
        assert!(
            matches!(&attached[0], IntentAttachment::Image(image) if image.name.as_deref() == Some("图片（仅返回名字）.jpg")),
            "{attached:?}"
        );
        assert!(
            matches!(&attached[3], IntentAttachment::MiniProgram(m) if m.thumb_media_id.is_none())
        );
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            without_envelope(answer),
            "nothing of the intent is dropped"
        );
    }
}

#[tokio::test]
async fn knowledge_limits_are_refused_before_sending() {
    let server = MockServer::start().await;
    let client = server.client();
    assert_eq!(
        refused(client.knowledge_add_group("一".repeat(13)).await).0,
        "name"
    );
    server.script(
        "/cgi-bin/kf/knowledge/add_group",
        [Reply::Json(
            json!({"errcode": 0, "errmsg": "ok", "group_id": "G"}),
        )],
    );
    client
        .knowledge_add_group("一".repeat(12))
        .await
        .expect("12 characters are allowed");
    let no_answer = client
        .knowledge_add_intent("G", IntentQuestion::new("q"), Vec::<IntentAnswer>::new())
        .await;
    assert_eq!(refused(no_answer).0, "answers");
    let two = client
        .knowledge_add_intent(
            "G",
            IntentQuestion::new("q"),
            [IntentAnswer::new("a"), IntentAnswer::new("b")],
        )
        .await;
    assert_eq!(refused(two).0, "answers");
    let long = client
        .knowledge_add_intent(
            "G",
            IntentQuestion::new("问".repeat(201)),
            [IntentAnswer::new("a")],
        )
        .await;
    assert_eq!(refused(long).0, "question.text.content");
    let crowded = IntentAnswer::new("a").attachments([attachments(), attachments()].concat());
    let crowded = client.knowledge_mod_intent("I").answers([crowded]).await;
    assert_eq!(refused(crowded).0, "answers[0].attachments");
    let bad_link = IntentAnswer::new("a").attachments([IntentAttachment::from(IntentLink::new(
        "t",
        "ftp://example.com",
    ))]);
    let bad_link = client.knowledge_mod_intent("I").answers([bad_link]).await;
    assert_eq!(refused(bad_link).0, "answers[0].attachments[0].link.url");
    assert_eq!(
        server.requests_to("/cgi-bin/kf/knowledge/add_intent").len()
            + server.requests_to("/cgi-bin/kf/knowledge/mod_intent").len(),
        0,
        "nothing was sent"
    );
}

#[tokio::test]
async fn recall_sends_the_account_and_the_msgid() {
    let server = MockServer::start().await;
    let client = server.client();
    client
        .recall_msg("wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q", "MSG_ID")
        .await
        .expect("recall_msg");
    let sent = server.requests_to("/cgi-bin/kf/recall_msg");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body,
        json!({"open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q", "msgid": "MSG_ID"})
    );
    assert_eq!(
        sent[0].query.get("access_token").map(String::as_str),
        Some("ACCESS_TOKEN_0_xyz")
    );

    server.script(
        "/cgi-bin/kf/recall_msg",
        [Reply::Json(
            json!({"errcode": 95000, "errmsg": "invalid open_kfid"}),
        )],
    );
    let err = client.recall_msg("wk-gone", "MSG_ID").await.unwrap_err();
    assert_eq!(err.code(), Some(wecom_kf::ErrCode::InvalidOpenKfId));
    let err = client
        .recall_msg("k".repeat(65), "MSG_ID")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(invalid) if invalid.field == "open_kfid"),
        "{err}"
    );
    assert_eq!(server.requests_to("/cgi-bin/kf/recall_msg").len(), 2);
}
