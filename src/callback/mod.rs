//! WeCom's callbacks: the signed URL check, and the encrypted `kf_msg_or_event` POST that
//! says "messages are waiting" and carries the token for `sync_msg` (kf-api.md §7).
//!
//! ```
//! use wecom_kf::callback::{CallbackCrypto, CallbackEvent};
//!
//! # fn main() -> Result<(), wecom_kf::callback::CallbackError> {
//! let crypto = CallbackCrypto::new("TOKEN", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwCORPID")?;
//! // What WeCom would POST (here sealed by us, as the simulator does):
//! let inner = "<xml><ToUserName><![CDATA[wwCORPID]]></ToUserName><CreateTime>1348831860</CreateTime>\
//!     <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
//!     <Token><![CDATA[ENCApHxn]]></Token><OpenKfId><![CDATA[wkKF]]></OpenKfId></xml>";
//! let sealed = crypto.seal(inner, "1409304348", "xxxxxx")?;
//! let event = crypto.open(&sealed.msg_signature, "1409304348", "xxxxxx", &sealed.body)?;
//! let CallbackEvent::KfMsgOrEvent(kf) = event else { panic!("not a kf event") };
//! assert_eq!(kf.open_kfid, "wkKF");
//! # Ok(()) }
//! ```

mod crypto;
mod event;
#[cfg(feature = "callback-server")]
pub mod server;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use event::{CallbackEvent, KfMsgOrEvent};

use crypto::Keys;

/// Why a callback was refused. The numbers of the official library (`-40001` …) are
/// available from [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    #[error("invalid callback configuration: {0}")]
    InvalidKey(&'static str),
    #[error("the signature does not match: not from WeCom, or another token")]
    SignatureMismatch,
    #[error("the timestamp is {age_secs} s away from now, outside the {max_secs} s window")]
    Stale { age_secs: u64, max_secs: u64 },
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the encrypted payload is not base64")]
    Base64,
    #[error("the encrypted payload has a bad length: {0}")]
    Length(&'static str),
    #[error("the decrypted payload has invalid padding")]
    Padding,
    #[error("the payload is for another receiver (`{found}`), not this corp")]
    ReceiveIdMismatch { found: String },
    #[error("the decrypted message is not UTF-8")]
    NotUtf8,
    #[error("the XML does not parse: {0}")]
    Xml(String),
    #[error("the operating system's random source failed")]
    Random,
}

impl CallbackError {
    /// The error code of WeCom's reference library (WXBizMsgCrypt) for this failure.
    pub fn code(&self) -> i32 {
        match self {
            CallbackError::SignatureMismatch | CallbackError::Stale { .. } => -40001,
            CallbackError::Xml(_) => -40002,
            CallbackError::InvalidKey(_) => -40004,
            CallbackError::ReceiveIdMismatch { .. } => -40005,
            CallbackError::Random => -40006,
            CallbackError::Padding | CallbackError::NotUtf8 => -40007,
            CallbackError::Length(_) | CallbackError::BadTimestamp => -40008,
            CallbackError::Base64 => -40010,
        }
    }
}

/// A payload sealed for sending: what WeCom POSTs, or what a passive reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The base64 ciphertext.
    pub encrypt: String,
    pub msg_signature: String,
    /// `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>`.
    pub body: String,
}

/// Verifies, decrypts and encrypts callbacks for one callback configuration (the token
/// and EncodingAESKey of the admin console, and the corp id as receive id).
#[derive(Debug, Clone)]
pub struct CallbackCrypto {
    keys: Keys,
    max_age: Option<Duration>,
}

impl CallbackCrypto {
    /// Fails on a key that is not 43 base64 characters decoding to 32 bytes.
    pub fn new(
        token: &str,
        encoding_aes_key: &str,
        receive_id: &str,
    ) -> Result<Self, CallbackError> {
        Ok(CallbackCrypto {
            keys: Keys::new(token, encoding_aes_key, receive_id)?,
            max_age: None,
        })
    }

    /// Refuses requests whose `timestamp` is further than `max_age` from now, so a
    /// recorded request can't be replayed later. Off by default.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    fn check_timestamp(&self, timestamp: &str) -> Result<(), CallbackError> {
        let Some(max) = self.max_age else {
            return Ok(());
        };
        let sent: u64 = timestamp.parse().map_err(|_| CallbackError::BadTimestamp)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let age = now.abs_diff(sent);
        if age > max.as_secs() {
            return Err(CallbackError::Stale {
                age_secs: age,
                max_secs: max.as_secs(),
            });
        }
        Ok(())
    }

    /// The URL check (GET with `msg_signature`, `timestamp`, `nonce`, `echostr`): returns
    /// the plaintext to answer with, as is.
    pub fn verify_url(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        echostr: &str,
    ) -> Result<String, CallbackError> {
        self.keys.verify(msg_signature, timestamp, nonce, echostr)?;
        self.check_timestamp(timestamp)?;
        self.keys.decrypt(echostr)
    }

    /// Verifies and decrypts a callback POST body into its plaintext XML.
    pub fn decrypt_body(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        body: &str,
    ) -> Result<String, CallbackError> {
        let encrypt = event::encrypt_field(body)?;
        self.keys
            .verify(msg_signature, timestamp, nonce, &encrypt)?;
        self.check_timestamp(timestamp)?;
        self.keys.decrypt(&encrypt)
    }

    /// Verifies and decrypts a callback POST body into a typed event.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        body: &str,
    ) -> Result<CallbackEvent, CallbackError> {
        let plaintext = self.decrypt_body(msg_signature, timestamp, nonce, body)?;
        CallbackEvent::parse(plaintext)
    }

    /// Encrypts and signs `plaintext` the way WeCom does, with a random prefix.
    pub fn seal(
        &self,
        plaintext: &str,
        timestamp: &str,
        nonce: &str,
    ) -> Result<Sealed, CallbackError> {
        let encrypt = self.keys.encrypt(plaintext)?;
        Ok(self.sealed(encrypt, timestamp, nonce))
    }

    /// [`seal`](Self::seal) with a chosen 16-byte prefix: reproducible, for test vectors.
    pub fn seal_with_prefix(
        &self,
        plaintext: &str,
        timestamp: &str,
        nonce: &str,
        prefix: [u8; 16],
    ) -> Result<Sealed, CallbackError> {
        let encrypt = self.keys.encrypt_with_prefix(plaintext, prefix)?;
        Ok(self.sealed(encrypt, timestamp, nonce))
    }

    /// The receive id payloads are checked against (the corp id).
    pub fn receive_id(&self) -> &str {
        self.keys.receive_id()
    }

    fn sealed(&self, encrypt: String, timestamp: &str, nonce: &str) -> Sealed {
        let msg_signature = self.keys.sign(timestamp, nonce, &encrypt);
        let body = event::envelope(self.keys.receive_id(), &encrypt);
        Sealed {
            encrypt,
            msg_signature,
            body,
        }
    }
}
