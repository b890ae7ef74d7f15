//! A local WeCom kf server for tests, examples and anyone without a verified company.
//!
//! It speaks the real paths, bodies and error codes (`gettoken`, `kf/sync_msg`,
//! `kf/send_msg`, `kf/send_msg_on_event`, `kf/recall_msg`, `media/upload`, `media/get`,
//! the account, servicer, session-state, customer and upgrade-service endpoints, the
//! statistics and the knowledge base) and applies the server's rules: tokens that expire or
//! get revoked, cursor paging over each account's log with 3-day retention, callback tokens
//! valid 10 minutes and a stricter rate without one (45009), the 48-hour window with 5
//! sends per customer message, session states behind 95018 and their allowed transitions,
//! one-time event codes, media ids that live 3 days and downloads in ranges of at most
//! 20 MB, deliveries that fail after they were accepted (`msg_send_fail`). A control API
//! (in Rust here, and over HTTP under `/sim/`) plays the customer and the servicers, moves a
//! virtual clock and injects faults.
//!
//! Where the docs leave a behaviour open, the simulator picks one and says so where it is
//! implemented: recalls work for 2 minutes and a wrong one is 40058; statistics count days
//! at 00:00 UTC+8; the knowledge base's limits are a reading of the docs; WeCom's routing
//! of new sessions to servicers is off unless [`SimConfig::route_new_sessions`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wecom_kf_sim::Simulator;
//!
//! let sim = Simulator::start().await?;
//! let client = sim.client_builder().build()?;
//! sim.customer_says(sim.open_kfid(), "wmCUSTOMER", "你好")?;
//! let page = client.sync_msg(sim.open_kfid()).await?;
//! client.send_text("wmCUSTOMER", sim.open_kfid(), "您好!").await?;
//! assert_eq!(sim.sent().len(), 1);
//! # Ok(()) }
//! ```
//!
//! # Callbacks
//!
//! With [`SimConfig::callback`] set, every item the simulator logs for `sync_msg` (a
//! customer's message, `enter_session`, a servicer's `session_status_change` or
//! `servicer_status_change`, `msg_send_fail`, whatever [`Simulator::push_raw`] adds) is
//! followed by an encrypted `kf_msg_or_event` callback carrying a fresh token. Changes the
//! bot makes itself through `service_state/trans` log no event and so no callback: WeCom
//! sends `session_status_change` only for what a servicer does in the WeCom app.
//!
//! # The control API over HTTP
//!
//! Every route takes and answers JSON; a refusal is HTTP 400 with `errcode` and `errmsg`.
//!
//! | Route | Body | Answer |
//! |---|---|---|
//! | `POST /sim/customer/enter` | `{"open_kfid", "external_userid"}` | `{"welcome_code"}` (or `null`) |
//! | `POST /sim/customer/link` | `{"url", "external_userid"}`: a contact link, maybe with `&scene_param=` | `{"welcome_code"}` |
//! | `POST /sim/customer/message` | `{"open_kfid", "external_userid", "content", "menu_id"?}` | `{"msgid", "callback_token"}` |
//! | `POST /sim/customer/media` | `{"open_kfid", "external_userid", "msgtype": "image" \| "voice" \| "video" \| "file", "filename"?, "content_base64"? \| "size"?}`: the bytes given, or generated to `size` bytes with the type's magic, or the built-in sample | `{"msgid", "callback_token", "media_id", "silk_media_id"}` (`media_id` `null` when over the size a message delivers) |
//! | `POST /sim/media` | `{"type": "image" \| …, "filename"?, "content_base64"? \| "size"?}`: media WeCom holds without a message, up to 256 MiB | `{"media_id", "len"}` |
//! | `POST /sim/customer/refuse` | `{"open_kfid", "external_userid", "refuse"?: true}`: `false` undoes it | `{}` |
//! | `POST /sim/servicer/take` | `{"open_kfid", "external_userid", "servicer_userid"}` | `{"msg_code"}` |
//! | `POST /sim/servicer/status` | `{"open_kfid", "servicer_userid", "status": "receiving" \| "stopped" \| "suspended"}` | `{}` |
//! | `POST /sim/session/end` | `{"open_kfid", "external_userid", "servicer_userid"}` | `{"msg_code"}` |
//! | `POST /sim/push` | `{"open_kfid", "item": {…}}`: any `msg_list` item | `{"callback_token"}` |
//! | `GET /sim/sent` | | every accepted message, oldest first |
//! | `POST /sim/clock/advance` | `{"seconds"}` | `{}` |
//! | `POST /sim/faults` | `{"path": "kf/send_msg", "fault": "busy" \| "hangup" \| {"status": 500} \| {"delay_ms": 300} \| {"hangup_after_bytes": 1024}, "times"?: 1}` | `{}` |
//! | `POST /sim/tokens/revoke` | `{"errcode": 40014}` | `{}` |
//!
//! # Media
//!
//! `GET /cgi-bin/media/get?access_token=…&media_id=…` serves uploads and customers' files
//! with `Content-Type`, `Content-Length` and `Content-Disposition: attachment;
//! filename="…"` (plus `filename*=UTF-8''…` for a name that isn't ASCII). A single
//! `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` is answered `206 Partial Content` with
//! `Content-Range`; a range starting past the end is `416`. A file over 20 MB without a
//! range, or a range over 20 MB, is `{"errcode": 830002}`; an unknown or expired (3 days)
//! media id is `{"errcode": 40007, "errmsg": "invalid media_id"}`: both on HTTP 200 with
//! `Content-Type: application/json`, like token errors. [`samples`] makes files with the
//! right magic bytes. A customer's voice is AMR; `sync_msg` with `voice_format: 1` gives
//! the id of its SILK encoding instead (a stand-in made from the AMR bytes, starting with
//! WeChat's `0x02#!SILK_V3`).

#![warn(missing_docs)]

mod body;
mod callbacks;
mod http;
pub mod samples;
mod world;

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;

pub use body::{Refusal, UpgradeOffer};
pub use callbacks::CallbackStats;
pub use world::{
    CustomerMedia, Fault, MAX_MEDIA_BYTES, MAX_SPAN, MediaKind, RECALL_WINDOW, SentMessage,
    ServicerAvailability, UploadedMedia,
};

use wecom_kf::ClientBuilder;
use world::{NewMedia, World};

/// What the simulated corp looks like.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The corp id `gettoken` accepts, and callbacks name as their receiver.
    pub corp_id: String,
    /// The app secret `gettoken` accepts. Not a real secret: it is printed by `kf-sim`.
    pub secret: String,
    /// The customer-service accounts that exist.
    pub open_kfids: Vec<String>,
    /// The corp's members (userids): `servicer_add` refuses anyone else with 60111.
    pub members: Vec<String>,
    /// Whether a 视频号 binding is confirmed, as `get_corp_qualification` reports it.
    pub wechat_channels_binding: bool,
    /// Who the upgrade service (升级服务) may offer customers, as set in the admin console.
    pub upgrade_service: SimUpgradeService,
    /// Lifetime of access tokens (`expires_in`), 7200 s like WeCom's; at most
    /// [`MAX_SPAN`].
    pub token_lifetime: Duration,
    /// Where to POST encrypted `kf_msg_or_event` callbacks, as configured in the admin
    /// console. `None`: no callbacks (read the token with `latest_callback_token`).
    pub callback: Option<SimCallback>,
    /// How many `sync_msg` calls without a callback `token` an account takes in any
    /// 60 seconds of the simulator's clock before answering 45009: WeCom limits those
    /// much more strictly than calls with a token, by an amount it doesn't publish.
    /// 10,000 by default, more than any test makes; 0 refuses every call without a token.
    pub untokened_sync_per_minute: u32,
    /// WeCom's routing of new sessions, which the simulator leaves off by default: when a
    /// customer's message starts a conversation (their first, or the first after the
    /// session ended) and a servicer of the account is receiving, the session goes to a
    /// servicer (state 3, taking turns among those receiving) and logs
    /// `session_status_change` with `change_type` 1 and a pickup `msg_code`, as when the
    /// account's sessions are assigned in the admin console rather than by the API. Then
    /// `send_msg` gets 95018, the usual surprise.
    pub route_new_sessions: bool,
}

/// The members and group chats configured for the upgrade service; `upgrade_service`
/// refuses anything else with 95021.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimUpgradeService {
    /// Members (专员) a customer may be offered.
    pub userid_list: Vec<String>,
    /// Departments whose members may be offered.
    pub department_id_list: Vec<u64>,
    /// Customer group chats a customer may be offered.
    pub chat_id_list: Vec<String>,
}

impl Default for SimUpgradeService {
    fn default() -> Self {
        SimUpgradeService {
            userid_list: vec!["zhangsan".into()],
            department_id_list: vec![2],
            chat_id_list: vec!["wrSIMULATEDCHAT".into()],
        }
    }
}

/// A callback URL and its token and EncodingAESKey.
#[derive(Debug, Clone)]
pub struct SimCallback {
    /// Where callbacks are POSTed.
    pub url: String,
    /// The callback token signatures are made with.
    pub token: String,
    /// The 43-character EncodingAESKey payloads are encrypted with.
    pub encoding_aes_key: String,
    /// How long to wait for a 200 before retrying; WeCom waits 5 seconds.
    pub answer_within: Duration,
}

impl SimCallback {
    /// Callbacks to `url` with these keys, answered within 5 seconds as WeCom expects.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        encoding_aes_key: impl Into<String>,
    ) -> Self {
        SimCallback {
            url: url.into(),
            token: token.into(),
            encoding_aes_key: encoding_aes_key.into(),
            answer_within: Duration::from_secs(5),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            corp_id: "wwSIMULATEDCORP".into(),
            secret: "simulated-secret".into(),
            open_kfids: vec!["wkSIMULATEDKF".into()],
            members: vec!["zhangsan".into(), "lisi".into(), "wangwu".into()],
            wechat_channels_binding: false,
            upgrade_service: SimUpgradeService::default(),
            token_lifetime: Duration::from_secs(7200),
            callback: None,
            untokened_sync_per_minute: 10_000,
            route_new_sessions: false,
        }
    }
}

/// A running simulator. Cheap to clone; the server stops when the runtime does.
#[derive(Clone)]
pub struct Simulator {
    addr: SocketAddr,
    config: Arc<SimConfig>,
    world: Arc<Mutex<World>>,
    callbacks: Option<Arc<callbacks::Sender>>,
    /// Where callbacks are sent from: the runtime the simulator started in, so the control
    /// API may be called from any thread.
    runtime: tokio::runtime::Handle,
}

/// The locked world. Dropping it sends the callbacks of whatever was logged meanwhile, so
/// no path into the world can forget them.
struct WorldGuard<'a> {
    world: MutexGuard<'a, World>,
    sim: &'a Simulator,
}

impl Deref for WorldGuard<'_> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.world
    }
}

impl DerefMut for WorldGuard<'_> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.world
    }
}

impl Drop for WorldGuard<'_> {
    fn drop(&mut self) {
        let pending = self.world.take_outbox();
        let Some(sender) = &self.sim.callbacks else {
            return;
        };
        let now = self.world.now().as_secs();
        for (open_kfid, token) in pending {
            self.sim
                .runtime
                .spawn(sender.clone().deliver(open_kfid, token, now));
        }
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("base_url", &self.base_url())
            .field("corp_id", &self.config.corp_id)
            .finish_non_exhaustive()
    }
}

/// A customer's message, as the simulator logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMessage {
    /// The message's `msgid` in the account's log.
    pub msgid: String,
    /// The `Token` of the `kf_msg_or_event` callback this message triggers; pass it to
    /// `sync_msg` (valid 10 minutes).
    pub callback_token: String,
}

impl Simulator {
    /// Starts a simulator with the default corp on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SimConfig::default(), SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator for `config`, listening on `addr`. Fails on a config it can't
    /// simulate (a token lifetime over [`MAX_SPAN`], half a callback configuration).
    pub async fn start_with(config: SimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        if config.token_lifetime > MAX_SPAN {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "a token lifetime of {} s is over the simulator's {} s",
                    config.token_lifetime.as_secs(),
                    MAX_SPAN.as_secs()
                ),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let world = World::new(&config);
        let callbacks = match &config.callback {
            Some(callback) => Some(Arc::new(
                callbacks::Sender::new(callback, &config.corp_id)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            )),
            None => None,
        };
        let sim = Simulator {
            addr,
            config: Arc::new(config),
            world: Arc::new(Mutex::new(world)),
            callbacks,
            runtime: tokio::runtime::Handle::current(),
        };
        tokio::spawn(http::serve(listener, sim.clone()));
        Ok(sim)
    }

    fn world(&self) -> WorldGuard<'_> {
        // The world's methods leave it consistent at every return, so a panic elsewhere
        // while the lock was held leaves nothing half-done.
        WorldGuard {
            world: self.world.lock().unwrap_or_else(|p| p.into_inner()),
            sim: self,
        }
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API root to give [`ClientBuilder::base_url`].
    pub fn base_url(&self) -> String {
        format!("http://{}/cgi-bin/", self.addr)
    }

    /// The simulated corp's id.
    pub fn corp_id(&self) -> &str {
        &self.config.corp_id
    }

    /// The app secret `gettoken` accepts.
    pub fn secret(&self) -> &str {
        &self.config.secret
    }

    /// The first customer-service account.
    pub fn open_kfid(&self) -> &str {
        self.config.open_kfids.first().map_or("", String::as_str)
    }

    /// A client builder already pointed at this simulator with its credentials.
    pub fn client_builder(&self) -> ClientBuilder {
        wecom_kf::Client::builder()
            .corp_id(self.config.corp_id.clone())
            .secret(self.config.secret.clone())
            .base_url(self.base_url())
    }

    // -- playing the customer and the servicers --------------------------------------

    /// A customer opens the chat: logs an `enter_session` event and returns its
    /// `welcome_code` (valid 20 s, one message) when a welcome may be sent.
    pub fn customer_enters(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<Option<String>, Refusal> {
        let (code, _token) = self
            .world()
            .customer_enters(open_kfid, external_userid, "", "")?;
        Ok(code)
    }

    /// A customer opens a link from `add_contact_way`, perhaps with `&scene_param=…`
    /// appended: the `enter_session` event carries its scene and scene_param. Returns the
    /// `welcome_code`, like [`customer_enters`](Self::customer_enters).
    pub fn customer_opens_link(
        &self,
        url: &str,
        external_userid: &str,
    ) -> Result<Option<String>, Refusal> {
        let (_open_kfid, code, _token) = self.world().customer_opens_link(url, external_userid)?;
        Ok(code)
    }

    /// Sets the WeChat profile `customer_batchget` reports (gender: 0 unknown, 1 male,
    /// 2 female); until then the nickname is the id without `wm`.
    pub fn set_customer_profile(&self, external_userid: &str, nickname: &str, gender: u32) {
        self.world()
            .set_customer_profile(external_userid, nickname, gender);
    }

    /// Deliveries of callbacks so far.
    pub fn callback_stats(&self) -> CallbackStats {
        self.callbacks
            .as_ref()
            .map(|sender| sender.stats())
            .unwrap_or_default()
    }

    /// Checks the callback URL like the admin console does when it is saved: a signed GET
    /// with an encrypted `echostr`, whose plaintext must come back as is.
    pub async fn verify_callback_url(&self) -> Result<(), String> {
        match &self.callbacks {
            Some(sender) => sender.verify_url().await,
            None => Err("no callback URL is configured".into()),
        }
    }

    /// A customer writes: opens a 48-hour window with 5 sends.
    pub fn customer_says(
        &self,
        open_kfid: &str,
        external_userid: &str,
        content: &str,
    ) -> Result<CustomerMessage, Refusal> {
        let (msgid, callback_token) =
            self.world()
                .customer_writes(open_kfid, external_userid, content, None)?;
        Ok(CustomerMessage {
            msgid,
            callback_token,
        })
    }

    /// A customer taps a `click` menu item: a text message with its `menu_id`.
    pub fn customer_clicks(
        &self,
        open_kfid: &str,
        external_userid: &str,
        menu_id: &str,
        content: &str,
    ) -> Result<CustomerMessage, Refusal> {
        let (msgid, callback_token) =
            self.world()
                .customer_writes(open_kfid, external_userid, content, Some(menu_id))?;
        Ok(CustomerMessage {
            msgid,
            callback_token,
        })
    }

    /// A customer sends an image, voice, video or file: the bytes are kept for `media/get`
    /// and the message is logged as doc 94670 shows, opening the 48-hour window and
    /// triggering the callback like [`customer_says`](Self::customer_says). Voice must be
    /// AMR (`#!AMR\n`; 40058 otherwise) and is kept as SILK too. A file larger than a
    /// message delivers (image, voice 2 MB, video 10 MB, file 20 MB) arrives as a text
    /// hint, with no `media_id`. Without a `filename`, one is made from the id and the
    /// bytes' type. [`samples::sample`] gives bytes to send.
    pub fn customer_sends_media(
        &self,
        open_kfid: &str,
        external_userid: &str,
        kind: MediaKind,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<CustomerMedia, Refusal> {
        let media = NewMedia {
            kind,
            file_name: filename,
            bytes: bytes.into(),
        };
        self.world()
            .customer_sends_media(open_kfid, external_userid, media)
    }

    /// [`customer_sends_media`](Self::customer_sends_media) with an image.
    pub fn customer_sends_image(
        &self,
        open_kfid: &str,
        external_userid: &str,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<CustomerMedia, Refusal> {
        let kind = MediaKind::Image;
        self.customer_sends_media(open_kfid, external_userid, kind, bytes, filename)
    }

    /// [`customer_sends_media`](Self::customer_sends_media) with AMR voice.
    pub fn customer_sends_voice(
        &self,
        open_kfid: &str,
        external_userid: &str,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<CustomerMedia, Refusal> {
        let kind = MediaKind::Voice;
        self.customer_sends_media(open_kfid, external_userid, kind, bytes, filename)
    }

    /// [`customer_sends_media`](Self::customer_sends_media) with a video.
    pub fn customer_sends_video(
        &self,
        open_kfid: &str,
        external_userid: &str,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<CustomerMedia, Refusal> {
        let kind = MediaKind::Video;
        self.customer_sends_media(open_kfid, external_userid, kind, bytes, filename)
    }

    /// [`customer_sends_media`](Self::customer_sends_media) with a file.
    pub fn customer_sends_file(
        &self,
        open_kfid: &str,
        external_userid: &str,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<CustomerMedia, Refusal> {
        let kind = MediaKind::File;
        self.customer_sends_media(open_kfid, external_userid, kind, bytes, filename)
    }

    /// Media WeCom holds without any message carrying it, up to [`MAX_MEDIA_BYTES`]: a
    /// file over 20 MB to download in ranges, say. Returns its `media_id` (3 days).
    pub fn add_media(
        &self,
        kind: MediaKind,
        bytes: impl Into<Bytes>,
        filename: Option<&str>,
    ) -> Result<String, Refusal> {
        self.world().store_media(NewMedia {
            kind,
            file_name: filename,
            bytes: bytes.into(),
        })
    }

    /// The bytes `media/get` serves for `media_id` (uploads and customers' files alike),
    /// shared, not copied; `None` for an unknown or expired id.
    pub fn media_bytes(&self, media_id: &str) -> Option<Bytes> {
        self.world().media_bytes(media_id)
    }

    /// A servicer picks the session up in the WeCom app (state 3, where `send_msg` gets
    /// 95018): logs `session_status_change` (`change_type` 1) and its callback; returns the
    /// pickup `msg_code`.
    pub fn servicer_takes(
        &self,
        open_kfid: &str,
        external_userid: &str,
        servicer_userid: &str,
    ) -> Result<String, Refusal> {
        self.world()
            .servicer_takes(open_kfid, external_userid, servicer_userid)
    }

    /// A servicer ends the session in the WeCom app (state 4): logs
    /// `session_status_change` (`change_type` 3) and its callback; returns the closing
    /// `msg_code` (20 s).
    pub fn session_ends(
        &self,
        open_kfid: &str,
        external_userid: &str,
        servicer_userid: &str,
    ) -> Result<String, Refusal> {
        self.world()
            .session_ends(open_kfid, external_userid, servicer_userid)
    }

    /// A servicer starts or stops receiving in the WeCom app, which `servicer_list` shows,
    /// `service_state_trans` to them respects (95019) and routing follows
    /// ([`SimConfig::route_new_sessions`]). Logs `servicer_status_change` and its callback.
    pub fn servicer_becomes(
        &self,
        open_kfid: &str,
        servicer_userid: &str,
        availability: ServicerAvailability,
    ) -> Result<(), Refusal> {
        self.world()
            .servicer_becomes(open_kfid, servicer_userid, availability)
    }

    /// The customer refuses the account's messages (用户拒收): `send_msg` and
    /// `send_msg_on_event` still answer 0, then each logs a `msg_send_fail` event with
    /// `fail_type` 10 and the message's msgid, with its callback, as WeCom reports a
    /// delivery that failed after it was accepted.
    pub fn customer_refuses_messages(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<(), Refusal> {
        self.world()
            .customer_refuses(open_kfid, external_userid, true)
    }

    /// Undoes [`customer_refuses_messages`](Self::customer_refuses_messages).
    pub fn customer_accepts_messages(
        &self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<(), Refusal> {
        self.world()
            .customer_refuses(open_kfid, external_userid, false)
    }

    /// The upgrade-service offer pending for a customer, if any.
    pub fn upgrade_offer(&self, open_kfid: &str, external_userid: &str) -> Option<UpgradeOffer> {
        self.world().upgrade_offer(open_kfid, external_userid)
    }

    /// Appends any JSON item to an account's log, as `sync_msg` will return it, and
    /// triggers its callback like any other item; returns the callback's token.
    pub fn push_raw(&self, open_kfid: &str, item: serde_json::Value) -> Result<String, Refusal> {
        self.world().push_raw(open_kfid, item)
    }

    // -- inspecting and bending the world --------------------------------------------

    /// Every message the simulator accepted, oldest first.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.world().sent()
    }

    /// Every file the bot uploaded with `media/upload`, oldest first.
    pub fn media(&self) -> Vec<UploadedMedia> {
        self.world().media()
    }

    /// The newest callback token of an account.
    pub fn latest_callback_token(&self, open_kfid: &str) -> Option<String> {
        self.world().latest_callback_token(open_kfid)
    }

    /// How many `gettoken` requests arrived.
    pub fn gettoken_calls(&self) -> usize {
        self.world().gettoken_calls()
    }

    /// How many `sync_msg` requests reached the simulator's accounts (injected faults
    /// answer before they are counted).
    pub fn sync_msg_calls(&self) -> usize {
        self.world().sync_msg_calls()
    }

    /// The simulator's clock: real time plus every [`advance`](Self::advance). Hand it to
    /// a [`Replier`](wecom_kf::reply::Replier) so windows and codes expire for both at once.
    pub fn now(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH + self.world().now()
    }

    /// Moves the virtual clock forward: windows close, codes and tokens expire. The clock
    /// stops [`MAX_SPAN`] past the real time; see [`try_advance`](Self::try_advance).
    pub fn advance(&self, by: Duration) {
        self.world().advance_at_most(by);
    }

    /// [`advance`](Self::advance), refused (and the clock left alone) when it would take
    /// the clock more than [`MAX_SPAN`] past the real time.
    pub fn try_advance(&self, by: Duration) -> Result<(), Refusal> {
        self.world().advance(by)
    }

    /// Makes the next `times` requests to `path` (`"kf/send_msg"`, `"gettoken"`) fail,
    /// after the faults already queued there. Costs the same whatever `times` is.
    pub fn inject(&self, path: &str, fault: Fault, times: usize) {
        self.world().inject(path, fault, times);
    }

    /// Refuses every token issued so far with `errcode` (42001 or 40014).
    pub fn revoke_tokens(&self, errcode: i64) {
        self.world().revoke_tokens(errcode);
    }
}
