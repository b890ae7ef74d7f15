//! A whole customer-service conversation, printed as a transcript.
//!
//! ```text
//! cargo run --example quickstart --features sim
//! ```
//!
//! Against the built-in simulator by default. With `WECOM_CORP_ID`, `WECOM_SECRET` and
//! `WECOM_OPEN_KFID` set, it talks to WeCom instead: it pulls the account's recent
//! messages and answers the newest customer text.

use std::sync::{Arc, Mutex};

use wecom_kf::sim::Simulator;
use wecom_kf::{
    Client, Event, MemoryCursorStore, Menu, MenuClick, Received, ReceivedMsg, SyncStream, Upload,
};

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
        other => format!("{} item", other.tag()),
    }
}

fn welcome_code(items: &[ReceivedMsg]) -> Option<String> {
    items.iter().find_map(|m| match &m.content {
        Received::Event(Event::EnterSession(e)) => e.welcome_code.clone(),
        _ => None,
    })
}

/// A 1×1 PNG: small enough to read here, real enough for WeCom's image checks.
const ROUTE_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0xf8, 0xff, 0xff, 0x3f,
    0x00, 0x05, 0xfe, 0x02, 0xfe, 0xa7, 0x35, 0x9a, 0x8b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e,
    0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn simulated() -> Result<(), Box<dyn std::error::Error>> {
    let sim = Simulator::start().await?;
    let kf = sim.open_kfid().to_owned();
    let alice = "wmALICE";
    println!("wecom-kf quickstart: a conversation against the local simulator");
    println!(
        "  simulator at {} (corp {}, account {kf})\n",
        sim.base_url(),
        sim.corp_id()
    );

    let client = sim.client_builder().build()?;
    let sync = SyncStream::new(client.clone(), MemoryCursorStore::new());

    println!("  customer → opens the chat");
    sim.customer_enters(&kf, alice)?;
    let items = pull(&sync, &kf).await?;
    let code = welcome_code(&items).ok_or("the simulator sent no welcome code")?;
    client.send_text_on_event(&code, "您好，欢迎咨询！").await?;
    println!("  bot      → welcome (send_text_on_event): \"您好，欢迎咨询！\"");

    let said = sim.customer_says(&kf, alice, "我的快递到哪了？")?;
    println!("  customer → \"我的快递到哪了？\"");
    sync.callback_token(&kf, said.callback_token);
    pull(&sync, &kf).await?;
    let sent = client.send_text(alice, &kf, "正在为您查询…").await?;
    println!("  bot      → text \"正在为您查询…\" (msgid {})", sent.msgid);
    let menu = Menu::new()
        .head_content("请问还需要什么帮助？")
        .list([
            MenuClick::new("101", "查物流"),
            MenuClick::new("102", "转人工"),
        ])
        .tail_content("点击选项即可");
    client.send_menu(alice, &kf, menu).await?;
    println!("  bot      → menu [101 查物流] [102 转人工]");

    let map = Upload::from_bytes("route.png", ROUTE_PNG.to_vec()).content_type("image/png");
    let uploaded = client.upload_image(map).await?;
    client
        .send_image(alice, &kf, uploaded.media_id.as_str())
        .await?;
    println!(
        "  bot      → uploads route.png (upload_image, {} bytes) and sends it as media {}",
        ROUTE_PNG.len(),
        uploaded.media_id
    );

    let tapped = sim.customer_clicks(&kf, alice, "101", "查物流")?;
    println!("  customer → taps \"查物流\"");
    sync.callback_token(&kf, tapped.callback_token);
    pull(&sync, &kf).await?;

    // Each customer message allows 5 replies within 48 hours; the 6th is refused. Anything
    // else is a failure, so running the example checks the client and the simulator.
    const LAST_ALLOWED: u32 = 5;
    for n in 1..=LAST_ALLOWED + 1 {
        let text = format!("物流更新 {n}/6：包裹已到达广州分拣中心");
        match client.send_text(alice, &kf, text.as_str()).await {
            Ok(_) if n <= LAST_ALLOWED => println!("  bot      → text \"{text}\""),
            Ok(_) => {
                return Err(format!("reply {n} was accepted; WeCom refuses it with 95001").into());
            }
            Err(e) => {
                println!("  bot      ✗ reply {n} refused:\n             {e}");
                if n <= LAST_ALLOWED || e.code() != Some(wecom_kf::ErrCode::SendCountLimit) {
                    return Err(e.into());
                }
            }
        }
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
