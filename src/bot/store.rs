//! What the bot runtime keeps between the cursor and the sends: the inbox of customer
//! messages not yet answered, and the journal of replies decided but not all sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::reply::Customer;
use crate::token::StoreError;
use crate::{BoxFuture, OutgoingMsg, ReceivedMsg};

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

/// The inbox and the journal, per customer. A store must keep each call's effect whole:
/// after a crash, a call happened or it didn't.
pub trait BotStore: Send + Sync + 'static {
    /// Adds the messages not seen before (by account and key) to their customers' inboxes.
    /// Seen keys are remembered even after their messages are done, so a page handed over
    /// again adds nothing.
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>>;

    /// The customer's work.
    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>>;

    /// Journals a reply before any of it is sent.
    fn journal<'a>(
        &'a self,
        customer: &'a Customer,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Marks part `index` of the journaled reply `turn` sent.
    fn part_sent<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ends work on `keys`: their messages leave the inbox, and the journaled reply of
    /// `turn` (if any) is closed.
    fn done<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Counts a failed attempt at the customer's pending messages; returns the count.
    fn failed<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<u32, StoreError>>;

    /// Every customer with work: what a restarted runtime resumes.
    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>>;
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
    /// Adds `entry` unless one with its key is pending.
    pub(crate) fn add(&mut self, entry: E) {
        if !self.pending.iter().any(|p| p.key() == entry.key()) {
            self.pending.push(entry);
        }
    }

    /// Marks part `index` of the reply to `turn` sent.
    pub(crate) fn part_sent(&mut self, turn: &str, index: usize) {
        let journaled = self.journaled.as_mut().filter(|j| j.turn == turn);
        if let Some(part) = journaled.and_then(|j| j.parts.get_mut(index)) {
            part.sent = true;
        }
    }

    /// Ends work on `keys` and closes the reply to `turn`.
    pub(crate) fn done(&mut self, turn: &str, keys: &[String]) {
        self.pending.retain(|e| !keys.iter().any(|k| k == e.key()));
        if self.journaled.as_ref().is_some_and(|j| j.turn == turn) {
            self.journaled = None;
        }
        self.attempts = 0;
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

/// The inbox and journal in this process's memory: for tests and for bots that may lose
/// their in-flight work on a restart.
#[derive(Default)]
pub struct MemoryBotStore {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    inboxes: BTreeMap<(String, String), Inbox<Entry>>,
    /// Keys seen per account.
    seen: HashMap<String, HashSet<String>>,
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
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }
}

fn slot(customer: &Customer) -> (String, String) {
    (customer.open_kfid.clone(), customer.external_userid.clone())
}

impl BotStore for MemoryBotStore {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        let recorded = self.with(|state| {
            let mut recorded = Recorded::default();
            for entry in entries {
                let seen = state
                    .seen
                    .entry(entry.customer.open_kfid.clone())
                    .or_default();
                if !seen.insert(entry.key.clone()) {
                    recorded.duplicates += 1;
                    continue;
                }
                recorded.added += 1;
                if !recorded.customers.contains(&entry.customer) {
                    recorded.customers.push(entry.customer.clone());
                }
                let inbox = state.inboxes.entry(slot(&entry.customer)).or_default();
                inbox.add(entry);
            }
            recorded
        });
        Box::pin(async move { Ok(recorded) })
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        let work = self.with(|state| match state.inboxes.get(&slot(customer)) {
            Some(inbox) => Work {
                journaled: inbox.journaled.clone(),
                pending: inbox.pending.to_vec(),
                attempts: inbox.attempts,
            },
            None => Work::default(),
        });
        Box::pin(async move { Ok(work) })
    }

    fn journal<'a>(
        &'a self,
        customer: &'a Customer,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|state| {
            state.inboxes.entry(slot(customer)).or_default().journaled = Some(reply);
        });
        Box::pin(async { Ok(()) })
    }

    fn part_sent<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|state| {
            if let Some(inbox) = state.inboxes.get_mut(&slot(customer)) {
                inbox.part_sent(turn, index);
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn done<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.with(|state| {
            if let Some(inbox) = state.inboxes.get_mut(&slot(customer)) {
                inbox.done(turn, keys);
            }
        });
        Box::pin(async { Ok(()) })
    }

    fn failed<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<u32, StoreError>> {
        let attempts = self.with(|state| state.inboxes.entry(slot(customer)).or_default().failed());
        Box::pin(async move { Ok(attempts) })
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        let customers = self.with(|state| {
            state
                .inboxes
                .iter()
                .filter(|(_, inbox)| inbox.has_work())
                .map(|((kf, user), _)| Customer::new(kf.clone(), user.clone()))
                .collect()
        });
        Box::pin(async move { Ok(customers) })
    }
}

/// A store shared by several runtimes (or kept by the caller to look into).
impl<T: BotStore> BotStore for std::sync::Arc<T> {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        self.as_ref().record(entries)
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        self.as_ref().work(customer)
    }

    fn journal<'a>(
        &'a self,
        customer: &'a Customer,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.as_ref().journal(customer, reply)
    }

    fn part_sent<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.as_ref().part_sent(customer, turn, index)
    }

    fn done<'a>(
        &'a self,
        customer: &'a Customer,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.as_ref().done(customer, turn, keys)
    }

    fn failed<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<u32, StoreError>> {
        self.as_ref().failed(customer)
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        self.as_ref().customers_with_work()
    }
}
