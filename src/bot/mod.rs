//! A bot runtime: every customer message answered once, in order per customer, customers
//! in parallel.
//!
//! The sync stream pulls an account and records each customer message in an inbox
//! ([`BotStore`]) before the cursor passes it. A worker per customer with work takes
//! everything the customer wrote so far as one [`Turn`], asks the handler for an
//! [`Answer`], journals the reply (each part with the msgid it will be sent with) and only
//! then sends it, part by part. After a crash the journal is resumed: the handler is not
//! asked again, so a customer never gets two different answers to one message, and a part
//! already sent is not sent again (a part in flight at the crash is resent with its msgid,
//! which WeCom refuses as a duplicate rather than delivering twice — the runtime assumes
//! so, as the simulator does; WeCom doesn't document it).
//!
//! ```no_run
//! # async fn run(client: wecom_kf::Client) -> Result<(), Box<dyn std::error::Error>> {
//! use wecom_kf::bot::{Answer, Bot, MemoryBotStore};
//! use wecom_kf::MemoryCursorStore;
//!
//! let bot = Bot::new(client, MemoryCursorStore::new(), MemoryBotStore::new(), |turn: wecom_kf::reply::Turn| async move {
//!     Ok::<_, std::io::Error>(Answer::Text(format!("您说：{}", turn.text())))
//! });
//! bot.callback_token("wkKFID", "TOKEN_FROM_THE_CALLBACK");
//! bot.pull("wkKFID").await?; // then every customer with news is answered in the background
//! # Ok(()) }
//! ```

mod file_store;
mod store;

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use file_store::FileBotStore;
pub use store::{BotStore, Entry, Journaled, MemoryBotStore, PlannedPart, Recorded, Work};

use crate::reply::{Customer, Replier, ReplyError, SessionRefusal, Turn};
use crate::token::StoreError;
use crate::{CursorStore, ErrCode, OutgoingMsg, Page, SyncError, SyncStream};

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
        write!(f, "the bot's inbox failed: {}", self.0)
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

type DeadLetterHook = Arc<dyn Fn(DeadLetter) + Send + Sync>;
type EventHook = Arc<dyn Fn(&crate::ReceivedMsg) + Send + Sync>;

/// The runtime. Cheap to clone: clones share everything.
pub struct Bot<S, H> {
    inner: Arc<Inner<S, H>>,
}

impl<S, H> Clone for Bot<S, H> {
    fn clone(&self) -> Self {
        Bot {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S, H> {
    sync: Arc<SyncStream<S>>,
    store: Arc<dyn BotStore>,
    replier: Replier,
    handler: H,
    /// Turns running at once, across customers.
    turns: tokio::sync::Semaphore,
    /// Customers a worker serves, and whether new work came while it ran.
    workers: Mutex<HashMap<Customer, bool>>,
    started_at: SystemTime,
    max_attempts: u32,
    retry_after: Duration,
    max_age: Duration,
    skip_history: bool,
    dead_letter: Option<DeadLetterHook>,
    /// What a customer entering the chat is greeted with, on the welcome code.
    welcome: Option<String>,
    on_event: Option<EventHook>,
    /// Set by [`Bot::shutdown`]: no new turn starts, callbacks are answered 503.
    draining: std::sync::atomic::AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each change is one insert or remove: a panic can't leave the map half done.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S, H, F, E> Bot<S, H>
where
    S: CursorStore + 'static,
    H: Fn(Turn) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Answer, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    /// A bot over `client`'s accounts: cursors in `cursors`, the inbox and journal in
    /// `store`, turns answered by `handler`. At most 16 turns run at once
    /// ([`parallel_turns`](Self::parallel_turns)).
    pub fn new(client: crate::Client, cursors: S, store: impl BotStore, handler: H) -> Self {
        Self::with_replier(
            Replier::new(client.clone()),
            client,
            cursors,
            store,
            handler,
        )
    }

    /// [`new`](Self::new), sending through `replier` (its budget store, session tracker,
    /// composer and clock).
    pub fn with_replier(
        replier: Replier,
        client: crate::Client,
        cursors: S,
        store: impl BotStore,
        handler: H,
    ) -> Self {
        let sync = Arc::new(SyncStream::new(client, cursors).observe(replier.clone()));
        Bot {
            inner: Arc::new(Inner {
                sync,
                store: Arc::new(store),
                replier,
                handler,
                turns: tokio::sync::Semaphore::new(16),
                workers: Mutex::default(),
                started_at: SystemTime::now(),
                max_attempts: 5,
                retry_after: Duration::from_secs(1),
                max_age: Duration::from_secs(48 * 3600),
                skip_history: true,
                dead_letter: None,
                welcome: None,
                on_event: None,
                draining: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner<S, H>)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                tracing::warn!("a bot is configured before it is cloned; this setting was ignored")
            }
        }
        self
    }

    /// How many turns may run at once, across customers (16 by default). A customer's
    /// turns always run one at a time.
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

    /// Messages older than this are not answered (48 hours by default: WeCom refuses
    /// replies past it anyway).
    pub fn max_age(self, age: Duration) -> Self {
        self.configure(|inner| inner.max_age = age)
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

    /// Resumes every customer the store has work for: after a restart, answers that were
    /// journaled are finished and waiting messages answered, without a callback.
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
    /// [`server::router`](crate::callback::server::router)). While the bot drains
    /// ([`shutdown`](Self::shutdown)) it answers 503, so WeCom retries elsewhere or later.
    #[cfg(feature = "callback-server")]
    pub fn router(&self, crypto: crate::callback::CallbackCrypto) -> axum::Router {
        let bot = self.clone();
        let router =
            crate::callback::server::router(crypto, self.inner.sync.clone(), move |page: Page| {
                let bot = bot.clone();
                async move { bot.record(page).await }
            });
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
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops taking work (no new turn starts; callbacks answer 503) and waits up to
    /// `deadline` for the turns in progress to finish. What is left stays in the store,
    /// journaled or pending, for the next start's [`resume`](Self::resume). Returns how
    /// many customers still had work.
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.inner
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let busy = lock(&self.inner.workers).len();
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
        for entry in &entries {
            let lag = now.saturating_sub(entry.message.send_time.unwrap_or(now));
            metrics::histogram!("wecom_kf_sync_lag_seconds", "account" => entry.customer.open_kfid.clone())
                .record(lag as f64);
        }
        let recorded = self.inner.store.record(entries).await?;
        metrics::counter!("wecom_kf_messages_in_total", "account" => page.open_kfid.clone())
            .increment(recorded.added as u64);
        metrics::counter!("wecom_kf_duplicates_skipped_total", "account" => page.open_kfid.clone())
            .increment(recorded.duplicates as u64);
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
                tracing::warn!(%error, "could not send the welcome");
            }
        });
    }

    /// Starts a worker for `customer`, or tells the running one there is more.
    fn wake(&self, customer: Customer) {
        {
            let mut workers = lock(&self.inner.workers);
            if let Some(again) = workers.get_mut(&customer) {
                *again = true;
                return;
            }
            workers.insert(customer.clone(), false);
        }
        let bot = self.clone();
        tokio::spawn(async move { bot.work(customer).await });
    }

    /// One customer's worker: turn after turn until the inbox is empty.
    async fn work(self, customer: Customer) {
        let mut failures_in_a_row = 0u32;
        loop {
            if self.is_draining() {
                lock(&self.inner.workers).remove(&customer);
                return;
            }
            let span = tracing::info_span!(
                "wecom_kf.turn",
                account = %customer.open_kfid,
                customer = %crate::observe::customer_hash(&customer.open_kfid, &customer.external_userid),
                outcome = tracing::field::Empty,
            );
            let turn = tracing::Instrument::instrument(self.turn(&customer), span.clone());
            match turn.await {
                Ok(true) => failures_in_a_row = 0,
                Ok(false) => {
                    let mut workers = lock(&self.inner.workers);
                    match workers.get_mut(&customer) {
                        Some(again) if *again => *again = false,
                        _ => {
                            workers.remove(&customer);
                            return;
                        }
                    }
                }
                Err(error) => {
                    span.record("outcome", "failed");
                    failures_in_a_row = failures_in_a_row.saturating_add(1);
                    let wait = backoff(self.inner.retry_after, failures_in_a_row);
                    tracing::warn!(%error, open_kfid = %customer.open_kfid, attempt = failures_in_a_row, "a turn failed; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Does the next piece of the customer's work; `false` when there is none.
    async fn turn(&self, customer: &Customer) -> Result<bool, String> {
        let store = &self.inner.store;
        let work = store.work(customer).await.map_err(|e| e.to_string())?;
        // The budget learns the window from the inbox too: after a restart a budget kept in
        // memory knows only what it is shown again (observing twice changes nothing).
        for entry in &work.pending {
            self.inner
                .replier
                .reply_budget()
                .observe(&entry.message)
                .await
                .map_err(|e| e.to_string())?;
        }
        if let Some(journaled) = work.journaled {
            self.deliver(customer, &journaled).await?;
            outcome("resumed");
            return Ok(true);
        }
        if work.pending.is_empty() {
            return Ok(false);
        }
        let keys: Vec<String> = work.pending.iter().map(|e| e.key.clone()).collect();
        let turn_id = keys.first().cloned().unwrap_or_default();
        let view = self.inner.replier.session_tracker().view(customer);
        if let Some(refusal) = SessionRefusal::for_state(&view) {
            // A human has the customer (or the session is queued or over): stay quiet.
            tracing::info!(open_kfid = %customer.open_kfid, reason = %refusal, "not answering");
            store
                .done(customer, &turn_id, &keys)
                .await
                .map_err(|e| e.to_string())?;
            outcome("quiet");
            return Ok(true);
        }
        let messages: Vec<_> = work.pending.into_iter().map(|e| e.message).collect();
        let answer = {
            let _running = self
                .inner
                .turns
                .acquire()
                .await
                .map_err(|e| e.to_string())?;
            let turn = Turn {
                customer: customer.clone(),
                messages: messages.clone(),
            };
            (self.inner.handler)(turn).await
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let attempts = store.failed(customer).await.map_err(|e| e.to_string())?;
                if attempts < self.inner.max_attempts {
                    return Err(format!("the handler failed (attempt {attempts}): {error}"));
                }
                tracing::error!(%error, open_kfid = %customer.open_kfid, attempts, "giving a turn up");
                if let Some(hook) = &self.inner.dead_letter {
                    hook(DeadLetter {
                        customer: customer.clone(),
                        messages,
                        error: error.to_string(),
                    });
                }
                store
                    .done(customer, &turn_id, &keys)
                    .await
                    .map_err(|e| e.to_string())?;
                metrics::counter!("wecom_kf_dead_letters_total", "account" => customer.open_kfid.clone())
                    .increment(1);
                outcome("dead_letter");
                return Ok(true);
            }
        };
        let parts = self.plan(customer, answer).await?;
        let journaled = Journaled {
            parts: parts
                .into_iter()
                .enumerate()
                .map(|(index, message)| PlannedPart {
                    msgid: reply_msgid(&customer.open_kfid, &turn_id, index),
                    message,
                    sent: false,
                })
                .collect(),
            turn: turn_id,
            covers: keys,
        };
        store
            .journal(customer, journaled.clone())
            .await
            .map_err(|e| e.to_string())?;
        let answered = journaled.covers.len() as u64;
        self.deliver(customer, &journaled).await?;
        metrics::counter!("wecom_kf_messages_answered_total", "account" => customer.open_kfid.clone())
            .increment(answered);
        outcome("answered");
        Ok(true)
    }

    /// The messages an answer becomes, fitted to the budget left.
    async fn plan(&self, customer: &Customer, answer: Answer) -> Result<Vec<OutgoingMsg>, String> {
        match answer {
            Answer::Silence => Ok(Vec::new()),
            Answer::Messages(messages) => Ok(messages),
            Answer::Text(text) => {
                let left = match self.inner.replier.reply_budget().allowance(customer).await {
                    Ok(allowance) => allowance.left,
                    Err(error) => return Err(error.to_string()),
                };
                let plan = self.inner.replier.composer_of().compose(&text);
                let parts = match plan.fit(left) {
                    Ok(parts) => parts,
                    Err(over) if left > 0 => {
                        let shortened = over.shorten();
                        tracing::warn!(open_kfid = %customer.open_kfid, dropped = shortened.dropped.len(), "an answer was shortened to the replies left");
                        shortened.parts
                    }
                    Err(_) => Vec::new(),
                };
                Ok(parts
                    .into_iter()
                    .map(|p| crate::Text::new(p).into())
                    .collect())
            }
        }
    }

    /// Sends what is left of a journaled reply, marking each part as it goes, then closes it.
    async fn deliver(&self, customer: &Customer, journaled: &Journaled) -> Result<(), String> {
        let store = &self.inner.store;
        for (index, part) in journaled.parts.iter().enumerate() {
            if part.sent {
                continue;
            }
            let sent = self
                .inner
                .replier
                .send_with_id(customer, &part.msgid, part.message.clone())
                .await;
            match sent {
                Ok(_) => {}
                // A resend of a part that was in flight at a crash: WeCom has it.
                Err(ReplyError::Send { error, .. })
                    if error.code() == Some(ErrCode::DuplicateMsgid) =>
                {
                    tracing::info!(msgid = %part.msgid, "a resent part was already there");
                }
                // Nothing more can go out for this turn: the rest is dropped, logged.
                Err(error @ (ReplyError::Session(_) | ReplyError::Budget(_))) => {
                    if matches!(error, ReplyError::Budget(_)) {
                        metrics::counter!("wecom_kf_budget_refusals_total", "account" => customer.open_kfid.clone())
                            .increment(1);
                    }
                    tracing::warn!(%error, open_kfid = %customer.open_kfid, "the rest of a reply can't be sent");
                    break;
                }
                Err(error) => return Err(error.to_string()),
            }
            store
                .part_sent(customer, &journaled.turn, index)
                .await
                .map_err(|e| e.to_string())?;
        }
        store
            .done(customer, &journaled.turn, &journaled.covers)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Names how the current turn ended, on its span.
fn outcome(outcome: &'static str) {
    tracing::Span::current().record("outcome", outcome);
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(60))
}

/// The msgid of part `index` of the reply to turn `turn`: the same after a restart, unique
/// per account, 32 characters of `[0-9a-f]`, never a customer's msgid.
fn reply_msgid(open_kfid: &str, turn: &str, index: usize) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(b"reply\0")
        .chain_update(open_kfid.as_bytes())
        .chain_update([0])
        .chain_update(turn.as_bytes())
        .chain_update([0])
        .chain_update(index.to_le_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}
