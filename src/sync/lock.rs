//! One process at a time per account: the [`SyncLock`] trait and the renewing hold a run
//! keeps on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::token::BoxFuture;
use crate::token::StoreError;

/// Lets one process at a time sync an account when several share a [`CursorStore`]: the
/// holder pulls, the others hand over their callback tokens and return.
///
/// [`CursorStore`]: super::CursorStore
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

    /// How long a lock lives after it was taken or last renewed. A renewal that keeps
    /// failing is retried until then; past it, the holder stops committing. By default
    /// three renewal periods.
    fn expires_after(&self) -> Duration {
        self.renew_every().saturating_mul(3)
    }
}

/// A held [`SyncLock`]: the account and this holder's unique id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLease {
    /// The account the lock is for.
    pub open_kfid: String,
    /// This holder's id: only it may renew or release the lock.
    pub owner: String,
}

/// A held [`SyncLock`], renewed in the background until [`release`](Self::release)d.
///
/// It is renewed only while the run makes progress: past `hold_limit` without a commit (a
/// handler that hangs or blocks its thread) renewals stop and the lock expires, so the
/// other processes take the account over instead of waiting on it forever.
pub(crate) struct LockHold {
    lock: Arc<dyn SyncLock>,
    pub(crate) lease: SyncLease,
    clock: Arc<HoldClock>,
    renewer: tokio::task::JoinHandle<()>,
    released: bool,
}

/// What the run and its renewer share: whether the lock was lost, until when it is surely
/// still held, and when the run last committed (milliseconds since `start`).
struct HoldClock {
    start: Instant,
    lost: AtomicBool,
    held_until_ms: AtomicU64,
    committed_ms: AtomicU64,
}

impl HoldClock {
    fn now_ms(&self) -> u64 {
        millis(self.start.elapsed())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl LockHold {
    pub(crate) fn start(lock: Arc<dyn SyncLock>, lease: SyncLease, hold_limit: Duration) -> Self {
        // `interval` and the retry wait below must not be zero (a custom lock may say so).
        let every = lock.renew_every().max(Duration::from_millis(1));
        let ttl = lock.expires_after().max(every);
        let clock = Arc::new(HoldClock {
            start: Instant::now(),
            lost: AtomicBool::new(false),
            // Taken a moment before this start: count the first lifetime a little short.
            held_until_ms: AtomicU64::new(millis(ttl - ttl / 10)),
            committed_ms: AtomicU64::new(0),
        });
        let renewer = tokio::spawn(renew(
            lock.clone(),
            lease.clone(),
            clock.clone(),
            every,
            ttl,
            hold_limit,
        ));
        LockHold {
            lock,
            lease,
            clock,
            renewer,
            released: false,
        }
    }

    /// Whether the lock may have passed to another process: a renewal was refused, or
    /// none succeeded within the lock's lifetime (even when the renewer could not run).
    pub(crate) fn is_lost(&self) -> bool {
        self.clock.lost.load(Ordering::SeqCst)
            || self.clock.now_ms() >= self.clock.held_until_ms.load(Ordering::SeqCst)
    }

    /// The run made progress: keep renewing.
    pub(crate) fn committed(&self) {
        self.clock
            .committed_ms
            .store(self.clock.now_ms(), Ordering::SeqCst);
    }

    /// Stops renewing and releases the lock, before the run returns: the next run, here or
    /// in another process, can take it at once.
    pub(crate) async fn release(mut self) {
        self.renewer.abort();
        self.released = true;
        if let Err(error) = self.lock.unlock(&self.lease).await {
            tracing::warn!(%error, open_kfid = %self.lease.open_kfid, "could not release the sync lock; it expires on its own");
        }
    }
}

/// Renews every `every` while the run commits at least once per `hold_limit`; a renewal
/// that fails is retried until the lock would expire.
async fn renew(
    lock: Arc<dyn SyncLock>,
    lease: SyncLease,
    clock: Arc<HoldClock>,
    every: Duration,
    ttl: Duration,
    hold_limit: Duration,
) {
    let retry_wait = (every / 4).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        let since_commit = clock
            .now_ms()
            .saturating_sub(clock.committed_ms.load(Ordering::SeqCst));
        if since_commit > millis(hold_limit) {
            tracing::warn!(
                open_kfid = %lease.open_kfid,
                held_ms = since_commit,
                "no commit for too long (a handler that hangs?); letting the sync lock expire so another process takes over"
            );
            break;
        }
        loop {
            let asked_at = clock.now_ms();
            match lock.renew(&lease).await {
                Ok(true) => {
                    let until = asked_at.saturating_add(millis(ttl));
                    clock.held_until_ms.store(until, Ordering::SeqCst);
                    break;
                }
                Ok(false) => {
                    clock.lost.store(true, Ordering::SeqCst);
                    return;
                }
                Err(error) => {
                    let until = clock.held_until_ms.load(Ordering::SeqCst);
                    if clock.now_ms().saturating_add(millis(retry_wait)) >= until {
                        tracing::warn!(%error, open_kfid = %lease.open_kfid, "could not renew the sync lock before it expired");
                        clock.lost.store(true, Ordering::SeqCst);
                        return;
                    }
                    tracing::debug!(%error, open_kfid = %lease.open_kfid, "renewing the sync lock failed; retrying");
                    tokio::time::sleep(retry_wait).await;
                }
            }
        }
    }
    clock.lost.store(true, Ordering::SeqCst);
}

impl Drop for LockHold {
    /// Only a cancelled run gets here unreleased: release in the background, if a runtime is
    /// still there; otherwise the lock expires alone.
    fn drop(&mut self) {
        self.renewer.abort();
        if self.released {
            return;
        }
        let (lock, lease) = (self.lock.clone(), self.lease.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = lock.unlock(&lease).await {
                    tracing::warn!(%error, open_kfid = %lease.open_kfid, "could not release the sync lock; it expires on its own");
                }
            });
        }
    }
}
