//! Where checkpoints live: the [`CursorStore`] trait and the in-memory store.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::SyncLease;
use crate::BoxFuture;
use crate::token::StoreError;

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

    /// [`save`](Self::save), only while `lease` still holds the account's [`SyncLock`]
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

    /// Shares the newest callback token of an account with the other processes that sync
    /// it, for as long as it is valid. A store of one process has no one to share with.
    fn publish_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (open_kfid, token);
        Box::pin(async { Ok(()) })
    }

    /// The newest callback token any process published for the account, while valid.
    fn newest_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let _ = open_kfid;
        Box::pin(async { Ok(None) })
    }
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
