//! A user's crate: one `endpoints!` line turns `statistics.toml` into types and a
//! `ClientExt` trait with a `get_corp_statistic` method on `wecom_kf::Client`.

wecom_kf::endpoints!("statistics.toml");
