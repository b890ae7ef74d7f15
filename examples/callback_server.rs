//! A bot behind a callback URL: WeCom POSTs `kf_msg_or_event`, the router answers at once,
//! pulls the account's messages in the background and the handler replies.
//!
//! ```text
//! cargo run --example callback_server --features callback-server
//! ```
//!
//! Here the simulator plays WeCom and calls the router back; in production, mount the
//! router at the URL configured in the admin console, with its token and EncodingAESKey,
//! and serve it with `server::serve` (a header timeout; the router bounds bodies itself).

use std::sync::Arc;
use std::time::Duration;

use wecom_kf::callback::{CallbackCrypto, server};
use wecom_kf::{Client, MemoryCursorStore, SyncStream, sync::Page, types::Received};
use wecom_kf_sim::{SimCallback, SimConfig, Simulator};

const TOKEN: &str = "QDG6eK";
const ENCODING_AES_KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

/// The bot: answers every customer text.
async fn answer(client: Client, page: Page) -> Result<(), wecom_kf::Error> {
    for message in page.messages {
        if let (Received::Text(text), Some(customer)) = (&message.content, &message.external_userid)
        {
            println!("  bot      ← {:?} from {customer}", text.content);
            let reply = format!("收到：{}", text.content);
            client
                .send_text(customer.as_str(), page.open_kfid.as_str(), reply.as_str())
                .await?;
            println!("  bot      → {reply:?}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/wecom/kf", listener.local_addr()?);
    let config = SimConfig {
        callback: Some(SimCallback::new(url.clone(), TOKEN, ENCODING_AES_KEY)),
        ..SimConfig::default()
    };
    let sim = Simulator::start_with(config, ([127, 0, 0, 1], 0).into()).await?;
    println!(
        "callback server at {url}, WeCom simulated at {}",
        sim.base_url()
    );

    let client = sim.client_builder().build()?;
    let crypto = CallbackCrypto::new(TOKEN, ENCODING_AES_KEY, sim.corp_id())?;
    let sync = Arc::new(SyncStream::new(client.clone(), MemoryCursorStore::new()));
    let bot = server::router(crypto, sync, move |page| answer(client.clone(), page));
    let app = axum::Router::new().nest("/wecom/kf", bot);
    // Not `axum::serve`: this one times out clients that never finish their headers.
    tokio::spawn(server::serve(listener, app).into_future());

    sim.verify_callback_url().await?;
    println!("  WeCom    ✓ callback URL verified");
    for text in ["你好", "我想查订单"] {
        sim.customer_says(sim.open_kfid(), "wmALICE", text)?;
        println!("  customer → {text:?}");
        let before = sim.sent().len();
        for _ in 0..100 {
            if sim.sent().len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    println!(
        "  {} callbacks delivered, {} replies sent",
        sim.callback_stats().delivered,
        sim.sent().len()
    );
    Ok(())
}
