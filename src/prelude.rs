//! What a bot imports: `use wecom_kf::prelude::*;` brings the client, its errors, the sync
//! stream and its stores, the bot runtime, and the message types a handler matches on or
//! answers with.

#[cfg(feature = "bot")]
pub use crate::bot::{Answer, Bot, FileBotStore, MemoryBotStore};
#[cfg(feature = "reply")]
pub use crate::reply::Turn;
pub use crate::sync::{Page, SyncError};
pub use crate::types::{
    Event, File, Image, Link, Location, Menu, MenuItem, MiniProgram, OutgoingMsg, Received,
    ReceivedMsg, Text, Video, Voice,
};
pub use crate::{
    Client, CursorStore, ErrCode, Error, FileCursorStore, MemoryCursorStore, SyncStream, Upload,
};
