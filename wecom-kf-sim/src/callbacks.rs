//! The simulator's side of callbacks: encrypt `kf_msg_or_event`, POST it to the
//! configured URL, and retry it when it isn't answered with 200 within 5 seconds, as
//! WeCom does (doc 94670).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::SimCallback;
use wecom_kf::callback::{CallbackCrypto, CallbackError};

/// One delivery and up to three retries.
const ATTEMPTS: usize = 4;

/// Counts of callback deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallbackStats {
    /// POSTs made, retries included.
    pub attempts: usize,
    /// Callbacks answered with 200 in time.
    pub delivered: usize,
    /// Callbacks given up after every retry.
    pub failed: usize,
}

pub struct Sender {
    url: String,
    crypto: CallbackCrypto,
    http: reqwest::Client,
    attempts: AtomicUsize,
    delivered: AtomicUsize,
    failed: AtomicUsize,
    nonce: AtomicUsize,
}

impl Sender {
    pub fn new(config: &SimCallback, corp_id: &str) -> Result<Self, CallbackError> {
        Ok(Sender {
            url: config.url.clone(),
            crypto: CallbackCrypto::new(&config.token, &config.encoding_aes_key, corp_id)?,
            http: reqwest::Client::builder()
                .timeout(config.answer_within)
                .build()
                .unwrap_or_default(),
            attempts: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            nonce: AtomicUsize::new(1),
        })
    }

    pub fn stats(&self) -> CallbackStats {
        CallbackStats {
            attempts: self.attempts.load(Ordering::SeqCst),
            delivered: self.delivered.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    fn nonce(&self) -> String {
        format!("{}", 1_000_000 + self.nonce.fetch_add(1, Ordering::SeqCst))
    }

    /// Sends one callback, retrying until it is answered or the attempts run out. `now`
    /// (the simulated clock) is the event's `CreateTime`; the signature's `timestamp` is
    /// the wall clock's, which the bot checks its replay window against, and every attempt
    /// has a nonce of its own.
    pub async fn deliver(self: Arc<Self>, open_kfid: String, token: String, now: u64) {
        let xml = format!(
            "<xml><ToUserName><![CDATA[{}]]></ToUserName><CreateTime>{now}</CreateTime>\
             <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
             <Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{open_kfid}]]></OpenKfId></xml>",
            self.crypto.receive_id()
        );
        for _ in 0..ATTEMPTS {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let (timestamp, nonce) = (wall_clock(), self.nonce());
            let Ok(sealed) = self.crypto.seal(&xml, &timestamp, &nonce) else {
                break;
            };
            let Ok(url) = self.url_with(&[
                ("msg_signature", &sealed.msg_signature),
                ("timestamp", &timestamp),
                ("nonce", &nonce),
            ]) else {
                break;
            };
            let answered = self
                .http
                .post(url)
                .body(sealed.body)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                self.delivered.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
    }

    /// The callback URL with `query` appended, form-encoded as WeCom's own requests are.
    fn url_with(&self, query: &[(&str, &str)]) -> Result<reqwest::Url, String> {
        reqwest::Url::parse_with_params(&self.url, query)
            .map_err(|e| format!("the callback URL doesn't parse: {e}"))
    }

    /// The admin console's URL check.
    pub async fn verify_url(&self) -> Result<(), String> {
        let reply = "1616140317555161061";
        let (timestamp, nonce) = (wall_clock(), self.nonce());
        let sealed = self
            .crypto
            .seal(reply, &timestamp, &nonce)
            .map_err(|e| e.to_string())?;
        let url = self.url_with(&[
            ("msg_signature", &sealed.msg_signature),
            ("timestamp", &timestamp),
            ("nonce", &nonce),
            ("echostr", &sealed.encrypt),
        ])?;
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("the callback URL did not answer: {}", e.without_url()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if status.is_success() && body == reply {
            Ok(())
        } else {
            Err(format!(
                "the callback URL answered {status} with {body:?} instead of the echostr's plaintext"
            ))
        }
    }
}

/// Unix seconds now, as WeCom signs callbacks with.
fn wall_clock() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string()
}
