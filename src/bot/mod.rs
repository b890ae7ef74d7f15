//! A bot runtime: every customer message answered once, in order per customer, customers
//! in parallel, on one process or several.
//!
//! The sync stream pulls an account and records each customer message in an inbox
//! ([`BotStore`]) before the cursor passes it. A worker per customer with work claims the
//! customer ([`Claim`]: one replica at a time, fenced), takes everything the customer
//! wrote so far as one [`Turn`], asks the account's handler for an [`Answer`], journals
//! the reply (each part with the msgid it will be sent with) and only then sends it, part
//! by part. After a crash the journal is resumed: the handler is not asked again, so a
//! customer never gets two different answers to one message, and a part already sent is
//! not sent again. A part in flight at the crash is resent with its msgid, which WeCom is
//! assumed to refuse as a duplicate rather than deliver twice, as the simulator does
//! (WeCom's `send_msg` page, doc 94677, doesn't say what a repeated `msgid` does).
//!
//! On several replicas sharing a Redis store ([`RedisBotStore`](crate::redis::RedisBotStore)),
//! each customer is worked on by the replica that claimed it; a replica that dies stops
//! renewing its claims, and the others take its customers over once the claims expire
//! ([`claim_ttl`](Bot::claim_ttl)), through the sweep [`start`](Bot::start) runs.
//!
//! ```no_run
//! # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use wecom_kf::bot::{Answer, Bot, MemoryBotStore};
//! use wecom_kf::MemoryCursorStore;
//!
//! let bot = Bot::new(client, MemoryCursorStore::new(), MemoryBotStore::new(), |turn: wecom_kf::reply::Turn| async move {
//!     Ok::<_, std::io::Error>(Answer::Text(format!("您说：{}", turn.text())))
//! });
//! bot.start().await?; // catches up every account it has a cursor for
//! bot.callback_token("wkKFID", "TOKEN_FROM_THE_CALLBACK");
//! bot.pull("wkKFID").await?; // then every customer with news is answered in the background
//! # Ok(()) }
//! ```

mod file_store;
pub(crate) mod store;
mod worker;

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use file_store::FileBotStore;
pub use store::{
    BotStore, Claim, ClaimLost, Done, Entry, Journaled, MemoryBotStore, PlannedPart, Recorded, Work,
};

use crate::reply::{Customer, Replier, Turn};
use crate::sync::{Page, SyncError};
use crate::token::BoxFuture;
use crate::token::StoreError;
use crate::{CursorStore, OutgoingMsg, SyncStream};

/// What the handler decides for a turn.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Text, markdown welcome: rendered as plain text and split into WeChat messages that
    /// fit the budget left (shortened, with a marker, when it would need more).
    Text(String),
    /// These messages, in order.
    Messages(Vec<OutgoingMsg>),
    /// No reply.
    Silence,
}

/// The inbox failed while a page was recorded; the page is pulled and recorded again next
/// time (the cursor didn't pass it).
#[derive(Debug)]
pub struct InboxError(pub StoreError);

impl Display for InboxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the bot's inbox failed")
    }
}

impl std::error::Error for InboxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// A turn given up after [`Bot::max_attempts`] failures, for the dead-letter hook.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Whose turn.
    pub customer: Customer,
    /// The messages it would have answered.
    pub messages: Vec<crate::ReceivedMsg>,
    /// The last failure.
    pub error: String,
}

/// Why [`Bot::start`] couldn't look for its work; nothing was started.
#[derive(Debug)]
pub enum StartError {
    /// The bot store couldn't list the customers with work.
    Inbox(StoreError),
    /// The cursor store couldn't list its accounts.
    Cursors(StoreError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StartError::Inbox(_) => "the bot's inbox could not be read",
            StartError::Cursors(_) => "the cursor store could not list its accounts",
        })
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Inbox(error) | StartError::Cursors(error) => Some(error.as_ref()),
        }
    }
}

/// What [`Bot::start`] found to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Started {
    /// Customers with work left in the store, now being worked on.
    pub resumed: usize,
    /// Accounts being caught up: every one with a stored cursor, and every routed one.
    pub accounts: Vec<String>,
}

/// A turn handler with its types erased, so accounts can each have their own.
type Handler = Arc<dyn Fn(Turn) -> BoxFuture<'static, Result<Answer, String>> + Send + Sync>;
type DeadLetterHook = Arc<dyn Fn(DeadLetter) + Send + Sync>;
type EventHook = Arc<dyn Fn(&crate::ReceivedMsg) + Send + Sync>;
#[cfg(feature = "callback-server")]
type CallbackHook = Arc<dyn Fn(crate::callback::CallbackEvent) + Send + Sync>;

fn handler_of<H, F, E>(handler: H) -> Handler
where
    H: Fn(Turn) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Answer, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    Arc::new(move |turn| {
        let answer = handler(turn);
        Box::pin(async move { answer.await.map_err(|e| e.to_string()) })
    })
}

/// The runtime. Cheap to clone: clones share everything.
pub struct Bot<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Bot<S> {
    fn clone(&self) -> Self {
        Bot {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    sync: Arc<SyncStream<S>>,
    store: Arc<dyn BotStore>,
    replier: Replier,
    /// The handler of accounts without a route of their own.
    handler: Handler,
    routes: HashMap<String, Handler>,
    /// Turns running at once, across customers.
    turns: tokio::sync::Semaphore,
    /// Customers a worker serves here, and whether new work came while it ran.
    workers: Mutex<crate::map::Map<Customer, bool>>,
    /// The claims those workers hold, kept renewed.
    claims: worker::Claims,
    started_at: SystemTime,
    max_attempts: u32,
    retry_after: Duration,
    turn_timeout: Duration,
    max_age: Duration,
    claim_ttl: Duration,
    skip_history: bool,
    dead_letter: Option<DeadLetterHook>,
    /// What a customer entering the chat is greeted with, on the welcome code.
    welcome: Option<String>,
    on_event: Option<EventHook>,
    #[cfg(feature = "callback-server")]
    on_callback: Option<CallbackHook>,
    /// Accounts a background pull runs for (outside the callback router).
    pulling: Mutex<HashSet<String>>,
    /// Set by [`Bot::shutdown`]: no new turn starts, callbacks are answered 503.
    draining: AtomicBool,
}

impl<S: CursorStore + 'static> Bot<S> {
    /// A bot over `client`'s accounts: cursors in `cursors`, the inbox and journal in
    /// `store`, turns answered by `handler` (for every account without a
    /// [`route`](Self::route) of its own). At most 16 turns run at once
    /// ([`parallel_turns`](Self::parallel_turns)).
    pub fn new<H, F, E>(client: crate::Client, cursors: S, store: impl BotStore, handler: H) -> Self
    where
        H: Fn(Turn) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Answer, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        Self::with_replier(
            Replier::new(client.clone()),
            SyncStream::new(client, cursors),
            store,
            handler,
        )
    }

    /// [`new`](Self::new), sending through `replier` (its budget store, session tracker,
    /// composer and clock) and pulling with `sync` (set up with a shared
    /// [`SyncLock`](crate::sync::SyncLock) on several replicas, a page limit, …), which the bot
    /// has observed by the replier.
    pub fn with_replier<H, F, E>(
        replier: Replier,
        sync: SyncStream<S>,
        store: impl BotStore,
        handler: H,
    ) -> Self
    where
        H: Fn(Turn) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Answer, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let sync = Arc::new(sync.observe(replier.clone()));
        Bot {
            inner: Arc::new(Inner {
                sync,
                store: Arc::new(store),
                replier,
                handler: handler_of(handler),
                routes: HashMap::new(),
                turns: tokio::sync::Semaphore::new(16),
                workers: Mutex::default(),
                claims: worker::Claims::default(),
                started_at: SystemTime::now(),
                max_attempts: 5,
                retry_after: Duration::from_secs(1),
                turn_timeout: Duration::from_secs(300),
                max_age: Duration::from_secs(48 * 3600),
                claim_ttl: Duration::from_secs(15),
                skip_history: true,
                dead_letter: None,
                welcome: None,
                on_event: None,
                #[cfg(feature = "callback-server")]
                on_callback: None,
                pulling: Mutex::default(),
                draining: AtomicBool::new(false),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner<S>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                tracing::warn!("a bot is configured before it is cloned; this setting was ignored")
            }
        }
        self
    }

    /// Answers the turns of account `open_kfid` with `handler` instead of the default
    /// one; the account is also caught up by [`start`](Self::start).
    pub fn route<H, F, E>(self, open_kfid: impl Into<String>, handler: H) -> Self
    where
        H: Fn(Turn) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Answer, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let (open_kfid, handler) = (open_kfid.into(), handler_of(handler));
        self.configure(|inner| {
            inner.routes.insert(open_kfid, handler);
        })
    }

    /// How many turns may run at once, across customers (16 by default): a turn is the
    /// handler's answer and its sends, so this also bounds the calls to WeCom. A
    /// customer's turns always run one at a time, and a customer is claimed only once a
    /// slot is free, so a replica with a backlog leaves the customers it can't serve yet
    /// to the others.
    pub fn parallel_turns(self, limit: usize) -> Self {
        self.configure(|inner| inner.turns = tokio::sync::Semaphore::new(limit.max(1)))
    }

    /// How often a failing turn is tried (5 by default) before it goes to the dead-letter
    /// hook, and the first wait between tries (1 s, doubling).
    pub fn max_attempts(self, attempts: u32, first_wait: Duration) -> Self {
        self.configure(|inner| {
            inner.max_attempts = attempts.max(1);
            inner.retry_after = first_wait;
        })
    }

    /// How long a handler may take before its turn counts as failed (5 minutes by
    /// default): a hung LLM call can't hold its customer forever.
    pub fn turn_timeout(self, timeout: Duration) -> Self {
        self.configure(|inner| inner.turn_timeout = timeout)
    }

    /// Messages older than this are not answered (48 hours by default: WeCom refuses
    /// replies past it anyway).
    pub fn max_age(self, age: Duration) -> Self {
        self.configure(|inner| inner.max_age = age)
    }

    /// How long a replica's claim on a customer lasts without renewal (15 s by default;
    /// renewed every third of it while the replica works): the longest a dead replica's
    /// customers wait before another replica takes them over.
    pub fn claim_ttl(self, ttl: Duration) -> Self {
        self.configure(|inner| inner.claim_ttl = ttl.max(Duration::from_millis(30)))
    }

    /// Whether an account's first pull (no stored cursor) skips what customers wrote
    /// before this runtime started: on by default, so a new bot doesn't answer three days
    /// of history.
    pub fn skip_history(self, skip: bool) -> Self {
        self.configure(|inner| inner.skip_history = skip)
    }

    /// Called with each turn given up after its attempts ran out; its messages are then
    /// done, so the customer's later messages are answered.
    pub fn on_dead_letter(self, hook: impl Fn(DeadLetter) + Send + Sync + 'static) -> Self {
        self.configure(|inner| inner.dead_letter = Some(Arc::new(hook)))
    }

    /// Greets every customer who opens the chat with `text`, on the `enter_session`
    /// event's welcome code (valid 20 s, so it is answered at once, not queued).
    pub fn welcome(self, text: impl Into<String>) -> Self {
        let text = text.into();
        self.configure(|inner| inner.welcome = Some(text))
    }

    /// Called with every item that isn't customer input (events, servicers' messages):
    /// they never reach the turn handler.
    pub fn on_event(self, hook: impl Fn(&crate::ReceivedMsg) + Send + Sync + 'static) -> Self {
        self.configure(|inner| inner.on_event = Some(Arc::new(hook)))
    }

    /// Called with every callback to the [`router`](Self::router) that isn't
    /// `kf_msg_or_event` (feature `callback-server`), typed; see
    /// [`RouterOptions::on_other_callback`](crate::callback::server::RouterOptions::on_other_callback).
    #[cfg(feature = "callback-server")]
    pub fn on_callback(
        self,
        hook: impl Fn(crate::callback::CallbackEvent) + Send + Sync + 'static,
    ) -> Self {
        self.configure(|inner| inner.on_callback = Some(Arc::new(hook)))
    }

    /// The replier the bot sends through.
    pub fn replier(&self) -> &Replier {
        &self.inner.replier
    }

    /// The sync stream that pulls the accounts.
    pub fn sync(&self) -> &SyncStream<S> {
        &self.inner.sync
    }

    /// Counts a callback for `open_kfid` and keeps its token; see
    /// [`SyncStream::callback_token`].
    pub fn callback_token(&self, open_kfid: &str, token: impl Into<String>) {
        self.inner.sync.callback_token(open_kfid, token);
    }

    /// Gets going after a (re)start: resumes every customer the store has work for
    /// (journaled answers finished, waiting messages answered), catches up every account
    /// with a stored cursor and every routed one in the background without waiting for a
    /// callback, and starts the sweep that, every half [`claim_ttl`](Self::claim_ttl),
    /// takes over customers whose replica died. Call it once.
    pub async fn start(&self) -> Result<Started, StartError> {
        let resumed = self.resume().await.map_err(|e| StartError::Inbox(e.0))?;
        let mut accounts = self
            .inner
            .sync
            .store()
            .accounts()
            .await
            .map_err(StartError::Cursors)?;
        for open_kfid in self.inner.routes.keys() {
            if !accounts.contains(open_kfid) {
                accounts.push(open_kfid.clone());
            }
        }
        for open_kfid in &accounts {
            self.pull_in_background(open_kfid.clone());
        }
        tokio::spawn(sweep(Arc::downgrade(&self.inner)));
        Ok(Started { resumed, accounts })
    }

    /// Wakes every customer the store has work for; how many. [`start`](Self::start) does
    /// this and more.
    pub async fn resume(&self) -> Result<usize, InboxError> {
        let customers = self
            .inner
            .store
            .customers_with_work()
            .await
            .map_err(InboxError)?;
        for customer in &customers {
            self.wake(customer.clone());
        }
        Ok(customers.len())
    }

    /// The router for WeCom's callback URL (feature `callback-server`): every account the
    /// callbacks name is pulled in the background into the inbox, with the callback
    /// router's limits, replay protection and recovery (see
    /// [`server::router`](crate::callback::server::router)); other callbacks go to
    /// [`on_callback`](Self::on_callback). While the bot drains
    /// ([`shutdown`](Self::shutdown)) it answers 503, so WeCom retries elsewhere or later.
    #[cfg(feature = "callback-server")]
    pub fn router(&self, crypto: crate::callback::CallbackCrypto) -> axum::Router {
        use crate::callback::server;
        let bot = self.clone();
        let mut options = server::RouterOptions::default();
        if let Some(hook) = self.inner.on_callback.clone() {
            options = options.on_other_callback(move |event| hook(event));
        }
        let router = server::router_with(
            crypto,
            self.inner.sync.clone(),
            move |page: Page| {
                let bot = bot.clone();
                async move { bot.record(page).await }
            },
            options,
        );
        let bot = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let draining = bot.is_draining();
                async move {
                    if draining && request.method() == axum::http::Method::POST {
                        return axum::response::IntoResponse::into_response(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        );
                    }
                    next.run(request).await
                }
            },
        ))
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Stops taking work (no new turn starts; callbacks answer 503) and waits up to
    /// `deadline` for the turns in progress to finish. What is left stays in the store,
    /// journaled or pending, for the next start. Returns how many customers still had
    /// work here.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner.draining.store(true, Ordering::SeqCst);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let busy = crate::mutex::lock(&self.inner.workers).len();
            if busy == 0 || tokio::time::Instant::now() >= until {
                return busy;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Pulls `open_kfid`, records every new customer message in the inbox before the
    /// cursor passes it, and wakes the customers who wrote.
    pub async fn pull(&self, open_kfid: &str) -> Result<(), SyncError<InboxError>> {
        let bot = self.clone();
        self.inner
            .sync
            .run(open_kfid, move |page| {
                let bot = bot.clone();
                async move { bot.record(page).await.map_err(InboxError) }
            })
            .await
            .map(|_| ())
    }

    /// [`pull`](Self::pull) in a task of its own, once at a time per account, with a few
    /// tries on failure; for catching up outside the callback router.
    fn pull_in_background(&self, open_kfid: String) {
        if !crate::mutex::lock(&self.inner.pulling).insert(open_kfid.clone()) {
            return;
        }
        let bot = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=3u32 {
                match bot.pull(&open_kfid).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(error = %crate::error::chain(&error), open_kfid, attempt, "catching up failed");
                        tokio::time::sleep(worker::backoff(Duration::from_secs(1), attempt)).await;
                    }
                }
            }
            crate::mutex::lock(&bot.inner.pulling).remove(&open_kfid);
        });
    }

    async fn record(&self, page: Page) -> Result<(), StoreError> {
        let now = unix_secs(SystemTime::now());
        let first_pull = page.cursor.is_none();
        let keys = crate::sync::dedup_keys(&page.messages);
        let mut entries = Vec::new();
        for (message, key) in page.messages.into_iter().zip(keys) {
            if !message.is_customer_input() {
                self.event(message);
                continue;
            }
            let Some(customer) = message.customer() else {
                continue;
            };
            let sent = message.send_time.unwrap_or(now);
            let too_old = now.saturating_sub(sent) > self.inner.max_age.as_secs();
            let history =
                self.inner.skip_history && first_pull && sent < unix_secs(self.inner.started_at);
            if too_old || history {
                tracing::debug!(msgid = %message.msgid, "not answering a message from before");
                continue;
            }
            entries.push(Entry {
                key,
                customer,
                message,
            });
        }
        // A page is one account's: its histogram is looked up once, not per message.
        let lags =
            metrics::histogram!("wecom_kf_sync_lag_seconds", "account" => page.open_kfid.clone());
        for entry in &entries {
            let lag = now.saturating_sub(entry.message.send_time.unwrap_or(now));
            lags.record(lag as f64);
        }
        let recorded = self.inner.store.record(entries).await?;
        metrics::counter!("wecom_kf_messages_in_total", "account" => page.open_kfid.clone())
            .increment(recorded.added as u64);
        metrics::counter!("wecom_kf_duplicates_skipped_total", "account" => page.open_kfid.clone())
            .increment(recorded.duplicates as u64);
        for (open_kfid, depth) in recorded.depths {
            inbox_depth(open_kfid, depth);
        }
        for customer in recorded.customers {
            self.wake(customer);
        }
        Ok(())
    }

    /// An item for the hooks: the welcome, then the user's own.
    fn event(&self, message: crate::ReceivedMsg) {
        if let Some(hook) = &self.inner.on_event {
            hook(&message);
        }
        let Some(text) = self.inner.welcome.clone() else {
            return;
        };
        if crate::reply::EventCode::from_message(&message)
            .is_none_or(|code| code.kind != crate::reply::CodeKind::Welcome)
        {
            return;
        }
        let replier = self.inner.replier.clone();
        tokio::spawn(async move {
            if let Err(error) = replier.welcome(&message, text).await {
                tracing::warn!(error = %crate::error::chain(&error), "could not send the welcome");
            }
        });
    }

    /// Starts a worker for `customer`, or tells the running one there is more.
    fn wake(&self, customer: Customer) {
        if self.is_draining() {
            return;
        }
        {
            let mut workers = crate::mutex::lock(&self.inner.workers);
            if let Some(again) = workers.get_mut(&customer) {
                *again = true;
                return;
            }
            workers.insert(customer.clone(), false);
        }
        let bot = self.clone();
        tokio::spawn(async move { bot.work(customer).await });
    }
}

/// Every half claim TTL, wakes each customer with work that no worker here serves: those
/// another replica holds stay theirs (the claim fails), those of a replica that died are
/// taken over once its claims expired. Ends with the bot.
async fn sweep<S: CursorStore + 'static>(inner: Weak<Inner<S>>) {
    loop {
        let Some(every) = inner.upgrade().map(|i| i.claim_ttl / 2) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let bot = Bot { inner };
        if bot.is_draining() {
            return;
        }
        match bot.inner.store.customers_with_work().await {
            Ok(customers) => {
                for customer in customers {
                    bot.wake(customer);
                }
            }
            Err(error) => tracing::warn!(%error, "could not look for customers to take over"),
        }
    }
}

/// Reports an account's inbox depth: messages recorded and not yet answered.
fn inbox_depth(open_kfid: String, depth: u64) {
    metrics::gauge!("wecom_kf_inbox_depth", "account" => open_kfid).set(depth as f64);
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
