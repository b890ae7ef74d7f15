//! The sync lock: `SET key owner NX PX`, extended and released only by its owner (Lua).

use std::time::Duration;

use std::sync::LazyLock;

use redis::Script;

use super::{Redis, millis, owner_id};
use crate::sync::{SyncLease, SyncLock};
use crate::token::{BoxFuture, StoreError};

/// Extends `KEYS[1]` by `ARGV[2]` ms only while it still holds `ARGV[1]`.
static COMPARE_AND_EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0",
    )
});

/// One process at a time syncs an account. If the holder dies, its lock expires after the
/// lock's lifetime and the next run elsewhere takes over from the shared cursor.
#[derive(Clone)]
pub struct RedisSyncLock {
    redis: Redis,
    ttl: Duration,
}

impl RedisSyncLock {
    pub(super) fn new(redis: Redis, ttl: Duration) -> Self {
        RedisSyncLock { redis, ttl }
    }

    /// How long a lock lives without renewal (15 s by default): the longest a dead
    /// holder keeps an account from being synced. Runs renew it every third of that.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl.max(Duration::from_millis(30));
        self
    }

    fn key(&self, open_kfid: &str) -> String {
        self.redis.key("sync-lock", open_kfid)
    }
}

impl SyncLock for RedisSyncLock {
    fn try_lock<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncLease>, StoreError>> {
        Box::pin(async move {
            let owner = owner_id()?;
            let taken = self
                .redis
                .claim(&self.key(open_kfid), &owner, self.ttl)
                .await?;
            Ok(taken.then(|| SyncLease {
                open_kfid: open_kfid.to_owned(),
                owner,
            }))
        })
    }

    fn renew<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let extended: i64 = COMPARE_AND_EXTEND
                .key(self.key(&lease.open_kfid))
                .arg(&lease.owner)
                .arg(millis(self.ttl))
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(extended == 1)
        })
    }

    fn unlock<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.key(&lease.open_kfid);
            self.redis.release(&key, &lease.owner).await
        })
    }

    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    fn expires_after(&self) -> Duration {
        self.ttl
    }
}
