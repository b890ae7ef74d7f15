//! Replying like a good bot: long answers split to WeChat's limits, the reply budget, the
//! session's state and the one-time event codes.

mod compose;

pub use compose::*;
