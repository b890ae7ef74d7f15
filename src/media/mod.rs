//! What customers send: telling the format of a file from its bytes.

mod sniff;

pub use sniff::{MediaFormat, MediaInfo};
