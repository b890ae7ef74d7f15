//! A user's crate: one `endpoints!` line turns `idconvert.toml` into types and a
//! `ClientExt` trait with a `convert_open_kfid` method on `wecom_kf::Client`.

wecom_kf::endpoints!("idconvert.toml");
