//! The access token: fetched on demand, cached until shortly before it expires, refreshed
//! by one request however many tasks need it, and dropped when WeCom says it is stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::call::BoxFuture;
use crate::seal::TokenSeal;
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

    /// Called when this process needs a new token (it holds none, or only `stale`). A store
    /// shared by several processes lets one of them fetch and the others wait: it answers
    /// [`RefreshTurn::Fetched`] with a token another process saved meanwhile, or
    /// [`RefreshTurn::Fetch`] once this process may fetch. By default every process fetches.
    fn begin_refresh<'a>(
        &'a self,
        key: &'a str,
        stale: Option<&'a Secret>,
    ) -> BoxFuture<'a, Result<RefreshTurn, StoreError>> {
        let _ = (key, stale);
        Box::pin(async { Ok(RefreshTurn::Fetch(RefreshLease::default())) })
    }

    /// Ends a [`RefreshTurn::Fetch`]: saves the fetched token (`None` when the fetch
    /// failed) and lets waiting processes go on. A shared store saves only while `lease`
    /// still holds the refresh, so a process that took too long can't overwrite a newer
    /// token. By default, [`save`](Self::save).
    fn finish_refresh<'a>(
        &'a self,
        key: &'a str,
        token: Option<CachedToken>,
        lease: RefreshLease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = lease;
        match token {
            Some(token) => self.save(key, token),
            None => Box::pin(async { Ok(()) }),
        }
    }

    /// Whether other processes (and whoever runs the store) can read it. The client then
    /// hands it tokens sealed with a key derived from the app's secret: the store compares
    /// and keeps them as usual, but can't use them. By default, `false`.
    fn is_shared(&self) -> bool {
        false
    }
}

/// Whether this process fetches the next token, or another one already did.
#[derive(Debug)]
pub enum RefreshTurn {
    /// Fetch it, then hand the lease back to [`TokenStore::finish_refresh`].
    Fetch(RefreshLease),
    /// Another process fetched this one while we waited: use it.
    Fetched(CachedToken),
}

/// A store's proof that this process holds the refresh (an owner id, for a shared store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshLease(pub Option<String>);

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
    /// For a shared store: tokens are sealed on the way in and opened on the way out.
    seal: Option<TokenSeal>,
}

impl TokenCache {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        corp_id: &str,
        secret: &Secret,
        margin: Duration,
    ) -> Self {
        let seal = store.is_shared().then(|| TokenSeal::new(corp_id, secret));
        TokenCache {
            store,
            key: token_key(corp_id, secret),
            margin,
            refreshing: tokio::sync::Mutex::new(()),
            seal,
        }
    }

    /// The token as the store keeps it.
    fn for_store(&self, token: &Secret) -> Secret {
        match &self.seal {
            Some(seal) => seal.seal(token),
            None => token.clone(),
        }
    }

    /// A token from the store, opened; `None` for one this app didn't seal (it is fetched
    /// again, and the store's copy replaced).
    fn opened(&self, cached: CachedToken) -> Option<CachedToken> {
        match &self.seal {
            Some(seal) => match seal.open(&cached.token) {
                Some(token) => Some(CachedToken { token, ..cached }),
                None => {
                    tracing::warn!(
                        "the shared token store holds a token this app can't open; fetching a new one"
                    );
                    None
                }
            },
            None => Some(cached),
        }
    }

    async fn load(&self) -> Result<Option<CachedToken>, Error> {
        let cached = self
            .store
            .load(&self.key)
            .await
            .map_err(Error::TokenStore)?;
        Ok(cached.and_then(|c| self.opened(c)))
    }

    fn usable(&self, cached: &Option<CachedToken>) -> Option<Secret> {
        cached
            .as_ref()
            .filter(|c| c.is_fresh(SystemTime::now(), self.margin))
            .map(|c| c.token.clone())
    }

    pub(crate) async fn get(&self, client: &Client) -> Result<Secret, Error> {
        let cached = self.load().await?;
        if let Some(token) = self.usable(&cached) {
            return Ok(token);
        }
        let _only_fetcher = self.refreshing.lock().await;
        let cached = self.load().await?;
        if let Some(token) = self.usable(&cached) {
            return Ok(token);
        }
        let stale = cached.map(|c| self.for_store(&c.token));
        let lease = match self
            .store
            .begin_refresh(&self.key, stale.as_ref())
            .await
            .map_err(Error::TokenStore)?
        {
            RefreshTurn::Fetched(token) => match self.opened(token) {
                Some(token) => return Ok(token.token),
                None => RefreshLease::default(),
            },
            RefreshTurn::Fetch(lease) => lease,
        };
        let fetched_at = SystemTime::now();
        let response = match client.gettoken().await {
            Ok(response) => response,
            Err(error) => {
                // Let the processes waiting on this refresh try their own.
                if let Err(store) = self.store.finish_refresh(&self.key, None, lease).await {
                    tracing::warn!(error = %store, "could not release the token refresh");
                }
                return Err(error);
            }
        };
        let lifetime = token_lifetime(response.expires_in);
        let cached = CachedToken {
            token: response.access_token,
            fetched_at,
            expires_at: fetched_at.checked_add(lifetime).unwrap_or(fetched_at),
        };
        tracing::debug!(
            expires_in = response.expires_in,
            "fetched a new access token"
        );
        let stored = CachedToken {
            token: self.for_store(&cached.token),
            ..cached.clone()
        };
        self.store
            .finish_refresh(&self.key, Some(stored), lease)
            .await
            .map_err(Error::TokenStore)?;
        Ok(cached.token)
    }

    pub(crate) async fn invalidate(&self, failed: &Secret) -> Result<(), Error> {
        self.store
            .invalidate(&self.key, &self.for_store(failed))
            .await
            .map_err(Error::TokenStore)
    }
}

/// The shortest lifetime a fetched token is given: an `expires_in` of 0 (or a few seconds)
/// still lets the token serve calls for a while instead of a `gettoken` per call; a token
/// that really expired is refused (42001) and refreshed once.
pub(crate) const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest: WeCom says 7200 s; anything far above is a broken answer, and a bounded
/// lifetime keeps `SystemTime` arithmetic and Redis `PX` values in range.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// `expires_in` as a lifetime, clamped to [`MIN_TOKEN_LIFETIME`, `MAX_TOKEN_LIFETIME`].
fn token_lifetime(expires_in: u64) -> Duration {
    let lifetime = Duration::from_secs(expires_in);
    let clamped = lifetime.clamp(MIN_TOKEN_LIFETIME, MAX_TOKEN_LIFETIME);
    if clamped != lifetime {
        tracing::warn!(
            expires_in,
            used_secs = clamped.as_secs(),
            "gettoken answered an expires_in out of range; clamped"
        );
    }
    clamped
}

/// `corp_id:` plus 64 bits of a SHA-1 of the corp id and secret: distinct per app, stable
/// across processes (shared stores key on it), and the secret never appears in a key.
fn token_key(corp_id: &str, secret: &Secret) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(corp_id.as_bytes())
        .chain_update([0])
        .chain_update(secret.expose().as_bytes())
        .finalize();
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{corp_id}:{hash}")
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
    fn lifetimes_are_clamped() {
        assert_eq!(token_lifetime(0), MIN_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(7200), Duration::from_secs(7200));
        assert_eq!(token_lifetime(u64::MAX), MAX_TOKEN_LIFETIME);
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
