//! The inbox and journal as files: one document per customer, one per account for the
//! keys seen, each replaced atomically (the cursor store's files).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::store::{Inbox, Keyed, LocalClaims, by_account, in_process_claims};
use super::{BotStore, Claim, Done, Entry, Journaled, Recorded, Work};
use crate::ReceivedMsg;
use crate::reply::Customer;
use crate::sync::JsonFiles;
use crate::token::BoxFuture;
use crate::token::StoreError;

/// Keys seen are remembered this long: past WeCom's 3 days of history, a message can't come
/// back.
const SEEN_FOR_SECS: u64 = 4 * 24 * 3600;

/// The inbox and journal in a directory: survives a restart of the process, for one
/// process at a time.
#[derive(Clone)]
pub struct FileBotStore {
    files: JsonFiles,
    /// One process at a time uses the directory, so its claims live in its memory.
    claims: Arc<LocalClaims>,
    /// Each account's inbox depth, counted from the files once, then kept up to date here
    /// (every change goes through this process).
    depths: Arc<Mutex<HashMap<String, u64>>>,
}

impl std::fmt::Debug for FileBotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBotStore").finish_non_exhaustive()
    }
}

/// One customer's document: who, and their inbox.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CustomerFile {
    open_kfid: String,
    external_userid: String,
    inbox: Inbox<StoredEntry>,
}

/// An entry as stored: the message's own text, parsed again on load, so nothing of it is
/// lost.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEntry {
    key: String,
    raw: String,
}

impl Keyed for StoredEntry {
    fn key(&self) -> &str {
        &self.key
    }
}

/// One account's keys seen, with when (unix seconds).
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenFile {
    keys: HashMap<String, u64>,
}

const INBOX: &str = "inbox\u{1}";

fn inbox_name(customer: &Customer) -> String {
    format!(
        "{INBOX}{}\u{1}{}",
        customer.open_kfid, customer.external_userid
    )
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl FileBotStore {
    /// Keeps its files in `dir` (created if needed); a directory of its own, not the
    /// cursor store's.
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        Ok(FileBotStore {
            files: JsonFiles::new(dir)?,
            claims: Arc::default(),
            depths: Arc::default(),
        })
    }

    /// Changes the inbox of `claim`'s customer while the claim holds.
    async fn change<R: Send + 'static>(
        &self,
        claim: &Claim,
        change: impl FnOnce(&mut Inbox<StoredEntry>) -> R + Send + 'static,
    ) -> Result<R, StoreError> {
        self.claims.check(claim)?;
        let (out, _) = self
            .files
            .update(
                &inbox_name(&claim.customer),
                move |file: &mut CustomerFile| change(&mut file.inbox),
            )
            .await?;
        Ok(out)
    }

    /// Moves the account's depth by `added` and `removed`; the depth after. The first call
    /// for an account counts its inbox files (after the change, so it is not counted twice).
    async fn move_depth(
        &self,
        open_kfid: &str,
        added: usize,
        removed: usize,
    ) -> Result<u64, StoreError> {
        let known = crate::mutex::lock(&self.depths).get(open_kfid).copied();
        let depth = match known {
            Some(depth) => (depth + added as u64).saturating_sub(removed as u64),
            None => {
                let prefix = format!("{INBOX}{open_kfid}\u{1}");
                let mut depth = 0u64;
                for name in self.files.names(&prefix).await? {
                    let file: CustomerFile = self.files.load(&name).await?;
                    depth += file.inbox.pending.len() as u64;
                }
                depth
            }
        };
        crate::mutex::lock(&self.depths).insert(open_kfid.to_owned(), depth);
        Ok(depth)
    }

    async fn customer_file(&self, customer: &Customer) -> Result<CustomerFile, StoreError> {
        self.files.load(&inbox_name(customer)).await
    }
}

fn entry_of(customer: &Customer, stored: StoredEntry) -> Result<Entry, StoreError> {
    let message: ReceivedMsg = serde_json::from_str(&stored.raw)?;
    Ok(Entry {
        key: stored.key,
        customer: customer.clone(),
        message,
    })
}

impl BotStore for FileBotStore {
    fn record<'a>(&'a self, entries: Vec<Entry>) -> BoxFuture<'a, Result<Recorded, StoreError>> {
        Box::pin(async move {
            let mut recorded = Recorded::default();
            for (open_kfid, entries) in by_account(entries) {
                let keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
                let seen: SeenFile = self.files.load(&format!("seen\u{1}{open_kfid}")).await?;
                let total = entries.len();
                let new: Vec<Entry> = entries
                    .into_iter()
                    .filter(|e| !seen.keys.contains_key(&e.key))
                    .collect();
                recorded.added += new.len();
                recorded.duplicates += total - new.len();
                // Into the inbox first, then seen: a crash between the two adds the entry
                // again next time, and the inbox drops the repeat.
                let mut by_customer: HashMap<Customer, Vec<StoredEntry>> = HashMap::new();
                for entry in new {
                    by_customer
                        .entry(entry.customer.clone())
                        .or_default()
                        .push(StoredEntry {
                            key: entry.key,
                            raw: entry.message.raw.as_str().to_owned(),
                        });
                }
                let mut added = 0;
                for (customer, stored) in by_customer {
                    let who = customer.clone();
                    let (new, _) = self
                        .files
                        .update(&inbox_name(&customer), move |file: &mut CustomerFile| {
                            file.open_kfid.clone_from(&who.open_kfid);
                            file.external_userid.clone_from(&who.external_userid);
                            stored
                                .into_iter()
                                .filter(|e| file.inbox.add(e.clone()))
                                .count()
                        })
                        .await?;
                    added += new;
                    recorded.customers.push(customer);
                }
                let now = now_secs();
                self.files
                    .update(
                        &format!("seen\u{1}{open_kfid}"),
                        move |seen: &mut SeenFile| {
                            seen.keys
                                .retain(|_, at| now.saturating_sub(*at) < SEEN_FOR_SECS);
                            for key in keys {
                                seen.keys.entry(key).or_insert(now);
                            }
                        },
                    )
                    .await?;
                let depth = self.move_depth(&open_kfid, added, 0).await?;
                recorded.depths.push((open_kfid, depth));
            }
            Ok(recorded)
        })
    }

    fn work<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Work, StoreError>> {
        Box::pin(async move {
            let inbox = self.customer_file(customer).await?.inbox;
            let pending = inbox
                .pending
                .into_iter()
                .map(|stored| entry_of(customer, stored))
                .collect::<Result<_, _>>()?;
            Ok(Work {
                journaled: inbox.journaled,
                pending,
                attempts: inbox.attempts,
            })
        })
    }

    in_process_claims!();

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.claims.release(claim);
        Box::pin(async move { Ok(self.customer_file(&claim.customer).await?.inbox.has_work()) })
    }

    fn journal<'a>(
        &'a self,
        claim: &'a Claim,
        reply: Journaled,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.change(claim, move |inbox| inbox.journaled = Some(reply)))
    }

    fn part_sent<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        index: usize,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let turn = turn.to_owned();
        Box::pin(self.change(claim, move |inbox| inbox.part_sent(&turn, index)))
    }

    fn done<'a>(
        &'a self,
        claim: &'a Claim,
        turn: &'a str,
        keys: &'a [String],
    ) -> BoxFuture<'a, Result<Done, StoreError>> {
        let (turn, keys) = (turn.to_owned(), keys.to_vec());
        Box::pin(async move {
            let (removed, has_work) = self
                .change(claim, move |inbox| {
                    (inbox.done(&turn, &keys).answered.len(), inbox.has_work())
                })
                .await?;
            let depth = self
                .move_depth(&claim.customer.open_kfid, 0, removed)
                .await?;
            Ok(Done { depth, has_work })
        })
    }

    fn failed<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(self.change(claim, |inbox| inbox.failed()))
    }

    fn customers_with_work<'a>(&'a self) -> BoxFuture<'a, Result<Vec<Customer>, StoreError>> {
        Box::pin(async move {
            let mut customers = Vec::new();
            for name in self.files.names(INBOX).await? {
                let file: CustomerFile = self.files.load(&name).await?;
                if file.inbox.has_work() {
                    customers.push(Customer::new(file.open_kfid, file.external_userid));
                }
            }
            Ok(customers)
        })
    }
}
