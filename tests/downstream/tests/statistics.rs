//! The generated `get_corp_statistic` works end to end, and the crate needs nothing but wecom-kf.

#[path = "../../common/mod.rs"]
mod common;

use common::{MockServer, Reply};
use downstream_statistics::{ClientExt as _, StatisticDay};
use serde_json::json;

#[tokio::test]
async fn get_corp_statistic_round_trips_against_a_local_server() {
    let server = MockServer::start().await;
    server.script(
        "/cgi-bin/kf/get_corp_statistic",
        [Reply::Json(json!({
            "errcode": 0, "errmsg": "ok",
            "statistic_list": [{
                "stat_time": 1_700_000_000u64,
                "statistic": {"session_cnt": 7, "customer_cnt": 5}
            }]
        }))],
    );
    let client = server.client();
    let answer = client
        .get_corp_statistic(
            "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q",
            1_699_920_000,
            1_700_000_000,
        )
        .await
        .expect("get_corp_statistic");
    let [
        StatisticDay {
            stat_time,
            statistic,
        },
    ] = answer.statistic_list.as_slice()
    else {
        panic!("one day expected: {answer:?}");
    };
    assert_eq!(*stat_time, 1_700_000_000);
    assert_eq!(
        statistic.as_ref().map(|s| &s["session_cnt"]),
        Some(&json!(7))
    );

    let sent = server.requests_to("/cgi-bin/kf/get_corp_statistic");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].body,
        json!({"open_kfid": "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q", "start_time": 1_699_920_000u64, "end_time": 1_700_000_000u64})
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
        .get_corp_statistic("k".repeat(65), 0, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, wecom_kf::Error::Invalid { field, .. } if field == "open_kfid"),
        "{err}"
    );
    assert!(
        server
            .requests_to("/cgi-bin/kf/get_corp_statistic")
            .is_empty()
    );
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
