//! Checkpoints and callback tokens on Redis, per account.

use std::sync::LazyLock;

use redis::{AsyncCommands as _, Script};

use super::Redis;
use crate::sync::CALLBACK_TOKEN_LIFETIME;
use crate::{BoxFuture, Checkpoint, CursorStore, StoreError, SyncLease};

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

impl CursorStore for RedisCursorStore {
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

    fn publish_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let () = self
                .redis
                .connection()
                .set_ex(
                    self.redis.key("callback-token", open_kfid),
                    token,
                    CALLBACK_TOKEN_LIFETIME.as_secs(),
                )
                .await?;
            Ok(())
        })
    }

    fn newest_callback_token<'a>(
        &'a self,
        open_kfid: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            let token: Option<String> = self
                .redis
                .connection()
                .get(self.redis.key("callback-token", open_kfid))
                .await?;
            Ok(token)
        })
    }
}
