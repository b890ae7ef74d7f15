//! A user's crate: one `endpoints!` line turns `accounts.toml` into types and a
//! `ClientExt` trait with an `account_list` method on `wecom_kf::Client`.

wecom_kf::endpoints!("accounts.toml");
