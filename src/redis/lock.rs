//! The sync lock: `SET key owner NX PX`, extended and released only by its owner (Lua).

use std::time::Duration;

use redis::Script;

use super::{COMPARE_AND_DELETE, Redis, owner_id};
use crate::{BoxFuture, StoreError, SyncLease, SyncLock};

/// Extends `KEYS[1]` by `ARGV[2]` ms only while it still holds `ARGV[1]`.
const COMPARE_AND_EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

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

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

impl SyncLock for RedisSyncLock {
    fn try_lock<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<SyncLease>, StoreError>> {
        Box::pin(async move {
            let owner = owner_id()?;
            let taken: Option<String> = redis::cmd("SET")
                .arg(self.key(open_kfid))
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(self.ttl_ms())
                .query_async(&mut self.redis.connection())
                .await?;
            Ok(taken.map(|_| SyncLease {
                open_kfid: open_kfid.to_owned(),
                owner,
            }))
        })
    }

    fn renew<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let extended: i64 = Script::new(COMPARE_AND_EXTEND)
                .key(self.key(&lease.open_kfid))
                .arg(&lease.owner)
                .arg(self.ttl_ms())
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(extended == 1)
        })
    }

    fn unlock<'a>(&'a self, lease: &'a SyncLease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _: i64 = Script::new(COMPARE_AND_DELETE)
                .key(self.key(&lease.open_kfid))
                .arg(&lease.owner)
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(())
        })
    }

    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}
