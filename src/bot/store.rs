//! What the bot runtime keeps between the cursor and the sends: the inbox of customer
//! messages not yet answered, the journal of replies decided but not all sent, and who
//! works on each customer.
//!
//! Work on a customer is done under a [`Claim`]: one holder at a time, across every
//! replica that shares the store, with a fencing token that grows with every claim. A
//! store refuses a change made with a claim that is no longer the customer's current one
//! ([`ClaimLost`]), so a replica that stalled past its claim's expiry can't journal a
//! second answer after another replica took the customer over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::map::{Map, Set};
use crate::reply::Customer;
use crate::token::BoxFuture;
use crate::token::StoreError;
use crate::{OutgoingMsg, ReceivedMsg};

/// A customer message in the inbox.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its dedup key: the msgid, or a digest of its text for an item without one.
    pub key: String,
    /// Who wrote it.
    pub customer: Customer,
    /// The message as `sync_msg` gave it.
    pub message: ReceivedMsg,
}

/// One message of a journaled reply, with the msgid it is sent with (the same on every
/// attempt, so a resend after a crash is recognisable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedPart {
    /// The msgid it is sent with.
    pub msgid: String,
    /// The message.
    pub message: OutgoingMsg,
    /// Whether WeCom accepted it (or, for a resend refused as a duplicate, probably did).
    pub sent: bool,
}

/// A turn's reply, journaled before its first part is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journaled {
    /// The turn's id: the key of the first message it answers.
    pub turn: String,
    /// The inbox keys it answers: done once every part is sent.
    pub covers: Vec<String>,
    /// The messages, in order.
    pub parts: Vec<PlannedPart>,
}

/// What [`BotStore::record`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The customers that got new messages.
    pub customers: Vec<Customer>,
    /// Messages added.
    pub added: usize,
    /// Messages seen before, left out.
    pub duplicates: usize,
    /// Each account's inbox depth after the recording: messages waiting for an answer.
    pub depths: Vec<(String, u64)>,
}

/// What [`BotStore::done`] leaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Done {
    /// The account's inbox depth after it: messages waiting for an answer.
    pub depth: u64,
    /// Whether the customer has work left: messages recorded while the turn ran.
    pub has_work: bool,
}

/// A customer's work: a reply to finish sending, or messages to answer.
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// A reply journaled and not all sent: resumed before anything else, never decided
    /// again.
    pub journaled: Option<Journaled>,
    /// Messages not yet answered, oldest first.
    pub pending: Vec<Entry>,
    /// How many times answering them failed so far.
    pub attempts: u32,
}

impl Work {
    /// Whether there is anything to do.
    pub fn has_any(&self) -> bool {
        self.journaled.is_some() || !self.pending.is_empty()
    }
}

/// The right to work on one customer, until it expires or is released. `fence` is larger
/// for every claim of the customer than for any before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whose work.
    pub customer: Customer,
    /// The fencing token: the store refuses changes made with an older one.
    pub fence: u64,
}

/// A change refused because it was made under a claim that expired or was taken over:
/// the customer is someone else's now, and this holder stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimLost {
    /// The claim that no longer holds.
    pub fence: u64,
}

impl std::fmt::Display for ClaimLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the claim on this customer (fence {}) expired or was taken over",
            self.fence
        )
    }
}

impl std::error::Error for ClaimLost {}

impl ClaimLost {
    /// Whether `error` (from a store) is a lost claim.
    pub fn is(error: &(dyn std::error::Error + 'static)) -> bool {
        error.downcast_ref::<ClaimLost>().is_some()
    }
}

/// The inbox, the journal and the claims, per customer. A store must keep each call's
/// effect whole: after a crash, a call happened or it didn't. Changes to a customer's
/// work take the [`Claim`] they are made under and fail with [`ClaimLost`] once it is not
/// the customer's current claim (checked and changed at once in a shared store).
pub trait BotStore: Send + Sync + 'static {
    /// Adds the messages not seen before (by account and key) to their customers' inboxes.
    /// Seen keys are remembered even after their messages are done, so a page handed over
    /// again adds nothing. Needs no claim: recording only adds.
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>>;

    /// The customer's work.
    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>>;

    /// Claims the customer for `ttl`; `None` while someone else holds a claim.
    fn claim<'a>(
        &'a self,
        customer: &'a Customer,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>>;

    /// Extends `claim` to `ttl` from now; `false` when it no longer holds.
    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Lets go of `claim`, if it still holds; whether the customer has work all the same
    /// (recorded while the claim was held, by a replica whose worker couldn't claim the
    /// customer then), which the releaser goes on with rather than leave to the sweep.
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Journals a reply before any of it is sent.
    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Marks part `index` of the journaled reply `turn` sent.
    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends work on `keys`: their messages leave the inbox, and the journaled reply of
    /// `turn` (if any) is closed. Returns the account's inbox depth after it, and whether
    /// the customer has work left, so a worker asks for [`work`](Self::work) only when
    /// there is some.
    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>>;

    /// Counts a failed attempt at the customer's pending messages; returns the count.
    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>>;

    /// Every customer with work: what a restarted runtime resumes, and what a replica
    /// looks through for customers whose holder died.
    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>>;

    /// Whether every message in the store was recorded by the one runtime that owns it,
    /// since it started: then the runtime's reply budget saw each when it was pulled, and
    /// a turn needn't show its messages to the budget again. `true` for a
    /// [`MemoryBotStore`] given to a bot (nothing in it outlives the process, nothing else
    /// writes to it). By default `false`, as for a store shared through an `Arc` or kept
    /// outside the process: another replica, or the process before a restart, recorded
    /// messages this runtime's budget may never have seen.
    fn only_its_runtime_records(&self) -> bool {
        false
    }
}

/// One customer's inbox and journal as every store keeps it, so the journal's rules live
/// in one place. `E` is how the store holds an entry.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Inbox<E> {
    pub(crate) pending: Vec<E>,
    pub(crate) journaled: Option<Journaled>,
    pub(crate) attempts: u32,
}

impl<E> Default for Inbox<E> {
    fn default() -> Self {
        Inbox {
            pending: Vec::new(),
            journaled: None,
            attempts: 0,
        }
    }
}

/// What [`Inbox::done`] took out of an inbox.
pub(crate) struct Closed<E> {
    /// The messages answered.
    pub(crate) answered: Vec<E>,
    /// The reply that answered them, all sent.
    #[allow(dead_code, reason = "kept only to be dropped by the caller")]
    pub(crate) reply: Option<Journaled>,
}

/// An entry as a store holds it, by its dedup key.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for Entry {
    fn key(&self) -> &str {
        &self.key
    }
}

impl<E: Keyed> Inbox<E> {
    /// Adds `entry` unless one with its key is pending; whether it was added.
    pub(crate) fn add(&mut self, entry: E) -> bool {
        let new = !self.pending.iter().any(|p| p.key() == entry.key());
        if new {
            self.pending.push(entry);
        }
        new
    }

    /// Marks part `index` of the reply to `turn` sent.
    pub(crate) fn part_sent(&mut self, turn: &str, index: usize) {
        let journaled = self.journaled.as_mut().filter(|j| j.turn == turn);
        if let Some(part) = journaled.and_then(|j| j.parts.get_mut(index)) {
            part.sent = true;
        }
    }

    /// Ends work on `keys` and closes the reply to `turn`; what left, for the caller to
    /// count and drop (after letting go of its lock: freeing a message is not nothing).
    pub(crate) fn done(&mut self, turn: &str, keys: &[String]) -> Closed<E> {
        // The answered stay in the old list, the rest move to a new one: most turns answer
        // everything pending, and then nothing is allocated here.
        let mut answered = std::mem::take(&mut self.pending);
        self.pending = answered
            .extract_if(.., |e| !keys.iter().any(|k| k == e.key()))
            .collect();
        let reply = self.journaled.take_if(|j| j.turn == turn);
        self.attempts = 0;
        Closed { answered, reply }
    }

    /// Counts a failed attempt; the count.
    pub(crate) fn failed(&mut self) -> u32 {
        self.attempts = self.attempts.saturating_add(1);
        self.attempts
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.journaled.is_some()
    }
}

/// The claim and renewal of a store whose claims are [`LocalClaims`] in a `claims` field:
/// the memory store and the file store (one process each; each releases on its own, as it
/// looks at the inbox after).
macro_rules! in_process_claims {
    () => {
        fn claim<'a>(
            &'a self,
            customer: &'a Customer,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
            let claim = self.claims.claim(customer, ttl);
            Box::pin(async move { Ok(claim) })
        }

        fn renew<'a>(
            &'a self,
            claim: &'a Claim,
            ttl: Duration,
        ) -> BoxFuture<'a, Result<bool, StoreError>> {
            let held = self.claims.renew(claim, ttl);
            Box::pin(async move { Ok(held) })
        }
    };
}
pub(crate) use in_process_claims;

/// Entries by account, for a store that records each account's at once.
pub(crate) fn by_account(entries: Vec<Entry>) -> HashMap<String, Vec<Entry>> {
    let mut by_account: HashMap<String, Vec<Entry>> = HashMap::new();
    for entry in entries {
        by_account
            .entry(entry.customer.open_kfid.clone())
            .or_default()
            .push(entry);
    }
    by_account
}

/// Claims for a store that one process uses: kept in its memory, with their expiry.
#[derive(Debug, Default)]
pub(crate) struct LocalClaims {
    held: Mutex<LocalClaimState>,
}

#[derive(Debug, Default)]
struct LocalClaimState {
    by_customer: Map<Customer, (u64, Instant)>,
    last_fence: u64,
}

impl LocalClaims {
    fn with<T>(&self, f: impl FnOnce(&mut LocalClaimState) -> T) -> T {
        f(&mut crate::mutex::lock(&self.held))
    }

    pub(crate) fn claim(&self, customer: &Customer, ttl: Duration) -> Option<Claim> {
        let now = Instant::now();
        self.with(|state| {
            if let Some((_, until)) = state.by_customer.get(customer)
                && *until > now
            {
                return None;
            }
            state.last_fence = state.last_fence.saturating_add(1);
            let fence = state.last_fence;
            state
                .by_customer
                .insert(customer.clone(), (fence, now + ttl));
            Some(Claim {
                customer: customer.clone(),
                fence,
            })
        })
    }

    pub(crate) fn renew(&self, claim: &Claim, ttl: Duration) -> bool {
        let now = Instant::now();
        self.with(|state| match state.by_customer.get_mut(&claim.customer) {
            Some((fence, until)) if *fence == claim.fence && *until > now => {
                *until = now + ttl;
                true
            }
            _ => false,
        })
    }

    pub(crate) fn release(&self, claim: &Claim) {
        self.with(|state| {
            if state
                .by_customer
                .get(&claim.customer)
                .is_some_and(|(fence, _)| *fence == claim.fence)
            {
                state.by_customer.remove(&claim.customer);
            }
        });
    }

    /// `Ok` while `claim` is its customer's current, unexpired claim.
    pub(crate) fn check(&self, claim: &Claim) -> Result<(), StoreError> {
        let now = Instant::now();
        let holds = self.with(|state| {
            state
                .by_customer
                .get(&claim.customer)
                .is_some_and(|(fence, until)| *fence == claim.fence && *until > now)
        });
        if holds {
            Ok(())
        } else {
            Err(Box::new(ClaimLost { fence: claim.fence }))
        }
    }
}

/// The inbox and journal in this process's memory: for tests and for bots that may lose
/// their in-flight work on a restart.
#[derive(Default)]
pub struct MemoryBotStore {
    state: Mutex<MemoryState>,
    claims: LocalClaims,
}

#[derive(Default)]
struct MemoryState {
    inboxes: Map<Customer, Inbox<Entry>>,
    /// Keys seen per account.
    seen: Map<String, Set<String>>,
    /// Messages pending per account, kept with every change.
    depths: Map<String, u64>,
}

impl MemoryState {
    fn depth(&self, open_kfid: &str) -> u64 {
        self.depths.get(open_kfid).copied().unwrap_or(0)
    }

    /// Moves the account's depth by `added` and `removed`; the depth after.
    fn move_depth(&mut self, open_kfid: &str, added: usize, removed: usize) -> u64 {
        crate::map::change(&mut self.depths, open_kfid, |depth: &mut u64| {
            *depth = depth
                .saturating_add(added as u64)
                .saturating_sub(removed as u64);
            *depth
        })
    }

    fn has_work(&self, customer: &Customer) -> bool {
        self.inboxes.get(customer).is_some_and(Inbox::has_work)
    }
}

impl std::fmt::Debug for MemoryBotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBotStore").finish_non_exhaustive()
    }
}

impl MemoryBotStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MemoryState) -> T) -> T {
        // Every change below is one insert or remove on the maps: a panic can't leave it
        // half done.
        f(&mut crate::mutex::lock(&self.state))
    }

    /// Changes `claim`'s customer's inbox, while the claim holds.
    fn change<T>(
        &self,
        claim: &Claim,
        f: impl FnOnce(&mut Inbox<Entry>) -> T,
    ) -> Result<T, StoreError> {
        self.claims.check(claim)?;
        Ok(self.with(|state| crate::map::change(&mut state.inboxes, &claim.customer, f)))
    }
}

impl BotStore for MemoryBotStore {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        let recorded = self.with(|state| {
            let mut recorded = Recorded::default();
            for entry in entries {
                let new = crate::map::change(&mut state.seen, &entry.customer.open_kfid, |seen| {
                    seen.insert(entry.key.clone())
                });
                if !new {
                    recorded.duplicates += 1;
                    continue;
                }
                recorded.added += 1;
                if !recorded.customers.contains(&entry.customer) {
                    recorded.customers.push(entry.customer.clone());
                }
                // A message's text is a part of its page's; a waiting message keeps only
                // its own, not the whole page, alive.
                let mut entry = entry;
                entry.message.raw = entry.message.raw.detach();
                let customer = entry.customer.clone();
                if crate::map::change(&mut state.inboxes, &customer, |inbox| inbox.add(entry)) {
                    state.move_depth(&customer.open_kfid, 1, 0);
                }
            }
            let mut accounts: Vec<String> = recorded
                .customers
                .iter()
                .map(|c| c.open_kfid.clone())
                .collect();
            accounts.dedup();
            recorded.depths = accounts
                .into_iter()
                .map(|kf| {
                    let depth = state.depth(&kf);
                    (kf, depth)
                })
                .collect();
            recorded
        });
        Box::pin(async move { Ok(recorded) })
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        let work = self.with(|state| match state.inboxes.get(customer) {
            Some(inbox) => Work {
                journaled: inbox.journaled.clone(),
                pending: inbox.pending.to_vec(),
                attempts: inbox.attempts,
            },
            None => Work::default(),
        });
        Box::pin(async move { Ok(work) })
    }

    in_process_claims!();

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.claims.release(claim);
        let has_work = self.with(|state| state.has_work(&claim.customer));
        Box::pin(async move { Ok(has_work) })
    }

    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let changed = self.change(claim, |inbox| inbox.journaled = Some(reply));
        Box::pin(async move { changed })
    }

    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let changed = self.change(claim, |inbox| inbox.part_sent(turn, index));
        Box::pin(async move { changed })
    }

    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>> {
        let done = self.claims.check(claim).map(|()| {
            self.with(|state| {
                let customer = &claim.customer;
                let (closed, has_work) = match state.inboxes.get_mut(customer) {
                    Some(inbox) => (Some(inbox.done(turn, keys)), inbox.has_work()),
                    None => (None, false),
                };
                let removed = closed.as_ref().map_or(0, |c| c.answered.len());
                let done = Done {
                    depth: state.move_depth(&customer.open_kfid, 0, removed),
                    has_work,
                };
                (done, closed)
            })
        });
        // What was closed is dropped here, after the lock.
        let done = done.map(|(done, _closed)| done);
        Box::pin(async move { done })
    }

    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>> {
        let attempts = self.change(claim, |inbox| inbox.failed());
        Box::pin(async move { attempts })
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        let customers = self.with(|state| {
            let mut customers: Vec<Customer> = state
                .inboxes
                .iter()
                .filter(|(_, inbox)| inbox.has_work())
                .map(|(customer, _)| customer.clone())
                .collect();
            // In a stable order: by account, then customer.
            customers.sort_by(|a, b| {
                (&a.open_kfid, &a.external_userid).cmp(&(&b.open_kfid, &b.external_userid))
            });
            customers
        });
        Box::pin(async move { Ok(customers) })
    }

    fn only_its_runtime_records(&self) -> bool {
        true
    }
}

/// A store shared by several runtimes (or kept by the caller to look into). It keeps the
/// default [`only_its_runtime_records`](BotStore::only_its_runtime_records), `false`:
/// another runtime may record into it.
impl<T: BotStore> BotStore for std::sync::Arc<T> {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        self.as_ref().record(entries)
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        self.as_ref().work(customer)
    }

    fn claim<'a>(
        &'a self,
        customer: &'a Customer,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
        self.as_ref().claim(customer, ttl)
    }

    fn renew<'a>(
        &'a self,
        claim: &'a Claim,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.as_ref().renew(claim, ttl)
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.as_ref().release(claim)
    }

    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.as_ref().journal(claim, reply)
    }

    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.as_ref().part_sent(claim, turn, index)
    }

    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>> {
        self.as_ref().done(claim, turn, keys)
    }

    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>> {
        self.as_ref().failed(claim)
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        self.as_ref().customers_with_work()
    }
}
