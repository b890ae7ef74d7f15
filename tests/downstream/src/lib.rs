//! A user's crate: one `endpoints!` line turns `idconvert.toml` into the modules `types`
//! and `builders` and a `ClientExt` trait with a `convert_open_kfid` method on
//! `wecom_kf::Client`. It depends on wecom-kf under another name, `kf`, which the macro
//! call passes on.

kf::endpoints!("idconvert.toml", crate = ::kf);
