//! Downloading media (`download_media`, `media/get`): the file with its name, declared type
//! and sniffed format; WeCom's JSON errors on HTTP 200; the token refreshed and busy answers
//! retried; a size cap; ranges of at most 20 MiB, an interrupted one asked again from its
//! last byte, and a download resumed where it stopped; bytes streamed as they arrive; and the
//! access token in none of it.

mod common;

use std::future::IntoFuture as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use common::{MEDIA_RANGE_LIMIT, MediaFile, MockServer, Part, Reply};
use serde_json::json;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;
use wecom_kf::media::{MediaFormat, MediaType};
use wecom_kf::{ErrCode, Error, RetryPolicy, types::ReceivedMsg};

const MEDIA_GET: &str = "/cgi-bin/media/get";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00 and the rest of a picture";

/// `len` bytes that differ from position to position, so a misplaced range shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

/// The `Range` header of each `media/get` request.
fn ranges(server: &MockServer) -> Vec<String> {
    server
        .requests_to(MEDIA_GET)
        .iter()
        .map(|r| r.headers.get("range").cloned().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn a_file_downloads_into_memory_with_its_name_type_and_format() {
    let server = MockServer::start().await;
    server.serve_media(
        "MEDIA_1",
        MediaFile::new(JPEG, "image/jpeg").disposition(r#"attachment; filename="MEDIA_1.jpg""#),
    );
    let media = server
        .client()
        .download_media("MEDIA_1")
        .await
        .expect("download_media");
    assert_eq!(media.bytes, JPEG);
    assert_eq!(media.info.format, Some(MediaFormat::Jpeg));
    assert_eq!(media.info.declared_mime.as_deref(), Some("image/jpeg"));
    assert_eq!(media.info.filename.as_deref(), Some("MEDIA_1.jpg"));
    assert_eq!(media.info.len, Some(JPEG.len() as u64));

    let sent = server.requests_to(MEDIA_GET);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].query["media_id"], "MEDIA_1");
    assert_eq!(sent[0].query["access_token"], "ACCESS_TOKEN_0_xyz");
    assert_eq!(
        ranges(&server),
        [format!("bytes=0-{}", MEDIA_RANGE_LIMIT - 1)]
    );
}

#[tokio::test]
async fn an_rfc_5987_name_is_decoded_and_the_bytes_tell_the_format() {
    let server = MockServer::start().await;
    server.serve_media(
        "VOICE",
        MediaFile::new(&b"#!AMR\n\x3c\x48\xf5\x1f"[..], "application/octet-stream").disposition(
            "attachment; filename=\"voice.amr\"; filename*=UTF-8''%E8%AF%AD%E9%9F%B3.amr",
        ),
    );
    let media = server
        .client()
        .download_media("VOICE")
        .await
        .expect("download");
    assert_eq!(media.info.filename.as_deref(), Some("语音.amr"));
    assert_eq!(media.info.format, Some(MediaFormat::Amr));
    assert_eq!(
        media.info.mime(),
        "audio/amr",
        "the bytes win over a generic declared type"
    );
}

#[tokio::test]
async fn a_json_error_on_http_200_is_an_api_error() {
    let server = MockServer::start().await;
    server.serve_media("KNOWN", MediaFile::new(JPEG, "image/jpeg"));
    let client = server.client();
    let err = client.download_media("EXPIRED").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::InvalidMediaId), "{err:?}");
    assert!(err.to_string().contains("upload the media again"), "{err}");

    // WeCom also sends its errors as text/plain.
    server.script(
        MEDIA_GET,
        [Reply::Raw {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: Bytes::from_static(br#"{"errcode":830002,"errmsg":"use range"}"#),
        }],
    );
    let err = client.download_media("KNOWN").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrCode::RangeRequired), "{err:?}");
}

#[tokio::test]
async fn json_files_are_files() {
    let server = MockServer::start().await;
    let client = server.client();
    let json_file = br#"{"errcode": 7, "note": "a customer's own JSON file"}"#;
    server.script(
        MEDIA_GET,
        [
            // Named as an attachment: a file, whatever its content.
            Reply::Raw {
                status: 200,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    (
                        "content-disposition".into(),
                        r#"attachment; filename="data.json""#.into(),
                    ),
                ],
                body: Bytes::from_static(json_file),
            },
            // No name, but no WeCom envelope either: also the file.
            Reply::Raw {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from_static(br#"{"rows": [1, 2]}"#),
            },
        ],
    );
    let named = client.download_media("J1").await.expect("a JSON file");
    assert_eq!(named.bytes, &json_file[..]);
    assert_eq!(named.info.filename.as_deref(), Some("data.json"));
    let plain = client.download_media("J2").await.expect("a JSON file");
    assert_eq!(plain.bytes, &br#"{"rows": [1, 2]}"#[..]);
}

#[tokio::test]
async fn a_refused_token_is_refreshed_and_busy_is_retried() {
    let server = MockServer::start().await;
    server.serve_media("M", MediaFile::new(JPEG, "image/jpeg"));
    let client = server.client();
    client.access_token().await.expect("a token");
    server.refuse_tokens(42001);
    let media = client.download_media("M").await.expect("after a refresh");
    assert_eq!(media.bytes, JPEG);
    assert_eq!(server.gettoken_calls(), 2);

    server.script(
        MEDIA_GET,
        [Reply::Json(json!({"errcode": -1, "errmsg": "system busy"}))],
    );
    let media = client
        .download_media("M")
        .await
        .expect("after a busy answer");
    assert_eq!(media.bytes, JPEG);
    let tokens: Vec<String> = server
        .requests_to(MEDIA_GET)
        .iter()
        .map(|r| r.query["access_token"].clone())
        .collect();
    assert_eq!(
        tokens,
        [
            "ACCESS_TOKEN_0_xyz",
            "ACCESS_TOKEN_1_xyz",
            "ACCESS_TOKEN_1_xyz",
            "ACCESS_TOKEN_1_xyz"
        ]
    );
}

#[tokio::test]
async fn a_file_announced_over_the_cap_is_refused_before_reading() {
    let server = MockServer::start().await;
    let never = Arc::new(Notify::new());
    server.script(
        MEDIA_GET,
        [Reply::Streamed {
            status: 200,
            headers: vec![
                ("content-type".into(), "video/mp4".into()),
                ("content-length".into(), (3u64 << 20).to_string()),
            ],
            // The body waits forever: reading it would hang the download.
            parts: vec![Part::Wait(never.clone())],
        }],
    );
    let client = server.client();
    let download = client.download_media("BIG").max_bytes(1 << 20);
    let err = tokio::time::timeout(Duration::from_secs(10), download.into_future())
        .await
        .expect("refused without reading the body")
        .unwrap_err();
    match err {
        Error::DownloadTooLarge { limit, len } => {
            assert_eq!((limit, len), (1 << 20, Some(3 << 20)));
        }
        other => panic!("expected DownloadTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_of_unannounced_length_stops_at_the_cap() {
    let server = MockServer::start().await;
    let half = Bytes::from(vec![7u8; 600 << 10]);
    server.script(
        MEDIA_GET,
        [Reply::Streamed {
            status: 200,
            headers: vec![("content-type".into(), "video/mp4".into())],
            parts: vec![Part::Bytes(half.clone()), Part::Bytes(half)],
        }],
    );
    let err = server
        .client()
        .download_media("BIG")
        .max_bytes(1 << 20)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::DownloadTooLarge {
                limit: 1048576,
                len: None
            }
        ),
        "{err:?}"
    );
}

/// Collects what it is given; notifies `first` at its first write.
#[derive(Clone, Default)]
struct Recorder {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<Mutex<usize>>,
    first: Arc<Notify>,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.bytes.lock().unwrap().extend_from_slice(buf);
        *self.writes.lock().unwrap() += 1;
        self.first.notify_one();
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn streaming_writes_each_part_as_it_arrives() {
    let server = MockServer::start().await;
    let (first, rest) = (Bytes::from(pattern(4000)), Bytes::from(vec![9u8; 6000]));
    let gate = Arc::new(Notify::new());
    server.script(
        MEDIA_GET,
        [Reply::Streamed {
            status: 206,
            headers: vec![
                ("content-type".into(), "application/pdf".into()),
                ("content-range".into(), "bytes 0-9999/10000".into()),
            ],
            parts: vec![
                Part::Bytes(first.clone()),
                Part::Wait(gate.clone()),
                Part::Bytes(rest.clone()),
            ],
        }],
    );
    let recorder = Recorder::default();
    let client = server.client();
    let mut writer = recorder.clone();
    let download =
        tokio::spawn(async move { client.download_media("PDF").to_writer(&mut writer).await });
    // The rest is held back until the first part reached the writer: a download that
    // buffered the answer would never write, and this would time out.
    tokio::time::timeout(Duration::from_secs(10), recorder.first.notified())
        .await
        .expect("the first part was written before the rest was sent");
    assert_eq!(*recorder.bytes.lock().unwrap(), first);
    gate.notify_one();
    let done = download.await.expect("task").expect("downloaded");
    assert_eq!(done.written, 10_000);
    assert_eq!(done.info.len, Some(10_000));
    assert_eq!(*recorder.bytes.lock().unwrap(), [first, rest].concat());
    assert!(*recorder.writes.lock().unwrap() >= 2);
}

#[tokio::test]
async fn large_files_come_in_ranges_of_at_most_20_mib() {
    let server = MockServer::start().await;
    let file = pattern(45 << 20);
    server.serve_media(
        "VIDEO",
        MediaFile::new(file.clone(), "video/mp4").disposition(r#"attachment; filename="v.mp4""#),
    );
    let mut written = Vec::new();
    let done = server
        .client()
        .download_media("VIDEO")
        .to_writer(&mut written)
        .await
        .expect("downloaded in ranges");
    assert_eq!(done.written, 45 << 20);
    assert_eq!(done.info.len, Some(45 << 20));
    assert!(written == file, "the ranges were put together in order");
    let mib = 1u64 << 20;
    assert_eq!(
        ranges(&server),
        [
            format!("bytes=0-{}", 20 * mib - 1),
            format!("bytes={}-{}", 20 * mib, 40 * mib - 1),
            format!("bytes={}-{}", 40 * mib, 45 * mib - 1),
        ]
    );

    // Smaller ranges when asked.
    let small = server
        .client()
        .download_media("VIDEO")
        .chunk_size(16 << 20)
        .max_bytes(50 << 20)
        .await
        .expect("in memory");
    assert!(small.bytes == file);
    assert_eq!(ranges(&server).len(), 3 + 3);
}

#[tokio::test]
async fn a_range_cut_midway_is_asked_again_from_its_last_byte() {
    let server = MockServer::start().await;
    let file = pattern(5000);
    let cut = Arc::new(Notify::new());
    server.serve_media(
        "FILE",
        MediaFile::new(file.clone(), "application/zip").cut_first(1234, cut.clone()),
    );
    let mut chunks = server.client().download_media("FILE").chunks();
    let mut got = chunks
        .next_chunk()
        .await
        .expect("the first bytes")
        .expect("some")
        .to_vec();
    assert_eq!(got, file[..1234]);
    // Now the connection breaks.
    cut.notify_one();
    while let Some(chunk) = chunks.next_chunk().await.expect("the rest, asked again") {
        got.extend_from_slice(&chunk);
    }
    assert!(got == file);
    assert_eq!(
        ranges(&server),
        [
            format!("bytes=0-{}", MEDIA_RANGE_LIMIT - 1),
            "bytes=1234-4999".to_owned(),
        ]
    );
}

#[tokio::test]
async fn a_download_that_stopped_resumes_where_it_stopped() {
    let server = MockServer::start().await;
    let file = pattern(8000);
    let cut = Arc::new(Notify::new());
    server.serve_media(
        "FILE",
        MediaFile::new(file.clone(), "application/zip").cut_first(3000, cut.clone()),
    );
    // No retries: the cut ends the call, and says where to go on.
    let client = server
        .client_builder()
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let recorder = Recorder::default();
    let (mut writer, downloader) = (recorder.clone(), client.clone());
    let download = tokio::spawn(async move {
        downloader
            .download_media("FILE")
            .to_writer(&mut writer)
            .await
    });
    recorder.first.notified().await;
    cut.notify_one();
    let err = download.await.expect("task").unwrap_err();
    let resume_from = match &err {
        Error::Incomplete {
            resume_from, cause, ..
        } => {
            assert!(matches!(**cause, Error::Transport { .. }), "{cause:?}");
            *resume_from
        }
        other => panic!("expected Incomplete, got {other:?}"),
    };
    assert_eq!(resume_from, 3000);
    let mut written = recorder.bytes.lock().unwrap().clone();
    assert_eq!(written, file[..3000], "what arrived was written");

    let done = client
        .download_media("FILE")
        .resume_from(resume_from)
        .to_writer(&mut written)
        .await
        .expect("the rest");
    assert_eq!(done.written, 5000);
    assert!(written == file, "the bytes already written were kept");
    assert_eq!(
        ranges(&server)[1],
        format!("bytes=3000-{}", 3000 + MEDIA_RANGE_LIMIT - 1)
    );
    assert_eq!(done.info.format, None, "sniffed only from the file's start");

    // Resuming at the end: nothing left.
    let done = client
        .download_media("FILE")
        .resume_from(8000)
        .to_writer(&mut written)
        .await
        .expect("already complete");
    assert_eq!((done.written, done.info.len), (0, Some(8000)));
}

#[tokio::test]
async fn a_server_that_ignores_ranges_still_resumes() {
    let server = MockServer::start().await;
    let file = pattern(6000);
    server.serve_media(
        "FILE",
        MediaFile {
            ranges: false,
            ..MediaFile::new(file.clone(), "application/zip")
        },
    );
    let mut written = Vec::new();
    let done = server
        .client()
        .download_media("FILE")
        .resume_from(2500)
        .to_writer(&mut written)
        .await
        .expect("downloaded");
    assert_eq!(done.written, 3500);
    assert!(
        written == file[2500..],
        "the bytes before the offset were skipped"
    );
}

#[tokio::test]
async fn chunks_come_in_order_and_say_where_they_are() {
    let server = MockServer::start().await;
    let file = pattern(3000);
    server.serve_media("FILE", MediaFile::new(file.clone(), "application/zip"));
    let mut chunks = server
        .client()
        .download_media("FILE")
        .chunk_size(1000)
        .chunks();
    let mut got = Vec::new();
    while let Some(chunk) = chunks.next_chunk().await.expect("a chunk") {
        got.extend_from_slice(&chunk);
        assert_eq!(chunks.position(), got.len() as u64);
    }
    assert!(got == file);
    assert_eq!(chunks.info().and_then(|i| i.len), Some(3000));
    assert_eq!(
        ranges(&server),
        ["bytes=0-999", "bytes=1000-1999", "bytes=2000-2999"]
    );
    assert!(
        chunks.next_chunk().await.expect("done").is_none(),
        "a complete download stays complete"
    );
}

#[tokio::test]
async fn the_access_token_shows_nowhere() {
    let server = MockServer::start().await;
    let cut = Arc::new(Notify::new());
    server.serve_media(
        "FILE",
        MediaFile::new(pattern(100), "application/zip").cut_first(10, cut.clone()),
    );
    let client = server
        .client_builder()
        .retry_policy(RetryPolicy::none())
        .build()
        .expect("client");
    let mut chunks = client.download_media("FILE").chunks();
    let first = chunks.next_chunk().await.expect("the first bytes");
    assert!(first.is_some());
    cut.notify_one();
    let err = chunks.next_chunk().await.unwrap_err();
    let media_err = client.download_media("GONE").await.unwrap_err();
    let mut shown = vec![format!("{chunks:?}"), format!("{err}"), format!("{err:?}")];
    shown.push(format!("{media_err} {media_err:?}"));
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        shown.push(format!("{inner} / {inner:?}"));
        source = inner.source();
    }
    server.serve_media("OK", MediaFile::new(JPEG, "image/jpeg"));
    shown.push(format!(
        "{:?}",
        client.download_media("OK").await.expect("ok")
    ));
    for text in &shown {
        assert!(!text.contains("ACCESS_TOKEN_"), "token leaked in: {text}");
        assert!(
            !text.contains("access_token"),
            "token URL leaked in: {text}"
        );
    }
    assert!(shown[0].contains("position: 10"), "{}", shown[0]);
}

#[test]
fn every_received_media_type_offers_its_media_id() {
    let item = |msgtype: &str, payload: serde_json::Value| -> ReceivedMsg {
        serde_json::from_value(json!({
            "msgid": "m", "origin": 3, "msgtype": msgtype, msgtype: payload
        }))
        .expect("an item")
    };
    for (msgtype, kind) in [
        ("image", MediaType::Image),
        ("voice", MediaType::Voice),
        ("video", MediaType::Video),
        ("file", MediaType::File),
    ] {
        let msg = item(msgtype, json!({"media_id": format!("{msgtype}-id")}));
        assert_eq!(
            msg.media_id(),
            Some(format!("{msgtype}-id").as_str()),
            "{msgtype}"
        );
        assert_eq!(msg.media_type(), Some(kind));
        assert_eq!(kind.as_str(), msgtype);
    }
    assert_eq!(item("text", json!({"content": "hi"})).media_id(), None);
    assert_eq!(
        item("event", json!({"event_type": "enter_session"})).media_type(),
        None
    );
}

/// `voice_format` asks for SILK on every page of a `SyncStream`, and the voice that arrives
/// downloads as WeChat's SILK, whatever type the server declares.
#[tokio::test]
async fn a_sync_stream_asks_for_silk_and_its_voice_downloads_as_silk() {
    use wecom_kf::{MemoryCursorStore, SyncStream, types::VoiceFormat};

    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/sync_msg",
        [Reply::Json(json!({
            "errcode": 0, "errmsg": "ok", "next_cursor": "C1", "has_more": 0,
            "msg_list": [{"msgid": "v1", "open_kfid": "wk1", "external_userid": "wm1", "send_time": 1,
                          "origin": 3, "msgtype": "voice", "voice": {"media_id": "VOICE_1"}}]
        }))],
    );
    server.serve_media(
        "VOICE_1",
        MediaFile::new(
            &b"\x02#!SILK_V3\x0c\x00\x9b\x8d"[..],
            "application/octet-stream",
        ),
    );
    let client = server.client();
    let sync =
        SyncStream::new(client.clone(), MemoryCursorStore::new()).voice_format(VoiceFormat::Silk);
    let formats = Arc::new(Mutex::new(Vec::new()));
    let seen = formats.clone();
    sync.run("wk1", move |page| {
        let (client, seen) = (client.clone(), seen.clone());
        async move {
            for msg in &page.messages {
                if let Some(media_id) = msg.media_id() {
                    let media = client.download_media(media_id).await?;
                    seen.lock()
                        .unwrap()
                        .push((msg.media_type(), media.info.format));
                }
            }
            Ok::<_, Error>(())
        }
    })
    .await
    .expect("run");
    assert_eq!(
        *formats.lock().unwrap(),
        [(Some(MediaType::Voice), Some(MediaFormat::WeChatSilk))]
    );
    let pulls = server.requests_to("/cgi-bin/kf/sync_msg");
    assert!(!pulls.is_empty());
    assert!(
        pulls.iter().all(|r| r.body["voice_format"] == 1),
        "{:?}",
        pulls[0].body
    );
}
