//! One process at a time per account: the [`SyncLock`] trait and the renewing hold a run
//! keeps on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::BoxFuture;
use crate::token::StoreError;

/// Lets one process at a time sync an account when several share a [`CursorStore`]: the
/// holder pulls, the others hand over their callback tokens and return.
pub trait SyncLock: Send + Sync + 'static {
    /// Takes the account's lock, or `None` while another process holds it.
    fn try_lock<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncLease>, StoreError>>;

    /// Extends a held lock; `false` when it was lost (it expired and another took it).
    fn renew<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Releases the lock if this lease still holds it.
    fn unlock<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<(), StoreError>>;

    /// How often a running sync renews its lock: well within the lock's lifetime.
    fn renew_every(&self) -> Duration;
}

/// A held [`SyncLock`]: the account and this holder's unique id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLease {
    pub open_kfid: String,
    pub owner: String,
}

/// A held [`SyncLock`], renewed in the background until dropped, then released.
pub(crate) struct LockHold {
    lock: Arc<dyn SyncLock>,
    pub(crate) lease: SyncLease,
    lost: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LockHold {
    pub(crate) fn start(lock: Arc<dyn SyncLock>, lease: SyncLease) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = tokio::spawn({
            let (lock, lease, lost) = (lock.clone(), lease.clone(), lost.clone());
            async move {
                let mut every = tokio::time::interval(lock.renew_every());
                every.tick().await;
                loop {
                    every.tick().await;
                    match lock.renew(&lease).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        // Not renewed: the lock may expire and pass to another process,
                        // so stop committing until this run ends.
                        Err(error) => {
                            tracing::warn!(%error, open_kfid = %lease.open_kfid, "could not renew the sync lock");
                            break;
                        }
                    }
                }
                lost.store(true, Ordering::SeqCst);
            }
        });
        LockHold {
            lock,
            lease,
            lost,
            renewer,
        }
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LockHold {
    fn drop(&mut self) {
        self.renewer.abort();
        let (lock, lease) = (self.lock.clone(), self.lease.clone());
        // Dropped inside a run, so inside a runtime; if it is gone, the lock expires alone.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = lock.unlock(&lease).await {
                    tracing::warn!(%error, open_kfid = %lease.open_kfid, "could not release the sync lock; it expires on its own");
                }
            });
        }
    }
}
