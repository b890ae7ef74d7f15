//! Checkpoints and callback tokens on Redis, per account.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands as _, Script};

use super::{Redis, millis};
use crate::sync::{CallbackToken, Checkpoint, SharedCallbacks, SyncLease};
use crate::token::{BoxFuture, StoreError};
use crate::{CursorStore, Secret};

/// Sets `KEYS[2]` to `ARGV[2]` only while the lock `KEYS[1]` holds `ARGV[1]`.
static SET_IF_HELD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0",
    )
});

/// Counts a callback (`INCR` of the generation `KEYS[2]`) and keeps its token `ARGV[2]`,
/// issued at `ARGV[1]` (unix ms), at `KEYS[1]` for `ARGV[3]` ms, unless the token there was
/// issued later. Returns the new generation.
static PUBLISH_CALLBACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local generation = redis.call('INCR', KEYS[2])
if tonumber(ARGV[3]) > 0 then
  local stored = redis.call('GET', KEYS[1])
  local issued = stored and tonumber(string.match(stored, '^(%d+):'))
  if not issued or issued <= tonumber(ARGV[1]) then
    redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
  end
end
return generation",
    )
});

/// Deletes the callback token `KEYS[1]` only while it is still `ARGV[1]`.
static FORGET_CALLBACK_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('GET', KEYS[1])
if stored and string.sub(stored, (string.find(stored, ':', 1, true) or 0) + 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// Checkpoints and callback tokens in Redis, per `open_kfid`. With a [`RedisSyncLock`] of
/// the same [`Redis`], a checkpoint is saved only by the process holding the account's
/// lock, so a process that lost it can never move the cursor.
///
/// [`RedisSyncLock`]: super::RedisSyncLock
#[derive(Clone)]
pub struct RedisCursorStore {
    redis: Redis,
}

impl RedisCursorStore {
    pub(super) fn new(redis: Redis) -> Self {
        RedisCursorStore { redis }
    }
}

fn encode_checkpoint(checkpoint: &Checkpoint) -> Result<String, StoreError> {
    Ok(serde_json::to_string(checkpoint)?)
}

impl RedisCursorStore {
    /// The set of accounts with a checkpoint (one key for all, outside any account's slot).
    fn accounts_key(&self) -> String {
        format!("{}cursor-accounts", self.redis.prefix)
    }

    async fn list_account(&self, open_kfid: &str) -> Result<(), StoreError> {
        let () = self
            .redis
            .connection()
            .sadd(self.accounts_key(), open_kfid)
            .await?;
        Ok(())
    }
}

impl CursorStore for RedisCursorStore {
    fn accounts<'a>(&'a self) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let mut accounts: Vec<String> = self
                .redis
                .connection()
                .smembers(self.accounts_key())
                .await?;
            accounts.sort();
            Ok(accounts)
        })
    }

    fn load<'a>(&'a self, open_kfid: &'a str) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        Box::pin(async move {
            let stored: Option<String> = self
                .redis
                .connection()
                .get(self.redis.key("cursor", open_kfid))
                .await?;
            match stored {
                Some(text) => Ok(serde_json::from_str(&text)?),
                None => Ok(Checkpoint::default()),
            }
        })
    }

    fn save<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.list_account(open_kfid).await?;
            let () = self
                .redis
                .connection()
                .set(
                    self.redis.key("cursor", open_kfid),
                    encode_checkpoint(checkpoint)?,
                )
                .await?;
            Ok(())
        })
    }

    fn save_if_held<'a>(
        &'a self,
        open_kfid: &'a str,
        checkpoint: &'a Checkpoint,
        lease: &'a SyncLease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.list_account(open_kfid).await?;
            let saved: i64 = SET_IF_HELD
                .key(self.redis.key("sync-lock", open_kfid))
                .key(self.redis.key("cursor", open_kfid))
                .arg(&lease.owner)
                .arg(encode_checkpoint(checkpoint)?)
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(saved == 1)
        })
    }

    fn publish_callback<'a>(
        &'a self,
        open_kfid: &'a str,
        token: &'a CallbackToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // An expired token is not shared, but its callback still counts.
            let left = token.remaining(SystemTime::now()).unwrap_or_default();
            let _: u64 = PUBLISH_CALLBACK
                .key(self.redis.key("callback-token", open_kfid))
                .key(self.redis.key("callback-gen", open_kfid))
                .arg(unix_ms(token.issued_at))
                .arg(token.token.expose())
                .arg(millis(left))
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(())
        })
    }

    fn shared_callbacks<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<SharedCallbacks, StoreError>> {
        Box::pin(async move {
            let (token, generation): (Option<String>, Option<u64>) = redis::pipe()
                .get(self.redis.key("callback-token", open_kfid))
                .get(self.redis.key("callback-gen", open_kfid))
                .query_async(&mut self.redis.connection())
                .await?;
            let now = SystemTime::now();
            // A value this version can't read is as good as none: the next callback
            // replaces it.
            let newest = token
                .as_deref()
                .and_then(decode_callback_token)
                .filter(|t| t.remaining(now).is_some());
            Ok(SharedCallbacks {
                newest,
                generation: generation.unwrap_or(0),
            })
        })
    }

    fn forget_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
        stale: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _: i64 = FORGET_CALLBACK_TOKEN
                .key(self.redis.key("callback-token", open_kfid))
                .arg(stale.expose())
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(())
        })
    }
}

/// `<issued at, unix ms>:<token>`, as [`PUBLISH_CALLBACK`] stores it.
fn decode_callback_token(stored: &str) -> Option<CallbackToken> {
    let (issued_ms, token) = stored.split_once(':')?;
    let issued_ms: u64 = issued_ms.parse().ok()?;
    Some(CallbackToken {
        token: Secret::new(token),
        issued_at: UNIX_EPOCH.checked_add(Duration::from_millis(issued_ms))?,
    })
}

fn unix_ms(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    millis(since)
}
