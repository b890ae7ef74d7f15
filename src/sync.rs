//! Pulling an account's messages without ever skipping one.
//!
//! [`SyncStream`] calls `sync_msg` from the committed cursor, hands each page to the
//! caller's handler, and commits `next_cursor` through a [`CursorStore`] only after the
//! handler returned `Ok`. Anything that fails (the handler, the network, WeCom) stops the
//! run without committing, so the next run starts again from the page that failed.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::token::StoreError;
use crate::{BoxFuture, Client, ErrCode, Error, ReceivedMsg, VoiceFormat};

/// Where a sync stands for one account: the committed cursor, and the messages of the
/// next page that [`SyncStream::run_each`] already handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `next_cursor` of the last page handled in full; `None` starts 3 days back.
    pub cursor: Option<String>,
    /// msgids of the page after `cursor` that were handled before a run stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled: Vec<String>,
}

/// Keeps each account's [`Checkpoint`], keyed by `open_kfid`. A save must be atomic: after
/// a crash, `load` returns either the old checkpoint or the new one.
pub trait CursorStore: Send + Sync {
    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>>;

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Checkpoints in this process's memory: lost on restart.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    checkpoints: Mutex<HashMap<String, Checkpoint>>,
}

impl MemoryCursorStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Checkpoint>) -> T) -> T {
        // A panic while holding this lock can't leave a map half-written.
        let mut map = self
            .checkpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut map)
    }
}

impl CursorStore for MemoryCursorStore {
    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        let checkpoint = self.with(|map| map.get(open_kfid).cloned().unwrap_or_default());
        Box::pin(async move { Ok(checkpoint) })
    }

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|map| map.insert(open_kfid.to_owned(), checkpoint.clone()));
        Box::pin(async { Ok(()) })
    }
}

/// Checkpoints as JSON files in a directory, one per account, written atomically: a temp
/// file is written and fsynced, then renamed over the old one, then the directory is
/// fsynced.
#[derive(Debug, Clone)]
pub struct FileCursorStore {
    dir: PathBuf,
}

impl FileCursorStore {
    /// Creates the directory if needed.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FileCursorStore { dir })
    }

    /// The file of one account. `open_kfid`s are `[0-9A-Za-z_-]`; anything else is
    /// percent-encoded so a name can never leave the directory.
    pub fn path_of(&self, open_kfid: &str) -> PathBuf {
        let mut name = String::with_capacity(open_kfid.len() + 5);
        for byte in open_kfid.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
                name.push(char::from(byte));
            } else {
                name.push_str(&format!("%{byte:02X}"));
            }
        }
        name.push_str(".json");
        self.dir.join(name)
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // Make the rename itself durable.
    std::fs::File::open(dir)?.sync_all()
}

impl CursorStore for FileCursorStore {
    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        let path = self.path_of(open_kfid);
        Box::pin(async move {
            let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            });
            match read.await?? {
                Some(bytes) => Ok(serde_json::from_slice(&bytes)?),
                None => Ok(Checkpoint::default()),
            }
        })
    }

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (dir, path) = (self.dir.clone(), self.path_of(open_kfid));
        Box::pin(async move {
            let bytes = serde_json::to_vec(checkpoint)?;
            tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes)).await??;
            Ok(())
        })
    }
}

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
    /// The cursor store failed to load or save.
    #[error("the cursor store failed")]
    Store(#[source] StoreError),
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
}

/// Callback tokens are valid 10 minutes; a little less leaves time for the call itself.
const CALLBACK_TOKEN_LIFETIME: Duration = Duration::from_secs(9 * 60 + 30);

/// Pulls accounts' messages page by page, committing each cursor only after the page was
/// handled. Cheap to share (`Arc`) between the callback handler and the pulling task.
pub struct SyncStream<S> {
    client: Client,
    store: S,
    limit: Option<u32>,
    voice_format: Option<VoiceFormat>,
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// One run at a time per account: the cursor is shared state.
    running: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        }
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
    /// rate limit.
    pub fn callback_token(&self, open_kfid: &str, token: impl Into<String>) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(open_kfid.to_owned(), (token.into(), Instant::now()));
    }

    fn fresh_token(&self, open_kfid: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(open_kfid)
            .filter(|(_, at)| at.elapsed() < CALLBACK_TOKEN_LIFETIME)
            .map(|(token, _)| token.clone())
    }

    fn forget_token(&self, open_kfid: &str, token: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.get(open_kfid).is_some_and(|(t, _)| t == token) {
            tokens.remove(open_kfid);
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
        let (_running, mut checkpoint) = self.begin(open_kfid).await?;
        let mut summary = SyncSummary::default();
        loop {
            let (page, progress) = self.pull(open_kfid, checkpoint.cursor.as_deref()).await?;
            summary.messages += page.messages.len();
            handler(page).await.map_err(SyncError::Handler)?;
            if !self
                .commit(open_kfid, &mut checkpoint, progress, &mut summary)
                .await?
            {
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
        let (_running, mut checkpoint) = self.begin(open_kfid).await?;
        let mut summary = SyncSummary::default();
        loop {
            let (page, progress) = self.pull(open_kfid, checkpoint.cursor.as_deref()).await?;
            for message in page.messages {
                if checkpoint.handled.contains(&message.msgid) {
                    summary.skipped += 1;
                    continue;
                }
                let msgid = message.msgid.clone();
                handler(message).await.map_err(SyncError::Handler)?;
                summary.messages += 1;
                checkpoint.handled.push(msgid);
                self.store
                    .save(open_kfid, &checkpoint)
                    .await
                    .map_err(SyncError::Store)?;
            }
            if !self
                .commit(open_kfid, &mut checkpoint, progress, &mut summary)
                .await?
            {
                return Ok(summary);
            }
        }
    }

    /// Takes the account's run lock (held until the guard drops) and loads its checkpoint.
    async fn begin<E>(
        &self,
        open_kfid: &str,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, Checkpoint), SyncError<E>> {
        let running = self.account_lock(open_kfid).lock_owned().await;
        let checkpoint = self.store.load(open_kfid).await.map_err(SyncError::Store)?;
        Ok((running, checkpoint))
    }

    /// Commits a handled page's cursor; says whether there is more to pull.
    async fn commit<E>(
        &self,
        open_kfid: &str,
        checkpoint: &mut Checkpoint,
        progress: Progress,
        summary: &mut SyncSummary,
    ) -> Result<bool, SyncError<E>> {
        // An empty next_cursor (nothing new at all) must not erase the position.
        if !progress.next_cursor.is_empty() {
            checkpoint.cursor = Some(progress.next_cursor);
        }
        checkpoint.handled.clear();
        self.store
            .save(open_kfid, checkpoint)
            .await
            .map_err(SyncError::Store)?;
        summary.pages += 1;
        Ok(progress.has_more && !progress.stalled)
    }

    async fn pull<E>(
        &self,
        open_kfid: &str,
        cursor: Option<&str>,
    ) -> Result<(Page, Progress), SyncError<E>> {
        let mut token = self.fresh_token(open_kfid);
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

/// What a pulled page says about the pages after it.
struct Progress {
    next_cursor: String,
    has_more: bool,
    /// An empty page that didn't move the cursor: stop instead of spinning on `has_more`.
    stalled: bool,
}
