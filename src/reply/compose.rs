//! Long answers as WeChat text messages (being written).
