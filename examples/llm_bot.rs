//! An LLM customer-service bot on the bot runtime: two accounts behind one callback URL, a
//! welcome for every customer who opens the chat, and a slow "LLM" whose long markdown
//! answers arrive complete, in parts, inside WeChat's reply budget.
//!
//! ```text
//! cargo run --example llm_bot --features callback-server
//! ```
//!
//! Against the built-in simulator by default, printing the transcript. With
//! `WECOM_CORP_ID`, `WECOM_SECRET`, `WECOM_OPEN_KFIDS` (comma-separated),
//! `WECOM_CALLBACK_TOKEN` and `WECOM_CALLBACK_AES_KEY` set, it serves WeCom (or, with
//! `WECOM_BASE_URL`, a proxy or a `kf-sim` process) on `BOT_LISTEN` (default
//! `0.0.0.0:8080`) until stopped.

use std::time::Duration;

use wecom_kf::bot::{Answer, Bot, MemoryBotStore};
use wecom_kf::callback::{CallbackCrypto, server};
use wecom_kf::reply::Turn;
use wecom_kf::{Client, MemoryCursorStore};
use wecom_kf_sim::{SimCallback, SimConfig, Simulator};

/// Stands in for an LLM: looks at the photos the customer sent (downloaded, their format
/// told by their bytes), thinks for 2 s, then answers about 6,000 bytes of markdown.
async fn llm(client: Client, turn: Turn) -> Result<Answer, wecom_kf::Error> {
    let mut photos = Vec::new();
    for media_id in turn.messages.iter().filter_map(|m| m.media_id()) {
        let media = client.download_media(media_id).max_bytes(10 << 20).await?;
        let kind = media.info.format.map_or("unknown", |f| f.mime());
        photos.push(format!("{kind}, {} bytes", media.bytes.len()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let shop = if turn.customer.open_kfid.ends_with("SHOP") {
        "商城"
    } else {
        "客服中心"
    };
    let mut answer = format!(
        "## {shop}为您解答\n\n您问：**{}**\n\n",
        turn.text().replace('\n', " / ")
    );
    if !photos.is_empty() {
        answer.push_str(&format!("您发来的图片：{}。\n\n", photos.join("；")));
    }
    for step in 1..=45 {
        answer.push_str(&format!(
            "{step}. 第{step}步：请打开[订单页面](https://example.com/orders)，核对收货信息，如有问题请回复。\n"
        ));
    }
    Ok(Answer::Text(answer))
}

/// The bot itself: everything a deployment writes (a macro only because the two ways this
/// example runs build it alike).
macro_rules! bot {
    ($client:expr) => {{
        let client: Client = $client;
        let llm = {
            let client = client.clone();
            move |turn| llm(client.clone(), turn)
        };
        Bot::new(client, MemoryCursorStore::new(), MemoryBotStore::new(), llm)
            .welcome("您好，欢迎咨询！请描述您的问题。")
            .parallel_turns(32)
    }};
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let (Some(corp_id), Some(secret), Some(token), Some(aes_key)) = (
        env("WECOM_CORP_ID"),
        env("WECOM_SECRET"),
        env("WECOM_CALLBACK_TOKEN"),
        env("WECOM_CALLBACK_AES_KEY"),
    ) {
        let mut client = Client::builder().corp_id(corp_id.as_str()).secret(secret);
        if let Some(base_url) = env("WECOM_BASE_URL") {
            client = client.base_url(base_url);
        }
        let bot = bot!(client.build()?);
        // Every account with a cursor is caught up at start, without waiting for a callback;
        // the ones listed are too, on a first run.
        bot.start().await?;
        let accounts = env("WECOM_OPEN_KFIDS").unwrap_or_default();
        for account in accounts.split(',').filter(|a| !a.is_empty()) {
            bot.pull(account).await?;
        }
        let app = axum::Router::new().nest(
            "/wecom/kf",
            bot.router(CallbackCrypto::new(&token, &aes_key, &corp_id)?),
        );
        let listen = env("BOT_LISTEN").unwrap_or_else(|| "0.0.0.0:8080".into());
        println!("serving WeCom callbacks at http://{listen}/wecom/kf");
        server::serve(tokio::net::TcpListener::bind(listen).await?, app).await?;
        return Ok(());
    }
    simulated().await
}

/// The simulator plays WeCom and two customers on each of two accounts.
async fn simulated() -> Result<(), Box<dyn std::error::Error>> {
    const TOKEN: &str = "QDG6eK";
    const AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/wecom/kf", listener.local_addr()?);
    let config = SimConfig {
        open_kfids: vec!["wkSHOP".into(), "wkSUPPORT".into()],
        callback: Some(SimCallback::new(url.as_str(), TOKEN, AES_KEY)),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into()).await?;
    let bot = bot!(sim.client_builder().build()?);
    let app = axum::Router::new().nest(
        "/wecom/kf",
        bot.router(CallbackCrypto::new(TOKEN, AES_KEY, sim.corp_id())?),
    );
    tokio::spawn(server::serve(listener, app).into_future());
    sim.verify_callback_url().await?;
    println!(
        "llm_bot: two accounts on {url}, WeCom simulated at {}\n",
        sim.base_url()
    );

    let started = std::time::Instant::now();
    let customers = [
        ("wkSHOP", "wmALICE"),
        ("wkSHOP", "wmBOB"),
        ("wkSUPPORT", "wmCAROL"),
        ("wkSUPPORT", "wmDAVE"),
    ];
    for (kf, who) in customers {
        sim.customer_enters(kf, who)?;
        println!("  {who:8} → opens the chat with {kf}");
    }
    for (kf, who) in customers {
        for text in ["在吗？", "我的订单还没到"] {
            sim.customer_says(kf, who, text)?;
            println!("  {who:8} → {text:?}");
        }
    }
    let (_, photo) = wecom_kf_sim::samples::sample(wecom_kf_sim::MediaKind::Image);
    sim.customer_sends_image("wkSHOP", "wmALICE", photo, Some("parcel.png"))?;
    println!("  wmALICE  → a photo (parcel.png)");
    // Each customer: a welcome, then one answer (both messages as one question) in parts.
    let deadline = started + Duration::from_secs(30);
    while sim.sent().iter().filter(|m| m.via == "send_msg").count() < 4 * 3 {
        if std::time::Instant::now() > deadline {
            return Err(format!("only {} messages sent in 30 s", sim.sent().len()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!();
    for sent in sim.sent() {
        let text = sent.payload["content"].as_str().unwrap_or_default();
        let first_line = text.lines().next().unwrap_or_default();
        println!(
            "  bot → {:8} ({}, {:>4} bytes, {}): {first_line}",
            sent.touser,
            sent.open_kfid,
            text.len(),
            sent.via
        );
    }
    println!(
        "\n  {} messages for {} customers in {:.1} s with a 2 s LLM: they were answered in parallel",
        sim.sent().len(),
        customers.len(),
        started.elapsed().as_secs_f64()
    );
    bot.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
