// Every generated client method, called the way the README shows. Compiled and
// run by trybuild; the calls themselves are never awaited (there is no server here).
use wecom_kf::{Client, types::{CaLink, Event, Link, Location, Menu, MenuClick, MenuItem, MenuMiniProgram, MenuText, MenuView, MiniProgram, OutgoingMsg, Received, Text, VoiceFormat}};

#[allow(dead_code)]
async fn every_method(client: &Client, media_id: String, welcome_code: &str) -> Result<(), wecom_kf::Error> {
    let sent = client.send_text("wmUSER", "wkKFID", "您好").await?;
    let _: String = sent.msgid;
    client.send_image("wmUSER", "wkKFID", media_id.clone()).send().await?;
    client.send_voice("wmUSER", "wkKFID", &*media_id).await?;
    client.send_video("wmUSER", "wkKFID", media_id.clone()).msgid("order-42").await?;
    client.send_file("wmUSER", "wkKFID", "MEDIA_ID").await?;
    client
        .send_link("wmUSER", "wkKFID", Link::new("title", "https://example.com", "THUMB").desc("desc"))
        .await?;
    client
        .send_miniprogram("wmUSER", "wkKFID", MiniProgram::new("wx123", "THUMB", "pages/index.html").title("t"))
        .await?;
    let menu = Menu::new()
        .head_content("您对本次服务是否满意呢?")
        .list([
            MenuItem::from(MenuClick::new("101", "满意")),
            MenuView::new("https://work.weixin.qq.com", "自助查询").into(),
            MenuMiniProgram::new("wx123", "pages/index", "打开小程序").into(),
            MenuText::new("纯文本").no_newline(1).into(),
        ])
        .tail_content("欢迎再次光临");
    client.send_menu("wmUSER", "wkKFID", menu.clone()).await?;
    client.send_location("wmUSER", "wkKFID", Location::new(23.1, 113.3).name("广州")).await?;
    client.send_ca_link("wmUSER", "wkKFID", CaLink::new("https://work.weixin.qq.com/ca/x")).await?;
    client
        .send_msg("wmUSER", "wkKFID", OutgoingMsg::Location(Location::new(0.0, 0.0)))
        .await?;
    client.send_msg("wmUSER", "wkKFID", Text::new("typed")).await?;
    client.send_text_on_event(welcome_code, "欢迎").await?;
    client.send_menu_on_event(welcome_code, menu.clone()).await?;
    client.send_msg_on_event(welcome_code, Text::new("欢迎")).msgid("w1").await?;
    client.send_msg_raw(serde_json::json!({"touser": "wm", "open_kfid": "wk", "msgtype": "text", "text": {"content": "x"}})).await?;
    let page = client
        .sync_msg("wkKFID")
        .cursor("CURSOR")
        .token("CALLBACK_TOKEN")
        .limit(1000)
        .voice_format(VoiceFormat::Silk)
        .await?;
    let _: u32 = page.has_more;
    let _: &String = &page.next_cursor;
    for m in page.msg_list {
        match m.content {
            Received::Text(t) => {
                let _: (String, Option<String>) = (t.content, t.menu_id);
            }
            Received::Event(Event::EnterSession(e)) => {
                let _: Option<String> = e.welcome_code;
            }
            Received::Unknown { msgtype, raw } => {
                let _: (String, serde_json::Value) = (msgtype, raw);
            }
            _ => {}
        }
    }
    // Media: into memory, into a writer, chunk by chunk, resumed.
    let media = client.download_media("MEDIA_ID").max_bytes(10 << 20).await?;
    let _: (bytes::Bytes, Option<&str>) = (media.bytes.clone(), media.info.filename.as_deref());
    let mut file = tokio::io::sink();
    let done = client.download_media(&*media_id).resume_from(1024).to_writer(&mut file).await?;
    let _: u64 = done.written;
    let mut chunks = client.download_media(media_id.clone()).chunk_size(1 << 20).chunks();
    while let Some(chunk) = chunks.next_chunk().await? {
        let _: usize = chunk.len();
    }
    let token = client.gettoken().await?;
    let _: u64 = token.expires_in;
    // A request body built by hand and sent with `execute`.
    let request = wecom_kf::types::SendMsgRequest::new("wmUSER", "wkKFID", menu).msgid("m2");
    client.execute(&request).await?;
    Ok(())
}

fn main() {
    let client = Client::builder()
        .corp_id("ww123")
        .secret("secret")
        .base_url("http://127.0.0.1:9/cgi-bin")
        .build()
        .expect("a client builds without network access");
    // Building a call sends nothing; only awaiting it does.
    let call = client.send_text("wmUSER", "wkKFID", "hi").msgid("x1");
    assert_eq!(call.request().msgid.as_deref(), Some("x1"));
}
