//! One customer's worker: claims the customer, keeps the claim alive while it works, and
//! does turn after turn until the customer's inbox is empty.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    Answer, Bot, BotStore, Claim, ClaimLost, DeadLetter, Journaled, PlannedPart, inbox_depth,
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
}

/// Renews a claim in the background for as long as its worker holds it.
struct Keeper {
    /// Until when the claim is known to hold (the start of the last renewal that
    /// succeeded, plus the TTL).
    held_until: Arc<Mutex<Instant>>,
    ttl: Duration,
    renewals: tokio::task::JoinHandle<()>,
}

impl Keeper {
    fn spawn(store: Arc<dyn BotStore>, claim: Claim, ttl: Duration, since: Instant) -> Self {
        let held_until = Arc::new(Mutex::new(since + ttl));
        let until = held_until.clone();
        let renewals = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                let asked = Instant::now();
                match tokio::time::timeout(ttl / 3, store.renew(&claim, ttl)).await {
                    Ok(Ok(true)) => *crate::mutex::lock(&until) = asked + ttl,
                    Ok(Ok(false)) => {
                        // Taken over: no renewal can bring it back.
                        *crate::mutex::lock(&until) = asked;
                        return;
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "could not renew a customer's claim"),
                    Err(_) => tracing::warn!("renewing a customer's claim timed out"),
                }
            }
        });
        Keeper {
            held_until,
            ttl,
            renewals,
        }
    }

    /// Whether the claim surely holds for a while yet (a third of its TTL): what a send
    /// needs before it starts.
    fn holds(&self) -> bool {
        Instant::now() + self.ttl / 3 < *crate::mutex::lock(&self.held_until)
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.renewals.abort();
    }
}

impl<S: CursorStore + 'static> Bot<S> {
    /// The worker of `customer` on this process, started by [`wake`](Bot::wake).
    pub(super) async fn work(self, customer: Customer) {
        let store = self.inner.store.clone();
        let ttl = self.inner.claim_ttl;
        loop {
            let asked = Instant::now();
            let served = match store.claim(&customer, ttl).await {
                Ok(Some(claim)) => {
                    let keeper = Keeper::spawn(store.clone(), claim.clone(), ttl, asked);
                    let served = self.serve(&claim, &keeper).await;
                    drop(keeper);
                    if let Err(error) = store.release(&claim).await {
                        tracing::warn!(%error, "could not release a customer's claim; it expires");
                    }
                    served
                }
                // Another replica works on the customer, and looks at the inbox again
                // before it lets go.
                Ok(None) => Served::Stopped,
                Err(error) => {
                    // The sweep tries again.
                    tracing::warn!(%error, "could not claim a customer");
                    Served::Stopped
                }
            };
            // After letting go, work that came meanwhile is not left behind: it is in the
            // store (recorded by any replica) or flagged by a wake here.
            let more = match served {
                Served::Stopped => false,
                Served::Empty => store.work(&customer).await.is_ok_and(|w| w.has_any()),
            };
            let mut workers = crate::mutex::lock(&self.inner.workers);
            let woken = workers.get(&customer).copied().unwrap_or(false);
            if (more || woken) && !self.is_draining() && matches!(served, Served::Empty) {
                workers.insert(customer.clone(), false);
                continue;
            }
            workers.remove(&customer);
            return;
        }
    }

    /// Turn after turn under `claim`, until there is no work, the claim is lost or the
    /// bot drains.
    async fn serve(&self, claim: &Claim, keeper: &Keeper) -> Served {
        let customer = &claim.customer;
        let mut failures_in_a_row = 0u32;
        loop {
            if self.is_draining() || !keeper.holds() {
                return Served::Stopped;
            }
            crate::mutex::lock(&self.inner.workers).insert(customer.clone(), false);
            let span = tracing::info_span!(
                "wecom_kf.turn",
                account = %customer.open_kfid,
                customer = %crate::observe::customer_hash(&customer.open_kfid, &customer.external_userid),
                outcome = tracing::field::Empty,
            );
            let turn = tracing::Instrument::instrument(self.turn(claim, keeper), span.clone());
            match turn.await {
                Ok(true) => failures_in_a_row = 0,
                Ok(false) => return Served::Empty,
                Err(Stop::Lost) => {
                    span.record("outcome", "claim_lost");
                    tracing::info!(open_kfid = %customer.open_kfid, "another replica took this customer over");
                    return Served::Stopped;
                }
                Err(Stop::Failed(error)) => {
                    span.record("outcome", "failed");
                    failures_in_a_row = failures_in_a_row.saturating_add(1);
                    let wait = backoff(self.inner.retry_after, failures_in_a_row);
                    tracing::warn!(%error, open_kfid = %customer.open_kfid, attempt = failures_in_a_row, "a turn failed; trying again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Does the next piece of the customer's work; `false` when there is none.
    async fn turn(&self, claim: &Claim, keeper: &Keeper) -> Result<bool, Stop> {
        let customer = &claim.customer;
        let store = &self.inner.store;
        let work = store.work(customer).await.map_err(stop)?;
        // The budget learns the window from the inbox too: after a restart a budget kept in
        // memory knows only what it is shown again (observing twice changes nothing).
        for entry in &work.pending {
            self.inner
                .replier
                .reply_budget()
                .observe(&entry.message)
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
        }
        if work.journaled.is_none() && work.pending.is_empty() {
            return Ok(false);
        }
        // A turn, its sends included, runs under one of the `parallel_turns` permits: they
        // bound the calls to WeCom as well as the handlers.
        let _running = self
            .inner
            .turns
            .acquire()
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if let Some(journaled) = work.journaled {
            self.deliver(claim, keeper, &journaled).await?;
            outcome("resumed");
            return Ok(true);
        }
        let keys: Vec<String> = work.pending.iter().map(|e| e.key.clone()).collect();
        let turn_id = keys.first().cloned().unwrap_or_default();
        let view = self.inner.replier.session_tracker().view(customer);
        if let Some(refusal) = SessionRefusal::for_state(&view) {
            // A human has the customer (or the session is queued or over): stay quiet.
            tracing::info!(open_kfid = %customer.open_kfid, reason = %refusal, "not answering");
            self.done(claim, &turn_id, &keys).await?;
            outcome("quiet");
            return Ok(true);
        }
        let messages: Vec<_> = work.pending.into_iter().map(|e| e.message).collect();
        let answer = self.ask(customer, messages.clone()).await?;
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
                    hook(DeadLetter {
                        customer: customer.clone(),
                        messages,
                        error,
                    });
                }
                self.done(claim, &turn_id, &keys).await?;
                metrics::counter!("wecom_kf_dead_letters_total", "account" => customer.open_kfid.clone())
                    .increment(1);
                outcome("dead_letter");
                return Ok(true);
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
        self.deliver(claim, keeper, &journaled).await?;
        metrics::counter!("wecom_kf_messages_answered_total", "account" => customer.open_kfid.clone())
            .increment(answered);
        outcome("answered");
        Ok(true)
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
                let left = match self.inner.replier.reply_budget().allowance(customer).await {
                    Ok(allowance) => allowance.left,
                    Err(error) => return Err(Stop::Failed(crate::error::chain(&error))),
                };
                let plan = self.inner.replier.composer_of().compose(&text);
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

    /// Sends what is left of a journaled reply, marking each part as it goes, then closes
    /// it. Each part is sent only while the claim surely holds.
    async fn deliver(
        &self,
        claim: &Claim,
        keeper: &Keeper,
        journaled: &Journaled,
    ) -> Result<(), Stop> {
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
            store
                .part_sent(claim, &journaled.turn, index)
                .await
                .map_err(stop)?;
        }
        self.done(claim, &journaled.turn, &journaled.covers).await
    }

    /// Ends work on `keys` and reports the inbox depth left.
    async fn done(&self, claim: &Claim, turn: &str, keys: &[String]) -> Result<(), Stop> {
        let depth = self
            .inner
            .store
            .done(claim, turn, keys)
            .await
            .map_err(stop)?;
        inbox_depth(claim.customer.open_kfid.clone(), depth);
        Ok(())
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
