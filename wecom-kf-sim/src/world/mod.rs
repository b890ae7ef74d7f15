//! The simulated WeCom: accounts, sessions, message logs, tokens and one-time codes, and
//! the rules the real server applies to them. Both the HTTP API and the control API call
//! into this one state, so a test that drives the simulator from Rust and one that drives
//! it over HTTP see the same behaviour.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use super::SimConfig;
use super::body::{self, Refusal, UpgradeOffer};

mod admin;
mod knowledge;
mod media;
mod stats;

pub use admin::GET_ENDPOINTS;
pub use media::{CustomerMedia, MAX_MEDIA_BYTES, MediaFile, MediaKind, NewMedia, UploadedMedia};

/// How long things last on the real server (docs 91039, 94670, 94677, 95122).
pub const SERVER_CALLBACK_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 60);
pub const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);
pub const SEND_WINDOW: Duration = Duration::from_secs(48 * 3600);
pub const SENDS_PER_CUSTOMER_MESSAGE: u32 = 5;
pub const SHORT_CODE_LIFETIME: Duration = Duration::from_secs(20);
pub const LONG_CODE_LIFETIME: Duration = Duration::from_secs(48 * 3600);
/// How long after sending the bot may recall a message: 2 minutes, as one source says
/// (doc 96020, unconfirmed). The simulator's assumption.
pub const RECALL_WINDOW: Duration = Duration::from_secs(2 * 60);
/// The window [`SimConfig::untokened_sync_per_minute`](super::SimConfig) counts in.
const UNTOKENED_WINDOW: Duration = Duration::from_secs(60);

/// The farthest the virtual clock may be moved, and the longest token lifetime: a hundred
/// years, far past any test, and far from where `Duration` arithmetic overflows.
pub const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A failure to inject on one API path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `{"errcode": -1}` (system busy).
    Busy,
    /// Answer with this HTTP status and no JSON.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Drop the connection after the headers, before the body.
    Hangup,
    /// Send the headers and this many bytes of the body, then drop the connection: a
    /// download cut short, for testing resume from an offset.
    HangupAfter(u64),
}

/// A message the bot sent and the simulator accepted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentMessage {
    /// The account it was sent from.
    pub open_kfid: String,
    /// The customer: `touser` as sent, or for an event reply the customer whose code it used.
    pub touser: String,
    /// Its `msgid`: the one sent, or the one the simulator made.
    pub msgid: String,
    /// `text`, `image`, `msgmenu`, …
    pub msgtype: String,
    /// The payload under `msgtype`.
    pub payload: Value,
    /// `send_msg` or `send_msg_on_event`.
    pub via: &'static str,
    /// When it was accepted, in Unix seconds of the simulator's clock.
    pub send_time: u64,
    /// When `recall_msg` took it back (Unix seconds). It still counted toward the 5.
    pub recalled_at: Option<u64>,
}

/// What produced a one-time event code, which decides how long it lasts and what it
/// may carry (doc 95122).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeKind {
    Welcome,
    /// `service_state/trans` to the queue (2), the first time in a conversation.
    Queue,
    Pickup,
    End,
}

impl CodeKind {
    fn lifetime(self) -> Duration {
        match self {
            CodeKind::Welcome | CodeKind::End => SHORT_CODE_LIFETIME,
            CodeKind::Queue | CodeKind::Pickup => LONG_CODE_LIFETIME,
        }
    }

    fn allows(self, msgtype: &str) -> bool {
        match self {
            CodeKind::Welcome | CodeKind::End => matches!(msgtype, "text" | "msgmenu"),
            CodeKind::Queue | CodeKind::Pickup => msgtype == "text",
        }
    }

    /// The session state the code is bound to, if any.
    fn required_state(self) -> Option<u8> {
        match self {
            CodeKind::Welcome => None,
            CodeKind::Queue => Some(2),
            CodeKind::Pickup => Some(3),
            CodeKind::End => Some(4),
        }
    }
}

struct EventCode {
    open_kfid: String,
    external_userid: String,
    kind: CodeKind,
    issued: Duration,
    used: bool,
}

/// One conversation between an account and a customer.
#[derive(Default)]
struct Session {
    /// 0 new, 1 smart assistant, 2 queued, 3 servicer, 4 ended (doc 94669).
    state: u8,
    last_customer_message: Option<Duration>,
    sent_since: u32,
    /// Who serves the session while its state is 3.
    servicer: Option<String>,
    /// Whether this conversation already got its queue (2) or pickup (3) reply code:
    /// `service_state/trans` hands one out only the first time (94669).
    queue_code_given: bool,
    pickup_code_given: bool,
    /// The pending `upgrade_service` offer.
    upgrade: Option<UpgradeOffer>,
    /// Whether the customer wrote in this conversation yet.
    customer_wrote: bool,
    /// Which conversation this is, for the statistics: an ended session that reopens
    /// starts a new one.
    conversation: u64,
}

impl Session {
    /// The customer comes back to an ended session: a new conversation starts, unhandled.
    fn reopen(&mut self, conversation: u64) {
        *self = Session {
            last_customer_message: self.last_customer_message,
            sent_since: self.sent_since,
            conversation,
            ..Session::default()
        };
    }
}

/// Whether a servicer is receiving customers, as `servicer/list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServicerAvailability {
    /// Receiving customers (接待中).
    Receiving,
    /// Stopped receiving (停止接待).
    Stopped,
    /// Temporarily suspended (暂时挂起).
    Suspended,
}

struct Account {
    /// Creation order, which `account/list` pages by.
    serial: u64,
    name: String,
    avatar: String,
    /// The id in the account's contact link (`https://work.weixin.qq.com/kf/<id>`).
    contact_id: String,
    /// Member servicers in the order they were added, and servicer departments.
    servicers: Vec<(String, ServicerAvailability)>,
    departments: Vec<u64>,
    log: Vec<(Duration, Value)>,
    sessions: HashMap<String, Session>,
    callback_tokens: Vec<(String, Duration)>,
    msgids: HashSet<String>,
    /// Customers who refuse this account's messages: sends to them are accepted and then
    /// fail with a `msg_send_fail` event (fail_type 10).
    refusing: HashSet<String>,
    /// When the `sync_msg` calls without a token of the last minute came, oldest first.
    untokened_syncs: VecDeque<Duration>,
    /// Whose turn it is to get the next routed session, among the receiving servicers.
    next_route: usize,
}

impl Account {
    fn new(serial: u64, name: String, avatar: String) -> Self {
        Account {
            serial,
            name,
            avatar,
            contact_id: format!("kfc{:016x}", serial.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            servicers: Vec::new(),
            departments: Vec::new(),
            log: Vec::new(),
            sessions: HashMap::new(),
            callback_tokens: Vec::new(),
            msgids: HashSet::new(),
            refusing: HashSet::new(),
            untokened_syncs: VecDeque::new(),
            next_route: 0,
        }
    }
}

/// A WeChat customer of the corp: known once they entered a session or wrote.
struct Customer {
    nickname: String,
    gender: u32,
    wrote: bool,
    /// The `scene` and `scene_param` of their latest `enter_session`.
    entered: Option<(String, String)>,
}

impl Customer {
    /// Until the control API sets a profile, the nickname is the id without `wm`.
    fn new(external_userid: &str) -> Self {
        Customer {
            nickname: external_userid
                .strip_prefix("wm")
                .unwrap_or(external_userid)
                .to_owned(),
            gender: 0,
            wrote: false,
            entered: None,
        }
    }
}

/// An access token the simulator issued.
struct IssuedToken {
    expires: Duration,
    /// Set when the control API revoked it: the errcode it is refused with.
    revoked: Option<i64>,
}

/// The simulator's whole state.
pub struct World {
    corp_id: String,
    secret: String,
    token_lifetime: Duration,
    started: Instant,
    unix_start: Duration,
    clock_offset: Duration,
    counter: u64,
    tokens: HashMap<String, IssuedToken>,
    accounts: HashMap<String, Account>,
    accounts_created: u64,
    customers: HashMap<String, Customer>,
    /// The corp's members: who may become a servicer.
    members: Vec<String>,
    wechat_channels_binding: bool,
    upgrade_service: super::SimUpgradeService,
    codes: HashMap<String, EventCode>,
    /// Every accepted message, with when it was accepted to the nanosecond (for the
    /// recall window, which whole seconds would blur).
    sent: Vec<(SentMessage, Duration)>,
    media: Vec<media::UploadedMedia>,
    /// Every file `media/get` can serve, by `media_id`.
    media_store: HashMap<String, media::StoredMedia>,
    /// The SILK encoding's `media_id` of each customer voice message, by its AMR one.
    silk_of: HashMap<String, String>,
    /// Conversations started so far: the last one's number.
    conversations: u64,
    /// What the statistics count, oldest first.
    journal: Vec<stats::Record>,
    knowledge: knowledge::Knowledge,
    /// Callbacks to send, one per logged item: the account and the callback token. The
    /// simulator takes them out after each call into the world.
    outbox: Vec<(String, String)>,
    /// Per path, the faults to inject in order, each with how many requests it has left.
    faults: HashMap<String, VecDeque<(Fault, usize)>>,
    gettoken_calls: usize,
    sync_msg_calls: usize,
    untokened_sync_per_minute: u32,
    route_new_sessions: bool,
}

/// An answer of the API: the JSON body (with `errcode`).
pub type Answer = Value;

fn refused(refusal: Refusal) -> Answer {
    json!({"errcode": refusal.code, "errmsg": refusal.message})
}

fn ok(mut fields: Value) -> Answer {
    if let Value::Object(map) = &mut fields {
        map.insert("errcode".into(), json!(0));
        map.insert("errmsg".into(), json!("ok"));
    }
    fields
}

impl World {
    pub fn new(config: &SimConfig) -> Self {
        let unix_start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let accounts = config
            .open_kfids
            .iter()
            .zip(1..)
            .map(|(open_kfid, serial)| {
                let account =
                    Account::new(serial, format!("客服{serial}"), avatar_url("SIMAVATAR"));
                (open_kfid.clone(), account)
            })
            .collect::<HashMap<_, _>>();
        World {
            corp_id: config.corp_id.clone(),
            secret: config.secret.clone(),
            token_lifetime: config.token_lifetime,
            started: Instant::now(),
            unix_start,
            clock_offset: Duration::ZERO,
            counter: 0,
            tokens: HashMap::new(),
            accounts_created: accounts.len() as u64,
            accounts,
            customers: HashMap::new(),
            members: config.members.clone(),
            wechat_channels_binding: config.wechat_channels_binding,
            upgrade_service: config.upgrade_service.clone(),
            codes: HashMap::new(),
            sent: Vec::new(),
            media: Vec::new(),
            media_store: HashMap::new(),
            silk_of: HashMap::new(),
            conversations: 0,
            journal: Vec::new(),
            knowledge: knowledge::Knowledge::default(),
            outbox: Vec::new(),
            faults: HashMap::new(),
            gettoken_calls: 0,
            sync_msg_calls: 0,
            untokened_sync_per_minute: config.untokened_sync_per_minute,
            route_new_sessions: config.route_new_sessions,
        }
    }

    /// The simulated time since the Unix epoch.
    pub fn now(&self) -> Duration {
        self.unix_start
            .saturating_add(self.started.elapsed())
            .saturating_add(self.clock_offset)
    }

    /// Moves the clock `by` forward, unless that takes it more than [`MAX_SPAN`] past the
    /// real time.
    pub fn advance(&mut self, by: Duration) -> Result<(), Refusal> {
        match self.clock_offset.checked_add(by) {
            Some(offset) if offset <= MAX_SPAN => {
                self.clock_offset = offset;
                Ok(())
            }
            _ => Err(Refusal::new(
                40058,
                format!(
                    "the clock moves at most {} s in all; it has moved {} s",
                    MAX_SPAN.as_secs(),
                    self.clock_offset.as_secs()
                ),
            )),
        }
    }

    /// Moves the clock as far as it may go towards `by`.
    pub fn advance_at_most(&mut self, by: Duration) {
        self.clock_offset = self.clock_offset.saturating_add(by).min(MAX_SPAN);
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!(
            "{prefix}{:06}{:x}",
            self.counter,
            self.now().as_millis() % 0xffff
        )
    }

    // -- faults ----------------------------------------------------------------------

    /// Queues `fault` for the next `times` requests to `path`, after those already queued.
    /// One entry whatever `times` is.
    pub fn inject(&mut self, path: &str, fault: Fault, times: usize) {
        if times > 0 {
            let queue = self.faults.entry(path.to_owned()).or_default();
            queue.push_back((fault, times));
        }
    }

    pub fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let queue = self.faults.get_mut(path)?;
        let (fault, left) = queue.front_mut()?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            queue.pop_front();
        }
        Some(fault)
    }

    // -- tokens ----------------------------------------------------------------------

    pub fn gettoken(&mut self, corpid: Option<&str>, corpsecret: Option<&str>) -> Answer {
        self.gettoken_calls += 1;
        if corpid != Some(self.corp_id.as_str()) {
            return refused(Refusal::new(40013, "invalid corpid"));
        }
        if corpsecret != Some(self.secret.as_str()) {
            return refused(Refusal::new(40001, "invalid credential"));
        }
        // Like WeCom: the same token again while it is valid.
        let now = self.now();
        if let Some((token, issued)) = self
            .tokens
            .iter()
            .find(|(_, t)| t.revoked.is_none() && t.expires > now)
        {
            let left = issued.expires.saturating_sub(now).as_secs();
            return ok(json!({"access_token": token, "expires_in": left}));
        }
        let token = self.next_id("SIMTOKEN");
        // Both are at most about a century past now (see MAX_SPAN): this can't saturate.
        let expires = now.saturating_add(self.token_lifetime);
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                expires,
                revoked: None,
            },
        );
        ok(json!({"access_token": token, "expires_in": self.token_lifetime.as_secs()}))
    }

    pub fn gettoken_calls(&self) -> usize {
        self.gettoken_calls
    }

    pub fn sync_msg_calls(&self) -> usize {
        self.sync_msg_calls
    }

    /// Refuses every token issued so far with `errcode` (40014 or 42001), as WeCom does
    /// when it revokes a token early.
    pub fn revoke_tokens(&mut self, errcode: i64) {
        for token in self.tokens.values_mut() {
            token.revoked = Some(errcode);
        }
    }

    /// The check every API call but gettoken starts with.
    pub fn authorize(&self, access_token: Option<&str>) -> Result<(), Answer> {
        let Some(token) = access_token else {
            return Err(refused(Refusal::new(41001, "access_token missing")));
        };
        match self.tokens.get(token) {
            None => Err(refused(Refusal::new(40014, "invalid access_token"))),
            Some(t) if t.revoked.is_some() => Err(refused(Refusal::new(
                t.revoked.unwrap_or(40014),
                "access_token revoked",
            ))),
            Some(t) if t.expires <= self.now() => {
                Err(refused(Refusal::new(42001, "access_token expired")))
            }
            Some(_) => Ok(()),
        }
    }

    // -- the customer's side (control API) -------------------------------------------

    fn account(&mut self, open_kfid: &str) -> Result<&mut Account, Refusal> {
        self.accounts
            .get_mut(open_kfid)
            .ok_or_else(|| Refusal::new(95004, "open_kfid not exist"))
    }

    /// Appends `item` to an account's log and queues the `kf_msg_or_event` callback WeCom
    /// sends for every item; returns the callback's token. Tokens older than their
    /// 10 minutes are dropped here, the newest one kept.
    fn log(&mut self, open_kfid: &str, item: Value) -> Result<String, Refusal> {
        let now = self.now();
        let token = self.next_id("SIMCB");
        let account = self.account(open_kfid)?;
        account.log.push((now, item));
        account
            .callback_tokens
            .retain(|(_, issued)| now.saturating_sub(*issued) < SERVER_CALLBACK_TOKEN_LIFETIME);
        account.callback_tokens.push((token.clone(), now));
        self.outbox.push((open_kfid.to_owned(), token.clone()));
        Ok(token)
    }

    /// The callbacks queued since the last call: account and token.
    pub fn take_outbox(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.outbox)
    }

    /// The customer's session with the account, created as a new conversation if there is
    /// none, and reopened as one when `reopen` and it ended.
    fn session_at(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        reopen: bool,
    ) -> Result<&mut Session, Refusal> {
        let fresh = self.conversations.saturating_add(1);
        let account = self
            .accounts
            .get_mut(open_kfid)
            .ok_or_else(|| Refusal::new(95004, "open_kfid not exist"))?;
        let mut started = false;
        let session = account
            .sessions
            .entry(external_userid.to_owned())
            .or_insert_with(|| {
                started = true;
                Session {
                    conversation: fresh,
                    ..Session::default()
                }
            });
        if reopen && session.state == 4 {
            session.reopen(fresh);
            started = true;
        }
        if started {
            self.conversations = fresh;
        }
        Ok(session)
    }

    /// The session a customer's action lands in: an ended one reopens.
    fn live_session(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
    ) -> Result<&mut Session, Refusal> {
        self.session_at(open_kfid, external_userid, true)
    }

    /// A customer opens the chat. Returns the `welcome_code` when a welcome may be sent
    /// (the customer has not written to the account in the last 48 hours), and the token
    /// of the callback the event triggers.
    pub fn customer_enters(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        scene: &str,
        scene_param: &str,
    ) -> Result<(Option<String>, String), Refusal> {
        let now = self.now();
        let session = self.live_session(open_kfid, external_userid)?;
        let recently = session
            .last_customer_message
            .is_some_and(|t| now.saturating_sub(t) < SEND_WINDOW);
        self.customers
            .entry(external_userid.to_owned())
            .or_insert_with(|| Customer::new(external_userid))
            .entered = Some((scene.to_owned(), scene_param.to_owned()));
        let code =
            (!recently).then(|| self.issue_code(open_kfid, external_userid, CodeKind::Welcome));
        let msgid = self.next_id("SIMEVT");
        let mut event = json!({
            "event_type": "enter_session", "open_kfid": open_kfid,
            "external_userid": external_userid, "scene": scene, "scene_param": scene_param,
        });
        if let Some(code) = &code {
            event["welcome_code"] = json!(code);
        }
        let item = json!({"msgid": msgid, "send_time": now.as_secs(), "origin": 4, "msgtype": "event", "event": event});
        let token = self.log(open_kfid, item)?;
        Ok((code, token))
    }

    fn issue_code(&mut self, open_kfid: &str, external_userid: &str, kind: CodeKind) -> String {
        let code = self.next_id("SIMCODE");
        let issued = self.now();
        self.codes.insert(
            code.clone(),
            EventCode {
                open_kfid: open_kfid.to_owned(),
                external_userid: external_userid.to_owned(),
                kind,
                issued,
                used: false,
            },
        );
        code
    }

    /// A customer writes (or taps a menu item, with `menu_id`). Opens a new 48-hour window
    /// with 5 sends, and returns the msgid and the callback token WeCom would push.
    pub fn customer_writes(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        content: &str,
        menu_id: Option<&str>,
    ) -> Result<(String, String), Refusal> {
        let mut text = json!({"content": content});
        if let Some(menu_id) = menu_id {
            text["menu_id"] = json!(menu_id);
        }
        self.customer_item(open_kfid, external_userid, "text", text)
    }

    /// Logs a customer's message of `msgtype` with `payload` under that key (origin 3):
    /// a new 48-hour window with 5 sends. Returns the msgid and the callback token.
    fn customer_item(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        msgtype: &str,
        payload: Value,
    ) -> Result<(String, String), Refusal> {
        let now = self.now();
        let msgid = self.next_id("SIMMSG");
        let session = self.live_session(open_kfid, external_userid)?;
        let starts = !session.customer_wrote && session.state == 0;
        session.customer_wrote = true;
        session.last_customer_message = Some(now);
        session.sent_since = 0;
        let conversation = session.conversation;
        let servicer = session.servicer.clone().filter(|_| session.state == 3);
        self.customers
            .entry(external_userid.to_owned())
            .or_insert_with(|| Customer::new(external_userid))
            .wrote = true;
        let item = json!({
            "msgid": msgid, "open_kfid": open_kfid, "external_userid": external_userid,
            "send_time": now.as_secs(), "origin": 3, "msgtype": msgtype, msgtype: payload,
        });
        let token = self.log(open_kfid, item)?;
        let message = stats::Traffic::CustomerMessage { servicer };
        self.record(open_kfid, external_userid, conversation, message);
        if starts && self.route_new_sessions {
            self.route(open_kfid, external_userid)?;
        }
        Ok((msgid, token))
    }

    /// WeCom's routing ([`SimConfig::route_new_sessions`](super::SimConfig)): a new
    /// conversation goes to the next receiving servicer, if any, as a pickup.
    fn route(&mut self, open_kfid: &str, external_userid: &str) -> Result<(), Refusal> {
        let account = self.account(open_kfid)?;
        let receiving: Vec<&String> = account
            .servicers
            .iter()
            .filter(|(_, availability)| *availability == ServicerAvailability::Receiving)
            .map(|(userid, _)| userid)
            .collect();
        let Some(&servicer) = receiving.get(account.next_route % receiving.len().max(1)) else {
            return Ok(());
        };
        let servicer = servicer.clone();
        account.next_route = account.next_route.wrapping_add(1);
        self.change_session(
            open_kfid,
            external_userid,
            3,
            1,
            &servicer,
            CodeKind::Pickup,
        )
        .map(drop)
    }

    /// Adds any item to an account's log as is (an unknown type, say); returns the token
    /// of the callback it triggers.
    pub fn push_raw(&mut self, open_kfid: &str, item: Value) -> Result<String, Refusal> {
        self.log(open_kfid, item)
    }

    /// A servicer takes the session (state 3); returns the pickup `msg_code`.
    pub fn servicer_takes(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        servicer: &str,
    ) -> Result<String, Refusal> {
        self.change_session(open_kfid, external_userid, 3, 1, servicer, CodeKind::Pickup)
    }

    /// A servicer ends the session (state 4); returns the closing `msg_code`.
    pub fn session_ends(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        servicer: &str,
    ) -> Result<String, Refusal> {
        self.change_session(open_kfid, external_userid, 4, 3, servicer, CodeKind::End)
    }

    /// A servicer changes the session in the WeCom app: the state, a one-time code, and
    /// the `session_status_change` event (with its callback) that only such changes log.
    fn change_session(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        state: u8,
        change_type: u32,
        servicer: &str,
        kind: CodeKind,
    ) -> Result<String, Refusal> {
        let now = self.now();
        let session = self.session_at(open_kfid, external_userid, false)?;
        let (from, conversation) = (session.state, session.conversation);
        session.state = state;
        if state == 3 {
            session.servicer = Some(servicer.to_owned());
            session.pickup_code_given = true;
        } else {
            session.servicer = None;
        }
        let change = (from, state);
        self.record_state(
            open_kfid,
            external_userid,
            conversation,
            change,
            Some(servicer),
        );
        let code = self.issue_code(open_kfid, external_userid, kind);
        let servicer_key = if state == 3 {
            "new_servicer_userid"
        } else {
            "old_servicer_userid"
        };
        let msgid = self.next_id("SIMEVT");
        let item = json!({
            "msgid": msgid, "send_time": now.as_secs(), "origin": 4, "msgtype": "event",
            "event": {
                "event_type": "session_status_change", "open_kfid": open_kfid,
                "external_userid": external_userid, "change_type": change_type,
                servicer_key: servicer, "msg_code": code,
            },
        });
        self.log(open_kfid, item)?;
        Ok(code)
    }

    /// The newest callback token of an account, as the last callback carried it.
    pub fn latest_callback_token(&self, open_kfid: &str) -> Option<String> {
        self.accounts
            .get(open_kfid)
            .and_then(|a| a.callback_tokens.last())
            .map(|(t, _)| t.clone())
    }

    pub fn sent(&self) -> Vec<SentMessage> {
        self.sent
            .iter()
            .map(|(message, _)| message.clone())
            .collect()
    }

    // -- the API ---------------------------------------------------------------------

    /// `POST kf/sync_msg`.
    pub fn sync_msg(&mut self, body: &Value) -> Answer {
        self.sync_msg_calls += 1;
        let request = match body::sync_request(body) {
            Ok(request) => request,
            Err(refusal) => return refused(refusal),
        };
        let now = self.now();
        let limit = self.untokened_sync_per_minute;
        let Some(account) = self.accounts.get_mut(&request.open_kfid) else {
            return refused(Refusal::new(95000, "invalid open_kfid"));
        };
        match &request.token {
            Some(token) => {
                let valid = account.callback_tokens.iter().any(|(t, issued)| {
                    t == token && now.saturating_sub(*issued) < SERVER_CALLBACK_TOKEN_LIFETIME
                });
                if !valid {
                    return refused(Refusal::new(95007, "invalid msg token"));
                }
            }
            None => {
                let calls = &mut account.untokened_syncs;
                while calls
                    .front()
                    .is_some_and(|at| now.saturating_sub(*at) >= UNTOKENED_WINDOW)
                {
                    calls.pop_front();
                }
                if calls.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
                    return refused(Refusal::new(
                        45009,
                        format!(
                            "api freq out of limit: at most {limit} sync_msg calls without \
                             a token per minute"
                        ),
                    ));
                }
                calls.push_back(now);
            }
        }
        let account = &*account;
        let start = match &request.cursor {
            None => 0,
            Some(cursor) => match decode_cursor(cursor) {
                Some(position) if position <= account.log.len() => position,
                _ => return refused(Refusal::new(40058, "invalid cursor")),
            },
        };
        let oldest = now.saturating_sub(RETENTION);
        let kept: Vec<(usize, &Value)> = account.log[start..]
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at >= oldest)
            .map(|(i, (_, item))| (start + i, item))
            .collect();
        let page: Vec<&(usize, &Value)> = kept.iter().take(request.limit).collect();
        let end = page.last().map_or(start, |(i, _)| i + 1);
        let has_more = kept.len() > page.len();
        let mut msg_list: Vec<Value> = page.iter().map(|(_, item)| (*item).clone()).collect();
        if request.silk {
            self.as_silk(&mut msg_list);
        }
        ok(json!({
            "next_cursor": encode_cursor(end),
            "has_more": u32::from(has_more),
            "msg_list": msg_list,
        }))
    }

    /// `POST kf/send_msg`: the body's shape and limits, then the session rules.
    pub fn send_msg(&mut self, body: &Value) -> Answer {
        let message = match body::send_request(body) {
            Ok(message) => message,
            Err(refusal) => return refused(refusal),
        };
        let now = self.now();
        let open_kfid = message.open_kfid.clone().unwrap_or_default();
        let Some(account) = self.accounts.get_mut(&open_kfid) else {
            return refused(Refusal::new(95000, "invalid open_kfid"));
        };
        let Some(session) = account.sessions.get_mut(&message.touser) else {
            return refused(Refusal::new(40096, "invalid external userid"));
        };
        if session.state > 1 {
            return refused(Refusal::new(95018, "session state not allowed to send"));
        }
        let in_window = session
            .last_customer_message
            .is_some_and(|t| now.saturating_sub(t) <= SEND_WINDOW);
        if !in_window {
            return refused(Refusal::new(95002, "send msg time limit"));
        }
        if session.sent_since >= SENDS_PER_CUSTOMER_MESSAGE {
            return refused(Refusal::new(95001, "send msg count limit"));
        }
        if let Some(msgid) = &message.msgid
            && account.msgids.contains(msgid)
        {
            return refused(Refusal::new(40058, "msgid duplicated"));
        }
        session.sent_since += 1;
        if session.state == 0 {
            session.state = 1;
            let conversation = session.conversation;
            let touser = message.touser.clone();
            self.record_state(&open_kfid, &touser, conversation, (0, 1), None);
        }
        self.accept(message, open_kfid, "send_msg")
    }

    /// `POST kf/send_msg_on_event`: a one-time code instead of a customer and account.
    pub fn send_msg_on_event(&mut self, body: &Value) -> Answer {
        let message = match body::event_request(body) {
            Ok(message) => message,
            Err(refusal) => return refused(refusal),
        };
        let now = self.now();
        let invalid_code = || refused(Refusal::new(40058, "invalid code"));
        let Some(code_text) = message.code.clone() else {
            return invalid_code();
        };
        let Some(code) = self.codes.get(&code_text) else {
            return invalid_code();
        };
        if code.used || now.saturating_sub(code.issued) > code.kind.lifetime() {
            return invalid_code();
        }
        if !code.kind.allows(&message.msgtype) {
            return refused(Refusal::new(40008, "invalid message type for this code"));
        }
        let (open_kfid, external_userid, kind) = (
            code.open_kfid.clone(),
            code.external_userid.clone(),
            code.kind,
        );
        if let Some(required) = kind.required_state() {
            let state = self
                .accounts
                .get(&open_kfid)
                .and_then(|a| a.sessions.get(&external_userid))
                .map_or(0, |s| s.state);
            if state != required {
                return refused(Refusal::new(95018, "session state not allowed to send"));
            }
        }
        // The same rule as `send_msg`: a msgid is used once per account. The code stays
        // unused, as the message was refused.
        if let Some(msgid) = &message.msgid
            && self
                .accounts
                .get(&open_kfid)
                .is_some_and(|a| a.msgids.contains(msgid))
        {
            return refused(Refusal::new(40058, "msgid duplicated"));
        }
        if let Some(code) = self.codes.get_mut(&code_text) {
            code.used = true;
        }
        let message = body::Outgoing {
            touser: external_userid,
            ..message
        };
        self.accept(message, open_kfid, "send_msg_on_event")
    }

    fn accept(&mut self, message: body::Outgoing, open_kfid: String, via: &'static str) -> Answer {
        let msgid = match message.msgid {
            Some(msgid) => msgid,
            None => self.next_id("SIMSENT"),
        };
        if let Some(account) = self.accounts.get_mut(&open_kfid) {
            account.msgids.insert(msgid.clone());
        }
        let now = self.now();
        let send_time = now.as_secs();
        let refused = self
            .accounts
            .get(&open_kfid)
            .is_some_and(|a| a.refusing.contains(&message.touser));
        if refused {
            let event = json!({
                "event_type": "msg_send_fail", "open_kfid": open_kfid,
                "external_userid": message.touser, "fail_msgid": msgid, "fail_type": 10,
            });
            let event_id = self.next_id("SIMEVT");
            let item = json!({"msgid": event_id, "send_time": send_time, "origin": 4, "msgtype": "event", "event": event});
            // The account exists: the message was just accepted for it.
            let _ = self.log(&open_kfid, item);
        }
        let sent = SentMessage {
            open_kfid,
            touser: message.touser,
            msgid: msgid.clone(),
            msgtype: message.msgtype,
            payload: message.payload,
            via,
            send_time,
            recalled_at: None,
        };
        self.sent.push((sent, now));
        ok(json!({"msgid": msgid}))
    }

    /// `POST kf/recall_msg`: takes back a message the bot sent through the API within
    /// [`RECALL_WINDOW`]. The customer's side logs nothing for `sync_msg`, and the message
    /// still counts toward the 5. WeCom's codes for a wrong or late recall are unknown:
    /// the simulator answers 40058 for both (an unknown msgid, one recalled already, one
    /// older than 2 minutes), each with its own `errmsg`.
    pub fn recall_msg(&mut self, body: &Value) -> Answer {
        let recall = match body::recall_request(body) {
            Ok(recall) => recall,
            Err(refusal) => return refused(refusal),
        };
        let now = self.now();
        if !self.accounts.contains_key(&recall.open_kfid) {
            return refused(Refusal::new(95000, "invalid open_kfid"));
        }
        let Some((message, sent_at)) = self
            .sent
            .iter_mut()
            .rev()
            .find(|(m, _)| m.open_kfid == recall.open_kfid && m.msgid == recall.msgid)
        else {
            return refused(Refusal::new(
                40058,
                "invalid msgid: no message this account sent through the API",
            ));
        };
        if message.recalled_at.is_some() {
            return refused(Refusal::new(40058, "invalid msgid: already recalled"));
        }
        if now.saturating_sub(*sent_at) > RECALL_WINDOW {
            return refused(Refusal::new(
                40058,
                "recall time limit: sent more than 2 minutes ago",
            ));
        }
        message.recalled_at = Some(now.as_secs());
        ok(json!({}))
    }

    /// A customer starts (or stops) refusing an account's messages: from then on sends
    /// to them are accepted and each logs `msg_send_fail` with `fail_type` 10.
    pub fn customer_refuses(
        &mut self,
        open_kfid: &str,
        external_userid: &str,
        refuses: bool,
    ) -> Result<(), Refusal> {
        let account = self.account(open_kfid)?;
        if refuses {
            account.refusing.insert(external_userid.to_owned());
        } else {
            account.refusing.remove(external_userid);
        }
        Ok(())
    }
}

/// Where WeCom would serve an avatar uploaded as `media_id`.
fn avatar_url(media_id: &str) -> String {
    format!("https://wework.qpic.cn/wwhead/{media_id}/0")
}

/// Cursors are opaque to clients; here they are a log position with a prefix.
fn encode_cursor(position: usize) -> String {
    format!("SIMCURSOR{position:x}")
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("SIMCURSOR")?, 16).ok()
}
