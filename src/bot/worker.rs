//! One customer's worker: claims the customer, keeps the claim alive while it works, and
//! does turn after turn until the customer's inbox is empty.

use crate::map::Map;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{
    Answer, Bot, BotStore, Claim, ClaimLost, DeadLetter, Inner, Journaled, PlannedPart, inbox_depth,
};
use crate::reply::{Customer, ReplyError, SessionRefusal, Turn};
use crate::token::StoreError;
use crate::{CursorStore, ErrCode, OutgoingMsg};

/// Why a turn stopped short.
pub(super) enum Stop {
    /// The claim is gone: another replica has the customer now, and this worker ends.
    Lost,
    /// It failed, and is tried again after a backoff.
    Failed(String),
}

fn stop(error: StoreError) -> Stop {
    let error: &(dyn std::error::Error + 'static) = error.as_ref();
    if ClaimLost::is(error) {
        Stop::Lost
    } else {
        Stop::Failed(crate::error::chain(error))
    }
}

/// How a worker's run under one claim ended.
enum Served {
    /// The inbox is empty.
    Empty,
    /// The claim was lost, or the bot drains: the worker ends.
    Stopped,
    /// A turn failed: the worker lets go of its slot and its claim, waits this long, and
    /// tries again.
    Failed(Duration),
}

/// The claims this process's workers hold, renewed together by one task every third of
/// the claim TTL ([`renew_claims`]): a task per claim would be spawned and aborted for
/// every customer served.
#[derive(Default)]
pub(super) struct Claims {
    held: Mutex<Map<Customer, Arc<Held>>>,
    /// Whether the renewing task runs (started by the first claim).
    renewing: AtomicBool,
}

/// A claim being worked under.
struct Held {
    claim: Claim,
    /// Until when it is known to hold: the start of the last renewal that succeeded (or of
    /// the claim), plus the TTL.
    until: Mutex<Instant>,
}

impl Held {
    /// Renews the claim for `ttl`, within a third of it.
    async fn renew(&self, store: &dyn BotStore, ttl: Duration) {
        let asked = Instant::now();
        match tokio::time::timeout(ttl / 3, store.renew(&self.claim, ttl)).await {
            Ok(Ok(true)) => *crate::mutex::lock(&self.until) = asked + ttl,
            // Taken over: no renewal can bring it back, and its worker stops.
            Ok(Ok(false)) => *crate::mutex::lock(&self.until) = asked,
            Ok(Err(error)) => tracing::warn!(%error, "could not renew a customer's claim"),
            Err(_) => tracing::warn!("renewing a customer's claim timed out"),
        }
    }
}

/// A worker's hold on its claim: renewed for as long as it lives.
struct Keeper<'a> {
    claims: &'a Claims,
    held: Arc<Held>,
    ttl: Duration,
}

impl<'a> Keeper<'a> {
    fn new(claims: &'a Claims, claim: Claim, ttl: Duration, since: Instant) -> Self {
        let customer = claim.customer.clone();
        let held = Arc::new(Held {
            claim,
            until: Mutex::new(since + ttl),
        });
        crate::mutex::lock(&claims.held).insert(customer, held.clone());
        Keeper { claims, held, ttl }
    }

    /// Whether the claim surely holds for a while yet (a third of its TTL): what a send
    /// needs before it starts.
    fn holds(&self) -> bool {
        Instant::now() + self.ttl / 3 < *crate::mutex::lock(&self.held.until)
    }
}

impl Drop for Keeper<'_> {
    fn drop(&mut self) {
        let mut held = crate::mutex::lock(&self.claims.held);
        let customer = &self.held.claim.customer;
        if held
            .get(customer)
            .is_some_and(|h| Arc::ptr_eq(h, &self.held))
        {
            held.remove(customer);
        }
    }
}

/// Every third of the claim TTL, renews each claim the bot's workers hold, all at once;
/// ends with the bot.
async fn renew_claims<S: CursorStore + 'static>(inner: Weak<Inner<S>>) {
    loop {
        let Some(ttl) = inner.upgrade().map(|i| i.claim_ttl) else {
            return;
        };
        tokio::time::sleep(ttl / 3).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let held: Vec<Arc<Held>> = crate::mutex::lock(&strong.claims.held)
            .values()
            .cloned()
            .collect();
        let store = strong.store.clone();
        // The bot may end while renewals wait on the store.
        drop(strong);
        let mut renewals = tokio::task::JoinSet::new();
        for held in held {
            let store = store.clone();
            renewals.spawn(async move { held.renew(store.as_ref(), ttl).await });
        }
        renewals.join_all().await;
    }
}

impl<S: CursorStore + 'static> Bot<S> {
    /// The worker of `customer` on this process, started by [`wake`](Bot::wake).
    ///
    /// It waits for one of the `parallel_turns` slots *before* it claims the customer: a
    /// replica with a backlog then holds claims only on the customers it is serving, and
    /// the others stay free for a replica with slots to spare (its sweep takes them).
    pub(super) async fn work(self, customer: Customer) {
        let store = self.inner.store.clone();
        let ttl = self.inner.claim_ttl;
        let mut failures_in_a_row = 0u32;
        loop {
            // The semaphore is never closed; an error ends the worker all the same.
            let Ok(slot) = self.inner.turns.acquire().await else {
                crate::mutex::lock(&self.inner.workers).remove(&customer);
                return;
            };
            let asked = Instant::now();
            let served = match store.claim(&customer, ttl).await {
                Ok(Some(claim)) => {
                    if !self.inner.claims.renewing.swap(true, Ordering::SeqCst) {
                        tokio::spawn(renew_claims(Arc::downgrade(&self.inner)));
                    }
                    let keeper = Keeper::new(&self.inner.claims, claim.clone(), ttl, asked);
                    let served = self.serve(&claim, &keeper, &mut failures_in_a_row).await;
                    drop(keeper);
                    // After letting go, work that came meanwhile is not left behind: the
                    // store says whether there is some (recorded by any replica), or a wake
                    // here flagged it.
                    match store.release(&claim).await {
                        Ok(more) => (served, more),
                        Err(error) => {
                            tracing::warn!(%error, "could not release a customer's claim; it expires");
                            (served, false)
                        }
                    }
                }
                // Another replica works on the customer, and looks at the inbox again
                // before it lets go.
                Ok(None) => (Served::Stopped, false),
                Err(error) => {
                    // The sweep tries again.
                    tracing::warn!(%error, "could not claim a customer");
                    (Served::Stopped, false)
                }
            };
            drop(slot);
            let (served, more) = served;
            if let Served::Failed(wait) = served
                && !self.is_draining()
            {
                tokio::time::sleep(wait).await;
                continue;
            }
            let mut workers = crate::mutex::lock(&self.inner.workers);
            let woken = workers.get_mut(&customer).map(std::mem::take);
            if (more || woken == Some(true))
                && !self.is_draining()
                && matches!(served, Served::Empty)
            {
                if woken.is_none() {
                    workers.insert(customer.clone(), false);
                }
                continue;
            }
            workers.remove(&customer);
            return;
        }
    }

    /// Turn after turn under `claim`, until there is no work, the claim is lost, a turn
    /// fails or the bot drains.
    async fn serve(
        &self,
        claim: &Claim,
        keeper: &Keeper<'_>,
        failures_in_a_row: &mut u32,
    ) -> Served {
        let customer = &claim.customer;
        loop {
            if self.is_draining() || !keeper.holds() {
                return Served::Stopped;
            }
            // Work that comes from here on is seen by this turn or flagged anew.
            if let Some(woken) = crate::mutex::lock(&self.inner.workers).get_mut(customer) {
                *woken = false;
            }
            let span = tracing::info_span!(
                "wecom_kf.turn",
                account = %customer.open_kfid,
                customer = %crate::observe::customer_hash(&customer.open_kfid, &customer.external_userid),
                outcome = tracing::field::Empty,
            );
            let turn = tracing::Instrument::instrument(self.turn(claim, keeper), span.clone());
            match turn.await {
                Ok(true) => *failures_in_a_row = 0,
                Ok(false) => return Served::Empty,
                Err(Stop::Lost) => {
                    span.record("outcome", "claim_lost");
                    tracing::info!(open_kfid = %customer.open_kfid, "another replica took this customer over");
                    return Served::Stopped;
                }
                Err(Stop::Failed(error)) => {
                    span.record("outcome", "failed");
                    *failures_in_a_row = failures_in_a_row.saturating_add(1);
                    let wait = backoff(self.inner.retry_after, *failures_in_a_row);
                    tracing::warn!(%error, open_kfid = %customer.open_kfid, attempt = *failures_in_a_row, "a turn failed; trying again");
                    return Served::Failed(wait);
                }
            }
        }
    }

    /// Does the next piece of the customer's work; whether there is more after it.
    async fn turn(&self, claim: &Claim, keeper: &Keeper<'_>) -> Result<bool, Stop> {
        let customer = &claim.customer;
        let store = &self.inner.store;
        let work = store.work(customer).await.map_err(stop)?;
        // The budget learns the window from the inbox too: after a restart a budget kept in
        // memory knows only what it is shown again (observing twice changes nothing), and
        // another replica's pull showed its messages to that replica's budget. A budget
        // every replica shares, or one beside a store only this runtime records into, saw
        // each message when it was pulled.
        let budget = self.inner.replier.reply_budget();
        let unseen = if store.only_its_runtime_records() || budget.is_shared() {
            &[][..]
        } else {
            &work.pending[..]
        };
        for entry in unseen {
            budget
                .observe(&entry.message)
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
        }
        if work.journaled.is_none() && work.pending.is_empty() {
            return Ok(false);
        }
        if let Some(journaled) = work.journaled {
            let more = self.deliver(claim, keeper, &journaled).await?;
            outcome("resumed");
            return Ok(more);
        }
        let keys: Vec<String> = work.pending.iter().map(|e| e.key.clone()).collect();
        let turn_id = keys.first().cloned().unwrap_or_default();
        let view = self.inner.replier.session_tracker().view(customer);
        if let Some(refusal) = SessionRefusal::for_state(&view) {
            // A human has the customer (or the session is queued or over): stay quiet.
            tracing::info!(open_kfid = %customer.open_kfid, reason = %refusal, "not answering");
            let more = self.done(claim, &turn_id, &keys).await?;
            outcome("quiet");
            return Ok(more);
        }
        let messages: Vec<_> = work.pending.into_iter().map(|e| e.message).collect();
        let answer = self.ask(customer, messages).await?;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let attempts = store.failed(claim).await.map_err(stop)?;
                if attempts < self.inner.max_attempts {
                    return Err(Stop::Failed(format!(
                        "the handler failed (attempt {attempts}): {error}"
                    )));
                }
                tracing::error!(%error, open_kfid = %customer.open_kfid, attempts, "giving a turn up");
                if let Some(hook) = &self.inner.dead_letter {
                    // The handler had the messages; the store still has them, pending.
                    let pending = store.work(customer).await.map_err(stop)?.pending;
                    let messages = pending
                        .into_iter()
                        .filter(|e| keys.contains(&e.key))
                        .map(|e| e.message)
                        .collect();
                    hook(DeadLetter {
                        customer: customer.clone(),
                        messages,
                        error,
                    });
                }
                let more = self.done(claim, &turn_id, &keys).await?;
                metrics::counter!("wecom_kf_dead_letters_total", "account" => customer.open_kfid.clone())
                    .increment(1);
                outcome("dead_letter");
                return Ok(more);
            }
        };
        let parts = self.plan(customer, answer).await?;
        let journaled = Journaled {
            parts: parts
                .into_iter()
                .enumerate()
                .map(|(index, message)| PlannedPart {
                    msgid: reply_msgid(&customer.open_kfid, &turn_id, index),
                    message,
                    sent: false,
                })
                .collect(),
            turn: turn_id,
            covers: keys,
        };
        if !keeper.holds() {
            return Err(Stop::Lost);
        }
        store
            .journal(claim, journaled.clone())
            .await
            .map_err(stop)?;
        let answered = journaled.covers.len() as u64;
        let more = self.deliver(claim, keeper, &journaled).await?;
        metrics::counter!("wecom_kf_messages_answered_total", "account" => customer.open_kfid.clone())
            .increment(answered);
        outcome("answered");
        Ok(more)
    }

    /// The account's handler's answer to `messages`, within the turn timeout; `Err`
    /// inside when the handler failed.
    async fn ask(
        &self,
        customer: &Customer,
        messages: Vec<crate::ReceivedMsg>,
    ) -> Result<Result<Answer, String>, Stop> {
        let handler = self
            .inner
            .routes
            .get(&customer.open_kfid)
            .unwrap_or(&self.inner.handler)
            .clone();
        let turn = Turn {
            customer: customer.clone(),
            messages,
        };
        let timeout = self.inner.turn_timeout;
        Ok(tokio::time::timeout(timeout, handler(turn))
            .await
            .unwrap_or_else(|_| Err(format!("the handler took longer than {timeout:?}"))))
    }

    /// The messages an answer becomes, fitted to the budget left.
    async fn plan(&self, customer: &Customer, answer: Answer) -> Result<Vec<OutgoingMsg>, Stop> {
        match answer {
            Answer::Silence => Ok(Vec::new()),
            Answer::Messages(messages) => Ok(messages),
            Answer::Text(text) => {
                let plan = self.inner.replier.composer_of().compose(&text);
                // Only several parts are fitted to what is left; one part needs no fitting:
                // its reservation at the send is the budget's check, as for `Messages`.
                let left = if plan.parts().len() <= 1 {
                    1
                } else {
                    match self.inner.replier.reply_budget().allowance(customer).await {
                        Ok(allowance) => allowance.left,
                        Err(error) => return Err(Stop::Failed(crate::error::chain(&error))),
                    }
                };
                let parts = match plan.fit(left) {
                    Ok(parts) => parts,
                    Err(over) if left > 0 => {
                        let shortened = over.shorten();
                        tracing::warn!(open_kfid = %customer.open_kfid, dropped = shortened.dropped.len(), "an answer was shortened to the replies left");
                        shortened.parts
                    }
                    Err(_) => Vec::new(),
                };
                Ok(parts
                    .into_iter()
                    .map(|p| crate::Text::new(p).into())
                    .collect())
            }
        }
    }

    /// Sends what is left of a journaled reply, marking each part but the last as it goes,
    /// then closes it; whether the customer has more work. Each part is sent only while the
    /// claim surely holds.
    async fn deliver(
        &self,
        claim: &Claim,
        keeper: &Keeper<'_>,
        journaled: &Journaled,
    ) -> Result<bool, Stop> {
        let customer = &claim.customer;
        let store = &self.inner.store;
        for (index, part) in journaled.parts.iter().enumerate() {
            if part.sent {
                continue;
            }
            if !keeper.holds() {
                return Err(Stop::Lost);
            }
            let sent = self
                .inner
                .replier
                .send_with_id(customer, &part.msgid, part.message.clone())
                .await;
            match sent {
                Ok(_) => {}
                // A resend of a part that was in flight at a crash: WeCom has it.
                Err(ReplyError::Send { error, .. })
                    if error.code() == Some(ErrCode::DuplicateMsgid) =>
                {
                    metrics::counter!("wecom_kf_resent_parts_total", "account" => customer.open_kfid.clone())
                        .increment(1);
                    tracing::info!(msgid = %part.msgid, "a resent part was already there");
                }
                // Nothing more can go out for this turn: the rest is dropped, logged.
                Err(error @ (ReplyError::Session(_) | ReplyError::Budget(_))) => {
                    if matches!(error, ReplyError::Budget(_)) {
                        metrics::counter!("wecom_kf_budget_refusals_total", "account" => customer.open_kfid.clone())
                            .increment(1);
                    }
                    tracing::warn!(%error, open_kfid = %customer.open_kfid, covers = %journaled.covers.join(","), "the rest of a reply can't be sent");
                    break;
                }
                Err(error) => return Err(Stop::Failed(crate::error::chain(&error))),
            }
            // The last part needs no mark of its own: `done` closes the journal next. Either
            // way one store call follows the send, and if it fails the part is sent again
            // under its msgid, as after a crash between the two.
            if index + 1 < journaled.parts.len() {
                store
                    .part_sent(claim, &journaled.turn, index)
                    .await
                    .map_err(stop)?;
            }
        }
        self.done(claim, &journaled.turn, &journaled.covers).await
    }

    /// Ends work on `keys` and reports the inbox depth left; whether the customer has
    /// more work.
    async fn done(&self, claim: &Claim, turn: &str, keys: &[String]) -> Result<bool, Stop> {
        let done = self
            .inner
            .store
            .done(claim, turn, keys)
            .await
            .map_err(stop)?;
        inbox_depth(claim.customer.open_kfid.clone(), done.depth);
        Ok(done.has_work)
    }
}

/// Names how the current turn ended, on its span.
fn outcome(outcome: &'static str) {
    tracing::Span::current().record("outcome", outcome);
}

pub(super) fn backoff(first: Duration, attempt: u32) -> Duration {
    first
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(Duration::from_secs(60))
}

/// The msgid of part `index` of the reply to turn `turn`: the same after a restart and on
/// every replica, unique per account, 32 characters of `[0-9a-f]`, never a customer's
/// msgid.
fn reply_msgid(open_kfid: &str, turn: &str, index: usize) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(b"reply\0")
        .chain_update(open_kfid.as_bytes())
        .chain_update([0])
        .chain_update(turn.as_bytes())
        .chain_update([0])
        .chain_update(index.to_le_bytes())
        .finalize();
    crate::encode::hex(&digest[..16])
}
