//! The generated `account_list` works end to end, and the crate needs nothing but wecom-kf.

#[path = "../../common/mod.rs"]
mod common;

use common::{MockServer, Reply};
use downstream_accounts::{Account, ClientExt as _};
use serde_json::json;

#[tokio::test]
async fn account_list_round_trips_against_a_local_server() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/account/list",
        [Reply::Json(json!({
            "errcode": 0, "errmsg": "ok",
            "account_list": [{
                "open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q", "name": "咨询客服",
                "avatar": "https://wework.qpic.cn/wwhead/x", "manage_privilege": false
            }]
        }))],
    );
    let client = server.client();
    let page = client
        .account_list()
        .offset(0)
        .limit(100)
        .await
        .expect("account_list");
    assert_eq!(page.account_list.len(), 1);
    let Account {
        open_kfid,
        name,
        manage_privilege,
        ..
    } = &page.account_list[0];
    assert_eq!(open_kfid, "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q");
    assert_eq!(name, "咨询客服");
    assert_eq!(*manage_privilege, Some(false));

    let sent = server.requests_to("/cgi-bin/kf/account/list");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body, json!({"offset": 0, "limit": 100}));
    assert_eq!(
        sent[0].query.get("access_token").map(String::as_str),
        Some("ACCESS_TOKEN_0_xyz")
    );
}

#[tokio::test]
async fn limits_from_the_users_file_are_checked_before_sending() {
    let server = MockServer::start().await;
    let err = server.client().account_list().limit(101).await.unwrap_err();
    assert!(
        matches!(&err, wecom_kf::Error::Invalid { field, .. } if field == "limit"),
        "{err}"
    );
    assert!(server.requests_to("/cgi-bin/kf/account/list").is_empty());
}

#[test]
fn the_crate_depends_on_wecom_kf_only() {
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
        .filter_map(|l| l.split('=').next().map(str::trim))
        .collect();
    assert_eq!(deps, ["wecom-kf"]);
}
