//! The generated `convert_open_kfid` works end to end, and the crate needs nothing but wecom-kf.

// The shared test helpers name wecom-kf by its own name.
extern crate kf as wecom_kf;

#[path = "../../common/mod.rs"]
mod common;

use common::{MockServer, Reply};
use downstream_statistics::ClientExt as _;
use downstream_statistics::types::ConvertedKfId;
use serde_json::json;

#[tokio::test]
async fn convert_open_kfid_round_trips_against_a_local_server() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/idconvert/open_kfid",
        [Reply::Json(json!({
            "errcode": 0, "errmsg": "ok",
            "items": [{"open_kfid": "wkCORP1", "new_open_kfid": "wkISV1"}],
            "invalid_open_kfid_list": ["wkGONE"]
        }))],
    );
    let client = server.client();
    let answer = client
        .convert_open_kfid(["wkCORP1", "wkGONE"])
        .await
        .expect("convert_open_kfid");
    let [
        ConvertedKfId {
            open_kfid,
            new_open_kfid,
        },
    ] = answer.items.as_slice()
    else {
        panic!("one id expected: {answer:?}");
    };
    assert_eq!(
        (open_kfid.as_str(), new_open_kfid.as_str()),
        ("wkCORP1", "wkISV1")
    );
    assert_eq!(answer.invalid_open_kfid_list, ["wkGONE"]);

    let sent = server.requests_to("/cgi-bin/idconvert/open_kfid");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body,
        json!({"open_kfid_list": ["wkCORP1", "wkGONE"]})
    );
    assert_eq!(
        sent[0].query.get("access_token").map(String::as_str),
        Some("ACCESS_TOKEN_0_xyz")
    );
}

#[tokio::test]
async fn limits_from_the_users_file_are_checked_before_sending() {
    let server = MockServer::start().await;
    let err = server
        .client()
        .convert_open_kfid(Vec::<String>::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, wecom_kf::Error::Invalid(invalid) if invalid.field == "open_kfid_list"),
        "{err}"
    );
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[test]
fn the_crate_depends_on_wecom_kf_only_under_another_name() {
    let manifest = include_str!("../Cargo.toml");
    let section = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    let deps: Vec<&str> = section
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert!(
        deps[0].starts_with("kf = { package = \"wecom-kf\""),
        "{deps:?}"
    );
}
