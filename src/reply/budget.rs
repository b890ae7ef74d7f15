//! The reply budget: WeCom lets a bot send at most 5 messages to a customer within 48 hours
//! of the customer's *latest* message (errors 95001 and 95002 past that). A customer who
//! writes three times in a row still gets 5 replies in all, counted from the third message.
//!
//! [`ReplyBudget`] tracks that per account and customer, fed by the messages the sync
//! stream hands over and by the sends it permits, and corrected by WeCom's refusals and
//! `msg_send_fail` events. A send it knows would fail is refused before anything leaves.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::token::BoxFuture;
use crate::token::StoreError;
use crate::{Delivery, ErrCode, Error, Event, FailType, Origin, Received, ReceivedMsg};

/// Messages of one second a window remembers; more in one second is more than a person
/// types.
const OPENED_BY_KEPT: usize = 32;

/// A customer message's identity in a [`Window`]: 64 bits of a SHA-1 of its msgid (of its
/// text when it has none).
pub fn message_digest(message: &ReceivedMsg) -> u64 {
    use sha1::Digest as _;
    let id = if message.msgid.is_empty() {
        message.raw.as_str()
    } else {
        message.msgid.as_str()
    };
    let digest = sha1::Sha1::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Replies allowed after each customer message.
pub const REPLIES_PER_MESSAGE: u32 = 5;

/// How long after the customer's latest message replies are allowed.
pub const REPLY_WINDOW: Duration = Duration::from_secs(48 * 3600);

/// One customer of one account: whose budget it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Customer {
    /// The account the customer writes to.
    pub open_kfid: String,
    /// The customer.
    pub external_userid: String,
}

impl Customer {
    /// The customer `external_userid` of the account `open_kfid`.
    pub fn new(open_kfid: impl Into<String>, external_userid: impl Into<String>) -> Self {
        Customer {
            open_kfid: open_kfid.into(),
            external_userid: external_userid.into(),
        }
    }
}

/// What a customer's window allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Replies that may still be sent (reservations already taken count as used).
    pub left: u32,
    /// When the window closes; `None` when no window is open (the customer never wrote, or
    /// wrote more than 48 hours ago).
    pub closes_at: Option<SystemTime>,
}

/// Why the budget refused a reservation. Nothing was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// No customer message opened a window in the last 48 hours: WeCom would answer 95002.
    NoWindow,
    /// Fewer replies are left than asked for: WeCom would answer 95001 past the fifth.
    NotEnough {
        /// Replies asked for.
        needed: u32,
        /// Replies left.
        left: u32,
        /// When the window closes.
        closes_at: Option<SystemTime>,
    },
    /// The budget's store failed; nothing was reserved.
    Store(String),
}

impl std::fmt::Display for BudgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetError::NoWindow => f.write_str(
                "no reply window is open: the customer has not written in the last 48 hours (WeCom would refuse with 95002)",
            ),
            BudgetError::NotEnough { needed, left, .. } => {
                f.write_str(&not_enough(*needed, *left))
            }
            BudgetError::Store(why) => write!(f, "the reply budget's store failed: {why}"),
        }
    }
}

impl std::error::Error for BudgetError {}

fn not_enough(needed: u32, left: u32) -> String {
    let replies = |n: u32| {
        if n == 1 {
            "1 reply".to_owned()
        } else {
            format!("{n} replies")
        }
    };
    format!(
        "{} asked for, {} left until the customer writes again (5 per customer message, counted from the latest; WeCom would refuse with 95001)",
        replies(needed),
        if left == 0 {
            "none".to_owned()
        } else {
            left.to_string()
        }
    )
}

/// One customer's window, as a [`BudgetStore`] keeps it. Times are unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// `send_time` of the customer's latest message; 0 for none.
    pub opened_at: u64,
    /// Digests of the messages sent in that second ([`message_digest`]): `send_time` has
    /// whole seconds, so a newer message in the same second is told from a page handed
    /// over again by its msgid.
    pub opened_by: Vec<u64>,
    /// When each reply counted against this window was sent (or may have arrived), in
    /// unix seconds. A newer customer message keeps those sent in or after its second:
    /// WeCom counts a reply against the latest message *it* had when the reply came, which
    /// may be one this process had not pulled yet.
    pub sent_at: Vec<u64>,
    /// Replies reserved and not yet sent. They carry over when the customer writes again:
    /// they will be sent after the new message, so they count against the new window.
    pub held: u32,
}

impl Window {
    /// Replies counted against the window.
    pub fn sent(&self) -> u32 {
        u32::try_from(self.sent_at.len()).unwrap_or(u32::MAX)
    }

    /// What the window allows at `now` (unix seconds).
    pub fn allowance(&self, now: u64) -> Allowance {
        let closes = self.opened_at.saturating_add(REPLY_WINDOW.as_secs());
        if self.opened_at == 0 || now > closes {
            return Allowance {
                left: 0,
                closes_at: None,
            };
        }
        let used = self.sent().saturating_add(self.held);
        Allowance {
            left: REPLIES_PER_MESSAGE.saturating_sub(used),
            closes_at: UNIX_EPOCH.checked_add(Duration::from_secs(closes)),
        }
    }
}

/// What happened to a reserved reply, for [`BudgetStore::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The customer wrote message `digest` ([`message_digest`]) at unix second `at`: a
    /// newer message opens a new window; one seen before changes nothing.
    CustomerWrote {
        /// When the message was sent, in unix seconds.
        at: u64,
        /// The message's digest.
        digest: u64,
    },
    /// Take `n` replies for sending, if that many are left at this unix second.
    Reserve {
        /// How many replies.
        n: u32,
        /// The time, in unix seconds.
        now: u64,
    },
    /// A reserved reply was sent, or may have arrived, by unix second `at`: it counts.
    Sent {
        /// When it was sent, in unix seconds.
        at: u64,
    },
    /// A reserved reply surely did not leave: it is given back.
    NotSent,
    /// WeCom said no reply is left (95001, or a `msg_send_fail` for the count) in the
    /// window open at unix second `since`: unless the customer wrote after it, none is
    /// left until they write again.
    Exhausted {
        /// When that window opened, in unix seconds.
        since: u64,
    },
    /// WeCom said the window open at unix second `since` is closed (95002, or a
    /// `msg_send_fail` for the window).
    Closed {
        /// When that window opened, in unix seconds.
        since: u64,
    },
}

impl Window {
    /// Applies `change`; for a reservation, whether it was granted.
    pub fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::CustomerWrote { at, digest } => {
                if at > self.opened_at {
                    self.opened_at = at;
                    self.opened_by.clear();
                }
                if at == self.opened_at && !self.opened_by.contains(&digest) {
                    if self.opened_by.len() >= OPENED_BY_KEPT {
                        self.opened_by.remove(0);
                    }
                    self.opened_by.push(digest);
                    // Replies sent in the message's second may have come after it: they
                    // stay counted (seconds are all `send_time` has).
                    self.sent_at.retain(|sent| *sent >= at);
                }
                true
            }
            Change::Reserve { n, now } => {
                let granted = n == 0 || self.allowance(now).left >= n;
                if granted {
                    self.held = self.held.saturating_add(n);
                }
                granted
            }
            Change::Sent { at } => {
                self.held = self.held.saturating_sub(1);
                self.sent_at.push(at);
                true
            }
            Change::NotSent => {
                self.held = self.held.saturating_sub(1);
                true
            }
            // Only for the window that was open then: a newer message reset it.
            Change::Exhausted { since } => {
                if self.opened_at <= since {
                    let missing = REPLIES_PER_MESSAGE.saturating_sub(self.sent());
                    self.sent_at
                        .extend(std::iter::repeat_n(since, missing as usize));
                }
                true
            }
            Change::Closed { since } => {
                if self.opened_at <= since {
                    *self = Window {
                        held: self.held,
                        ..Window::default()
                    };
                }
                true
            }
        }
    }
}

/// Where windows live. Every change is read, applied and written at once (a Redis store
/// does it in one script), so replicas sharing a store never hand out a reply twice.
pub trait BudgetStore: Send + Sync + 'static {
    /// Applies `change` to the customer's window; returns whether it was granted (always
    /// `true` but for [`Change::Reserve`]) and the window after it.
    fn update<'a>(
        &'a self,
        customer: &'a Customer,
        change: Change,
    ) -> BoxFuture<'a, Result<(bool, Window), StoreError>>;

    /// The customer's window as it stands.
    fn window<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Window, StoreError>>;

    /// Whether every replica of the bot keeps its windows here, across restarts (Redis):
    /// then the budget has seen every message any replica pulled, and the bot runtime
    /// doesn't show a turn's messages to it again. By default `false`.
    fn is_shared(&self) -> bool {
        false
    }
}

/// Windows in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryBudgetStore {
    windows: Mutex<crate::map::Map<Customer, Window>>,
}

impl MemoryBudgetStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut crate::map::Map<Customer, Window>) -> T) -> T {
        f(&mut crate::mutex::lock(&self.windows))
    }
}

impl BudgetStore for MemoryBudgetStore {
    fn update<'a>(
        &'a self,
        customer: &'a Customer,
        change: Change,
    ) -> BoxFuture<'a, Result<(bool, Window), StoreError>> {
        let result = self.with(|windows| {
            crate::map::change(windows, customer, |window| {
                (window.apply(change), window.clone())
            })
        });
        Box::pin(async move { Ok(result) })
    }

    fn window<'a>(&'a self, customer: &'a Customer) -> BoxFuture<'a, Result<Window, StoreError>> {
        let window = self.with(|windows| windows.get(customer).cloned().unwrap_or_default());
        Box::pin(async move { Ok(window) })
    }
}

/// The reply budget of every customer. Cheap to clone; clones share the store.
///
/// ```no_run
/// # async fn run(client: wecom_kf::Client, msg: wecom_kf::types::ReceivedMsg) -> Result<(), Box<dyn std::error::Error>> {
/// use wecom_kf::reply::{Customer, ReplyBudget};
///
/// let budget = ReplyBudget::in_memory();
/// budget.observe(&msg).await?; // every message the sync stream hands over
/// let alice = Customer::new("wkKFID", "wmALICE");
/// let mut permit = budget.reserve(&alice, 2).await?; // refused here if 2 aren't left
/// permit.send(client.send_text("wmALICE", "wkKFID", "第一段")).await?;
/// permit.send(client.send_text("wmALICE", "wkKFID", "第二段")).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReplyBudget {
    store: Arc<dyn BudgetStore>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl std::fmt::Debug for ReplyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyBudget").finish_non_exhaustive()
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn store_error(error: StoreError) -> BudgetError {
    BudgetError::Store(error.to_string())
}

impl ReplyBudget {
    /// A budget kept in `store` (memory, or Redis to share it between replicas).
    pub fn new(store: impl BudgetStore) -> Self {
        ReplyBudget {
            store: Arc::new(store),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// A budget in this process's memory.
    pub fn in_memory() -> Self {
        Self::new(MemoryBudgetStore::new())
    }

    /// Reads the time from `clock` instead of the system clock: WeCom's clock, or a
    /// simulator's.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn now(&self) -> u64 {
        unix_secs((self.clock)())
    }

    /// Learns from one item of `sync_msg`: a customer's message opens a new window (from
    /// its `send_time`), and a `msg_send_fail` for the count or the window corrects it.
    /// Feed it every item, in order, before the replies to them are sent.
    pub async fn observe(&self, message: &ReceivedMsg) -> Result<(), BudgetError> {
        let Some(change) = self.change_for(message) else {
            return Ok(());
        };
        let (customer, change) = change;
        self.store
            .update(&customer, change)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    fn change_for(&self, message: &ReceivedMsg) -> Option<(Customer, Change)> {
        if let Received::Event(Event::MsgSendFail(fail)) = &message.content {
            let customer = Customer::new(fail.open_kfid.clone()?, fail.external_userid.clone()?);
            // The failure is of the window open when it was reported.
            let since = message.send_time.unwrap_or_else(|| self.now());
            return match fail.fail_type {
                Some(FailType::OverMessageLimit) => Some((customer, Change::Exhausted { since })),
                Some(FailType::SessionExpired) => Some((customer, Change::Closed { since })),
                _ => None,
            };
        }
        if message.origin != Some(Origin::Customer) || matches!(message.content, Received::Event(_))
        {
            return None;
        }
        let customer = Customer::new(message.open_kfid.clone()?, message.external_userid.clone()?);
        let at = message.send_time.unwrap_or_else(|| self.now());
        let digest = message_digest(message);
        Some((customer, Change::CustomerWrote { at, digest }))
    }

    /// Whether its store is shared by every replica ([`BudgetStore::is_shared`]).
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    /// What `customer`'s window allows now.
    pub async fn allowance(&self, customer: &Customer) -> Result<Allowance, BudgetError> {
        let window = self.store.window(customer).await.map_err(store_error)?;
        Ok(window.allowance(self.now()))
    }

    /// Takes `n` replies for `customer`, or refuses at once, sending nothing, when fewer
    /// are left. Send through the [`Permit`]; replies it didn't send are given back when
    /// it is [`finish`](Permit::finish)ed or dropped.
    pub async fn reserve(&self, customer: &Customer, n: u32) -> Result<Permit, BudgetError> {
        let now = self.now();
        let (granted, window) = self
            .store
            .update(customer, Change::Reserve { n, now })
            .await
            .map_err(store_error)?;
        if !granted {
            let allowance = window.allowance(now);
            return Err(match allowance.closes_at {
                None => BudgetError::NoWindow,
                Some(closes_at) => BudgetError::NotEnough {
                    needed: n,
                    left: allowance.left,
                    closes_at: Some(closes_at),
                },
            });
        }
        Ok(Permit {
            store: self.store.clone(),
            clock: self.clock.clone(),
            customer: customer.clone(),
            opened_at: window.opened_at,
            left: n,
        })
    }
}

/// Replies reserved for one customer. Each [`send`](Self::send) uses one; what is not
/// used goes back to the budget.
#[must_use = "a permit does nothing until replies are sent through it"]
pub struct Permit {
    store: Arc<dyn BudgetStore>,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
    customer: Customer,
    /// The window the reservation was made in: WeCom's refusals correct only that one.
    opened_at: u64,
    left: u32,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("customer", &self.customer)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

/// Why [`Permit::send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The permit's replies are used up; nothing was sent.
    PermitUsed,
    /// The send failed; the budget was corrected from what the error says.
    Failed(Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::PermitUsed => f.write_str("the permit's replies are used up; reserve more"),
            SendError::Failed(error) => std::fmt::Display::fmt(error, f),
        }
    }
}

// `Failed` is transparent: its source is the client error's own.
impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::PermitUsed => None,
            SendError::Failed(error) => error.source(),
        }
    }
}

impl From<Error> for SendError {
    fn from(error: Error) -> Self {
        SendError::Failed(error)
    }
}

impl SendError {
    /// The client's error, when the send was attempted.
    pub fn client_error(&self) -> Option<&Error> {
        match self {
            SendError::Failed(error) => Some(error),
            SendError::PermitUsed => None,
        }
    }
}

impl Permit {
    /// Replies this permit may still send.
    pub fn left(&self) -> u32 {
        self.left
    }

    /// Sends one reply with it (any call of the client: `send_text`, `send_msg`, …). A
    /// reply that surely did not leave is given back; one that may have arrived counts;
    /// WeCom's 95001 and 95002 close the window for every later reservation.
    pub async fn send<T>(
        &mut self,
        call: impl std::future::IntoFuture<Output = Result<T, Error>>,
    ) -> Result<T, SendError> {
        if self.left == 0 {
            return Err(SendError::PermitUsed);
        }
        self.left -= 1;
        let outcome = call.into_future().await;
        // Stamped when the answer came: the latest WeCom could have counted it.
        let at = unix_secs((self.clock)());
        let change = match &outcome {
            Ok(_) => Change::Sent { at },
            Err(error) if error.delivery() == Delivery::NotSent => Change::NotSent,
            Err(_) => Change::Sent { at },
        };
        self.record(change).await;
        if let Err(error) = &outcome {
            let correction = match error.code() {
                Some(ErrCode::SendCountLimit) => Some(Change::Exhausted {
                    since: self.opened_at,
                }),
                Some(ErrCode::SendTimeLimit) => Some(Change::Closed {
                    since: self.opened_at,
                }),
                _ => None,
            };
            if let Some(correction) = correction {
                self.record(correction).await;
            }
        }
        Ok(outcome?)
    }

    async fn record(&self, change: Change) {
        if let Err(error) = self.store.update(&self.customer, change).await {
            tracing::warn!(%error, ?change, "could not update the reply budget");
        }
    }

    /// Gives back the replies not sent.
    pub async fn finish(mut self) {
        let unused = std::mem::take(&mut self.left);
        for _ in 0..unused {
            self.record(Change::NotSent).await;
        }
    }
}

impl Drop for Permit {
    /// A permit dropped unfinished gives its unused replies back in the background.
    fn drop(&mut self) {
        let unused = std::mem::take(&mut self.left);
        if unused == 0 {
            return;
        }
        let (store, customer) = (self.store.clone(), self.customer.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for _ in 0..unused {
                    if let Err(error) = store.update(&customer, Change::NotSent).await {
                        tracing::warn!(%error, "could not give unused replies back to the budget");
                        return;
                    }
                }
            });
        }
    }
}

impl crate::sync::Observer for ReplyBudget {
    fn observe<'a>(&'a self, page: &'a crate::sync::Page) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for message in &page.messages {
                ReplyBudget::observe(self, message).await?;
            }
            Ok(())
        })
    }
}
