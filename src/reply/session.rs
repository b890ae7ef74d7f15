//! Who serves each customer: the bot, a queue, a human, or nobody. WeCom lets the bot send
//! only in states 0 (new) and 1 (smart assistant); elsewhere a send answers 95018, the
//! error bots report most. The tracker learns the state from `session_status_change`
//! events, from the bot's own sends and hand-offs, and from `service_state/get`, so a bot
//! stays quiet while a human serves.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::mutex::lock;
use crate::sync::Page;
use crate::token::BoxFuture;
use crate::token::StoreError;
use crate::{ChangeType, Event, Received, ReceivedMsg, ServiceState, ServicerStatus};

use super::Customer;

/// What is known of one customer's session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionView {
    /// The state, once an event, a send or a query told it; `None` while unknown.
    pub state: Option<ServiceState>,
    /// The servicer serving it, in state 3.
    pub servicer: Option<String>,
}

impl SessionView {
    /// Whether a send by the bot can be accepted: the state is new, the smart assistant's,
    /// or not known (then WeCom decides).
    pub fn bot_may_reply(&self) -> bool {
        matches!(
            self.state,
            None | Some(ServiceState::New | ServiceState::SmartAssistant)
        )
    }
}

/// Why the bot may not send to a customer now, and what to do about it: 95018, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRefusal {
    /// A human servicer serves the customer; WeCom gives the session back to no bot.
    HumanHasIt {
        /// The servicer's userid, when known.
        servicer: Option<String>,
    },
    /// The session waits in the queue for a servicer: answer the queue code instead.
    Queued,
    /// The session ended: the customer must write again to open a new one.
    Ended,
}

impl std::fmt::Display for SessionRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionRefusal::HumanHasIt { servicer } => write!(
                f,
                "a human servicer ({}) has the session: stay quiet until it ends (95018)",
                servicer.as_deref().unwrap_or("unknown")
            ),
            SessionRefusal::Queued => f.write_str(
                "the session waits in the queue for a servicer: answer with the queue notice code, not send_msg (95018)",
            ),
            SessionRefusal::Ended => {
                f.write_str("the session has ended: wait until the customer writes again (95018)")
            }
        }
    }
}

impl std::error::Error for SessionRefusal {}

impl SessionRefusal {
    /// The refusal for a state the bot can't send in; `None` for states it can.
    pub fn for_state(view: &SessionView) -> Option<Self> {
        match view.state? {
            ServiceState::Servicer => Some(SessionRefusal::HumanHasIt {
                servicer: view.servicer.clone(),
            }),
            ServiceState::Queued => Some(SessionRefusal::Queued),
            ServiceState::Ended => Some(SessionRefusal::Ended),
            _ => None,
        }
    }
}

/// The sessions of every customer, in this process's memory. Show it every page
/// ([`SyncStream::observe`](crate::SyncStream::observe)) and tell it of sends.
#[derive(Debug, Default)]
pub struct SessionTracker {
    sessions: Mutex<crate::map::Map<Customer, SessionView>>,
    /// Servicers receiving, per account: with any online, WeCom routes new sessions to them.
    receiving: Mutex<HashMap<String, HashSet<String>>>,
}

impl SessionTracker {
    /// Knows nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is known of `customer`'s session.
    pub fn view(&self, customer: &Customer) -> SessionView {
        lock(&self.sessions)
            .get(customer)
            .cloned()
            .unwrap_or_default()
    }

    /// Records what is known of `customer`'s session (from `service_state/get`, a
    /// hand-off, a 95018).
    pub fn set(&self, customer: &Customer, view: SessionView) {
        lock(&self.sessions).insert(customer.clone(), view);
    }

    /// The bot's send was accepted: a new session (0) is the smart assistant's (1) now.
    pub fn sent(&self, customer: &Customer) {
        crate::map::change(&mut lock(&self.sessions), customer, |view| {
            if matches!(view.state, None | Some(ServiceState::New)) {
                view.state = Some(ServiceState::SmartAssistant);
            }
        });
    }

    /// Servicers of `open_kfid` receiving now, as their status events told.
    pub fn servicers_receiving(&self, open_kfid: &str) -> usize {
        lock(&self.receiving).get(open_kfid).map_or(0, HashSet::len)
    }

    /// Learns from one item of `sync_msg`.
    pub fn learn(&self, message: &ReceivedMsg) {
        match &message.content {
            Received::Event(Event::SessionStatusChange(change)) => {
                let Some(customer) = message.customer() else {
                    return;
                };
                let view = match change.change_type {
                    Some(ChangeType::PickedUp | ChangeType::Transferred | ChangeType::Reopened) => {
                        SessionView {
                            state: Some(ServiceState::Servicer),
                            servicer: change.new_servicer_userid.clone(),
                        }
                    }
                    Some(ChangeType::Ended) => SessionView {
                        state: Some(ServiceState::Ended),
                        servicer: None,
                    },
                    _ => SessionView::default(),
                };
                self.set(&customer, view);
            }
            Received::Event(Event::ServicerStatusChange(change)) => {
                let (Some(open_kfid), Some(servicer)) =
                    (change.open_kfid.clone(), change.servicer_userid.clone())
                else {
                    return;
                };
                let mut receiving = lock(&self.receiving);
                let servicers = receiving.entry(open_kfid).or_default();
                match change.status {
                    Some(ServicerStatus::Receiving) => servicers.insert(servicer),
                    _ => servicers.remove(&servicer),
                };
            }
            _ if message.is_customer_input() => {
                // A customer writing to an ended session starts a new one; whether WeCom
                // gives it to the bot or a servicer is not known until it says.
                let Some(customer) = message.customer() else {
                    return;
                };
                let mut sessions = lock(&self.sessions);
                if let Some(view) = sessions.get_mut(&customer)
                    && view.state == Some(ServiceState::Ended)
                {
                    *view = SessionView::default();
                }
            }
            _ => {}
        }
    }
}

impl crate::sync::Observer for SessionTracker {
    fn observe<'a>(&'a self, page: &'a Page) -> BoxFuture<'a, Result<(), StoreError>> {
        for message in &page.messages {
            self.learn(message);
        }
        Box::pin(async { Ok(()) })
    }
}

impl crate::sync::Observer for std::sync::Arc<SessionTracker> {
    fn observe<'a>(&'a self, page: &'a Page) -> BoxFuture<'a, Result<(), StoreError>> {
        crate::sync::Observer::observe(self.as_ref(), page)
    }
}
