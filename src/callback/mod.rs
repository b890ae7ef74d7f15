//! WeCom's callbacks: the signed URL check, and the encrypted `kf_msg_or_event` POST that
//! says "messages are waiting" and carries the token for `sync_msg` (docs 94670 and 90930).
//!
//! ```
//! use wecom_kf::callback::{CallbackCrypto, CallbackEvent};
//!
//! # fn main() -> Result<(), wecom_kf::callback::CallbackError> {
//! let crypto = CallbackCrypto::new("TOKEN", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwCORPID")?;
//! // What WeCom would POST (here sealed by us, as the simulator does), signed just now:
//! let inner = "<xml><ToUserName><![CDATA[wwCORPID]]></ToUserName><CreateTime>1348831860</CreateTime>\
//!     <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
//!     <Token><![CDATA[ENCApHxn]]></Token><OpenKfId><![CDATA[wkKF]]></OpenKfId></xml>";
//! let now = std::time::SystemTime::now()
//!     .duration_since(std::time::UNIX_EPOCH)
//!     .unwrap_or_default()
//!     .as_secs()
//!     .to_string();
//! let sealed = crypto.seal(inner, &now, "xxxxxx")?;
//! let event = crypto.open(&sealed.msg_signature, &now, "xxxxxx", &sealed.body)?;
//! let CallbackEvent::KfMsgOrEvent(kf) = event else { panic!("not a kf event") };
//! assert_eq!(kf.open_kfid, "wkKF");
//! // The same request again is a replay.
//! assert_eq!(
//!     crypto.open(&sealed.msg_signature, &now, "xxxxxx", &sealed.body),
//!     Err(wecom_kf::callback::CallbackError::Replayed)
//! );
//! # Ok(()) }
//! ```

mod crypto;
mod event;
#[cfg(feature = "callback-server")]
pub mod server;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha1::{Digest, Sha1};

pub use event::{CallbackEvent, KfAccountAuthChange, KfMsgOrEvent};

use crypto::Keys;

/// Why a callback was refused. The numbers of the official library (`-40001` …) are
/// available from [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackError {
    /// The token or `EncodingAESKey` can't be used: what is wrong with it.
    InvalidKey(&'static str),
    /// The `msg_signature` doesn't match the payload.
    SignatureMismatch,
    /// The `timestamp` is outside the replay window.
    Stale {
        /// How far the timestamp is from now, in seconds.
        age_secs: u64,
        /// The window, in seconds.
        max_secs: u64,
    },
    /// The `timestamp` doesn't parse.
    BadTimestamp,
    /// The same signed POST (`msg_signature` and `nonce`) was already accepted within the
    /// replay window.
    Replayed,
    /// The `Encrypt` text isn't base64.
    Base64,
    /// The ciphertext or the message length inside it is impossible: which one.
    Length(&'static str),
    /// The PKCS#7 padding is wrong: another key, or a tampered payload.
    Padding,
    /// The payload names another corp (or component) as its receiver.
    ReceiveIdMismatch {
        /// The receiver id it names.
        found: String,
    },
    /// The decrypted message isn't UTF-8.
    NotUtf8,
    /// The XML (outer or decrypted) doesn't parse: where and why.
    Xml(String),
    /// No randomness for sealing a reply.
    Random,
}

impl CallbackError {
    /// The error code of WeCom's reference library (WXBizMsgCrypt) for this failure.
    pub fn code(&self) -> i32 {
        match self {
            CallbackError::SignatureMismatch
            | CallbackError::Stale { .. }
            | CallbackError::Replayed => -40001,
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

impl fmt::Display for CallbackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackError::InvalidKey(why) => write!(f, "invalid callback configuration: {why}"),
            CallbackError::SignatureMismatch => {
                f.write_str("the signature does not match: not from WeCom, or another token")
            }
            CallbackError::Stale { age_secs, max_secs } => write!(
                f,
                "the timestamp is {age_secs} s away from now, outside the {max_secs} s window"
            ),
            CallbackError::BadTimestamp => f.write_str("the timestamp is not a number of seconds"),
            CallbackError::Replayed => f.write_str(
                "this callback was already accepted (same signature and nonce): a replay",
            ),
            CallbackError::Base64 => f.write_str("the encrypted payload is not base64"),
            CallbackError::Length(which) => {
                write!(f, "the encrypted payload has a bad length: {which}")
            }
            CallbackError::Padding => f.write_str("the decrypted payload has invalid padding"),
            CallbackError::ReceiveIdMismatch { found } => write!(
                f,
                "the payload is for another receiver (`{found}`), not this corp"
            ),
            CallbackError::NotUtf8 => f.write_str("the decrypted message is not UTF-8"),
            CallbackError::Xml(why) => write!(f, "the XML does not parse: {why}"),
            CallbackError::Random => f.write_str("the operating system's random source failed"),
        }
    }
}

impl std::error::Error for CallbackError {}

/// A payload sealed for sending: what WeCom POSTs, or what a passive reply carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The base64 ciphertext.
    pub encrypt: String,
    /// The signature over token, timestamp, nonce and `encrypt`, as lowercase hex.
    pub msg_signature: String,
    /// `<xml><ToUserName>…</ToUserName><Encrypt>…</Encrypt></xml>`.
    pub body: String,
}

/// The replay window by default: a callback whose `timestamp` is further than this from
/// now is refused, and a POST seen within it is refused the second time.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);

/// How many signed POSTs are remembered by default. Past that, the oldest are forgotten
/// (and could be replayed once while their timestamp is still in the window): memory stays
/// bounded whatever the traffic.
pub const DEFAULT_REPLAY_CAPACITY: usize = 8192;

/// Verifies, decrypts and encrypts callbacks for one callback configuration (the token
/// and EncodingAESKey of the admin console, and the corp id as receive id).
///
/// Recorded requests can't be replayed: a timestamp further than
/// [`DEFAULT_MAX_AGE`] from now is refused ([`CallbackError::Stale`]), and a POST whose
/// `msg_signature` and `nonce` were already accepted within the window is refused
/// ([`CallbackError::Replayed`]). Clones share what was seen.
#[derive(Clone)]
pub struct CallbackCrypto {
    keys: Keys,
    max_age: Option<Duration>,
    seen: Arc<Mutex<Seen>>,
}

impl fmt::Debug for CallbackCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackCrypto")
            .field("keys", &self.keys)
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

/// The signed POSTs accepted recently, oldest first, bounded by `capacity`.
#[derive(Debug)]
struct Seen {
    order: VecDeque<(SeenKey, Instant)>,
    keys: HashSet<SeenKey>,
    capacity: usize,
}

/// 128 bits of SHA-1 over the signature and the nonce: fixed size whatever was sent.
type SeenKey = [u8; 16];

impl Seen {
    fn new(capacity: usize) -> Self {
        Seen {
            order: VecDeque::new(),
            keys: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    fn key(msg_signature: &str, nonce: &str) -> SeenKey {
        let mut hasher = Sha1::new();
        hasher.update(msg_signature.to_ascii_lowercase().as_bytes());
        hasher.update([0]);
        hasher.update(nonce.as_bytes());
        let digest = hasher.finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        key
    }

    /// Records `key` at `now`, forgetting what is older than `keep`; `false` if it was
    /// already there.
    fn first_time(&mut self, key: SeenKey, now: Instant, keep: Duration) -> bool {
        while let Some(&(oldest, at)) = self.order.front() {
            if now.saturating_duration_since(at) <= keep {
                break;
            }
            self.order.pop_front();
            self.keys.remove(&oldest);
        }
        if self.keys.contains(&key) {
            return false;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some((oldest, _)) => self.keys.remove(&oldest),
                None => break,
            };
        }
        self.keys.insert(key);
        self.order.push_back((key, now));
        true
    }
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
            max_age: Some(DEFAULT_MAX_AGE),
            seen: Arc::new(Mutex::new(Seen::new(DEFAULT_REPLAY_CAPACITY))),
        })
    }

    /// Refuses requests whose `timestamp` is further than `max_age` from now, and POSTs
    /// seen before within it, so a recorded request can't be replayed later.
    /// [`DEFAULT_MAX_AGE`] unless changed; `None` turns both checks off (to open old test
    /// vectors, say).
    pub fn max_age(mut self, max_age: impl Into<Option<Duration>>) -> Self {
        self.max_age = max_age.into();
        self
    }

    /// How many accepted POSTs are remembered to refuse their replays
    /// ([`DEFAULT_REPLAY_CAPACITY`] by default); raise it if more than that many
    /// callbacks arrive within the replay window. Starts with nothing remembered.
    pub fn replay_capacity(mut self, capacity: usize) -> Self {
        self.seen = Arc::new(Mutex::new(Seen::new(capacity)));
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

    /// Refuses a POST already accepted within the window. Entries are kept twice the
    /// window: a timestamp up to `max_age` ahead of the clock stays acceptable that long.
    fn check_first_time(&self, msg_signature: &str, nonce: &str) -> Result<(), CallbackError> {
        let Some(max) = self.max_age else {
            return Ok(());
        };
        let key = Seen::key(msg_signature, nonce);
        // A panic elsewhere can't leave the cache inconsistent: each call leaves it whole.
        let mut seen = crate::mutex::lock(&self.seen);
        if seen.first_time(key, Instant::now(), max.saturating_mul(2)) {
            Ok(())
        } else {
            Err(CallbackError::Replayed)
        }
    }

    /// The URL check (GET with `msg_signature`, `timestamp`, `nonce`, `echostr`): returns
    /// the plaintext to answer with, as is. Held to the timestamp window only: the admin
    /// console may check the URL again, and answering it twice does nothing.
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

    /// Verifies and decrypts a callback POST body into its plaintext XML. Only the first
    /// of identical POSTs within the window opens; the others are
    /// [`CallbackError::Replayed`].
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
        let plaintext = self.keys.decrypt(&encrypt)?;
        // Recorded only once it opened, so a failed request can't shadow a good one.
        self.check_first_time(msg_signature, nonce)?;
        Ok(plaintext)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_cache_stays_bounded_and_forgets_what_left_the_window() {
        let keep = Duration::from_secs(600);
        let start = Instant::now();
        let mut seen = Seen::new(100);
        for i in 0..1000u32 {
            let key = Seen::key(&format!("sig{i}"), "n");
            assert!(seen.first_time(key, start, keep));
            assert!(seen.order.len() <= 100 && seen.keys.len() == seen.order.len());
        }
        let newest = Seen::key("sig999", "n");
        assert!(!seen.first_time(newest, start, keep), "still remembered");
        // Past the window everything is forgotten, so the cache empties as time goes on.
        let later = start + keep + Duration::from_secs(1);
        assert!(seen.first_time(Seen::key("fresh", "n"), later, keep));
        assert_eq!(seen.order.len(), 1);
        assert!(seen.first_time(newest, later, keep));
        // Signature hex case doesn't matter; the nonce does.
        assert_eq!(Seen::key("ABC", "n"), Seen::key("abc", "n"));
        assert_ne!(Seen::key("abc", "n"), Seen::key("abc", "m"));
    }
}
