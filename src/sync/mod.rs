//! Pulling an account's messages without ever skipping one.
//!
//! [`SyncStream`] calls `sync_msg` from the committed cursor, hands each page to the
//! caller's handler, and commits `next_cursor` through a [`CursorStore`] only after the
//! handler returned `Ok`. Anything that fails (the handler, the network, WeCom) stops the
//! run without committing, so the next run starts again from the page that failed.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod file_store;
mod lock;
mod store;

pub use file_store::FileCursorStore;
#[cfg(feature = "bot")]
pub(crate) use file_store::JsonFiles;
use lock::LockHold;
pub use lock::{SyncLease, SyncLock};

pub use store::{CallbackToken, Checkpoint, CursorStore, MemoryCursorStore, SharedCallbacks};

/// What the store and lock traits return, as in [`token`](crate::token).
pub use crate::token::{BoxFuture, StoreError};

use crate::{Client, ErrCode, Error, ReceivedMsg, Secret, VoiceFormat};

/// One page of `sync_msg`, as handed to a handler.
#[derive(Debug, Clone)]
pub struct Page {
    /// The account the page is of.
    pub open_kfid: String,
    /// The cursor this page was pulled with.
    pub cursor: Option<String>,
    /// The cursor committed once the handler returns `Ok`.
    pub next_cursor: String,
    /// Items in the order WeCom returned them. May be empty while more pages follow.
    pub messages: Vec<ReceivedMsg>,
}

/// Why a run stopped early. The checkpoint is where the last commit left it; calling
/// `run` again resumes there.
#[derive(Debug)]
pub enum SyncError<E> {
    /// The handler returned an error.
    Handler(E),
    /// `sync_msg` failed (after the client's own retries).
    Client(Error),
    /// The cursor store (or the sync lock) failed.
    Store(StoreError),
    /// An [`Observer`] failed; the page will be observed and handed over again.
    Observer(StoreError),
    /// This process lost the account's [`SyncLock`] mid-run (it couldn't renew it in
    /// time); another process syncs the account now. Nothing more was committed.
    LockLost,
    /// The handler took longer than [`SyncStream::handler_timeout`]; nothing was committed
    /// for the page, which the next run hands over again.
    HandlerTimedOut(Duration),
}

// Each message leaves its source out: `source()` returns it.
impl<E> fmt::Display for SyncError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Handler(_) => {
                f.write_str("the handler failed; the page will be handed over again")
            }
            SyncError::Client(_) => f.write_str("sync_msg failed"),
            SyncError::Store(_) => f.write_str("the cursor store failed"),
            SyncError::Observer(_) => f.write_str("an observer of the page failed"),
            SyncError::LockLost => {
                f.write_str("lost the account's sync lock; another process syncs it now")
            }
            SyncError::HandlerTimedOut(limit) => write!(
                f,
                "the handler took longer than {limit:?}; the page will be handed over again"
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for SyncError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Handler(error) => Some(error),
            SyncError::Client(error) => Some(error),
            SyncError::Store(error) | SyncError::Observer(error) => Some(error.as_ref()),
            SyncError::LockLost | SyncError::HandlerTimedOut(_) => None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Pages pulled and committed, empty ones included.
    pub pages: usize,
    /// Messages handed to the handler.
    pub messages: usize,
    /// Messages skipped because `run_each` had handled them before a stop.
    pub skipped: usize,
    /// Another process held the account's [`SyncLock`]: it pulls, with the callback token
    /// this run shared, and this run pulled nothing.
    pub deferred: bool,
    /// `sync_msg` answered a page whose cursor did not advance although it held items or
    /// said there is more (the run handled it once and stopped; an empty one is pulled again
    /// a few times first): logged, and worth an alert.
    pub stalled: bool,
}

/// Callback tokens are valid 10 minutes; a little less leaves time for the call itself.
pub(crate) const CALLBACK_TOKEN_LIFETIME: Duration = Duration::from_secs(9 * 60 + 30);

/// How long a handler may take by default before its run gives up on the page.
const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// An empty page whose cursor did not move while WeCom said there is more is pulled again
/// this many times, with backoff, before the run stops and reports it.
const STALL_RETRIES: u32 = 3;

/// Pulls accounts' messages page by page, committing each cursor only after the page was
/// handled. Cheap to share (`Arc`) between the callback handler and the pulling task.
///
/// Every callback counts in its account's *generation*; a run remembers the generation it
/// had seen when each pull started, and pulls again while it grew. Callbacks are never
/// lost between runs: a run that finds the account's [`SyncLock`] taken hands its
/// callback over to the holder through the store, and a holder checks the store once
/// more *after* releasing the lock, so a callback that came while it let go is pulled by
/// it or by whoever took the lock next.
pub struct SyncStream<S> {
    client: Client,
    store: S,
    limit: Option<u32>,
    voice_format: Option<VoiceFormat>,
    handler_timeout: Option<Duration>,
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    /// One process at a time per account, when several share the store.
    lock: Option<Arc<dyn SyncLock>>,
    observers: Vec<Arc<dyn Observer>>,
}

/// Sees every page before its handler does, so what the handler replies already knows of
/// it: the reply budget counts from the customer's latest message, the session tracker
/// learns who serves the customer. A failure stops the run like a handler's; the page is
/// observed and handed over again next run, so observing must bear repeats.
pub trait Observer: Send + Sync + 'static {
    /// Learns from `page`.
    fn observe<'a>(&'a self, page: &'a Page) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// One account, in this process.
#[derive(Default)]
struct Account {
    /// One run at a time: the cursor is shared state.
    run: Arc<tokio::sync::Mutex<()>>,
    callbacks: Mutex<LocalCallbacks>,
}

/// The callbacks this process received for one account.
#[derive(Default)]
struct LocalCallbacks {
    newest: Option<CallbackToken>,
    /// Callbacks received, ever.
    generation: u64,
    /// The generation last handed to the store (its callbacks told to other processes).
    published: u64,
    /// The generation a pull (or a hand-over to the lock's holder) answered.
    covered: u64,
}

impl Account {
    fn callbacks<T>(&self, f: impl FnOnce(&mut LocalCallbacks) -> T) -> T {
        // A panic while holding this lock can't leave the counters half-written.
        let mut callbacks = crate::mutex::lock(&self.callbacks);
        f(&mut callbacks)
    }

    fn cover(&self, generation: u64) {
        self.callbacks(|c| c.covered = c.covered.max(generation));
    }
}

/// The generations a pull had seen when it started: this process's and the store's.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    local: u64,
    shared: u64,
}

impl<S: CursorStore> SyncStream<S> {
    /// A stream over `client`'s accounts, keeping checkpoints in `store`.
    pub fn new(client: Client, store: S) -> Self {
        SyncStream {
            client,
            store,
            limit: None,
            voice_format: None,
            handler_timeout: Some(DEFAULT_HANDLER_TIMEOUT),
            accounts: Mutex::default(),
            lock: None,
            observers: Vec::new(),
        }
    }

    /// Shows every page to `observer` before the handler gets it (a
    /// [`ReplyBudget`](crate::reply::ReplyBudget), a
    /// [`SessionTracker`](crate::reply::SessionTracker)).
    pub fn observe(mut self, observer: impl Observer) -> Self {
        self.observers.push(Arc::new(observer));
        self
    }

    /// Syncs each account from one process at a time, across every process whose stream
    /// has this lock (and shares the cursor store): see [`SyncLock`].
    pub fn with_lock(mut self, lock: impl SyncLock) -> Self {
        self.lock = Some(Arc::new(lock));
        self
    }

    /// Most items per page (1–1000; WeCom's default is 1000).
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The format voice messages arrive in.
    pub fn voice_format(mut self, format: VoiceFormat) -> Self {
        self.voice_format = Some(format);
        self
    }

    /// How long the handler may take for one page (or one message, in
    /// [`run_each`](Self::run_each)); past it the run stops with
    /// [`SyncError::HandlerTimedOut`] and the page is handed over again next run, so a
    /// handler that hangs can't silence its account. 5 minutes by default; `None` waits
    /// forever. With a [`SyncLock`], the lock is renewed for at most twice this long (plus
    /// the lock's lifetime) without a commit, even when a blocking handler keeps the
    /// timeout from firing.
    pub fn handler_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.handler_timeout = timeout.into();
        self
    }

    /// The cursor store, to inspect or reset checkpoints.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Counts a `kf_msg_or_event` callback for `open_kfid` and keeps its `Token`, issued
    /// now. Runs pass the newest token to `sync_msg` while it is valid (10 minutes), which
    /// relaxes WeCom's rate limit; with a shared store they share it with the other
    /// processes.
    pub fn callback_token(&self, open_kfid: &str, token: impl Into<String>) {
        let token = CallbackToken {
            token: Secret::new(token.into()),
            issued_at: SystemTime::now(),
        };
        self.record_callback(open_kfid, token);
    }

    /// [`callback_token`](Self::callback_token) for a decrypted callback: its token counts
    /// from its `CreateTime`, so a late or replayed callback never replaces a newer token.
    #[cfg(feature = "callback")]
    pub fn callback(&self, event: &crate::callback::KfMsgOrEvent) {
        let now = SystemTime::now();
        let created = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(event.create_time));
        let token = CallbackToken {
            token: event.token.clone(),
            // A clock ahead of ours must not make a token outrank newer ones.
            issued_at: created.map_or(now, |at| at.min(now)),
        };
        self.record_callback(&event.open_kfid, token);
    }

    fn record_callback(&self, open_kfid: &str, token: CallbackToken) {
        self.account(open_kfid).callbacks(|c| {
            c.generation = c.generation.saturating_add(1);
            if c.newest
                .as_ref()
                .is_none_or(|newest| newest.issued_at <= token.issued_at)
            {
                c.newest = Some(token);
            }
        });
    }

    /// Whether a callback came for `open_kfid` that no run has pulled for yet (nor handed
    /// over to another process's run).
    pub fn pending(&self, open_kfid: &str) -> bool {
        self.account(open_kfid)
            .callbacks(|c| c.generation > c.covered)
    }

    /// Whether the store counts a callback for `open_kfid` that no committed pull answered:
    /// after a run was deferred, the holder's commits say whether it got it. Always `false`
    /// for a store no other process shares.
    pub async fn shared_pending(&self, open_kfid: &str) -> Result<bool, StoreError> {
        let shared = self.store.shared_callbacks(open_kfid).await?;
        if shared.generation == 0 {
            return Ok(false);
        }
        let checkpoint = self.store.load(open_kfid).await?;
        Ok(shared.generation > checkpoint.generation)
    }

    /// How long after a deferred run the lock's holder surely either committed or lost the
    /// lock: the lock's lifetime. Zero without a lock.
    pub fn takeover_after(&self) -> Duration {
        self.lock
            .as_ref()
            .map_or(Duration::ZERO, |lock| lock.expires_after())
    }

    fn account(&self, open_kfid: &str) -> Arc<Account> {
        let mut accounts = crate::mutex::lock(&self.accounts);
        accounts.entry(open_kfid.to_owned()).or_default().clone()
    }

    /// Tells the store of the callbacks that came since the last time; what it published.
    async fn publish_callbacks(
        &self,
        account: &Account,
        open_kfid: &str,
    ) -> Result<u64, StoreError> {
        let (generation, token) = account.callbacks(|c| (c.generation, c.newest.clone()));
        let Some(token) = token.filter(|_| generation > account.callbacks(|c| c.published)) else {
            return Ok(account.callbacks(|c| c.published));
        };
        self.store.publish_callback(open_kfid, &token).await?;
        account.callbacks(|c| c.published = c.published.max(generation));
        Ok(generation)
    }

    /// Pulls every page there is for `open_kfid` and hands each to `handler`, committing
    /// its `next_cursor` after the handler returned `Ok`. Goes on while `has_more` is 1,
    /// even past empty pages, and while callbacks come in. At least once: if a run stops
    /// inside a page, the next run hands the whole page over again.
    pub async fn run<H, F, E>(
        &self,
        open_kfid: &str,
        mut handler: H,
    ) -> Result<SyncSummary, SyncError<E>>
    where
        H: FnMut(Page) -> F,
        F: Future<Output = Result<(), E>>,
    {
        let mut walk = Walk::new(open_kfid);
        let walked = async {
            while let Some(page) = self.next_page(&mut walk).await? {
                walk.summary.messages += page.messages.len();
                self.call(handler(page)).await?;
            }
            Ok(())
        }
        .await;
        self.finish(walk, walked).await
    }

    /// Like [`run`](Self::run), one message at a time, for handlers that want each
    /// message's effect exactly once: after each `Ok` the message's dedup key (its msgid,
    /// or a digest of its text when it has none) is saved in the checkpoint, so a page
    /// handed over again after a stop skips what was already handled. (A crash between the
    /// handler's effect and that save can still repeat one message.)
    pub async fn run_each<H, F, E>(
        &self,
        open_kfid: &str,
        mut handler: H,
    ) -> Result<SyncSummary, SyncError<E>>
    where
        H: FnMut(ReceivedMsg) -> F,
        F: Future<Output = Result<(), E>>,
    {
        let mut walk = Walk::new(open_kfid);
        let walked = async {
            while let Some(page) = self.next_page(&mut walk).await? {
                let keys = dedup_keys(&page.messages);
                for (message, key) in page.messages.into_iter().zip(keys) {
                    let Some(session) = walk.session.as_mut() else {
                        break;
                    };
                    if session.checkpoint.handled.contains(&key) {
                        walk.summary.skipped += 1;
                        continue;
                    }
                    session.check_held()?;
                    self.call(handler(message)).await?;
                    walk.summary.messages += 1;
                    session.checkpoint.handled.push(key);
                    self.save(session).await?;
                }
            }
            Ok(())
        }
        .await;
        self.finish(walk, walked).await
    }

    /// Where both runs stand between pages: commits the page handed out last, decides
    /// whether to pull again, lets the account go at the end (going round again when a
    /// callback slipped in while letting go), and pulls the next page; `None` when the run
    /// is done.
    async fn next_page<E>(&self, walk: &mut Walk) -> Result<Option<Page>, SyncError<E>> {
        loop {
            match std::mem::replace(&mut walk.step, Step::Done) {
                Step::Begin => match self.begin(&walk.open_kfid).await? {
                    Some(session) => {
                        walk.session = Some(session);
                        walk.step = Step::Pull;
                    }
                    None => {
                        walk.summary.deferred = true;
                        return Ok(None);
                    }
                },
                Step::Pull => {
                    let Some(session) = walk.session.as_mut() else {
                        return Ok(None);
                    };
                    let (page, progress) = self.pull(session).await?;
                    session.check_held()?;
                    for observer in &self.observers {
                        observer.observe(&page).await.map_err(SyncError::Observer)?;
                    }
                    walk.step = Step::Handed(progress);
                    return Ok(Some(page));
                }
                Step::Handed(progress) => {
                    let Some(session) = walk.session.as_mut() else {
                        return Ok(None);
                    };
                    let advanced = self.commit(session, &progress, &mut walk.summary).await?;
                    walk.step = self.after_commit(walk, &progress, advanced).await?;
                }
                Step::Release => {
                    let again = match walk.session.take() {
                        Some(session) => self.end(session).await,
                        None => false,
                    };
                    if !again {
                        return Ok(None);
                    }
                    walk.step = Step::Begin;
                }
                Step::Done => return Ok(None),
            }
        }
    }

    /// What comes after a committed page: the next page, the same cursor again after a
    /// wait, or the end of the run.
    async fn after_commit<E>(
        &self,
        walk: &mut Walk,
        progress: &Progress,
        advanced: bool,
    ) -> Result<Step, SyncError<E>> {
        let Some(session) = walk.session.as_ref() else {
            return Ok(Step::Release);
        };
        if !advanced && (progress.items > 0 || progress.has_more) {
            walk.summary.stalled = true;
            tracing::warn!(
                open_kfid = %session.open_kfid,
                items = progress.items,
                has_more = progress.has_more,
                "sync_msg answered a cursor that does not advance"
            );
            // Pulling an empty page again costs nothing but a request; a page with items
            // would hand them over again.
            if progress.has_more && progress.items == 0 && walk.stalls < STALL_RETRIES {
                walk.stalls += 1;
                tokio::time::sleep(repull_backoff(walk.stalls)).await;
                return Ok(Step::Pull);
            }
            return Ok(Step::Release);
        }
        walk.stalls = 0;
        if progress.has_more {
            return Ok(Step::Pull);
        }
        if !self.woken_since(session).await? {
            return Ok(Step::Release);
        }
        // A callback came while this page was pulled: pull again, but not in a tight
        // loop if callbacks keep coming with nothing new.
        if progress.items == 0 {
            walk.empty_repulls += 1;
            tokio::time::sleep(repull_backoff(walk.empty_repulls)).await;
        } else {
            walk.empty_repulls = 0;
        }
        Ok(Step::Pull)
    }

    /// Ends a run however it went: the lock is released before the run returns.
    async fn finish<E>(
        &self,
        mut walk: Walk,
        walked: Result<(), SyncError<E>>,
    ) -> Result<SyncSummary, SyncError<E>> {
        if let Some(hold) = walk.session.take().and_then(|s| s.hold) {
            hold.release().await;
        }
        walked.map(|()| walk.summary)
    }

    /// Takes the account's run lock in this process, tells the store of this process's
    /// callbacks, then takes the [`SyncLock`] if there is one (`None`: another process
    /// holds it, and learns of those callbacks from the store), and loads the checkpoint.
    async fn begin<E>(&self, open_kfid: &str) -> Result<Option<Session>, SyncError<E>> {
        let account = self.account(open_kfid);
        let running = account.run.clone().lock_owned().await;
        let published = self
            .publish_callbacks(&account, open_kfid)
            .await
            .map_err(SyncError::Store)?;
        let hold = match &self.lock {
            Some(lock) => match lock.try_lock(open_kfid).await.map_err(SyncError::Store)? {
                Some(lease) => Some(LockHold::start(
                    lock.clone(),
                    lease,
                    self.hold_limit(lock.as_ref()),
                )),
                None => {
                    // The holder checks the store after it lets go: these are its now.
                    account.cover(published);
                    return Ok(None);
                }
            },
            None => None,
        };
        let checkpoint = match self.store.load(open_kfid).await {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                if let Some(hold) = hold {
                    hold.release().await;
                }
                return Err(SyncError::Store(error));
            }
        };
        Ok(Some(Session {
            open_kfid: open_kfid.to_owned(),
            account,
            checkpoint,
            seen: Seen::default(),
            hold,
            _running: running,
        }))
    }

    /// How long a run may hold the lock without committing.
    fn hold_limit(&self, lock: &dyn SyncLock) -> Duration {
        let handler = self.handler_timeout.unwrap_or(DEFAULT_HANDLER_TIMEOUT);
        handler
            .saturating_mul(2)
            .saturating_add(lock.expires_after())
    }

    /// Releases the lock, then says whether a callback was counted in the store that this
    /// run's pulls didn't see: one that came while the lock was being let go.
    async fn end(&self, session: Session) -> bool {
        let Some(hold) = session.hold else {
            return false;
        };
        hold.release().await;
        match self.store.shared_callbacks(&session.open_kfid).await {
            Ok(shared) => shared.generation > session.seen.shared,
            Err(error) => {
                tracing::warn!(%error, open_kfid = %session.open_kfid, "could not read the callbacks after releasing the sync lock");
                false
            }
        }
    }

    /// Whether a callback was counted, here or (with a lock) in the store, since the last
    /// pull started.
    async fn woken_since<E>(&self, session: &Session) -> Result<bool, SyncError<E>> {
        let local = session.account.callbacks(|c| c.generation);
        if local > session.seen.local {
            return Ok(true);
        }
        if session.hold.is_none() {
            return Ok(false);
        }
        let shared = self
            .store
            .shared_callbacks(&session.open_kfid)
            .await
            .map_err(SyncError::Store)?;
        Ok(shared.generation > session.seen.shared)
    }

    /// Calls the handler, within the handler timeout.
    async fn call<F, E>(&self, handled: F) -> Result<(), SyncError<E>>
    where
        F: Future<Output = Result<(), E>>,
    {
        let result = match self.handler_timeout {
            Some(limit) => tokio::time::timeout(limit, handled)
                .await
                .map_err(|_| SyncError::HandlerTimedOut(limit))?,
            None => handled.await,
        };
        result.map_err(SyncError::Handler)
    }

    /// Saves the checkpoint, unless the account's lock was lost: then another process owns
    /// the cursor.
    async fn save<E>(&self, session: &Session) -> Result<(), SyncError<E>> {
        let (open_kfid, checkpoint) = (&session.open_kfid, &session.checkpoint);
        let Some(hold) = &session.hold else {
            return self
                .store
                .save(open_kfid, checkpoint)
                .await
                .map_err(SyncError::Store);
        };
        if hold.is_lost() {
            return Err(SyncError::LockLost);
        }
        match self
            .store
            .save_if_held(open_kfid, checkpoint, &hold.lease)
            .await
        {
            Ok(true) => {
                hold.committed();
                Ok(())
            }
            Ok(false) => Err(SyncError::LockLost),
            Err(error) => Err(SyncError::Store(error)),
        }
    }

    /// Commits a handled page's cursor and the callbacks its pull answered; says whether
    /// the cursor moved.
    async fn commit<E>(
        &self,
        session: &mut Session,
        progress: &Progress,
        summary: &mut SyncSummary,
    ) -> Result<bool, SyncError<E>> {
        // An empty next_cursor (nothing new at all) must not erase the position, and the
        // page after an unmoved cursor is the same page: its handled keys still count.
        let advanced = !progress.next_cursor.is_empty()
            && session.checkpoint.cursor.as_deref() != Some(progress.next_cursor.as_str());
        if advanced {
            session.checkpoint.cursor = Some(progress.next_cursor.clone());
            session.checkpoint.handled.clear();
        }
        session.checkpoint.generation = session.checkpoint.generation.max(session.seen.shared);
        self.save(session).await?;
        session.account.cover(session.seen.local);
        summary.pages += 1;
        Ok(advanced)
    }

    /// Pulls the page after the checkpoint's cursor, with the newest valid callback token.
    async fn pull<E>(&self, session: &mut Session) -> Result<(Page, Progress), SyncError<E>> {
        let open_kfid = session.open_kfid.as_str();
        // Callbacks that came during the run: count them in the store too, so the holder's
        // checks and the other processes' tokens stay current.
        self.publish_callbacks(&session.account, open_kfid)
            .await
            .map_err(SyncError::Store)?;
        // Read without a lock too: a store of one process keeps the newest token across
        // restarts.
        let shared = self
            .store
            .shared_callbacks(open_kfid)
            .await
            .map_err(SyncError::Store)?;
        let (local_generation, local) = session
            .account
            .callbacks(|c| (c.generation, c.newest.clone()));
        session.seen = Seen {
            local: local_generation,
            shared: shared.generation,
        };
        let now = SystemTime::now();
        let mut token = [local, shared.newest]
            .into_iter()
            .flatten()
            .filter(|t| t.remaining(now).is_some())
            .max_by_key(|t| t.issued_at)
            .map(|t| t.token);
        let cursor = session.checkpoint.cursor.clone();
        loop {
            let mut call = self.client.sync_msg(open_kfid);
            if let Some(cursor) = &cursor {
                call = call.cursor(cursor.as_str());
            }
            if let Some(token) = &token {
                call = call.token(token.expose());
            }
            if let Some(limit) = self.limit {
                call = call.limit(limit);
            }
            if let Some(format) = self.voice_format {
                call = call.voice_format(format);
            }
            match call.await {
                Ok(response) => {
                    let progress = Progress {
                        next_cursor: response.next_cursor.clone(),
                        has_more: response.has_more == 1,
                        items: response.msg_list.len(),
                    };
                    let page = Page {
                        open_kfid: open_kfid.to_owned(),
                        cursor,
                        next_cursor: response.next_cursor,
                        messages: response.msg_list,
                    };
                    return Ok((page, progress));
                }
                // A stale callback token: pull without it (stricter rate limit) rather
                // than fail, and let no process use it again.
                Err(e) if e.code() == Some(ErrCode::InvalidMsgToken) && token.is_some() => {
                    if let Some(stale) = token.take() {
                        self.forget_token(session, &stale).await;
                    }
                }
                Err(e) => return Err(SyncError::Client(e)),
            }
        }
    }

    async fn forget_token(&self, session: &Session, stale: &Secret) {
        session.account.callbacks(|c| {
            if c.newest.as_ref().is_some_and(|t| &t.token == stale) {
                c.newest = None;
            }
        });
        if let Err(error) = self
            .store
            .forget_callback_token(&session.open_kfid, stale)
            .await
        {
            tracing::warn!(%error, open_kfid = %session.open_kfid, "could not drop a stale callback token from the store");
        }
    }
}

/// Where a run stands: the account, the session while it holds it, and what comes next.
struct Walk {
    open_kfid: String,
    session: Option<Session>,
    step: Step,
    summary: SyncSummary,
    stalls: u32,
    empty_repulls: u32,
}

impl Walk {
    fn new(open_kfid: &str) -> Self {
        Walk {
            open_kfid: open_kfid.to_owned(),
            session: None,
            step: Step::Begin,
            summary: SyncSummary::default(),
            stalls: 0,
            empty_repulls: 0,
        }
    }
}

/// The next thing a run does.
enum Step {
    /// Take the account.
    Begin,
    /// Pull the page after the checkpoint.
    Pull,
    /// Commit the page just handed out, once it was handled.
    Handed(Progress),
    /// Let the account go (and take it again if a callback slipped in).
    Release,
    Done,
}

/// The key `run_each` remembers a handled item by: its msgid, or, for an item without a
/// string msgid, a digest of its text and how many identical items came before it in the
/// page (so two identical items are still two).
pub(crate) fn dedup_keys(messages: &[ReceivedMsg]) -> Vec<String> {
    use sha1::Digest as _;
    let mut seen: HashMap<String, usize> = HashMap::new();
    messages
        .iter()
        .map(|message| {
            if !message.msgid.is_empty() {
                return message.msgid.clone();
            }
            let digest = sha1::Sha1::digest(message.raw.as_str().as_bytes());
            let hex = crate::encode::hex(&digest[..10]);
            let count = seen.entry(hex.clone()).or_default();
            *count += 1;
            format!("raw:{hex}#{count}")
        })
        .collect()
}

/// The wait before re-pull number `n` (1-based) of a run that isn't getting anywhere.
fn repull_backoff(n: u32) -> Duration {
    Duration::from_millis(50)
        .saturating_mul(1 << n.min(6))
        .min(Duration::from_secs(2))
}

/// One run over one account: what it holds, and where it stands.
struct Session {
    open_kfid: String,
    account: Arc<Account>,
    checkpoint: Checkpoint,
    /// The generations seen when the last pull started.
    seen: Seen,
    hold: Option<LockHold>,
    _running: tokio::sync::OwnedMutexGuard<()>,
}

impl Session {
    /// Fails once the lock may have passed to another process: no page is handed to a
    /// handler then, and nothing more is committed.
    fn check_held<E>(&self) -> Result<(), SyncError<E>> {
        match &self.hold {
            Some(hold) if hold.is_lost() => Err(SyncError::LockLost),
            _ => Ok(()),
        }
    }
}

/// What a pulled page says about the pages after it.
struct Progress {
    next_cursor: String,
    has_more: bool,
    items: usize,
}
