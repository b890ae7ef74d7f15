//! A whole customer-service conversation, printed as a transcript.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Against the built-in simulator by default. With `WECOM_CORP_ID`, `WECOM_SECRET` and
//! `WECOM_OPEN_KFID` set, it talks to WeCom instead: it pulls the account's recent
//! messages and answers the newest customer text.

use std::sync::{Arc, Mutex};

use wecom_kf::reply::{Customer, Replier, ReplyError};
use wecom_kf::{
    Client, MemoryCursorStore, SyncStream, Upload,
    types::{Event, Image, Menu, MenuClick, Received, ReceivedMsg, Text},
};
use wecom_kf_sim::Simulator;

type Inbox = Arc<Mutex<Vec<ReceivedMsg>>>;

/// Pulls everything new for the account and returns it; the cursor is committed as
/// each page is taken, so the next pull starts after it.
async fn pull(
    sync: &SyncStream<MemoryCursorStore>,
    open_kfid: &str,
) -> Result<Vec<ReceivedMsg>, Box<dyn std::error::Error>> {
    let inbox: Inbox = Arc::default();
    sync.run(open_kfid, |page| {
        let inbox = inbox.clone();
        async move {
            let mut inbox = inbox
                .lock()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            inbox.extend(page.messages);
            Ok::<_, std::io::Error>(())
        }
    })
    .await?;
    let items = std::mem::take(&mut *inbox.lock().map_err(|e| e.to_string())?);
    for item in &items {
        println!("  bot      ← {}", describe(item));
    }
    Ok(items)
}

fn describe(item: &ReceivedMsg) -> String {
    match &item.content {
        Received::Text(t) => match &t.menu_id {
            Some(id) => format!("text {:?} (tapped menu item {id})", t.content),
            None => format!("text {:?}", t.content),
        },
        Received::Event(Event::EnterSession(e)) => format!(
            "event enter_session, welcome_code {}",
            e.welcome_code.as_deref().unwrap_or("(none)")
        ),
        Received::Image(_) => "image item (with a media_id)".to_owned(),
        other => format!("{} item", other.tag()),
    }
}

/// A 1×1 PNG: small enough to read here, real enough for WeCom's image checks.
const ROUTE_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xff, 0xff, 0x3f,
    0x00, 0x05, 0xfe, 0x02, 0xfe, 0xa7, 0x35, 0x9a, 0x8b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

/// What an LLM might answer: a few thousand bytes of markdown, more than one WeChat
/// message holds.
fn tracking_answer() -> String {
    let mut answer = String::from("## 物流详情\n\n您的包裹 **SF1234567890** 的最新轨迹：\n\n");
    let stops = [
        "深圳转运中心",
        "东莞分拨中心",
        "广州分拣中心",
        "广州天河营业部",
    ];
    for day in 1..=12 {
        let stop = stops[day % stops.len()];
        answer.push_str(&format!(
            "- 第{day}天：包裹到达*{stop}*，正在安排下一站运输，预计当天完成分拣与装车，详情见[物流页面](https://example.com/track/SF1234567890)。\n"
        ));
    }
    answer.push_str("\n> 如需改派或自提，请回复「改派」。\n");
    answer
}

async fn simulated() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Simulator::start().await?;
    let kf = sim.open_kfid().to_owned();
    let alice = Customer::new(&kf, "wmALICE");
    println!("wecom-kf quickstart: a conversation against the local simulator");
    println!(
        "  simulator at {} (corp {}, account {kf})\n",
        sim.base_url(),
        sim.corp_id()
    );

    let client = sim.client_builder().build()?;
    // The replier keeps the reply budget and the session state; the stream shows it
    // every page before the bot handles it.
    let replier = Replier::new(client.clone()).clock({
        let sim = sim.clone();
        move || sim.now()
    });
    let sync = SyncStream::new(client.clone(), MemoryCursorStore::new()).observe(replier.clone());

    println!("  customer → opens the chat");
    sim.customer_enters(&kf, &alice.external_userid)?;
    let items = pull(&sync, &kf).await?;
    let entered = items.first().ok_or("the simulator logged no event")?;
    replier
        .welcome(entered, "您好，欢迎咨询！")
        .await?
        .ok_or("the simulator sent no welcome code")?;
    println!("  bot      → welcome (the enter_session code): \"您好，欢迎咨询！\"");

    let said = sim.customer_says(&kf, &alice.external_userid, "我的快递到哪了？")?;
    println!("  customer → \"我的快递到哪了？\"");
    sync.callback_token(&kf, said.callback_token);
    pull(&sync, &kf).await?;
    let menu = Menu::new()
        .head_content("请问需要什么帮助？")
        .list([
            MenuClick::new("101", "查物流"),
            MenuClick::new("102", "转人工"),
        ])
        .tail_content("点击选项即可");
    replier.send(&alice, menu).await?;
    println!("  bot      → menu [101 查物流] [102 转人工]");

    let map = Upload::from_bytes("route.png", ROUTE_PNG.to_vec()).content_type("image/png");
    let uploaded = client.upload_image(map).await?;
    replier
        .send(&alice, Image::new(uploaded.media_id.as_str()))
        .await?;
    println!(
        "  bot      → uploads route.png (upload_image, {} bytes) and sends it as media {}",
        ROUTE_PNG.len(),
        uploaded.media_id
    );

    // The customer sends a photo of the parcel; the bot downloads it by the item's media
    // id and sees what it is from its bytes.
    sim.customer_sends_image(
        &kf,
        &alice.external_userid,
        ROUTE_PNG.to_vec(),
        Some("parcel.png"),
    )?;
    println!("  customer → a photo (parcel.png)");
    let items = pull(&sync, &kf).await?;
    let media_id = items
        .iter()
        .find_map(|m| m.media_id())
        .ok_or("the photo came without a media id")?;
    let photo = client.download_media(media_id).max_bytes(10 << 20).await?;
    let kind = photo.info.format.map_or("unknown", |f| f.mime());
    println!(
        "  bot      ⇣ downloads it: {kind}, {} bytes, named {:?}",
        photo.bytes.len(),
        photo.info.filename.as_deref().unwrap_or("")
    );
    if photo.info.format != Some(wecom_kf::media::MediaFormat::Png) {
        return Err(format!("the photo should be a PNG, got {kind}").into());
    }
    replier
        .send(
            &alice,
            Text::new(format!(
                "收到您的图片（{kind}，{} 字节），正在核对。",
                photo.bytes.len()
            )),
        )
        .await?;
    println!("  bot      → text \"收到您的图片…\"");

    // A second later: the budget can't order a reply and a customer message of the same
    // second, so it counts such a reply against the newer message too.
    sim.advance(std::time::Duration::from_secs(1));
    let tapped = sim.customer_clicks(&kf, &alice.external_userid, "101", "查物流")?;
    println!("  customer → taps \"查物流\"");
    sync.callback_token(&kf, tapped.callback_token);
    pull(&sync, &kf).await?;

    // A long markdown answer: rendered as plain text and split at WeChat's 2048 bytes,
    // sent only because all its parts fit the 5 replies this customer message allows.
    let answer = tracking_answer();
    let parts = replier.reply(&alice, &answer).await?;
    println!(
        "  bot      → a {}-byte markdown answer, as {} text messages of at most 2048 bytes",
        answer.len(),
        parts.len()
    );
    // Then updates until the budget says no. The sixth reply never leaves: the replier
    // refuses it with the budget's own error, where WeCom would answer 95001.
    for n in parts.len() + 1..=6 {
        let text = format!("物流更新 {n}/6：包裹已到达广州分拣中心");
        match replier.send(&alice, Text::new(text.as_str())).await {
            Ok(_) if n <= 5 => println!("  bot      → text \"{text}\""),
            Ok(_) => return Err(format!("reply {n} was sent; the budget allows 5").into()),
            Err(ReplyError::Budget(refusal)) if n == 6 => {
                println!("  bot      ✗ reply {n} refused before sending:\n             {refusal}");
            }
            Err(e) => return Err(e.into()),
        }
    }
    // The simulator agrees: asked directly, it refuses a sixth reply with 95001.
    let direct = client
        .send_text(alice.external_userid.as_str(), kf.as_str(), "第六条")
        .await;
    match direct {
        Err(e) if e.code() == Some(wecom_kf::ErrCode::SendCountLimit) => {
            println!("  (asked directly, the simulator refuses it too: {e})");
        }
        other => return Err(format!("WeCom would refuse a sixth reply, got {other:?}").into()),
    }
    println!(
        "\n  the simulator accepted {} messages from the bot",
        sim.sent().len()
    );
    Ok(())
}

async fn against_wecom(
    corp_id: String,
    secret: String,
    kf: String,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("wecom-kf quickstart: pulling {kf}'s messages from WeCom");
    let client = Client::builder().corp_id(corp_id).secret(secret).build()?;
    let sync = SyncStream::new(client.clone(), MemoryCursorStore::new());
    if let Ok(token) = std::env::var("WECOM_CALLBACK_TOKEN") {
        sync.callback_token(&kf, token);
    }
    let items = pull(&sync, &kf).await?;
    let newest = items
        .iter()
        .rev()
        .find_map(|m| match (&m.content, &m.external_userid) {
            (Received::Text(_), Some(customer)) => Some(customer.clone()),
            _ => None,
        });
    match newest {
        Some(customer) => {
            client
                .send_text(
                    customer.as_str(),
                    kf.as_str(),
                    "您好！这是 wecom-kf 的自动回复。",
                )
                .await?;
            println!("  bot      → replied to {customer}");
        }
        None => println!("  no customer text in the last 3 days to answer"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let real = (
        std::env::var("WECOM_CORP_ID"),
        std::env::var("WECOM_SECRET"),
        std::env::var("WECOM_OPEN_KFID"),
    );
    match real {
        (Ok(corp_id), Ok(secret), Ok(kf)) => against_wecom(corp_id, secret, kf).await,
        _ => simulated().await,
    }
}
