//! The bot runtime's inbox, journal and per-customer claims on Redis: every replica records
//! into the same inboxes, and a customer is worked on by one replica at a time.
//!
//! Keys, all of an account in one Cluster slot (`{<open_kfid>}`), so a page's recording is
//! one script: `bot-seen:{kf}` (a sorted set of the dedup keys seen, by when),
//! `bot-pending:{kf}:<user>` (the keys waiting, oldest first), `bot-entries:{kf}:<user>`
//! (their messages' text, by key), `bot-journal:{kf}:<user>` (the journaled reply and its
//! turn), `bot-sent:{kf}:<user>` (the indexes of its parts sent), `bot-attempts:{kf}:<user>`,
//! `bot-claim:{kf}:<user>` (the fence of the current claim, expiring with it),
//! `bot-fence:{kf}` (the last fence handed out), `bot-work:{kf}` (customers with work) and
//! `bot-depth:{kf}` (messages waiting). `bot-accounts` lists the accounts.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::{AsyncCommands as _, Script};

use super::{Redis, millis};
use crate::ReceivedMsg;
use crate::bot::store::by_account;
use crate::bot::{BotStore, Claim, ClaimLost, Done, Entry, Journaled, Recorded, Work};
use crate::reply::Customer;
use crate::token::{BoxFuture, StoreError};

/// Keys seen are remembered this long: past WeCom's 3 days of history, a message can't come
/// back.
const SEEN_FOR_SECS: u64 = 4 * 24 * 3600;

/// Adds each entry `i` (`ARGV[3i..3i+2]`: key, customer, text) not in the seen set
/// `KEYS[1]` to its customer's pending list `KEYS[2+2i]` and texts `KEYS[3+2i]`, marks the
/// customer in the work set `KEYS[2]` and counts it in the depth `KEYS[3]`. Forgets keys
/// seen before `ARGV[2]`; `ARGV[1]` is now. Returns the depth and the entries added.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local added = {}
for i = 1, (#KEYS - 3) / 2 do
  local key, user, raw = ARGV[3 * i], ARGV[3 * i + 1], ARGV[3 * i + 2]
  if redis.call('ZADD', KEYS[1], 'NX', ARGV[1], key) == 1 then
    redis.call('RPUSH', KEYS[2 + 2 * i], key)
    redis.call('HSET', KEYS[3 + 2 * i], key, raw)
    redis.call('SADD', KEYS[2], user)
    added[#added + 1] = i
  end
end
local depth = redis.call('INCRBY', KEYS[3], #added)
return {depth, added}",
    )
});

/// A customer's work at one instant: the journal `KEYS[1]`, its parts sent `KEYS[2]`, the
/// pending keys `KEYS[3]` with their texts `KEYS[4]`, and the attempts `KEYS[5]`.
static WORK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local reply = redis.call('HGET', KEYS[1], 'reply') or ''
local sent = redis.call('SMEMBERS', KEYS[2])
local keys = redis.call('LRANGE', KEYS[3], 0, -1)
local texts = {}
for i, key in ipairs(keys) do
  texts[i] = redis.call('HGET', KEYS[4], key) or ''
end
return {reply, sent, keys, texts, redis.call('GET', KEYS[5]) or '0'}",
    )
});

/// Claims `KEYS[1]` for `ARGV[1]` ms unless it is held, with the next fence of `KEYS[2]`;
/// the fence, or 0 when it is held.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local fence = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], fence, 'PX', ARGV[1])
return fence",
    )
});

/// Extends the claim `KEYS[1]` to `ARGV[2]` ms while it holds the fence `ARGV[1]`.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0",
    )
});

/// Every change to a customer's work starts with this: nothing happens, and the script
/// answers -1, unless the claim `KEYS[1]` holds the fence `ARGV[1]`.
const FENCED: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n  return -1\nend\n";

/// Journals the reply `ARGV[3]` of turn `ARGV[2]` (`KEYS[2]`), no part of it sent yet
/// (`KEYS[3]`), and marks the customer `ARGV[4]` in the work set `KEYS[4]`.
static JOURNAL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCED}
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'turn', ARGV[2], 'reply', ARGV[3])
redis.call('SADD', KEYS[4], ARGV[4])
return 1"
    ))
});

/// Marks part `ARGV[3]` of the reply to turn `ARGV[2]` sent, if that is the journaled turn.
static PART_SENT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCED}
if redis.call('HGET', KEYS[2], 'turn') == ARGV[2] then
  redis.call('SADD', KEYS[3], ARGV[3])
end
return 1"
    ))
});

/// Removes the keys `ARGV[4..]` from the pending list `KEYS[4]` and texts `KEYS[5]`,
/// closes the reply to turn `ARGV[2]` (`KEYS[2]`, `KEYS[3]`), clears the attempts
/// `KEYS[6]`, takes the customer `ARGV[3]` out of the work set `KEYS[7]` when nothing is
/// left, and lowers the depth `KEYS[8]`; returns the depth and 1 when the customer has work
/// left (0 when not).
static DONE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCED}
local removed = 0
for i = 4, #ARGV do
  removed = removed + redis.call('LREM', KEYS[4], 0, ARGV[i])
  redis.call('HDEL', KEYS[5], ARGV[i])
end
if redis.call('HGET', KEYS[2], 'turn') == ARGV[2] then
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('DEL', KEYS[6])
local left = 1
if redis.call('LLEN', KEYS[4]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[7], ARGV[3])
  left = 0
end
local depth = redis.call('DECRBY', KEYS[8], removed)
if depth < 0 then
  redis.call('SET', KEYS[8], 0)
  depth = 0
end
return {{depth, left}}"
    ))
});

/// Lets go of the claim `KEYS[1]` if it holds the fence `ARGV[1]`; 1 when the customer has
/// work all the same (pending keys `KEYS[2]` or a journal `KEYS[3]`), 0 when not.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('LLEN', KEYS[2]) > 0 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 1
end
return 0",
    )
});

/// Counts a failed attempt in `KEYS[2]`; the count.
static FAILED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{FENCED}
return redis.call('INCR', KEYS[2])"
    ))
});

/// The inbox, journal and claims of [`Bot`](crate::bot::Bot) in Redis, shared by every
/// replica: see the module docs for the keys.
#[derive(Clone)]
pub struct RedisBotStore {
    redis: Redis,
}

impl std::fmt::Debug for RedisBotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBotStore").finish_non_exhaustive()
    }
}

/// A customer's keys, each `<prefix><kind>:{<open_kfid>}:<external_userid>`.
struct CustomerKeys {
    pending: String,
    entries: String,
    journal: String,
    sent: String,
    attempts: String,
    claim: String,
}

impl RedisBotStore {
    pub(super) fn new(redis: Redis) -> Self {
        RedisBotStore { redis }
    }

    fn customer_key(&self, kind: &str, customer: &Customer) -> String {
        format!(
            "{}:{}",
            self.redis.key(kind, &customer.open_kfid),
            customer.external_userid
        )
    }

    fn keys(&self, customer: &Customer) -> CustomerKeys {
        CustomerKeys {
            pending: self.customer_key("bot-pending", customer),
            entries: self.customer_key("bot-entries", customer),
            journal: self.customer_key("bot-journal", customer),
            sent: self.customer_key("bot-sent", customer),
            attempts: self.customer_key("bot-attempts", customer),
            claim: self.customer_key("bot-claim", customer),
        }
    }

    fn accounts_key(&self) -> String {
        format!("{}bot-accounts", self.redis.prefix)
    }

    async fn record_account(
        &self,
        open_kfid: &str,
        entries: Vec<Entry>,
        recorded: &mut Recorded,
    ) -> Result<(), StoreError> {
        let () = self
            .redis
            .connection()
            .sadd(self.accounts_key(), open_kfid)
            .await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut call = RECORD.prepare_invoke();
        call.key(self.redis.key("bot-seen", open_kfid))
            .key(self.redis.key("bot-work", open_kfid))
            .key(self.redis.key("bot-depth", open_kfid))
            .arg(now)
            .arg(now.saturating_sub(SEEN_FOR_SECS));
        for entry in &entries {
            let keys = self.keys(&entry.customer);
            call.key(keys.pending)
                .key(keys.entries)
                .arg(&entry.key)
                .arg(&entry.customer.external_userid)
                .arg(entry.message.raw.as_str());
        }
        let (depth, added): (u64, Vec<usize>) =
            call.invoke_async(&mut self.redis.connection()).await?;
        recorded.added += added.len();
        recorded.duplicates += entries.len() - added.len();
        for index in added {
            // The script numbers entries from 1.
            if let Some(entry) = index.checked_sub(1).and_then(|i| entries.get(i))
                && !recorded.customers.contains(&entry.customer)
            {
                recorded.customers.push(entry.customer.clone());
            }
        }
        recorded.depths.push((open_kfid.to_owned(), depth));
        Ok(())
    }

    /// Runs a fenced script for `claim`: its answer, or [`ClaimLost`] when it was refused
    /// (answered -1, whatever the script answers otherwise).
    async fn fenced<T: redis::FromRedisValue>(
        &self,
        call: redis::ScriptInvocation<'_>,
        claim: &Claim,
    ) -> Result<T, StoreError> {
        let answer: redis::Value = call.invoke_async(&mut self.redis.connection()).await?;
        if matches!(answer, redis::Value::Int(refused) if refused < 0) {
            return Err(Box::new(ClaimLost { fence: claim.fence }));
        }
        Ok(redis::from_redis_value(answer)?)
    }
}

impl BotStore for RedisBotStore {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        Box::pin(async move {
            let mut recorded = Recorded::default();
            for (open_kfid, entries) in by_account(entries) {
                self.record_account(&open_kfid, entries, &mut recorded)
                    .await?;
            }
            Ok(recorded)
        })
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        Box::pin(async move {
            let keys = self.keys(customer);
            let (reply, sent, pending, texts, attempts): (
                String,
                Vec<usize>,
                Vec<String>,
                Vec<String>,
                u32,
            ) = WORK
                .key(&keys.journal)
                .key(&keys.sent)
                .key(&keys.pending)
                .key(&keys.entries)
                .key(&keys.attempts)
                .invoke_async(&mut self.redis.connection())
                .await?;
            let journaled = match reply.as_str() {
                "" => None,
                text => {
                    let mut journaled: Journaled = serde_json::from_str(text)?;
                    let sent: HashSet<usize> = sent.into_iter().collect();
                    for (index, part) in journaled.parts.iter_mut().enumerate() {
                        part.sent |= sent.contains(&index);
                    }
                    Some(journaled)
                }
            };
            let pending = pending
                .into_iter()
                .zip(texts)
                .map(|(key, text)| {
                    let message: ReceivedMsg = serde_json::from_str(&text)?;
                    Ok(Entry {
                        key,
                        customer: customer.clone(),
                        message,
                    })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(Work {
                journaled,
                pending,
                attempts,
            })
        })
    }

    fn claim<'a>(
        &'a self,
        customer: &'a Customer,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
        Box::pin(async move {
            let fence: u64 = CLAIM
                .key(self.keys(customer).claim)
                .key(self.redis.key("bot-fence", &customer.open_kfid))
                .arg(millis(ttl).max(1))
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok((fence > 0).then(|| Claim {
                customer: customer.clone(),
                fence,
            }))
        })
    }

    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let renewed: i64 = RENEW
                .key(self.keys(&claim.customer).claim)
                .arg(claim.fence)
                .arg(millis(ttl).max(1))
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(renewed == 1)
        })
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let keys = self.keys(&claim.customer);
            let has_work: i64 = RELEASE
                .key(&keys.claim)
                .key(&keys.pending)
                .key(&keys.journal)
                .arg(claim.fence)
                .invoke_async(&mut self.redis.connection())
                .await?;
            Ok(has_work == 1)
        })
    }

    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let keys = self.keys(&claim.customer);
            let mut call = JOURNAL.prepare_invoke();
            call.key(&keys.claim)
                .key(&keys.journal)
                .key(&keys.sent)
                .key(self.redis.key("bot-work", &claim.customer.open_kfid))
                .arg(claim.fence)
                .arg(&reply.turn)
                .arg(serde_json::to_string(&reply)?)
                .arg(&claim.customer.external_userid);
            self.fenced::<i64>(call, claim).await.map(|_| ())
        })
    }

    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let keys = self.keys(&claim.customer);
            let mut call = PART_SENT.prepare_invoke();
            call.key(&keys.claim)
                .key(&keys.journal)
                .key(&keys.sent)
                .arg(claim.fence)
                .arg(turn)
                .arg(index);
            self.fenced::<i64>(call, claim).await.map(|_| ())
        })
    }

    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>> {
        Box::pin(async move {
            let customer = &claim.customer;
            let names = self.keys(customer);
            let mut call = DONE.prepare_invoke();
            call.key(&names.claim)
                .key(&names.journal)
                .key(&names.sent)
                .key(&names.pending)
                .key(&names.entries)
                .key(&names.attempts)
                .key(self.redis.key("bot-work", &customer.open_kfid))
                .key(self.redis.key("bot-depth", &customer.open_kfid))
                .arg(claim.fence)
                .arg(turn)
                .arg(&customer.external_userid);
            for key in keys {
                call.arg(key);
            }
            let (depth, left): (i64, i64) = self.fenced(call, claim).await?;
            Ok(Done {
                depth: u64::try_from(depth).unwrap_or(0),
                has_work: left == 1,
            })
        })
    }

    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(async move {
            let keys = self.keys(&claim.customer);
            let mut call = FAILED.prepare_invoke();
            call.key(&keys.claim).key(&keys.attempts).arg(claim.fence);
            let attempts: i64 = self.fenced(call, claim).await?;
            Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
        })
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        Box::pin(async move {
            let mut connection = self.redis.connection();
            let accounts: Vec<String> = connection.smembers(self.accounts_key()).await?;
            let mut customers = Vec::new();
            for open_kfid in accounts {
                let users: Vec<String> = connection
                    .smembers(self.redis.key("bot-work", &open_kfid))
                    .await?;
                customers.extend(users.into_iter().map(|u| Customer::new(&open_kfid, u)));
            }
            Ok(customers)
        })
    }
}
