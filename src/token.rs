//! The access token: fetched on demand, cached until shortly before it expires, refreshed
//! by one request however many tasks need it, and dropped when WeCom says it is stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::call::BoxFuture;
use crate::{Client, Error, Secret};

/// An access token with its lifetime, as a [`TokenStore`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub token: Secret,
    pub fetched_at: SystemTime,
    pub expires_at: SystemTime,
}

impl CachedToken {
    /// Whether the token can still be used at `now`, keeping `margin` before expiry (at
    /// most half the token's lifetime, so short-lived tokens still get used).
    pub fn is_fresh(&self, now: SystemTime, margin: Duration) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.fetched_at)
            .unwrap_or_default();
        let margin = margin.min(lifetime / 2);
        now + margin < self.expires_at
    }
}

/// The error type stores return.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where tokens live. The default keeps them in memory; an external store lets several
/// processes share one token (WeCom rate-limits `gettoken`).
///
/// Keys are the corp id and a hash of the secret, never the secret itself.
pub trait TokenStore: Send + Sync + 'static {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>>;

    fn save<'a>(
        &'a self,
        key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes the token only if it is still `failed` (compare and delete), so a token that
    /// another task already refreshed is never thrown away.
    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Tokens in this process's memory: the default store.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl MemoryTokenStore {
    pub fn new() -> Self {
        MemoryTokenStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, CachedToken>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-insert; the map is still usable.
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut tokens)
    }
}

impl TokenStore for MemoryTokenStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>> {
        let token = self.with(|t| t.get(key).cloned());
        Box::pin(async move { Ok(token) })
    }

    fn save<'a>(
        &'a self,
        key: &'a str,
        token: CachedToken,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|t| t.insert(key.to_owned(), token));
        Box::pin(async { Ok(()) })
    }

    fn invalidate<'a>(
        &'a self,
        key: &'a str,
        failed: &'a Secret,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|t| {
            if t.get(key).is_some_and(|c| &c.token == failed) {
                t.remove(key);
            }
        });
        Box::pin(async { Ok(()) })
    }
}

/// The client's view of its store: single-flight refresh within this process.
pub(crate) struct TokenCache {
    store: Arc<dyn TokenStore>,
    key: String,
    margin: Duration,
    refreshing: tokio::sync::Mutex<()>,
}

impl TokenCache {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        corp_id: &str,
        secret: &Secret,
        margin: Duration,
    ) -> Self {
        TokenCache {
            store,
            key: token_key(corp_id, secret),
            margin,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    async fn fresh(&self) -> Result<Option<Secret>, Error> {
        let cached = self
            .store
            .load(&self.key)
            .await
            .map_err(Error::TokenStore)?;
        Ok(cached
            .filter(|c| c.is_fresh(SystemTime::now(), self.margin))
            .map(|c| c.token))
    }

    /// A usable token: cached, or fetched by exactly one of the tasks that need it.
    pub(crate) async fn get(&self, client: &Client) -> Result<Secret, Error> {
        if let Some(token) = self.fresh().await? {
            return Ok(token);
        }
        let _only_fetcher = self.refreshing.lock().await;
        if let Some(token) = self.fresh().await? {
            return Ok(token);
        }
        let fetched_at = SystemTime::now();
        // Awaiting the builder boxes the future, which keeps this recursion finite.
        let response = client.gettoken().await?;
        let cached = CachedToken {
            token: response.access_token,
            fetched_at,
            expires_at: fetched_at + Duration::from_secs(response.expires_in),
        };
        tracing::debug!(
            expires_in = response.expires_in,
            "fetched a new access token"
        );
        self.store
            .save(&self.key, cached.clone())
            .await
            .map_err(Error::TokenStore)?;
        Ok(cached.token)
    }

    pub(crate) async fn invalidate(&self, failed: &Secret) -> Result<(), Error> {
        self.store
            .invalidate(&self.key, failed)
            .await
            .map_err(Error::TokenStore)
    }
}

/// `corp_id:` plus a stable 64-bit FNV-1a hash of the secret: distinct per app, and the
/// secret never appears in a key.
fn token_key(corp_id: &str, secret: &Secret) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in secret.expose().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{corp_id}:{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_keeps_a_margin_capped_at_half_the_lifetime() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let token = CachedToken {
            token: Secret::new("t"),
            fetched_at: t0,
            expires_at: t0 + Duration::from_secs(7200),
        };
        let margin = Duration::from_secs(300);
        assert!(token.is_fresh(t0 + Duration::from_secs(6000), margin));
        assert!(!token.is_fresh(t0 + Duration::from_secs(6901), margin));
        let short = CachedToken {
            expires_at: t0 + Duration::from_secs(2),
            ..token
        };
        assert!(short.is_fresh(t0, margin));
        assert!(!short.is_fresh(t0 + Duration::from_secs(1), margin));
    }

    #[test]
    fn key_does_not_contain_the_secret() {
        let key = token_key("ww1", &Secret::new("my-secret"));
        assert!(key.starts_with("ww1:"));
        assert!(!key.contains("my-secret"));
        assert_ne!(key, token_key("ww1", &Secret::new("other")));
    }

    #[tokio::test]
    async fn invalidate_only_removes_the_failed_token() {
        let store = MemoryTokenStore::new();
        let now = SystemTime::now();
        let fresh = CachedToken {
            token: Secret::new("new"),
            fetched_at: now,
            expires_at: now + Duration::from_secs(60),
        };
        store.save("k", fresh.clone()).await.unwrap();
        store.invalidate("k", &Secret::new("old")).await.unwrap();
        assert_eq!(store.load("k").await.unwrap(), Some(fresh));
        store.invalidate("k", &Secret::new("new")).await.unwrap();
        assert_eq!(store.load("k").await.unwrap(), None);
    }
}
