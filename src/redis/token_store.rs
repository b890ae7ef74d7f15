//! The access token on Redis, shared by every process of the app.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands as _, Script};
use serde_json::json;

use super::{Redis, millis, owner_id};
use crate::token::{BoxFuture, CachedToken, RefreshLease, RefreshTurn, StoreError, TokenFailure};
use crate::{Secret, TokenStore};

/// How long one process may take to fetch a token before another may try.
const REFRESH_LOCK: Duration = Duration::from_secs(10);
/// How often a waiting process looks for the token another one is fetching.
const REFRESH_POLL: Duration = Duration::from_millis(20);

/// Deletes the token `KEYS[1]` only while it is still the one that failed (`ARGV[1]`). A
/// value that isn't ours (not JSON) is left for the next refresh to overwrite.
static INVALIDATE_TOKEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('GET', KEYS[1])
if not stored then
  return 0
end
local ok, value = pcall(cjson.decode, stored)
if ok and type(value) == 'table' and value.token == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// Ends a refresh held by `ARGV[1]` (lock `KEYS[1]`): stores the token `ARGV[2]` (if any)
/// at `KEYS[2]` for `ARGV[3]` ms, then releases the lock. A refresh whose lock expired
/// stores nothing: a newer token may be there already.
static FINISH_REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
redis.call('DEL', KEYS[1])
return 1",
    )
});

fn unix_ms(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Milliseconds until the token expires (at least 1, as `PX` requires): its key's lifetime.
fn remaining_ms(token: &CachedToken) -> u64 {
    let left = token
        .expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    millis(left.max(Duration::from_millis(1)))
}

fn encode_token(token: &CachedToken) -> String {
    json!({
        "token": token.token.expose(),
        "fetched_at": unix_ms(token.fetched_at),
        "expires_at": unix_ms(token.expires_at),
    })
    .to_string()
}

fn decode_token(text: &str) -> Result<CachedToken, StoreError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        token: String,
        fetched_at: u64,
        expires_at: u64,
    }
    let stored: Stored = serde_json::from_str(text)
        .map_err(|e| format!("the token stored in Redis doesn't decode: {e}"))?;
    Ok(CachedToken {
        token: Secret::new(stored.token),
        fetched_at: from_unix_ms(stored.fetched_at),
        expires_at: from_unix_ms(stored.expires_at),
    })
}

/// The access token in Redis, shared by every process of the app: when it is missing or
/// stale, one process fetches it (holding a lock that expires on its own if that process
/// dies) while the others wait and read it.
#[derive(Clone)]
pub struct RedisTokenStore {
    redis: Redis,
}

impl RedisTokenStore {
    pub(super) fn new(redis: Redis) -> Self {
        RedisTokenStore { redis }
    }

    /// The stored token; one that doesn't decode (another version's, a foreign value) is
    /// taken as none, so it is fetched again and overwritten instead of failing every call.
    async fn read(&self, key: &str) -> Result<Option<CachedToken>, StoreError> {
        let stored: Option<String> = self
            .redis
            .connection()
            .get(self.redis.key("token", key))
            .await?;
        match stored.as_deref().map(decode_token) {
            Some(Err(error)) => {
                tracing::warn!(%error, "ignoring the value at the token key; fetching a new token");
                Ok(None)
            }
            Some(Ok(token)) => Ok(Some(token)),
            None => Ok(None),
        }
    }
}

fn encode_failure(failure: &TokenFailure) -> String {
    json!({
        "failures": failure.failures,
        "code": failure.code,
        "message": failure.message,
    })
    .to_string()
}

/// A failure record and what is left of its key's lifetime; `None` for one that doesn't
/// decode (no window is better than a window nobody can explain).
fn decode_failure(text: &str, left_ms: i64) -> Option<TokenFailure> {
    #[derive(serde::Deserialize)]
    struct Stored {
        failures: u32,
        code: Option<i64>,
        message: String,
    }
    let stored: Stored = serde_json::from_str(text).ok()?;
    let left = u64::try_from(left_ms).ok().filter(|ms| *ms > 0)?;
    Some(TokenFailure {
        retry_in: Duration::from_millis(left),
        failures: stored.failures,
        code: stored.code,
        message: stored.message,
    })
}

impl TokenStore for RedisTokenStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        Box::pin(self.read(key))
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let () = self
                .redis
                .connection()
                .pset_ex(
                    self.redis.key("token", key),
                    encode_token(&token),
                    remaining_ms(&token),
                )
                .await?;
            Ok(())
        })
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let _: i64 = INVALIDATE_TOKEN
                .key(self.redis.key("token", key))
                .arg(failed.expose())
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(())
        })
    }

    /// `token-fail:{<key>}`, living as long as the window.
    fn remember_failure<'a>(
        &'a self,
        key: &'a str,
        failure: &'a TokenFailure,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let () = self
                .redis
                .connection()
                .pset_ex(
                    self.redis.key("token-fail", key),
                    encode_failure(failure),
                    millis(failure.retry_in.max(Duration::from_millis(1))),
                )
                .await?;
            Ok(())
        })
    }

    fn recorded_failure<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenFailure>, StoreError>> {
        Box::pin(async move {
            let failure_key = self.redis.key("token-fail", key);
            let (stored, left_ms): (Option<String>, i64) = redis::pipe()
                .get(&failure_key)
                .pttl(&failure_key)
                .query_async(&mut self.redis.connection())
                .await?;
            Ok(stored.and_then(|text| decode_failure(&text, left_ms)))
        })
    }

    /// Tokens arrive sealed: Redis never holds one a reader could use.
    fn is_shared(&self) -> bool {
        true
    }

    fn begin_refresh<'a>(
        &'a self,
        key: &'a str,
        stale: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<RefreshTurn, StoreError>> {
        Box::pin(async move {
            let owner = owner_id()?;
            let lock = self.redis.key("token-lock", key);
            // Past a few lock lifetimes, something is wrong with Redis or the fetchers.
            let give_up = tokio::time::Instant::now() + REFRESH_LOCK * 3;
            loop {
                // A token other than the stale one is a token another process fetched.
                if let Some(token) = self.read(key).await?
                    && Some(&token.token) != stale
                {
                    return Ok(RefreshTurn::Fetched(token));
                }
                if self.redis.claim(&lock, &owner, REFRESH_LOCK).await? {
                    // Saved between our read and our lock? Then use it, and let go.
                    if let Some(token) = self.read(key).await?
                        && Some(&token.token) != stale
                    {
                        self.redis.release(&lock, &owner).await?;
                        return Ok(RefreshTurn::Fetched(token));
                    }
                    return Ok(RefreshTurn::Fetch(RefreshLease(Some(owner))));
                }
                if tokio::time::Instant::now() >= give_up {
                    return Err(
                        "timed out waiting for another process to fetch the access token".into(),
                    );
                }
                tokio::time::sleep(REFRESH_POLL).await;
            }
        })
    }

    fn finish_refresh<'a>(
        &'a self,
        key: &'a str,
        token: Option<CachedToken>,
        lease: RefreshLease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(owner) = lease.0 else {
                return match token {
                    Some(token) => self.save(key, token).await,
                    None => Ok(()),
                };
            };
            // An empty value tells the script there is no token to store.
            let (value, lifetime_ms) = match &token {
                Some(token) => (encode_token(token), remaining_ms(token)),
                None => (String::new(), 0),
            };
            let _: i64 = FINISH_REFRESH
                .key(self.redis.key("token-lock", key))
                .key(self.redis.key("token", key))
                .arg(owner)
                .arg(value)
                .arg(lifetime_ms)
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(())
        })
    }
}
