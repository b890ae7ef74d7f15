//! The one-time codes `send_msg_on_event` answers with: where each comes from, how long it
//! lasts, and what it may carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{ChangeType, Event, Received, ReceivedMsg, Secret};

/// Which moment of a session a code answers (doc 95122).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// `enter_session`'s `welcome_code`: a welcome, within 20 s.
    Welcome,
    /// `service_state/trans` to the queue: a queue notice, within 48 h.
    Queue,
    /// A servicer took the session (`session_status_change` 1, or `trans` to a servicer):
    /// a greeting or off-hours notice, within 48 h.
    Pickup,
    /// The session ended (`session_status_change` 3, or `trans` to ended): a closing
    /// message or survey, within 20 s.
    Closing,
}

impl CodeKind {
    /// How long a code of this kind may be used.
    pub fn lifetime(self) -> Duration {
        match self {
            CodeKind::Welcome | CodeKind::Closing => Duration::from_secs(20),
            CodeKind::Queue | CodeKind::Pickup => Duration::from_secs(48 * 3600),
        }
    }

    /// Whether a menu may answer it (text always may).
    pub fn allows_menu(self) -> bool {
        matches!(self, CodeKind::Welcome | CodeKind::Closing)
    }
}

/// A one-time code with when it was issued: one message may answer it before it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCode {
    /// The code; redacted in `Debug`, as anyone holding it may write to the customer.
    pub code: Secret,
    /// Which moment it answers.
    pub kind: CodeKind,
    /// When WeCom issued it (the event's `send_time`, or when the call answered).
    pub issued_at: SystemTime,
}

impl EventCode {
    /// A code of `kind` issued at `issued_at`.
    pub fn new(code: impl Into<String>, kind: CodeKind, issued_at: SystemTime) -> Self {
        EventCode {
            code: Secret::new(code.into()),
            kind,
            issued_at,
        }
    }

    /// The code an item of `sync_msg` carries: `enter_session`'s welcome code, or the code
    /// of a `session_status_change` to a servicer or to ended.
    pub fn from_message(message: &ReceivedMsg) -> Option<Self> {
        let Received::Event(event) = &message.content else {
            return None;
        };
        let (code, kind) = match event {
            Event::EnterSession(e) => (e.welcome_code.as_ref()?, CodeKind::Welcome),
            Event::SessionStatusChange(e) => {
                let kind = match e.change_type? {
                    ChangeType::PickedUp => CodeKind::Pickup,
                    ChangeType::Ended => CodeKind::Closing,
                    _ => return None,
                };
                (e.msg_code.as_ref()?, kind)
            }
            _ => return None,
        };
        let issued_at = message
            .send_time
            .and_then(|t| UNIX_EPOCH.checked_add(Duration::from_secs(t)))
            .unwrap_or_else(SystemTime::now);
        Some(EventCode::new(code.clone(), kind, issued_at))
    }

    /// When it stops working.
    pub fn expires_at(&self) -> SystemTime {
        self.issued_at
            .checked_add(self.kind.lifetime())
            .unwrap_or(self.issued_at)
    }

    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.expires_at()
    }
}
