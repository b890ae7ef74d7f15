//! Many processes, one bot: the access token, the cursors, the callback tokens and the sync
//! lock shared through Redis (feature `redis`).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wecom_kf::{Client, SyncStream, redis::Redis};
//!
//! let redis = Redis::connect("redis://127.0.0.1/").await?.prefix("mybot:");
//! let client = Client::builder()
//!     .corp_id("ww123")
//!     .secret("…")
//!     .token_store(redis.token_store())
//!     .build()?;
//! let sync = SyncStream::new(client, redis.cursor_store()).with_lock(redis.sync_lock());
//! # Ok(()) }
//! ```
//!
//! Keys, under the prefix: `token:{<corp id>:<hash of the secret>}` (the access token,
//! until it expires), `token-lock:{…}` (who is fetching it), `token-fail:{…}` (a failed
//! fetch, while no process should fetch again), `cursor:{<open_kfid>}` (the
//! checkpoint), `callback-token:{<open_kfid>}` (the newest callback token, for what is left
//! of its 10 minutes) and `sync-lock:{<open_kfid>}` (who syncs the account); the bot runtime's keys are listed in
//! [`RedisBotStore`]'s module. The braces are
//! hash tags: the keys one script touches share a Redis Cluster slot. The corp secret is never written (a
//! hash of it is part of a key), and the access token is stored sealed with a key derived
//! from the secret: reading Redis gives no usable credential.

#[cfg(feature = "bot")]
mod bot_store;
#[cfg(feature = "reply")]
mod budget_store;
mod cursor_store;
mod lock;
mod token_store;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

#[cfg(feature = "bot")]
pub use bot_store::RedisBotStore;
#[cfg(feature = "reply")]
pub use budget_store::RedisBudgetStore;
pub use cursor_store::RedisCursorStore;
pub use lock::RedisSyncLock;
pub use token_store::RedisTokenStore;

use crate::token::StoreError;

/// A connection to Redis (reconnecting on its own) and the prefix of every key; hands out
/// the three stores. Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    prefix: Arc<str>,
}

impl Redis {
    /// Connects to `url` (`redis://host:port/db`). The key prefix defaults to `wecom-kf:`.
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Redis {
            connection,
            prefix: Arc::from("wecom-kf:"),
        })
    }

    /// Puts every key under `prefix`, to share one Redis between bots or environments.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// Shares access tokens: one process fetches, the others wait for it.
    pub fn token_store(&self) -> RedisTokenStore {
        RedisTokenStore::new(self.clone())
    }

    /// Shares checkpoints and callback tokens, per `open_kfid`.
    pub fn cursor_store(&self) -> RedisCursorStore {
        RedisCursorStore::new(self.clone())
    }

    /// Shares the reply budget: every replica reserves from the same windows.
    #[cfg(feature = "reply")]
    pub fn budget_store(&self) -> RedisBudgetStore {
        RedisBudgetStore::new(self.clone())
    }

    /// Shares the bot runtime's inbox, reply journal and per-customer claims: replicas
    /// split the customers between them, one replica per customer at a time.
    #[cfg(feature = "bot")]
    pub fn bot_store(&self) -> RedisBotStore {
        RedisBotStore::new(self.clone())
    }

    /// Lets one process at a time sync an account; a lock lives 15 s unless renewed.
    pub fn sync_lock(&self) -> RedisSyncLock {
        RedisSyncLock::new(self.clone(), Duration::from_secs(15))
    }

    /// Takes `key` for `owner` for `ttl` unless someone holds it (`SET NX PX`).
    async fn claim(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        let taken: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.connection())
            .await?;
        Ok(taken.is_some())
    }

    /// Lets go of `key` if `owner` still holds it (compare and delete).
    async fn release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        let _: i64 = COMPARE_AND_DELETE
            .key(key)
            .arg(owner)
            .invoke_async(&mut self.connection())
            .await?;
        Ok(())
    }

    /// `<prefix><kind>:{<name>}`: the braces are a Redis Cluster hash tag, so every key of
    /// one account (or one app's token) lands in one slot and a script may touch several.
    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{{{name}}}", self.prefix)
    }

    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

/// A random id for one holder of a lock: whoever holds it, and only they, may release it.
fn owner_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a lock owner: {e}"))?;
    Ok(crate::encode::hex(&bytes))
}

/// A duration as the whole milliseconds Redis takes.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]`. Scripts are statics so each is
/// hashed once (`Script::new` hashes its source).
static COMPARE_AND_DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});
