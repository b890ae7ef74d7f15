//! Sending the way WeCom allows it: within the budget, only while the bot has the session,
//! on codes that are still valid, with 95018 explained.

use std::sync::Arc;
use std::time::SystemTime;

use crate::sync::Page;
use crate::token::BoxFuture;
use crate::token::StoreError;
use crate::{
    Client, ErrCode, Error, OutgoingMsg, ReceivedMsg, SendMsgOnEventMessage, ServiceState,
};

use super::{
    BudgetError, CodeKind, Composer, Customer, EventCode, OverBudget, ReplyBudget, SendError,
    SessionRefusal, SessionTracker, SessionView,
};

/// Why a reply was not sent (or not all of it).
#[derive(Debug)]
pub enum ReplyError {
    /// The bot doesn't have the session: known before sending, or learned from a 95018
    /// (then `service_state/get` said why). Nothing more was sent.
    Session(SessionRefusal),
    /// The budget has not enough replies left; nothing was sent.
    Budget(BudgetError),
    /// The one-time code expired before it was used; nothing was sent.
    CodeExpired {
        /// Which code.
        kind: CodeKind,
    },
    /// A menu can't answer this kind of code (only text can); nothing was sent.
    MenuNotAllowed {
        /// Which code.
        kind: CodeKind,
    },
    /// The answer needs more messages than the budget has left; nothing was sent. Choose:
    /// [`OverBudget::send_what_fits`] and keep the rest, or [`OverBudget::shorten`], then
    /// [`Replier::send_texts`].
    TooLong(OverBudget),
    /// A send failed; `sent` parts went out before it (their msgids).
    Send {
        /// The msgids of the parts accepted before the failure.
        sent: Vec<String>,
        /// What failed.
        error: Error,
    },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::Session(refusal) => std::fmt::Display::fmt(refusal, f),
            ReplyError::Budget(error) => std::fmt::Display::fmt(error, f),
            ReplyError::CodeExpired { kind } => {
                write!(f, "the {kind:?} code expired; WeCom would refuse it")
            }
            ReplyError::MenuNotAllowed { kind } => {
                write!(f, "a {kind:?} code may be answered with text only")
            }
            ReplyError::TooLong(over) => std::fmt::Display::fmt(over, f),
            ReplyError::Send { sent, .. } => write!(
                f,
                "sending part {} failed after {} went out",
                sent.len() + 1,
                sent.len()
            ),
        }
    }
}

// `Session`, `Budget` and `TooLong` are transparent: their sources are their own.
impl std::error::Error for ReplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReplyError::Session(refusal) => refusal.source(),
            ReplyError::Budget(error) => error.source(),
            ReplyError::TooLong(over) => over.source(),
            ReplyError::Send { error, .. } => Some(error),
            ReplyError::CodeExpired { .. } | ReplyError::MenuNotAllowed { .. } => None,
        }
    }
}

impl From<BudgetError> for ReplyError {
    fn from(error: BudgetError) -> Self {
        ReplyError::Budget(error)
    }
}

/// Sends replies for a bot: checks the session and the budget first, keeps both up to
/// date, and answers event codes while they are valid. Cheap to clone.
///
/// Show it every page ([`SyncStream::observe`](crate::SyncStream::observe)) so its budget
/// and session tracker learn from what customers and servicers do.
#[derive(Clone)]
pub struct Replier {
    client: Client,
    budget: ReplyBudget,
    sessions: Arc<SessionTracker>,
    composer: Composer,
    clock: Arc<dyn Fn() -> SystemTime + Send + Sync>,
}

impl std::fmt::Debug for Replier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replier")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl Replier {
    /// A replier with a budget and a session tracker in this process's memory.
    pub fn new(client: Client) -> Self {
        Replier {
            client,
            budget: ReplyBudget::in_memory(),
            sessions: Arc::new(SessionTracker::new()),
            composer: Composer::new(),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Renders and splits answers with `composer` (by default: markdown to plain text,
    /// parts of at most 2048 bytes).
    pub fn composer(mut self, composer: Composer) -> Self {
        self.composer = composer;
        self
    }

    /// Uses `budget` (a Redis one, to share it between replicas).
    pub fn budget(mut self, budget: ReplyBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Uses `sessions`, shared with whatever else reads it.
    pub fn sessions(mut self, sessions: Arc<SessionTracker>) -> Self {
        self.sessions = sessions;
        self
    }

    /// Reads the time from `clock` (for the budget too): WeCom's clock, or a simulator's.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + Clone + 'static) -> Self {
        self.budget = self.budget.clock(clock.clone());
        self.clock = Arc::new(clock);
        self
    }

    /// The reply budget it keeps.
    pub fn reply_budget(&self) -> &ReplyBudget {
        &self.budget
    }

    /// The composer its answers go through.
    pub fn composer_of(&self) -> &Composer {
        &self.composer
    }

    /// The session tracker it keeps.
    pub fn session_tracker(&self) -> &Arc<SessionTracker> {
        &self.sessions
    }

    /// Sends `messages` to `customer`, in order, as one reply: refused before anything is
    /// sent if the bot doesn't have the session or the budget hasn't room for all of them.
    /// Returns each message's msgid.
    pub async fn send_all(
        &self,
        customer: &Customer,
        messages: impl IntoIterator<Item = impl Into<OutgoingMsg>>,
    ) -> Result<Vec<String>, ReplyError> {
        let messages = messages.into_iter().map(|m| (None, m.into())).collect();
        self.send_each(customer, messages).await
    }

    /// Sends one message with a msgid of the caller's (a journaled reply's, the same on
    /// every attempt); see [`send_all`](Self::send_all).
    pub async fn send_with_id(
        &self,
        customer: &Customer,
        msgid: &str,
        message: impl Into<OutgoingMsg>,
    ) -> Result<String, ReplyError> {
        let sent = self
            .send_each(customer, vec![(Some(msgid.to_owned()), message.into())])
            .await?;
        Ok(sent.into_iter().next().unwrap_or_default())
    }

    async fn send_each(
        &self,
        customer: &Customer,
        messages: Vec<(Option<String>, OutgoingMsg)>,
    ) -> Result<Vec<String>, ReplyError> {
        if let Some(refusal) = SessionRefusal::for_state(&self.sessions.view(customer)) {
            return Err(ReplyError::Session(refusal));
        }
        let n = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let mut permit = self.budget.reserve(customer, n).await?;
        let mut sent = Vec::with_capacity(messages.len());
        for (msgid, message) in messages {
            let mut call = self.client.send_msg(
                customer.external_userid.as_str(),
                customer.open_kfid.as_str(),
                message,
            );
            if let Some(msgid) = msgid {
                call = call.msgid(msgid);
            }
            match permit.send(call).await {
                Ok(response) => {
                    self.sessions.sent(customer);
                    sent.push(response.msgid);
                }
                Err(SendError::Failed(error)) => {
                    permit.finish().await;
                    return Err(self.explain(customer, sent, error).await);
                }
                Err(SendError::PermitUsed) => break,
            }
        }
        permit.finish().await;
        Ok(sent)
    }

    /// Answers `customer` with `answer` (an LLM's markdown, say): rendered as plain text,
    /// split into WeChat text messages, and sent only if all of them fit what the budget has
    /// left — else [`ReplyError::TooLong`], before anything is sent, says how many it needs.
    /// Returns each part's msgid.
    pub async fn reply(
        &self,
        customer: &Customer,
        answer: &str,
    ) -> Result<Vec<String>, ReplyError> {
        if let Some(refusal) = SessionRefusal::for_state(&self.sessions.view(customer)) {
            return Err(ReplyError::Session(refusal));
        }
        let left = self.budget.allowance(customer).await?.left;
        let parts = self
            .composer
            .compose(answer)
            .fit(left)
            .map_err(ReplyError::TooLong)?;
        self.send_texts(customer, parts).await
    }

    /// Sends ready parts (from [`OverBudget::send_what_fits`] or
    /// [`OverBudget::shorten`]) as text messages; see [`send_all`](Self::send_all).
    pub async fn send_texts(
        &self,
        customer: &Customer,
        parts: impl IntoIterator<Item = String>,
    ) -> Result<Vec<String>, ReplyError> {
        self.send_all(customer, parts.into_iter().map(crate::Text::new))
            .await
    }

    /// Sends one message to `customer`; see [`send_all`](Self::send_all).
    pub async fn send(
        &self,
        customer: &Customer,
        message: impl Into<OutgoingMsg>,
    ) -> Result<String, ReplyError> {
        let mut sent = self.send_all(customer, [message.into()]).await?;
        Ok(sent.pop().unwrap_or_default())
    }

    /// A failed send, with 95018 turned into why the bot may not send.
    async fn explain(&self, customer: &Customer, sent: Vec<String>, error: Error) -> ReplyError {
        if error.code() != Some(ErrCode::SessionStateForbidsSending) {
            return ReplyError::Send { sent, error };
        }
        let asked = self
            .client
            .service_state_get(
                customer.open_kfid.as_str(),
                customer.external_userid.as_str(),
            )
            .await;
        let view = match asked {
            Ok(state) => SessionView {
                state: Some(state.service_state),
                servicer: state.servicer_userid,
            },
            // WeCom said 95018 but not why: a human is the usual reason.
            Err(_) => SessionView {
                state: Some(ServiceState::Servicer),
                servicer: None,
            },
        };
        self.sessions.set(customer, view.clone());
        match SessionRefusal::for_state(&view) {
            Some(refusal) => ReplyError::Session(refusal),
            None => ReplyError::Send { sent, error },
        }
    }

    /// Answers a one-time event code with one message, unless it has expired (or is a
    /// menu on a code that takes text only): then nothing is sent.
    pub async fn answer_code(
        &self,
        code: &EventCode,
        message: impl SendMsgOnEventMessage,
    ) -> Result<String, ReplyError> {
        let message: OutgoingMsg = message.into();
        if code.is_expired((self.clock)()) {
            return Err(ReplyError::CodeExpired { kind: code.kind });
        }
        if matches!(message, OutgoingMsg::Menu(_)) && !code.kind.allows_menu() {
            return Err(ReplyError::MenuNotAllowed { kind: code.kind });
        }
        let answer = self
            .client
            .send_msg_on_event(code.code.expose(), OnEventMessage(message))
            .await;
        answer
            .map(|response| response.msgid)
            .map_err(|error| ReplyError::Send {
                sent: Vec::new(),
                error,
            })
    }

    /// Welcomes the customer of an `enter_session` item with `text`, in one call: `None`
    /// when the item carries no welcome code (WeCom gives none when a welcome was sent in
    /// the last 48 hours, or the customer wrote before).
    pub async fn welcome(
        &self,
        message: &ReceivedMsg,
        text: impl Into<crate::Text>,
    ) -> Result<Option<String>, ReplyError> {
        match EventCode::from_message(message).filter(|c| c.kind == CodeKind::Welcome) {
            Some(code) => self.answer_code(&code, text.into()).await.map(Some),
            None => Ok(None),
        }
    }

    /// Puts the customer in the queue for a human (state 2); returns the queue notice code
    /// when WeCom gives one.
    pub async fn hand_to_queue(
        &self,
        customer: &Customer,
    ) -> Result<Option<EventCode>, ReplyError> {
        self.hand_off(customer, ServiceState::Queued, None, CodeKind::Queue)
            .await
    }

    /// Gives the customer to `servicer_userid` (state 3); returns the pickup code when
    /// WeCom gives one.
    pub async fn hand_to_servicer(
        &self,
        customer: &Customer,
        servicer_userid: &str,
    ) -> Result<Option<EventCode>, ReplyError> {
        self.hand_off(
            customer,
            ServiceState::Servicer,
            Some(servicer_userid),
            CodeKind::Pickup,
        )
        .await
    }

    /// Ends the session (state 4); returns the closing code (20 s) when WeCom gives one.
    pub async fn end_session(&self, customer: &Customer) -> Result<Option<EventCode>, ReplyError> {
        self.hand_off(customer, ServiceState::Ended, None, CodeKind::Closing)
            .await
    }

    async fn hand_off(
        &self,
        customer: &Customer,
        state: ServiceState,
        servicer: Option<&str>,
        kind: CodeKind,
    ) -> Result<Option<EventCode>, ReplyError> {
        let mut call = self.client.service_state_trans(
            customer.open_kfid.as_str(),
            customer.external_userid.as_str(),
            state,
        );
        if let Some(servicer) = servicer {
            call = call.servicer_userid(servicer);
        }
        let answer = call.await.map_err(|error| ReplyError::Send {
            sent: Vec::new(),
            error,
        })?;
        self.sessions.set(
            customer,
            SessionView {
                state: Some(state),
                servicer: servicer.map(str::to_owned),
            },
        );
        let issued_at = (self.clock)();
        Ok(answer
            .msg_code
            .filter(|code| !code.is_empty())
            .map(|code| EventCode::new(code, kind, issued_at)))
    }
}

/// An already-checked message for `send_msg_on_event`: text or menu, as `answer_code` got it.
struct OnEventMessage(OutgoingMsg);

impl From<OnEventMessage> for OutgoingMsg {
    fn from(message: OnEventMessage) -> Self {
        message.0
    }
}

impl SendMsgOnEventMessage for OnEventMessage {}

impl crate::sync::Observer for Replier {
    fn observe<'a>(&'a self, page: &'a Page) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            crate::sync::Observer::observe(self.sessions.as_ref(), page).await?;
            crate::sync::Observer::observe(&self.budget, page).await
        })
    }
}
