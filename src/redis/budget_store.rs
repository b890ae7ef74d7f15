//! The reply budget on Redis: every replica reserves from the same windows.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{AsyncCommands as _, Script};

use super::{Redis, millis};
use crate::reply::{BudgetStore, Change, Customer, REPLY_WINDOW, Window};
use crate::token::{BoxFuture, StoreError};

/// Sets `KEYS[1]` to `ARGV[2]` for `ARGV[3]` ms only while it still holds `ARGV[1]` (`''`
/// for "absent"): one step of a read, apply, compare-and-set loop, so the window logic is
/// [`Window::apply`]'s alone.
static COMPARE_AND_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local stored = redis.call('GET', KEYS[1]) or ''
if stored ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1",
    )
});

/// A write that lost a race is tried again this many times before the change fails.
const ATTEMPTS: usize = 64;

/// How long a window is kept after its last change: past 48 hours it allows nothing.
const KEEP: Duration = Duration::from_secs(REPLY_WINDOW.as_secs() + 3600);

/// Reply windows in Redis, one key per account and customer:
/// `budget:{<open_kfid>:<external_userid>}`.
#[derive(Clone)]
pub struct RedisBudgetStore {
    redis: Redis,
}

impl RedisBudgetStore {
    pub(super) fn new(redis: Redis) -> Self {
        RedisBudgetStore { redis }
    }

    fn key(&self, customer: &Customer) -> String {
        let name = format!("{}:{}", customer.open_kfid, customer.external_userid);
        self.redis.key("budget", &name)
    }

    async fn read(&self, key: &str) -> Result<(String, Window), StoreError> {
        let stored: Option<String> = self.redis.connection().get(key).await?;
        let stored = stored.unwrap_or_default();
        // A value this version can't read counts as no window: the next message opens one.
        let window = decode(&stored).unwrap_or_default();
        Ok((stored, window))
    }
}

/// `<opened_at>:<sent at>,<sent at>…:<held>:<digest>,<digest>…` (digests in hex).
fn encode(window: &Window) -> String {
    let digests: Vec<String> = window.opened_by.iter().map(|d| format!("{d:x}")).collect();
    let sent: Vec<String> = window.sent_at.iter().map(u64::to_string).collect();
    format!(
        "{}:{}:{}:{}",
        window.opened_at,
        sent.join(","),
        window.held,
        digests.join(",")
    )
}

fn decode(text: &str) -> Option<Window> {
    let mut parts = text.split(':');
    let opened_at = parts.next()?.parse().ok()?;
    let sent_at = parts
        .next()?
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let mut window = Window {
        opened_at,
        sent_at,
        held: parts.next()?.parse().ok()?,
        opened_by: Vec::new(),
    };
    for digest in parts.next()?.split(',').filter(|d| !d.is_empty()) {
        window.opened_by.push(u64::from_str_radix(digest, 16).ok()?);
    }
    parts.next().is_none().then_some(window)
}

impl BudgetStore for RedisBudgetStore {
    fn update<'a>(
        &'a self,
        customer: &'a Customer,
        change: Change,
    ) -> BoxFuture<'a, Result<(bool, Window), StoreError>> {
        Box::pin(async move {
            let key = self.key(customer);
            for _ in 0..ATTEMPTS {
                let (stored, mut window) = self.read(&key).await?;
                let granted = window.apply(change);
                let set: i64 = COMPARE_AND_SET
                    .key(&key)
                    .arg(&stored)
                    .arg(encode(&window))
                    .arg(millis(KEEP))
                    .invoke_async(&mut self.redis.connection())
                    .await?;
                if set == 1 {
                    return Ok((granted, window));
                }
            }
            Err("the reply budget changed too often to update it".into())
        })
    }

    fn window<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Window, StoreError>> {
        Box::pin(async move { Ok(self.read(&self.key(customer)).await?.1) })
    }

    fn is_shared(&self) -> bool {
        true
    }
}
