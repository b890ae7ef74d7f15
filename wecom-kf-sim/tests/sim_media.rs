//! The simulator's media: customers sending images, voice, video and files, and
//! `media/get` serving them and uploads (headers, ranges, the 20 MB rule, expiry, faults),
//! over raw HTTP as a client without a download method would see it.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use wecom_kf::{
    Client, ErrCode, Upload,
    types::{Received, VoiceFormat},
};
use wecom_kf_sim::{Fault, MediaKind, Simulator, samples};

const ALICE: &str = "wmALICE";

async fn setup() -> (Simulator, Client) {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client_builder().build().expect("client");
    (sim, client)
}

/// One `media/get` exchange as it arrived.
struct Download {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Bytes,
}

impl Download {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "errors come on HTTP 200");
        assert!(
            self.header("content-type").starts_with("application/json"),
            "{}",
            self.header("content-type")
        );
        serde_json::from_slice(&self.body).expect("a JSON error")
    }
}

async fn access_token(client: &Client) -> String {
    client
        .access_token()
        .await
        .expect("token")
        .expose()
        .to_owned()
}

/// `GET media/get` with `token` and `media_id` (each left out when `None`) and a `Range`.
async fn get_media(
    sim: &Simulator,
    token: Option<&str>,
    media_id: Option<&str>,
    range: Option<&str>,
) -> reqwest::Result<Download> {
    let mut url = format!("http://{}/cgi-bin/media/get?", sim.addr());
    if let Some(token) = token {
        url.push_str(&format!("access_token={token}&"));
    }
    if let Some(media_id) = media_id {
        url.push_str(&format!("media_id={media_id}"));
    }
    let mut request = reqwest::Client::new().get(url);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Download {
        status,
        headers,
        body,
    })
}

async fn download(sim: &Simulator, client: &Client, media_id: &str) -> Download {
    let token = access_token(client).await;
    get_media(sim, Some(&token), Some(media_id), None)
        .await
        .expect("download")
}

/// `sync_msg` by hand, so the items are seen as WeCom's JSON.
async fn raw_sync(sim: &Simulator, client: &Client, extra: Value) -> Value {
    let token = access_token(client).await;
    let url = format!(
        "http://{}/cgi-bin/kf/sync_msg?access_token={token}",
        sim.addr()
    );
    let mut body = json!({"open_kfid": sim.open_kfid()});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let response = reqwest::Client::new()
        .post(url)
        .body(serde_json::to_vec(&body).expect("encode"))
        .send()
        .await
        .expect("sync_msg");
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

async fn control(sim: &Simulator, route: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/sim/{route}", sim.addr()))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("encode"))
        .send()
        .await
        .expect("control API");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn customers_send_every_kind_of_media_logged_as_kf_api_shows() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let mut sent = Vec::new();
    for kind in [
        MediaKind::Image,
        MediaKind::Voice,
        MediaKind::Video,
        MediaKind::File,
    ] {
        let (name, bytes) = samples::sample(kind);
        let media = sim
            .customer_sends_media(&kf, ALICE, kind, bytes.clone(), Some(name))
            .expect("customer sends");
        let media_id = media.media_id.clone().expect("small enough to deliver");
        assert_eq!(media.silk_media_id.is_some(), kind == MediaKind::Voice);
        sent.push((kind, name, bytes, media));
        // The bytes are kept as sent.
        assert_eq!(
            sim.media_bytes(&media_id).as_ref(),
            Some(&sent.last().unwrap().2)
        );
    }

    let page = raw_sync(&sim, &client, json!({})).await;
    let items = page["msg_list"].as_array().expect("msg_list");
    assert_eq!(items.len(), 4, "{page}");
    for (item, (kind, _, _, media)) in items.iter().zip(&sent) {
        let msgtype = kind.as_str();
        assert_eq!(
            item,
            &json!({
                "msgid": media.msgid, "open_kfid": kf, "external_userid": ALICE,
                "send_time": item["send_time"], "origin": 3, "msgtype": msgtype,
                msgtype: {"media_id": media.media_id},
            }),
            "exactly the §3.2 shape"
        );
        assert!(
            item["send_time"]
                .as_u64()
                .is_some_and(|t| t > 1_600_000_000)
        );
    }
    // The typed client reads them as media messages.
    let typed = client.sync_msg(&kf).await.expect("typed page");
    let ids: Vec<String> = typed
        .msg_list
        .into_iter()
        .map(|m| match m.content {
            Received::Image(m) => m.media_id,
            Received::Voice(m) => m.media_id,
            Received::Video(m) => m.media_id,
            Received::File(m) => m.media_id,
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = sent
        .iter()
        .map(|(_, _, _, m)| m.media_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(ids, expected);

    // Each downloads with its type and name.
    let types = ["image/png", "audio/amr", "video/mp4", "text/plain"];
    for ((_, name, bytes, media), content_type) in sent.iter().zip(types) {
        let got = download(&sim, &client, media.media_id.as_deref().unwrap_or("")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, bytes);
        assert_eq!(got.header("content-type"), content_type);
        assert_eq!(got.header("content-length"), bytes.len().to_string());
        assert_eq!(
            got.header("content-disposition"),
            format!("attachment; filename=\"{name}\"")
        );
    }
}

#[tokio::test]
async fn a_media_message_opens_the_window_like_a_text() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let refused = client.send_text(ALICE, &kf, "hello?").await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(ErrCode::InvalidExternalUserId),
        "no session before the customer writes"
    );
    let (_, png) = samples::sample(MediaKind::Image);
    sim.customer_sends_image(&kf, ALICE, png, None)
        .expect("an image");
    for n in 0..5 {
        client
            .send_text(ALICE, &kf, format!("reply {n}"))
            .await
            .expect("within the five");
    }
    let sixth = client.send_text(ALICE, &kf, "sixth").await;
    assert_eq!(
        sixth.err().and_then(|e| e.code()),
        Some(ErrCode::SendCountLimit)
    );
    let (_, amr) = samples::sample(MediaKind::Voice);
    sim.customer_sends_voice(&kf, ALICE, amr, None)
        .expect("voice");
    client
        .send_text(ALICE, &kf, "a new window")
        .await
        .expect("the voice message reset the count");
    sim.advance(Duration::from_secs(48 * 3600 + 1));
    let late = client.send_text(ALICE, &kf, "late").await;
    assert_eq!(
        late.err().and_then(|e| e.code()),
        Some(ErrCode::SendTimeLimit)
    );
}

#[tokio::test]
async fn voice_comes_as_amr_or_as_silk_when_sync_msg_asks() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let (_, amr) = samples::sample(MediaKind::Voice);
    let voice = sim
        .customer_sends_voice(&kf, ALICE, amr.clone(), Some("hello.amr"))
        .expect("voice");
    let (amr_id, silk_id) = (
        voice.media_id.expect("amr id"),
        voice.silk_media_id.expect("silk id"),
    );
    assert_ne!(amr_id, silk_id);

    let voice_id = |page: &Value| page["msg_list"][0]["voice"]["media_id"].clone();
    for (format, expected) in [
        (json!({}), &amr_id),
        (json!({"voice_format": 0}), &amr_id),
        (json!({"voice_format": 1}), &silk_id),
    ] {
        let page = raw_sync(&sim, &client, format.clone()).await;
        assert_eq!(voice_id(&page), json!(expected), "{format}");
    }
    let typed = client
        .sync_msg(&kf)
        .voice_format(VoiceFormat::Silk)
        .await
        .expect("typed");
    assert!(matches!(&typed.msg_list[0].content, Received::Voice(v) if v.media_id == silk_id));

    let as_amr = download(&sim, &client, &amr_id).await;
    assert_eq!(as_amr.body, amr);
    assert!(as_amr.body.starts_with(b"#!AMR\n"));
    assert_eq!(as_amr.header("content-type"), "audio/amr");
    let as_silk = download(&sim, &client, &silk_id).await;
    assert!(
        as_silk.body.starts_with(b"\x02#!SILK_V3"),
        "{:?}",
        &as_silk.body[..10.min(as_silk.body.len())]
    );
    assert_eq!(as_silk.header("content-type"), "audio/silk");
    assert_eq!(
        as_silk.header("content-disposition"),
        "attachment; filename=\"hello.silk\""
    );

    // A customer's voice is AMR; anything else is a mistake in the test.
    let wav = sim.customer_sends_voice(&kf, ALICE, b"RIFF....WAVEfmt ".to_vec(), None);
    assert_eq!(wav.map_err(|r| r.code), Err(40058));
}

#[tokio::test]
async fn media_over_what_a_message_delivers_arrives_as_a_text_hint() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    let big = samples::generated(MediaKind::Image, (2 << 20) + 1);
    let sent = sim
        .customer_sends_image(&kf, ALICE, big, None)
        .expect("sent");
    assert_eq!((sent.media_id, sent.silk_media_id), (None, None));
    let fits = samples::generated(MediaKind::Image, 2 << 20);
    let kept = sim
        .customer_sends_image(&kf, ALICE, fits, None)
        .expect("sent");
    let page = raw_sync(&sim, &client, json!({})).await;
    assert_eq!(page["msg_list"][0]["msgtype"], "text", "{page}");
    assert!(
        page["msg_list"][0]["text"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("2MB")),
        "{page}"
    );
    assert_eq!(
        page["msg_list"][1]["image"]["media_id"],
        json!(kept.media_id)
    );
}

#[tokio::test]
async fn uploads_download_with_their_name_type_and_length() {
    let (sim, client) = setup().await;
    let pdf = b"%PDF-1.4 a report".to_vec();
    let uploaded = client
        .upload_file(Upload::from_bytes("报告 2024.pdf", pdf.clone()))
        .await
        .expect("upload");
    let got = download(&sim, &client, &uploaded.media_id).await;
    assert_eq!((got.status, &got.body[..]), (200, &pdf[..]));
    assert_eq!(got.header("content-type"), "application/pdf");
    assert_eq!(got.header("content-length"), pdf.len().to_string());
    assert_eq!(got.header("accept-ranges"), "bytes");
    assert_eq!(
        got.header("content-disposition"),
        "attachment; filename=\"__ 2024.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%202024.pdf"
    );
    let png = samples::sample(MediaKind::Image).1;
    let image = client
        .upload_image(Upload::from_bytes("logo", png.to_vec()))
        .await
        .expect("upload");
    let got = download(&sim, &client, &image.media_id).await;
    assert_eq!(
        got.header("content-type"),
        "image/png",
        "no extension: the bytes tell"
    );
    assert_eq!(got.body, png);
}

#[tokio::test]
async fn ranges_are_answered_206_and_a_start_past_the_end_416() {
    let (sim, client) = setup().await;
    let bytes = samples::generated(MediaKind::File, 1000);
    let media_id = sim
        .add_media(MediaKind::File, bytes.clone(), Some("data.bin"))
        .expect("stored");
    let token = access_token(&client).await;
    let ranged = |range: &'static str| get_media(&sim, Some(&token), Some(&media_id), Some(range));
    for (range, start, end) in [
        ("bytes=0-99", 0, 100),
        ("bytes=100-199", 100, 200),
        ("bytes=900-", 900, 1000),
        ("bytes=-10", 990, 1000),
        ("bytes=995-5000", 995, 1000),
        ("bytes=999-999", 999, 1000),
        ("bytes=-5000", 0, 1000),
    ] {
        let got = ranged(range).await.expect("download");
        assert_eq!(got.status, 206, "{range}");
        assert_eq!(got.body, bytes.slice(start..end), "{range}");
        assert_eq!(
            got.header("content-range"),
            format!("bytes {start}-{}/1000", end - 1),
            "{range}"
        );
        assert_eq!(got.header("content-length"), (end - start).to_string());
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let got = ranged(range).await.expect("download");
        assert_eq!(got.status, 416, "{range}");
        assert_eq!(got.header("content-range"), "bytes */1000", "{range}");
    }
    // Not one range: ignored, the whole file.
    for range in ["bytes=5-2", "bytes=0-1,5-6", "items=0-1", "bytes=x-y"] {
        let got = ranged(range).await.expect("download");
        assert_eq!((got.status, got.body.len()), (200, 1000), "{range}");
    }
}

#[tokio::test]
async fn files_over_20_mb_come_in_ranges_of_at_most_20_mb() {
    let (sim, client) = setup().await;
    const MB: usize = 1 << 20;
    let big = samples::generated(MediaKind::Video, 45 * MB);
    let media_id = sim
        .add_media(MediaKind::Video, big.clone(), Some("long.mp4"))
        .expect("stored");
    let token = access_token(&client).await;
    let whole = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("answer");
    assert_eq!(whole.json()["errcode"], 830002);
    let too_wide = format!("bytes=0-{}", 20 * MB);
    let refused = get_media(&sim, Some(&token), Some(&media_id), Some(&too_wide))
        .await
        .expect("answer");
    assert_eq!(refused.json()["errcode"], 830002, "20 MB and one byte");
    let open_ended = get_media(&sim, Some(&token), Some(&media_id), Some("bytes=0-"))
        .await
        .expect("answer");
    assert_eq!(open_ended.json()["errcode"], 830002, "the rest is 45 MB");

    let mut assembled = Vec::with_capacity(big.len());
    let mut offset = 0;
    while offset < big.len() {
        let range = format!("bytes={offset}-{}", offset + 20 * MB - 1);
        let chunk = get_media(&sim, Some(&token), Some(&media_id), Some(&range))
            .await
            .expect("chunk");
        assert_eq!(chunk.status, 206, "{range}");
        assert_eq!(chunk.header("content-type"), "video/mp4");
        offset += chunk.body.len();
        assembled.extend_from_slice(&chunk.body);
    }
    assert_eq!(assembled.len(), 45 * MB);
    assert!(assembled == big, "three ranges make the file");
    // A file of exactly 20 MB comes whole.
    let limit = samples::generated(MediaKind::File, 20 * MB);
    let id = sim.add_media(MediaKind::File, limit, None).expect("stored");
    let got = get_media(&sim, Some(&token), Some(&id), None)
        .await
        .expect("answer");
    assert_eq!((got.status, got.body.len()), (200, 20 * MB));
}

#[tokio::test]
async fn unknown_expired_and_unauthorized_downloads_are_json_errors() {
    let (sim, client) = setup().await;
    let token = access_token(&client).await;
    let (_, png) = samples::sample(MediaKind::Image);
    let media_id = sim.add_media(MediaKind::Image, png, None).expect("stored");
    let cases = [
        (Some(token.as_str()), Some("SIMMEDIA_NOPE"), 40007),
        (Some(token.as_str()), None, 41006),
        (None, Some(media_id.as_str()), 41001),
        (Some("bad-token"), Some(media_id.as_str()), 40014),
    ];
    for (token, id, code) in cases {
        let got = get_media(&sim, token, id, None).await.expect("answer");
        let answer = got.json();
        assert_eq!(answer["errcode"], code, "{answer}");
    }
    let unknown = get_media(&sim, Some(&token), Some("SIMMEDIA_NOPE"), None)
        .await
        .expect("answer");
    assert_eq!(
        unknown.json(),
        json!({"errcode": 40007, "errmsg": "invalid media_id"})
    );

    sim.advance(Duration::from_secs(3 * 24 * 3600 - 60));
    // The client's token expired in the simulator's clock, not the client's: a new client.
    let token = access_token(&sim.client_builder().build().expect("client")).await;
    let fresh = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("answer");
    assert_eq!(fresh.status, 200, "still within 3 days");
    assert!(fresh.header("content-type").starts_with("image/"));
    sim.advance(Duration::from_secs(61));
    let expired = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("answer");
    assert_eq!(expired.json()["errcode"], 40007, "3 days later");
}

/// Reads a download until it ends or fails; the bytes received and whether it failed.
async fn read_until_cut(response: reqwest::Response) -> (Vec<u8>, bool) {
    let mut response = response;
    let mut received = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => return (received, false),
            Err(_) => return (received, true),
        }
    }
}

#[tokio::test]
async fn faults_apply_to_media_get_and_a_cut_download_resumes_from_its_offset() {
    let (sim, client) = setup().await;
    let bytes = samples::generated(MediaKind::File, 300_000);
    let media_id = sim
        .add_media(MediaKind::File, bytes.clone(), Some("big.bin"))
        .expect("stored");
    let token = access_token(&client).await;

    sim.inject("media/get", Fault::Busy, 1);
    let busy = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("answer");
    assert_eq!(busy.json()["errcode"], -1);
    sim.inject("media/get", Fault::Status(503), 1);
    let unavailable = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("answer");
    assert_eq!(unavailable.status, 503);
    sim.inject("media/get", Fault::Hangup, 1);
    assert!(
        get_media(&sim, Some(&token), Some(&media_id), None)
            .await
            .is_err(),
        "dropped before the body"
    );

    // Cut after 100,000 bytes: the headers promise the whole file, the body stops short.
    sim.inject("media/get", Fault::HangupAfter(100_000), 1);
    let url = format!(
        "http://{}/cgi-bin/media/get?access_token={token}&media_id={media_id}",
        sim.addr()
    );
    let http = reqwest::Client::new();
    let response = http.get(&url).send().await.expect("headers arrive");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(300_000));
    let (first, failed) = read_until_cut(response).await;
    assert!(failed, "the connection dropped");
    assert_eq!(first.len(), 100_000);
    assert!(first[..] == bytes[..100_000]);
    // Resume where it stopped.
    let rest = http
        .get(&url)
        .header("range", format!("bytes={}-", first.len()))
        .send()
        .await
        .expect("resumed");
    assert_eq!(rest.status(), 206);
    let (rest, failed) = read_until_cut(rest).await;
    assert!(!failed);
    assert!([first, rest].concat() == bytes[..]);

    // A cut inside a ranged answer works the same.
    sim.inject("media/get", Fault::HangupAfter(10), 1);
    let ranged = http
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .expect("headers");
    assert_eq!(ranged.status(), 206);
    let (part, failed) = read_until_cut(ranged).await;
    assert_eq!((part.len(), failed), (10, true));
    assert!(part[..] == bytes[1000..1010]);
    // The fault was used up.
    let whole = get_media(&sim, Some(&token), Some(&media_id), None)
        .await
        .expect("whole");
    assert_eq!(whole.body.len(), 300_000);
}

#[tokio::test]
async fn the_control_api_sends_customer_media_and_stores_files() {
    let (sim, client) = setup().await;
    let kf = sim.open_kfid().to_owned();
    // The built-in sample.
    let (status, sample) = control(
        &sim,
        "customer/media",
        json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "image"}),
    )
    .await;
    assert_eq!(status, 200, "{sample}");
    let got = download(&sim, &client, sample["media_id"].as_str().unwrap_or("")).await;
    assert_eq!(got.body, samples::sample(MediaKind::Image).1);
    assert_eq!(sample["silk_media_id"], Value::Null);
    // Bytes given as base64, with a name.
    let (status, given) = control(
        &sim,
        "customer/media",
        json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "file",
               "filename": "note.txt", "content_base64": "aGVsbG8gd29ybGQ="}),
    )
    .await;
    assert_eq!(status, 200, "{given}");
    let got = download(&sim, &client, given["media_id"].as_str().unwrap_or("")).await;
    assert_eq!(&got.body[..], b"hello world");
    assert_eq!(got.header("content-type"), "text/plain");
    // Generated to a size: voice gets its SILK id too.
    let (status, voice) = control(
        &sim,
        "customer/media",
        json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "voice", "size": 4000}),
    )
    .await;
    assert_eq!(status, 200, "{voice}");
    assert!(voice["silk_media_id"].is_string(), "{voice}");
    let got = download(&sim, &client, voice["media_id"].as_str().unwrap_or("")).await;
    assert_eq!(got.body.len(), 4000);
    assert!(got.body.starts_with(b"#!AMR\n"));
    assert_eq!(
        got.body,
        samples::generated(MediaKind::Voice, 4000),
        "the documented generator"
    );
    // Too large for a message: a text hint, no media id.
    let (status, hint) = control(
        &sim,
        "customer/media",
        json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "video", "size": (10 << 20) + 1}),
    )
    .await;
    assert_eq!((status, &hint["media_id"]), (200, &Value::Null), "{hint}");

    // Media without a message.
    let (status, stored) =
        control(&sim, "media", json!({"type": "file", "size": 25_000_000})).await;
    assert_eq!(
        (status, &stored["len"]),
        (200, &json!(25_000_000)),
        "{stored}"
    );
    let token = access_token(&client).await;
    let tail = get_media(
        &sim,
        Some(&token),
        stored["media_id"].as_str(),
        Some("bytes=24999990-"),
    )
    .await
    .expect("tail");
    assert_eq!((tail.status, tail.body.len()), (206, 10));

    let refusals = [
        (
            "customer/media",
            json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "sticker"}),
            40058,
        ),
        (
            "customer/media",
            json!({"open_kfid": "wkNOPE", "external_userid": ALICE, "msgtype": "image"}),
            95004,
        ),
        (
            "customer/media",
            json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "file", "size": 10, "content_base64": "AA=="}),
            40058,
        ),
        (
            "customer/media",
            json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "file", "content_base64": "not base64!"}),
            40058,
        ),
        (
            "customer/media",
            json!({"open_kfid": kf, "external_userid": ALICE, "msgtype": "voice", "content_base64": "aGVsbG8="}),
            40058,
        ),
        ("media", json!({"type": "file", "size": 0}), 40058),
        ("media", json!({"type": "file", "size": u64::MAX}), 40058),
        (
            "media",
            json!({"type": "file", "size": (256u64 << 20) + 1}),
            40058,
        ),
        (
            "media",
            json!({"type": "file", "content_base64": ""}),
            44001,
        ),
        ("media", json!({"type": "gif"}), 40058),
    ];
    for (route, body, code) in refusals {
        let (status, refusal) = control(&sim, route, body.clone()).await;
        assert_eq!(
            (status, refusal["errcode"].as_i64()),
            (400, Some(code)),
            "{body}: {refusal}"
        );
    }
    // The refused messages logged nothing.
    let page = raw_sync(&sim, &client, json!({})).await;
    assert_eq!(page["msg_list"].as_array().map(Vec::len), Some(4), "{page}");

    // The hangup_after_bytes fault over HTTP.
    let (status, _) = control(
        &sim,
        "faults",
        json!({"path": "media/get", "fault": {"hangup_after_bytes": 5}}),
    )
    .await;
    assert_eq!(status, 200);
    let url = format!(
        "http://{}/cgi-bin/media/get?access_token={token}&media_id={}",
        sim.addr(),
        given["media_id"].as_str().unwrap_or("")
    );
    let response = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .expect("headers");
    let (part, failed) = read_until_cut(response).await;
    assert_eq!((&part[..], failed), (&b"hello"[..], true));
}

/// The client's download against the simulator: a 45 MB file in Range chunks of at most
/// 20 MiB, the connection dropped in the middle of a chunk, resumed from the last byte it
/// got, and byte-identical at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_45_mb_download_cut_mid_chunk_resumes_and_ends_byte_identical() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let file: Vec<u8> = (0..45 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let media_id = sim
        .add_media(MediaKind::File, file.clone(), Some("大文件.bin"))
        .expect("stored");
    // The first answer breaks off 5 MB into its 20 MiB range.
    sim.inject("media/get", Fault::HangupAfter(5_000_000), 1);
    let mut written = Vec::new();
    let done = client
        .download_media(media_id.as_str())
        .to_writer(&mut written)
        .await
        .expect("the download resumes and ends");
    assert_eq!(done.written, file.len() as u64);
    assert!(written == file, "byte-identical");
    assert_eq!(done.info.filename.as_deref(), Some("大文件.bin"));
}

/// A customer's photo, downloaded by what the item says.
#[tokio::test]
async fn a_photo_a_customer_sends_downloads_with_its_format() {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim.client_builder().build().expect("client");
    let kf = sim.open_kfid().to_owned();
    let (_, png) = samples::sample(MediaKind::Image);
    sim.customer_sends_image(&kf, "wmALICE", png.clone(), Some("parcel.png"))
        .expect("sent");
    let page = client.sync_msg(&kf).await.expect("pull");
    let media_id = page.msg_list[0]
        .media_id()
        .expect("an image has a media id")
        .to_owned();
    let media = client.download_media(media_id).await.expect("download");
    assert_eq!(media.bytes, png);
    assert_eq!(media.info.format, Some(wecom_kf::media::MediaFormat::Png));
    // An unknown media id is WeCom's JSON error on HTTP 200: an Api error, typed.
    let unknown = client.download_media("NOPE").await.unwrap_err();
    assert_eq!(unknown.code(), Some(ErrCode::from_value(40007)));
}
