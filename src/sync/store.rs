//! Where checkpoints live: the [`CursorStore`] trait and the in-memory store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{CALLBACK_TOKEN_LIFETIME, SyncLease};
use crate::Secret;
use crate::token::BoxFuture;
use crate::token::StoreError;

/// Where a sync stands for one account: the committed cursor, the messages of the next
/// page that [`SyncStream::run_each`](super::SyncStream::run_each) already handled, and
/// which callbacks the pulls so far have answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `next_cursor` of the last page handled in full; `None` starts 3 days back.
    pub cursor: Option<String>,
    /// Dedup keys of the page after `cursor` handled before a run stopped: each item's
    /// msgid, or a digest of its text for an item without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handled: Vec<String>,
    /// The [`SharedCallbacks::generation`] read before the pull this checkpoint commits:
    /// every callback counted up to it has been pulled for. A larger generation in the store
    /// means a callback still waits for a pull.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A callback's `Token` (the key to `sync_msg`'s relaxed rate limit) and when WeCom issued
/// it. Tokens are valid 10 minutes from issue; a newer one always wins over an older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackToken {
    /// Redacted in `Debug`.
    pub token: Secret,
    /// The callback's `CreateTime`, or when it arrived.
    pub issued_at: SystemTime,
}

impl CallbackToken {
    /// How long the token stays usable after `now`; `None` once it has expired.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        let age = now.duration_since(self.issued_at).unwrap_or_default();
        CALLBACK_TOKEN_LIFETIME
            .checked_sub(age)
            .filter(|left| !left.is_zero())
    }
}

/// What the processes that share a [`CursorStore`] know of an account's callbacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedCallbacks {
    /// The newest valid token any process published.
    pub newest: Option<CallbackToken>,
    /// How many callbacks were published, ever. A pull that read `n` before it started has
    /// pulled what the first `n` callbacks announced.
    pub generation: u64,
}

/// Keeps each account's [`Checkpoint`], keyed by `open_kfid`. A save must be atomic: after
/// a crash, `load` returns either the old checkpoint or the new one.
pub trait CursorStore: Send + Sync {
    /// Every account a checkpoint was saved for: what a restarted bot catches up on
    /// without waiting for a callback.
    fn accounts<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// The account's checkpoint; the default one (start of the log) if none was saved.
    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>>;

    /// Saves the account's checkpoint, replacing the one before.
    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// [`save`](Self::save), only while `lease` still holds the account's [`SyncLock`](crate::sync::SyncLock)
    /// (checked and saved at once); `Ok(false)`, saving nothing, when it doesn't. A store
    /// that no other process shares just saves.
    fn save_if_held<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
        lease: &'a SyncLease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let _ = lease;
        Box::pin(async move { self.save(open_kfid, checkpoint).await.map(|()| true) })
    }

    /// Tells the other processes that sync the account that a callback came: counts it
    /// in the account's [`SharedCallbacks::generation`], and shares `token` for what is
    /// left of its life unless a newer one is there. A store of one process has no one to
    /// tell.
    fn publish_callback<'a>(
        &'a self,
        open_kfid: &'a str,
        token: &'a CallbackToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (open_kfid, token);
        Box::pin(async { Ok(()) })
    }

    /// What every process published for the account: the newest valid token and the
    /// callback generation.
    fn shared_callbacks<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<SharedCallbacks, StoreError>> {
        let _ = open_kfid;
        Box::pin(async { Ok(SharedCallbacks::default()) })
    }

    /// Drops the shared token if it is still `stale` (compare and delete): WeCom refused it
    /// (95007), so no process should pull with it again.
    fn forget_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
        stale: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (open_kfid, stale);
        Box::pin(async { Ok(()) })
    }
}

/// Checkpoints in this process's memory: lost on restart.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    checkpoints: Mutex<HashMap<String, Checkpoint>>,
}

impl MemoryCursorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Checkpoint>) -> T) -> T {
        f(&mut crate::mutex::lock(&self.checkpoints))
    }
}

impl CursorStore for MemoryCursorStore {
    fn accounts<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        let mut accounts: Vec<String> = self.with(|map| map.keys().cloned().collect());
        accounts.sort();
        Box::pin(async move { Ok(accounts) })
    }

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
