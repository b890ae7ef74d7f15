//! Callbacks as WeCom sends them, for tests that run the callback router.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use wecom_kf::callback::CallbackCrypto;
use wecom_kf_sim::Simulator;

/// The callback configuration of the tests' bots.
pub fn crypto(sim: &Simulator) -> CallbackCrypto {
    CallbackCrypto::new(
        "CALLBACK-TOKEN",
        "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
        sim.corp_id(),
    )
    .expect("callback keys")
}

/// Posts a `kf_msg_or_event` callback to a replica the way WeCom does: sealed, signed,
/// stamped now, with a nonce of its own.
pub async fn post_callback(
    http: &reqwest::Client,
    crypto: &CallbackCrypto,
    at: SocketAddr,
    kf: &str,
    token: &str,
) {
    let status = try_post_callback(http, crypto, at, kf, token).await;
    assert_eq!(status, 200, "the callback is taken");
}

/// [`post_callback`], returning the HTTP status instead of expecting 200; 0 when nothing
/// answered (a replica that was killed).
pub async fn try_post_callback(
    http: &reqwest::Client,
    crypto: &CallbackCrypto,
    at: SocketAddr,
    kf: &str,
    token: &str,
) -> u16 {
    let now = unix_now();
    let xml = format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><CreateTime>{now}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
         <Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{kf}]]></OpenKfId></xml>",
        crypto.receive_id()
    );
    post_sealed(http, crypto, at, &xml).await
}

/// Posts the callback `xml` to a replica, sealed, signed and stamped now as WeCom does;
/// the HTTP status, 0 when nothing answered.
pub async fn post_sealed(
    http: &reqwest::Client,
    crypto: &CallbackCrypto,
    at: SocketAddr,
    xml: &str,
) -> u16 {
    static NONCE: AtomicUsize = AtomicUsize::new(1);
    let now = unix_now();
    let (timestamp, nonce) = (
        now.to_string(),
        NONCE.fetch_add(1, Ordering::SeqCst).to_string(),
    );
    let sealed = crypto.seal(xml, &timestamp, &nonce).expect("seal");
    let answer = http
        .post(format!(
            "http://{at}/?msg_signature={}&timestamp={timestamp}&nonce={nonce}",
            sealed.msg_signature
        ))
        .body(sealed.body)
        .send()
        .await;
    answer.map_or(0, |answer| answer.status().as_u16())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
