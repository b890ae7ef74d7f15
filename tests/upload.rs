//! Uploads: the multipart body WeCom expects, size limits checked before sending, and
//! retries that send the whole file again (or refuse to, for a one-shot reader).

mod common;

use common::{MockServer, Recorded, Reply};
use serde_json::json;
use wecom_kf::media::MediaType;
use wecom_kf::{Delivery, Error, Upload};

const UPLOADED: &str = "/cgi-bin/media/upload";

fn uploaded_reply(kind: &str) -> Reply {
    Reply::Json(json!({
        "errcode": 0, "errmsg": "", "type": kind,
        "media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0", "created_at": "1380000000"
    }))
}

/// One part of a `multipart/form-data` body: its disposition line and its bytes.
struct Part {
    disposition: String,
    content: Vec<u8>,
}

fn parts(request: &Recorded) -> Vec<Part> {
    let content_type = &request.headers["content-type"];
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a multipart boundary");
    let delimiter = format!("--{boundary}");
    let body = request.raw_body.as_ref();
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let headers_end = find(rest, b"\r\n\r\n").expect("part headers end");
        let headers = String::from_utf8_lossy(&rest[..headers_end]).into_owned();
        let content = &rest[headers_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes()).expect("part end");
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default()
            .to_owned();
        found.push(Part {
            disposition,
            content: content[..end].to_vec(),
        });
        rest = &content[end + 2..];
    }
    found
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test]
async fn an_image_goes_up_as_the_media_part_with_its_type_in_the_query() {
    let server = MockServer::start().await;
    server.script(UPLOADED, [uploaded_reply("image")]);
    let png = b"\x89PNG\r\n\x1a\nnot really a picture".to_vec();
    let uploaded = server
        .client()
        .upload_image(Upload::from_bytes("logo.png", png.clone()).content_type("image/png"))
        .await
        .expect("upload_image");
    assert_eq!(
        uploaded.media_id,
        "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0"
    );
    assert_eq!(uploaded.created_at, "1380000000");
    assert_eq!(uploaded.r#type, "image");

    let sent = server.requests_to(UPLOADED);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query.get("type").map(String::as_str), Some("image"));
    assert_eq!(
        sent[0].query.get("access_token").map(String::as_str),
        Some("ACCESS_TOKEN_0_xyz")
    );
    assert!(sent[0].headers["content-type"].starts_with("multipart/form-data"));
    let parts = parts(&sent[0]);
    assert_eq!(parts.len(), 1, "one part: the file");
    assert!(
        parts[0].disposition.contains(r#"name="media""#),
        "{}",
        parts[0].disposition
    );
    assert!(
        parts[0].disposition.contains(r#"filename="logo.png""#),
        "{}",
        parts[0].disposition
    );
    assert_eq!(parts[0].content, png);
}

#[tokio::test]
async fn each_media_type_has_its_own_size_limit_checked_before_sending() {
    let server = MockServer::start().await;
    let client = server.client();
    let mib = |n: usize| vec![0u8; n << 20];
    let refused = [
        client
            .upload_image(Upload::from_bytes("tiny.png", vec![1u8; 5]))
            .await,
        client
            .upload_image(Upload::from_bytes("big.png", [mib(10), vec![0]].concat()))
            .await,
        client
            .upload_voice(Upload::from_bytes("big.amr", [mib(2), vec![0]].concat()))
            .await,
        client
            .upload_video(Upload::from_bytes("big.mp4", [mib(10), vec![0]].concat()))
            .await,
        client
            .upload_file(Upload::from_bytes("big.zip", [mib(20), vec![0]].concat()))
            .await,
        client
            .upload_file(Upload::from_bytes("empty.txt", Vec::new()))
            .await,
    ];
    // Too small or empty: an invalid field. Too large: the media type's limit, typed.
    let too_large = [
        None,
        Some((MediaType::Image, 10 << 20)),
        Some((MediaType::Voice, 2 << 20)),
        Some((MediaType::Video, 10 << 20)),
        Some((MediaType::File, 20 << 20)),
        None,
    ];
    for (i, (result, expected)) in refused.into_iter().zip(too_large).enumerate() {
        match (result, expected) {
            (Err(Error::Invalid(invalid)), None) => assert_eq!(invalid.field, "media", "case {i}"),
            (Err(Error::UploadTooLarge { kind, len, limit }), Some((want, want_limit))) => {
                assert_eq!(
                    (kind, limit, len),
                    (want, want_limit, want_limit + 1),
                    "case {i}"
                );
            }
            (other, expected) => panic!("case {i}: expected {expected:?}, got {other:?}"),
        }
    }
    assert!(server.requests_to(UPLOADED).is_empty(), "nothing was sent");

    // Just inside each limit is sent.
    server.script(UPLOADED, (0..3).map(|_| uploaded_reply("voice")));
    client
        .upload_voice(Upload::from_bytes("max.amr", mib(2)))
        .await
        .expect("2 MB of voice is allowed");
    client
        .upload_image(Upload::from_bytes("min.png", vec![1u8; 6]))
        .await
        .expect("6 bytes is allowed");
    client
        .upload_file(Upload::from_bytes("max.zip", mib(20)))
        .await
        .expect("20 MB of file is allowed");
    let types: Vec<_> = server
        .requests_to(UPLOADED)
        .iter()
        .map(|r| r.query["type"].clone())
        .collect();
    assert_eq!(types, ["voice", "image", "file"]);
}

#[tokio::test]
async fn a_file_on_disk_is_named_after_its_path_and_read_again_for_a_retry() {
    let dir = std::env::temp_dir().join(format!("wecom-kf-upload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("报价单.pdf");
    std::fs::write(&path, b"%PDF-1.7 quote").expect("write the file");

    let server = MockServer::start().await;
    let client = server.client();
    client.access_token().await.expect("a token");
    // The first attempt meets an expired token: refreshed, and the file is sent again whole.
    server.refuse_tokens(42001);
    server.script(UPLOADED, [uploaded_reply("file")]);
    let upload = Upload::from_path(&path).await.expect("the file exists");
    assert_eq!((upload.file_name(), upload.len()), ("报价单.pdf", 14));
    client.upload_file(upload).await.expect("upload_file");

    let sent = server.requests_to(UPLOADED);
    assert_eq!(sent.len(), 2, "refused once, then sent again");
    let parts = parts(&sent[1]);
    assert_eq!(parts[0].content, b"%PDF-1.7 quote");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_reader_streams_once_and_a_second_attempt_is_refused_not_half_sent() {
    let server = MockServer::start().await;
    let client = server.client();
    server.script(UPLOADED, [uploaded_reply("video")]);
    let video = b"....ftypmp42 a short video".to_vec();
    let reader = Upload::from_reader(
        "clip.mp4",
        video.len() as u64,
        std::io::Cursor::new(video.clone()),
    );
    client.upload_video(reader).await.expect("upload_video");
    assert_eq!(
        parts(&server.requests_to(UPLOADED)[0]).remove(0).content,
        video
    );

    // Now the token is refused: the refresh would need the stream a second time.
    server.refuse_tokens(40014);
    let reader = Upload::from_reader("clip.mp4", video.len() as u64, std::io::Cursor::new(video));
    match client.upload_video(reader).await {
        Err(Error::Upload { field, source }) => {
            assert_eq!(field, "media");
            assert!(source.to_string().contains("sent once"), "{source}");
        }
        other => panic!("expected Error::Upload, got {other:?}"),
    }
    assert_eq!(
        server.requests_to(UPLOADED).len(),
        2,
        "the stream went out once"
    );
}

#[tokio::test]
async fn a_missing_file_is_an_io_error_before_anything_is_sent() {
    let err = Upload::from_path("/nonexistent/wecom-kf/upload.png")
        .await
        .expect_err("no such file");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn debug_shows_the_name_and_size_not_the_bytes() {
    let upload = Upload::from_bytes("secret-plan.txt", b"the bytes themselves".to_vec());
    let shown = format!("{upload:?}");
    assert!(
        shown.contains("secret-plan.txt") && shown.contains("20"),
        "{shown}"
    );
    assert!(!shown.contains("bytes themselves"), "{shown}");
}

#[tokio::test]
async fn each_media_type_is_uploaded_then_sent_in_one_call() {
    let server = MockServer::start().await;
    let client = server.client();
    for (kind, name) in [
        (MediaType::Image, "chart.png"),
        (MediaType::Voice, "hello.amr"),
        (MediaType::Video, "clip.mp4"),
        (MediaType::File, "报价单.pdf"),
    ] {
        server.script(UPLOADED, [uploaded_reply(kind.as_str())]);
        let upload = Upload::from_bytes(name, b"0123456789".to_vec());
        let call = match kind {
            MediaType::Image => client.upload_and_send_image("wmUSER", "wkKFID", upload),
            MediaType::Voice => client.upload_and_send_voice("wmUSER", "wkKFID", upload),
            MediaType::Video => client.upload_and_send_video("wmUSER", "wkKFID", upload),
            MediaType::File => client.upload_and_send_file("wmUSER", "wkKFID", upload),
        };
        let done = call
            .msgid(format!("m-{kind}"))
            .await
            .expect("uploaded and sent");
        assert_eq!(
            done.upload.media_id,
            "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0"
        );
        assert_eq!(done.sent.msgid, "MSG_ID_FROM_SERVER");
        let upload = server.requests_to(UPLOADED).pop().expect("an upload");
        assert_eq!(upload.query["type"], kind.as_str());
        assert!(parts(&upload)[0].disposition.contains(name), "{name}");
        let sent = server
            .requests_to("/cgi-bin/kf/send_msg")
            .pop()
            .expect("a send");
        assert_eq!(
            sent.body,
            json!({
                "touser": "wmUSER", "open_kfid": "wkKFID", "msgtype": kind.as_str(),
                kind.as_str(): {"media_id": "1G6nrLmr5EC3MMb_-zK1dDdzmd0p7cNliYu9V5w7o8K0"},
                "msgid": format!("m-{kind}")
            })
        );
    }
    assert_eq!(server.requests_to("/cgi-bin/kf/send_msg").len(), 4);
}

#[tokio::test]
async fn nothing_is_uploaded_when_the_file_or_the_message_would_be_refused() {
    let server = MockServer::start().await;
    let client = server.client();
    let big_voice = Upload::from_bytes("long.amr", vec![0u8; (2 << 20) + 7]);
    match client
        .upload_and_send_voice("wmUSER", "wkKFID", big_voice)
        .await
    {
        Err(err @ Error::UploadTooLarge { .. }) => {
            assert!(matches!(
                err,
                Error::UploadTooLarge {
                    kind: MediaType::Voice,
                    limit: 2097152,
                    len: 2097159
                }
            ));
            assert_eq!(err.delivery(), Delivery::NotSent);
            assert!(err.to_string().contains("voice is 2097159 bytes"), "{err}");
        }
        other => panic!("expected UploadTooLarge, got {other:?}"),
    }
    let bad_id = client
        .upload_and_send_image(
            "wmUSER",
            "wkKFID",
            Upload::from_bytes("a.png", vec![1u8; 64]),
        )
        .msgid("not a valid id!")
        .await;
    assert!(
        matches!(&bad_id, Err(Error::Invalid(invalid)) if invalid.field == "msgid"),
        "{bad_id:?}"
    );
    let long_kf = client
        .send_media(
            "wmUSER",
            "k".repeat(65),
            MediaType::File,
            Upload::from_bytes("a.txt", vec![1u8; 64]),
        )
        .await;
    assert!(
        matches!(&long_kf, Err(Error::Invalid(invalid)) if invalid.field == "open_kfid"),
        "{long_kf:?}"
    );
    assert!(
        server.requests().is_empty(),
        "nothing was sent, not even gettoken"
    );
}

#[tokio::test]
async fn the_form_says_its_length_and_quotes_the_file_name_within_its_header_line() {
    let server = MockServer::start().await;
    server.script(UPLOADED, [uploaded_reply("file")]);
    let name = "报告 \"终稿\"\\v2.pdf";
    server
        .client()
        .upload_file(Upload::from_bytes(name, b"%PDF-1.7".to_vec()).content_type("application/pdf"))
        .await
        .expect("upload_file");
    let sent = &server.requests_to(UPLOADED)[0];
    assert_eq!(
        sent.headers["content-length"],
        sent.raw_body.len().to_string()
    );
    let part = parts(sent).remove(0);
    assert_eq!(
        part.disposition,
        r#"Content-Disposition: form-data; name="media"; filename="报告 \"终稿\"\\v2.pdf""#
    );
    assert_eq!(part.content, b"%PDF-1.7");

    // A line break can't end the header line and start another.
    server.script(UPLOADED, [uploaded_reply("file")]);
    server
        .client()
        .upload_file(Upload::from_bytes(
            "a\r\nContent-Type: text/html\n.pdf",
            b"%PDF-1.7".to_vec(),
        ))
        .await
        .expect("upload_file");
    let part = parts(&server.requests_to(UPLOADED)[1]).remove(0);
    assert_eq!(
        part.disposition,
        r#"Content-Disposition: form-data; name="media"; filename="a%0D%0AContent-Type: text/html%0A.pdf""#
    );
}

#[tokio::test]
async fn a_reader_shorter_or_longer_than_its_length_fails_the_upload() {
    for (said, has) in [(100, 26), (10, 26)] {
        let server = MockServer::start().await;
        server.script(UPLOADED, [uploaded_reply("video")]);
        let reader = Upload::from_reader("clip.mp4", said, std::io::Cursor::new(vec![b'v'; has]));
        let result = server.client().upload_video(reader).await;
        assert!(result.is_err(), "{said} said, {has} read: {result:?}");
        assert!(
            server.requests_to(UPLOADED).is_empty(),
            "no body of the wrong length was taken"
        );
    }
}

#[tokio::test]
async fn a_content_type_that_is_not_a_media_type_is_refused_before_sending() {
    let server = MockServer::start().await;
    for mime in ["image/png\r\nX-Injected: 1", "png", "image/"] {
        let upload = Upload::from_bytes("a.png", b"\x89PNG\r\n\x1a\n".to_vec()).content_type(mime);
        match server.client().upload_image(upload).await {
            Err(Error::Upload { field, source }) => {
                assert_eq!(field, "media");
                assert!(source.to_string().contains("content type"), "{source}");
            }
            other => panic!("expected Error::Upload for {mime:?}, got {other:?}"),
        }
    }
    assert!(server.requests_to(UPLOADED).is_empty());
}

#[tokio::test]
async fn a_slow_reader_is_streamed_whole_in_order() {
    let server = MockServer::start().await;
    server.script(UPLOADED, [uploaded_reply("file")]);
    // 200 KB through a 1 KB pipe, written a little at a time: the form waits on the
    // reader again and again, and sends more than one chunk.
    let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut writer, reader) = tokio::io::duplex(1024);
    let writing = {
        let file = file.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for piece in file.chunks(1000) {
                writer.write_all(piece).await.expect("the form reads");
                tokio::task::yield_now().await;
            }
        })
    };
    let upload = Upload::from_reader("data.bin", file.len() as u64, reader);
    server
        .client()
        .upload_file(upload)
        .await
        .expect("upload_file");
    writing.await.expect("writer");
    assert_eq!(
        parts(&server.requests_to(UPLOADED)[0]).remove(0).content,
        file
    );
}
