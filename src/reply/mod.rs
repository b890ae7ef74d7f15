//! Replying like a good bot: long answers split to WeChat's limits, the reply budget, the
//! session's state and the one-time event codes.

mod budget;
mod codes;
mod compose;
mod input;
mod replier;
mod session;

pub use budget::{
    Allowance, BudgetError, BudgetStore, Change, Customer, MemoryBudgetStore, Permit,
    REPLIES_PER_MESSAGE, REPLY_WINDOW, ReplyBudget, SendError, Window, message_digest,
};
pub use codes::{CodeKind, EventCode};
pub use compose::*;
pub use input::{Turn, turns};
pub use replier::{Replier, ReplyError};
pub use session::{SessionRefusal, SessionTracker, SessionView};
