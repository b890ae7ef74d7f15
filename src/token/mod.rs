//! The access token: fetched on demand, cached until shortly before it expires, refreshed
//! by one request however many tasks need it, and dropped when WeCom says it is stale.
//!
//! A refresh runs in a task of its own, so a caller that gives up (a timeout, a dropped
//! handler) never leaves it, or a shared store's refresh lock, half done; every caller
//! waiting on it gets its result, error included. A failed fetch closes fetching for a
//! window that doubles with each failure in a row (shared through the store), so a wrong
//! secret or an outage costs one `gettoken` per window, not one per call.

mod seal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

pub use crate::rt::endpoint::BoxFuture;
use crate::{AccessTokenResponse, Client, ErrCode, Error, Secret};
use seal::TokenSeal;

/// Where the client's access tokens come from.
///
/// By default the corp secret, through `gettoken`. A service provider (ISV) whose app gets
/// each corp's token from its suite token, a 代开发 app, or any app with a token service of
/// its own implements this and hands it to
/// [`ClientBuilder::token_source`](crate::ClientBuilder::token_source). The client still does
/// everything else: it caches the token and refreshes it shortly before it expires, one
/// fetch however many calls wait, a window without fetches after a failure, one refresh
/// when WeCom refuses a token (40014, 42001, 41001), and the token stores.
///
/// ```
/// use wecom_kf::token::{BoxFuture, TokenIdentity, TokenSource};
/// use wecom_kf::types::AccessTokenResponse;
/// use wecom_kf::{Client, Error};
///
/// /// Tokens from the provider's own service (here, a fixed one).
/// struct FromMyService;
///
/// impl TokenSource for FromMyService {
///     fn identity(&self) -> TokenIdentity {
///         TokenIdentity::new("ww-authorised-corp/suite-1", "the suite's secret")
///     }
///
///     fn fetch<'a>(&'a self, _client: &'a Client) -> BoxFuture<'a, Result<AccessTokenResponse, Error>> {
///         Box::pin(async { Ok(AccessTokenResponse::new("a corp token", 7200)) })
///     }
/// }
///
/// let client = Client::builder()
///     .corp_id("ww-authorised-corp")
///     .token_source(FromMyService)
///     .build()?;
/// # Ok::<(), Error>(())
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// Whose tokens these are. The cache and store key is the `name` and a hash of the
    /// `secret`, and a shared store's tokens are sealed with a key derived from both, so
    /// only processes that know the secret can use them. Give every credential its own
    /// identity, the same in every process and across restarts.
    fn identity(&self) -> TokenIdentity;

    /// Fetches a new token (`expires_in` in seconds). Called by one refresh at a time.
    ///
    /// It may use `client` for calls that need no access token (`gettoken` and the like); a
    /// call that needs one fails with [`Error::Config`] instead of waiting on this very
    /// fetch. A failure opens the client's failure window, and every call waiting on the
    /// fetch gets it, as [`Error::TokenUnavailable`].
    fn fetch<'a>(&'a self, client: &'a Client)
    -> BoxFuture<'a, Result<AccessTokenResponse, Error>>;
}

/// Who a [`TokenSource`]'s tokens belong to; see [`TokenSource::identity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// Shown in store keys: a corp id, a suite id, or both.
    pub name: String,
    /// Known only to this app (a secret, a permanent code); never shown, only hashed.
    pub secret: Secret,
}

impl TokenIdentity {
    /// The identity of `name`'s tokens, keyed with `secret`.
    pub fn new(name: impl Into<String>, secret: impl Into<Secret>) -> Self {
        TokenIdentity {
            name: name.into(),
            secret: secret.into(),
        }
    }
}

/// The default source: the corp secret, through `gettoken`.
pub(crate) struct CorpSecret {
    pub(crate) corp_id: String,
    pub(crate) secret: Secret,
}

impl TokenSource for CorpSecret {
    fn identity(&self) -> TokenIdentity {
        TokenIdentity::new(self.corp_id.clone(), self.secret.clone())
    }

    fn fetch<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<AccessTokenResponse, Error>> {
        Box::pin(client.gettoken().send())
    }
}

tokio::task_local! {
    /// Set while a refresh runs: the address of the cache refreshing, so a source that
    /// calls back into it fails instead of waiting on itself.
    static REFRESHING: usize;
}

/// An access token with its lifetime, as a [`TokenStore`] keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The access token.
    pub token: Secret,
    /// When `gettoken` answered with it.
    pub fetched_at: SystemTime,
    /// When it expires: `fetched_at` plus `expires_in`.
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
    /// The token saved under `key`, if any (fresh or not: the cache checks).
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<CachedToken>, StoreError>>;

    /// Saves `token` under `key`, replacing the one before.
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

    /// Records that fetching the token failed, so that other processes sharing the store
    /// wait `failure.retry_in` before they fetch (a wrong secret fetched by every process
    /// in turn gets the IP blocked). By default nothing is shared.
    fn remember_failure<'a>(
        &'a self,
        key: &'a str,
        failure: &'a TokenFailure,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let _ = (key, failure);
        Box::pin(async { Ok(()) })
    }

    /// The failure another process recorded with [`remember_failure`](Self::remember_failure),
    /// while its window lasts (`retry_in` is what is left of it). By default, none.
    fn recorded_failure<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenFailure>, StoreError>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }

    /// Whether other processes (and whoever runs the store) can read it. The client then
    /// hands it tokens sealed with a key derived from the app's secret: the store compares
    /// and keeps them as usual, but can't use them. By default, `false`.
    fn is_shared(&self) -> bool {
        false
    }
}

/// A failed token fetch, as a shared store passes it between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFailure {
    /// How long nobody should fetch.
    pub retry_in: Duration,
    /// Failed fetches in a row, as the process that recorded it counted them; the next
    /// window grows from there.
    pub failures: u32,
    /// WeCom's errcode, when WeCom refused.
    pub code: Option<i64>,
    /// What the failure said: an error's text, which never holds a secret.
    pub message: String,
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
    /// An empty store.
    pub fn new() -> Self {
        MemoryTokenStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, CachedToken>) -> T) -> T {
        f(&mut crate::mutex::lock(&self.tokens))
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

/// The default first window after a failed fetch; it doubles with each failure in a row.
pub(crate) const FIRST_FAILURE_WINDOW: Duration = Duration::from_secs(1);
/// The longest window (unless the first is longer): a fixed secret or a recovered WeCom is
/// noticed within this.
const MAX_FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// No window is longer, whatever was configured or another process recorded.
const LONGEST_WINDOW: Duration = Duration::from_secs(3600);

/// How long no fetch starts after `failures` failed fetches in a row (at least one).
fn failure_window(first: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first
        .saturating_mul(1u32 << doublings)
        .min(MAX_FAILURE_WINDOW.max(first))
        .min(LONGEST_WINDOW)
}

/// The end of a window of `length` starting now.
fn window_end(length: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(length.min(LONGEST_WINDOW)).unwrap_or(now)
}

/// A refresh's error as every waiter gets it: the cause, and until when no fetch starts.
#[derive(Clone)]
struct Failure {
    cause: Arc<Error>,
    until: Instant,
}

impl Failure {
    fn error(&self) -> Error {
        Error::TokenUnavailable {
            cause: self.cause.clone(),
            retry_in: self.until.saturating_duration_since(Instant::now()),
        }
    }
}

/// What a refresh ends with, for every caller that waited on it.
type Outcome = Result<Secret, Failure>;

/// Why a refresh found no token.
enum FetchError {
    /// `gettoken` failed: opens (or extends) the failure window.
    Fetch(Error),
    /// Another process's fetch failed, and its window still holds.
    Elsewhere(TokenFailure),
    /// The store failed: no window, the next call tries again.
    Store(Error),
}

/// This process's side of the token: the refresh in flight, the last good token, and the
/// failure window.
#[derive(Default)]
struct State {
    /// The refresh running now (its number and its result, once there is one).
    running: Option<(u64, watch::Receiver<Option<Outcome>>)>,
    /// Numbers refreshes, so a finished one can't clear its successor.
    refreshes: u64,
    /// The last token this process fetched or loaded, opened: what calls use while the
    /// store fails, until it expires.
    last_good: Option<CachedToken>,
    /// A token `gettoken` handed out again when it was refetched near its end: WeCom
    /// keeps a token until it expires, so it is used until then, without the margin,
    /// instead of being refetched over and over as its remaining lifetime shrinks.
    reissued: Option<Secret>,
    /// The token WeCom last refused: never used again from memory or the store (a caller
    /// that loaded it just before it was refused would otherwise bring it back), only if
    /// `gettoken` hands it out again.
    refused: Option<Secret>,
    /// Failed fetches in a row.
    failures: u32,
    /// Set after a failed fetch: no fetch starts before `until`.
    failed: Option<Failure>,
}

impl State {
    /// The failure window's error, while it holds.
    fn window(&self) -> Option<Error> {
        self.failed
            .as_ref()
            .filter(|f| f.until > Instant::now())
            .map(Failure::error)
    }

    /// Whether `cached` is a reissued token that hasn't expired.
    fn is_reissued(&self, cached: &CachedToken) -> bool {
        self.reissued.as_ref() == Some(&cached.token) && SystemTime::now() < cached.expires_at
    }

    fn is_refused(&self, cached: &CachedToken) -> bool {
        self.refused.as_ref() == Some(&cached.token)
    }

    /// The last good token while it hasn't expired (no margin: it is the fallback).
    fn unexpired(&self) -> Option<Secret> {
        self.last_good
            .as_ref()
            .filter(|c| SystemTime::now() < c.expires_at && !self.is_refused(c))
            .map(|c| c.token.clone())
    }
}

/// The client's view of its store: one refresh at a time in this process, shared by every
/// caller, and a failure window.
pub(crate) struct TokenCache {
    store: Arc<dyn TokenStore>,
    source: Arc<dyn TokenSource>,
    key: String,
    margin: Duration,
    /// The first failure window.
    failure_backoff: Duration,
    /// For a shared store: tokens are sealed on the way in and opened on the way out.
    seal: Option<TokenSeal>,
    state: Mutex<State>,
}

impl TokenCache {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        source: Arc<dyn TokenSource>,
        margin: Duration,
        failure_backoff: Duration,
    ) -> Self {
        let TokenIdentity { name, secret } = source.identity();
        let seal = store.is_shared().then(|| TokenSeal::new(&name, &secret));
        TokenCache {
            store,
            source,
            key: token_key(&name, &secret),
            margin,
            failure_backoff,
            seal,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        crate::mutex::lock(&self.state)
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

    /// Whether calls may use `cached`: fresh (or reissued and unexpired), and not refused.
    fn is_usable(&self, state: &State, cached: &CachedToken) -> bool {
        !state.is_refused(cached)
            && (cached.is_fresh(SystemTime::now(), self.margin) || state.is_reissued(cached))
    }

    /// This cache's address, which names it in [`REFRESHING`].
    fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    pub(crate) async fn get(&self, client: &Client) -> Result<Secret, Error> {
        if REFRESHING.try_with(|cache| *cache == self.id()) == Ok(true) {
            return Err(Error::Config(
                "the token source made a call that needs an access token, which would wait on its own fetch".into(),
            ));
        }
        let cached = match self.load().await {
            Ok(cached) => cached,
            Err(error) => {
                return match self.state().unexpired() {
                    Some(token) => {
                        tracing::warn!(%error, "the token store failed; using the token this process holds");
                        Ok(token)
                    }
                    None => Err(error),
                };
            }
        };
        if let Some(cached) = &cached {
            let mut state = self.state();
            if self.is_usable(&state, cached) {
                state.last_good = Some(cached.clone());
                return Ok(cached.token.clone());
            }
        }
        let mut result = self.join_refresh(client, cached)?;
        let outcome = match result.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The refresh task ended without a result: it panicked (a store's bug).
            Err(_) => None,
        };
        match outcome {
            Some(Ok(token)) => Ok(token),
            Some(Err(failure)) => Err(failure.error()),
            None => Err(Error::TokenStore(
                "the token refresh ended without a result".into(),
            )),
        }
    }

    /// The refresh to wait on: the one running, or a new one in a task of its own. Refused
    /// while the failure window holds; a refresh that ended meanwhile may have left a token.
    fn join_refresh(
        &self,
        client: &Client,
        stale: Option<CachedToken>,
    ) -> Result<watch::Receiver<Option<Outcome>>, Error> {
        let mut state = self.state();
        if let Some((_, running)) = &state.running {
            return Ok(running.clone());
        }
        if let Some(error) = state.window() {
            return Err(error);
        }
        if let Some(fresh) = state.last_good.as_ref().filter(|c| {
            self.is_usable(&state, c) && Some(&c.token) != stale.as_ref().map(|s| &s.token)
        }) {
            return Ok(watch::channel(Some(Ok(fresh.token.clone()))).1);
        }
        // The refresh is a task of its own; without a runtime there is no HTTP either.
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Config("the client needs a tokio runtime to fetch its token".into())
        })?;
        state.refreshes += 1;
        let number = state.refreshes;
        let (sender, receiver) = watch::channel(None);
        state.running = Some((number, receiver.clone()));
        drop(state);
        let client = client.clone();
        let id = self.id();
        runtime.spawn(REFRESHING.scope(id, async move {
            let cache = client.token_cache();
            let mut unfinished = Unfinished {
                cache,
                number: Some(number),
            };
            let result = cache.fetch(&client, stale.as_ref()).await;
            unfinished.number = None;
            let outcome = cache.finish(number, result, stale.as_ref());
            // Nobody waiting (every caller gave up) is fine: the state has the result.
            let _ = sender.send(Some(outcome));
        }));
        Ok(receiver)
    }

    /// Records a refresh's result, ends it, and returns what its waiters get.
    fn finish(
        &self,
        number: u64,
        result: Result<CachedToken, FetchError>,
        stale: Option<&CachedToken>,
    ) -> Outcome {
        let mut state = self.state();
        if state.running.as_ref().is_some_and(|(n, _)| *n == number) {
            state.running = None;
        }
        let failure = match result {
            Ok(token) => {
                state.failures = 0;
                state.failed = None;
                let secret = token.token.clone();
                let again = stale.is_some_and(|s| s.token == secret);
                state.reissued = again.then(|| secret.clone());
                // Only `gettoken` can hand back a refused token (`fetch` drops one found in
                // the store): WeCom says it is good again.
                if state.refused.as_ref() == Some(&secret) {
                    state.refused = None;
                }
                state.last_good = Some(token);
                return Ok(secret);
            }
            Err(FetchError::Fetch(error)) => {
                state.failures = state.failures.saturating_add(1);
                Failure {
                    cause: Arc::new(error),
                    until: window_end(failure_window(self.failure_backoff, state.failures)),
                }
            }
            Err(FetchError::Elsewhere(shared)) => {
                state.failures = state.failures.max(shared.failures);
                Failure {
                    until: window_end(shared.retry_in),
                    cause: Arc::new(Error::FetchFailedElsewhere {
                        code: shared.code.map(ErrCode::from_value),
                        message: shared.message,
                    }),
                }
            }
            // No window: the store may be back for the next call.
            Err(FetchError::Store(error)) => {
                return Err(Failure {
                    cause: Arc::new(error),
                    until: Instant::now(),
                });
            }
        };
        state.failed = Some(failure.clone());
        Err(failure)
    }

    /// A failure another process recorded, if its window holds. A store that can't say
    /// is taken as having none: the refresh lock still keeps fetches one at a time.
    async fn shared_failure(&self) -> Option<TokenFailure> {
        match self.store.recorded_failure(&self.key).await {
            Ok(failure) => failure.filter(|f| !f.retry_in.is_zero()),
            Err(error) => {
                tracing::warn!(%error, "could not read the shared token failure window");
                None
            }
        }
    }

    /// One refresh: a token another process fetched, or one from the source.
    async fn fetch(
        &self,
        client: &Client,
        stale: Option<&CachedToken>,
    ) -> Result<CachedToken, FetchError> {
        if let Some(failure) = self.shared_failure().await {
            return Err(FetchError::Elsewhere(failure));
        }
        let sealed = stale.map(|cached| self.for_store(&cached.token));
        let turn = self
            .store
            .begin_refresh(&self.key, sealed.as_ref())
            .await
            .map_err(|e| FetchError::Store(Error::TokenStore(e)))?;
        let lease = match turn {
            // Not one WeCom refused: that is fetched again rather than taken back.
            RefreshTurn::Fetched(token) => match self.opened(token) {
                Some(token) if !self.state().is_refused(&token) => return Ok(token),
                _ => RefreshLease::default(),
            },
            RefreshTurn::Fetch(lease) => lease,
        };
        // The process that held the lock before us may have failed: don't repeat it.
        if let Some(failure) = self.shared_failure().await {
            self.end_refresh(None, lease).await;
            return Err(FetchError::Elsewhere(failure));
        }
        let fetched_at = SystemTime::now();
        let response = match self.source.fetch(client).await {
            Ok(response) => response,
            Err(error) => {
                let failures = self.state().failures.saturating_add(1);
                let shared = TokenFailure {
                    retry_in: failure_window(self.failure_backoff, failures),
                    failures,
                    code: error.code().map(ErrCode::value),
                    message: crate::error::chain(&error),
                };
                // Recorded before the lock is released, so the next holder sees it.
                if let Err(store) = self.store.remember_failure(&self.key, &shared).await {
                    tracing::warn!(error = %store, "could not share the token failure window");
                }
                self.end_refresh(None, lease).await;
                return Err(FetchError::Fetch(error));
            }
        };
        let lifetime = token_lifetime(response.expires_in);
        let mut cached = CachedToken {
            token: response.access_token,
            fetched_at,
            expires_at: fetched_at.checked_add(lifetime).unwrap_or(fetched_at),
        };
        // The same token again is the token we had: it lives as long as it always did,
        // whatever `expires_in` says now (WeCom answers with 7200 or with what is left).
        if let Some(stale) = stale.filter(|s| s.token == cached.token)
            && stale.expires_at > fetched_at
        {
            cached.fetched_at = stale.fetched_at;
            cached.expires_at = cached.expires_at.min(stale.expires_at);
        }
        tracing::debug!(
            expires_in = response.expires_in,
            "fetched a new access token"
        );
        let stored = CachedToken {
            token: self.for_store(&cached.token),
            ..cached.clone()
        };
        self.end_refresh(Some(stored), lease).await;
        Ok(cached)
    }

    /// Hands the lease back (saving `token`, if any). A store that fails here costs other
    /// processes a wait or a fetch, but this process keeps the token it fetched.
    async fn end_refresh(&self, token: Option<CachedToken>, lease: RefreshLease) {
        let saving = token.is_some();
        if let Err(error) = self.store.finish_refresh(&self.key, token, lease).await {
            if saving {
                tracing::warn!(%error, "could not save the new access token; using it anyway");
            } else {
                tracing::warn!(%error, "could not release the token refresh");
            }
        }
    }

    pub(crate) async fn invalidate(&self, failed: &Secret) -> Result<(), Error> {
        {
            let mut state = self.state();
            if state.last_good.as_ref().is_some_and(|c| &c.token == failed) {
                state.last_good = None;
            }
            if state.reissued.as_ref() == Some(failed) {
                state.reissued = None;
            }
            state.refused = Some(failed.clone());
        }
        self.store
            .invalidate(&self.key, &self.for_store(failed))
            .await
            .map_err(Error::TokenStore)
    }
}

/// Ends a refresh whose task unwound before [`TokenCache::finish`], so the next caller
/// starts a new one instead of waiting on it forever.
struct Unfinished<'a> {
    cache: &'a TokenCache,
    number: Option<u64>,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(number) = self.number {
            let mut state = self.cache.state();
            if state.running.as_ref().is_some_and(|(n, _)| *n == number) {
                state.running = None;
            }
        }
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
    let hash = crate::encode::hex(&digest[..8]);
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
    fn failure_windows_double_and_are_capped() {
        let first = Duration::from_secs(1);
        assert_eq!(failure_window(first, 1), first);
        assert_eq!(failure_window(first, 3), Duration::from_secs(4));
        assert_eq!(failure_window(first, 40), MAX_FAILURE_WINDOW);
        let long = Duration::from_secs(600);
        assert_eq!(
            failure_window(long, 5),
            long,
            "a longer first window is kept"
        );
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
