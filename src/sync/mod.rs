//! Pulling an account's messages without ever skipping one.
//!
//! [`SyncStream`] calls `sync_msg` from the committed cursor, hands each page to the
//! caller's handler, and commits `next_cursor` through a [`CursorStore`] only after the
//! handler returned `Ok`. Anything that fails (the handler, the network, WeCom) stops the
//! run without committing, so the next run starts again from the page that failed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::token::StoreError;

mod file_store;
mod lock;
mod store;

use crate::{Client, ErrCode, Error, ReceivedMsg, VoiceFormat};
pub use file_store::FileCursorStore;
pub(crate) use lock::LockHold;
pub use lock::{SyncLease, SyncLock};
pub use store::{Checkpoint, CursorStore, MemoryCursorStore};

/// One page of `sync_msg`, as handed to a handler.
#[derive(Debug, Clone)]
pub struct Page {
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
#[derive(Debug, thiserror::Error)]
pub enum SyncError<E> {
    /// The handler returned an error.
    #[error("the handler failed; the page will be handed over again")]
    Handler(#[source] E),
    /// `sync_msg` failed (after the client's own retries).
    #[error("sync_msg failed")]
    Client(#[source] Error),
    /// The cursor store (or the sync lock) failed.
    #[error("the cursor store failed")]
    Store(#[source] StoreError),
    /// This process lost the account's [`SyncLock`] mid-run (it couldn't renew it in
    /// time); another process syncs the account now. Nothing more was committed.
    #[error("lost the account's sync lock; another process syncs it now")]
    LockLost,
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
}

/// Callback tokens are valid 10 minutes; a little less leaves time for the call itself.
pub(crate) const CALLBACK_TOKEN_LIFETIME: Duration = Duration::from_secs(9 * 60 + 30);

/// Pulls accounts' messages page by page, committing each cursor only after the page was
/// handled. Cheap to share (`Arc`) between the callback handler and the pulling task.
pub struct SyncStream<S> {
    client: Client,
    store: S,
    limit: Option<u32>,
    voice_format: Option<VoiceFormat>,
    /// The newest callback token per account, when it came, and whether the store has it.
    tokens: Mutex<HashMap<String, LocalToken>>,
    /// One run at a time per account: the cursor is shared state.
    running: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One process at a time per account, when several share the store.
    lock: Option<Arc<dyn SyncLock>>,
}

struct LocalToken {
    token: String,
    at: Instant,
    published: bool,
}

impl<S: CursorStore> SyncStream<S> {
    pub fn new(client: Client, store: S) -> Self {
        SyncStream {
            client,
            store,
            limit: None,
            voice_format: None,
            tokens: Mutex::default(),
            running: Mutex::default(),
            lock: None,
        }
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

    /// The cursor store, to inspect or reset checkpoints.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Remembers the `Token` of the newest `kf_msg_or_event` callback for `open_kfid`.
    /// Runs pass it to `sync_msg` while it is valid (10 minutes), which relaxes WeCom's
    /// rate limit; with a shared store, the next run shares it with the other processes.
    pub fn callback_token(&self, open_kfid: &str, token: impl Into<String>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let token = LocalToken {
            token: token.into(),
            at: Instant::now(),
            published: false,
        };
        tokens.insert(open_kfid.to_owned(), token);
    }

    fn fresh_token(&self, open_kfid: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(open_kfid)
            .filter(|t| t.at.elapsed() < CALLBACK_TOKEN_LIFETIME)
            .map(|t| t.token.clone())
    }

    fn forget_token(&self, open_kfid: &str, token: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.get(open_kfid).is_some_and(|t| t.token == token) {
            tokens.remove(open_kfid);
        }
    }

    /// Hands this process's newest callback token to the store, once.
    async fn publish_token(&self, open_kfid: &str) -> Result<(), StoreError> {
        let unpublished = {
            let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            tokens
                .get(open_kfid)
                .filter(|t| !t.published && t.at.elapsed() < CALLBACK_TOKEN_LIFETIME)
                .map(|t| t.token.clone())
        };
        let Some(token) = unpublished else {
            return Ok(());
        };
        self.store.publish_callback_token(open_kfid, &token).await?;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tokens.get_mut(open_kfid).filter(|t| t.token == token) {
            t.published = true;
        }
        Ok(())
    }

    /// The token to pull with: this process's own, else the newest any process shared.
    async fn pull_token(&self, open_kfid: &str) -> Result<Option<String>, StoreError> {
        match self.fresh_token(open_kfid) {
            Some(token) => Ok(Some(token)),
            None => self.store.newest_callback_token(open_kfid).await,
        }
    }

    fn account_lock(&self, open_kfid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.entry(open_kfid.to_owned()).or_default().clone()
    }

    /// Pulls every page there is for `open_kfid` and hands each to `handler`, committing
    /// its `next_cursor` after the handler returned `Ok`. Goes on while `has_more` is 1,
    /// even past empty pages. At least once: if a run stops inside a page, the next run
    /// hands the whole page over again.
    pub async fn run<H, F, E>(
        &self,
        open_kfid: &str,
        mut handler: H,
    ) -> Result<SyncSummary, SyncError<E>>
    where
        H: FnMut(Page) -> F,
        F: Future<Output = Result<(), E>>,
    {
        let mut summary = SyncSummary::default();
        let Some(mut session) = self.begin(open_kfid).await? else {
            summary.deferred = true;
            return Ok(summary);
        };
        loop {
            let cursor = session.checkpoint.cursor.clone();
            let (page, progress) = self.pull(&mut session, cursor.as_deref()).await?;
            summary.messages += page.messages.len();
            handler(page).await.map_err(SyncError::Handler)?;
            if !self.commit(&mut session, progress, &mut summary).await? {
                return Ok(summary);
            }
        }
    }

    /// Like [`run`](Self::run), one message at a time, for handlers that want each
    /// message's effect exactly once: after each `Ok` the msgid is saved in the checkpoint,
    /// so a page handed over again after a stop skips what was already handled. (A crash
    /// between the handler's effect and that save can still repeat one message.)
    pub async fn run_each<H, F, E>(
        &self,
        open_kfid: &str,
        mut handler: H,
    ) -> Result<SyncSummary, SyncError<E>>
    where
        H: FnMut(ReceivedMsg) -> F,
        F: Future<Output = Result<(), E>>,
    {
        let mut summary = SyncSummary::default();
        let Some(mut session) = self.begin(open_kfid).await? else {
            summary.deferred = true;
            return Ok(summary);
        };
        loop {
            let cursor = session.checkpoint.cursor.clone();
            let (page, progress) = self.pull(&mut session, cursor.as_deref()).await?;
            for message in page.messages {
                if session.checkpoint.handled.contains(&message.msgid) {
                    summary.skipped += 1;
                    continue;
                }
                let msgid = message.msgid.clone();
                handler(message).await.map_err(SyncError::Handler)?;
                summary.messages += 1;
                session.checkpoint.handled.push(msgid);
                self.save(&session).await?;
            }
            if !self.commit(&mut session, progress, &mut summary).await? {
                return Ok(summary);
            }
        }
    }

    /// Takes the account's run lock in this process, then its [`SyncLock`] if there is one
    /// (`None`: another process holds it, and has this process's callback token now), and
    /// loads its checkpoint.
    async fn begin<E>(&self, open_kfid: &str) -> Result<Option<Session>, SyncError<E>> {
        let running = self.account_lock(open_kfid).lock_owned().await;
        self.publish_token(open_kfid)
            .await
            .map_err(SyncError::Store)?;
        let hold = match &self.lock {
            Some(lock) => match lock.try_lock(open_kfid).await.map_err(SyncError::Store)? {
                Some(lease) => Some(LockHold::start(lock.clone(), lease)),
                None => return Ok(None),
            },
            None => None,
        };
        let checkpoint = self.store.load(open_kfid).await.map_err(SyncError::Store)?;
        Ok(Some(Session {
            open_kfid: open_kfid.to_owned(),
            checkpoint,
            last_token: None,
            hold,
            _running: running,
        }))
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
            Ok(true) => Ok(()),
            Ok(false) => Err(SyncError::LockLost),
            Err(error) => Err(SyncError::Store(error)),
        }
    }

    /// Commits a handled page's cursor; says whether there is more to pull: the page said
    /// so, or (with a shared store) a callback came in since the last pull.
    async fn commit<E>(
        &self,
        session: &mut Session,
        progress: Progress,
        summary: &mut SyncSummary,
    ) -> Result<bool, SyncError<E>> {
        // An empty next_cursor (nothing new at all) must not erase the position.
        if !progress.next_cursor.is_empty() {
            session.checkpoint.cursor = Some(progress.next_cursor);
        }
        session.checkpoint.handled.clear();
        self.save(session).await?;
        summary.pages += 1;
        if progress.has_more && !progress.stalled {
            return Ok(true);
        }
        if session.hold.is_none() {
            return Ok(false);
        }
        // Another process's callback may have handed over a token while we pulled.
        let newest = self
            .store
            .newest_callback_token(&session.open_kfid)
            .await
            .map_err(SyncError::Store)?;
        Ok(newest.is_some() && newest != session.last_token)
    }

    async fn pull<E>(
        &self,
        session: &mut Session,
        cursor: Option<&str>,
    ) -> Result<(Page, Progress), SyncError<E>> {
        let open_kfid = session.open_kfid.as_str();
        let mut token = self.pull_token(open_kfid).await.map_err(SyncError::Store)?;
        session.last_token.clone_from(&token);
        loop {
            let mut call = self.client.sync_msg(open_kfid);
            if let Some(cursor) = cursor {
                call = call.cursor(cursor);
            }
            if let Some(token) = &token {
                call = call.token(token.as_str());
            }
            if let Some(limit) = self.limit {
                call = call.limit(limit);
            }
            if let Some(format) = self.voice_format {
                call = call.voice_format(format);
            }
            match call.await {
                Ok(response) => {
                    let stalled = response.msg_list.is_empty()
                        && (response.next_cursor.is_empty()
                            || Some(response.next_cursor.as_str()) == cursor);
                    let progress = Progress {
                        next_cursor: response.next_cursor.clone(),
                        has_more: response.has_more == 1,
                        stalled,
                    };
                    let page = Page {
                        open_kfid: open_kfid.to_owned(),
                        cursor: cursor.map(str::to_owned),
                        next_cursor: response.next_cursor,
                        messages: response.msg_list,
                    };
                    return Ok((page, progress));
                }
                // A stale callback token: pull without it (stricter rate limit) rather
                // than fail.
                Err(e) if e.code() == Some(ErrCode::InvalidMsgToken) && token.is_some() => {
                    if let Some(stale) = token.take() {
                        self.forget_token(open_kfid, &stale);
                    }
                }
                Err(e) => return Err(SyncError::Client(e)),
            }
        }
    }
}

/// One run over one account: what it holds, and where it stands.
struct Session {
    open_kfid: String,
    checkpoint: Checkpoint,
    /// The callback token of the last pull, to notice a newer one.
    last_token: Option<String>,
    hold: Option<LockHold>,
    _running: tokio::sync::OwnedMutexGuard<()>,
}

/// What a pulled page says about the pages after it.
struct Progress {
    next_cursor: String,
    has_more: bool,
    /// An empty page that didn't move the cursor: stop instead of spinning on `has_more`.
    stalled: bool,
}
