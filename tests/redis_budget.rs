//! The reply budget shared by replicas on a real `redis-server`: concurrent reservations
//! from several processes never hand out more than WeCom allows.
#![cfg(feature = "redis")]

mod common;

use common::redis_server::RedisServer;
use serde_json::json;
use wecom_kf::reply::{BudgetError, BudgetStore, Customer, ReplyBudget};
use wecom_kf::types::ReceivedMsg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reserving_at_once_get_five_replies_in_all() {
    let redis = RedisServer::start();
    // Every replica keeps its windows there: the bot runtime counts on it having seen
    // every message pulled, by any replica.
    assert!(redis.connect().await.budget_store().is_shared());
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(ReplyBudget::new(redis.connect().await.budget_store()));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let said: ReceivedMsg = serde_json::from_value(
        json!({"msgid": "m1", "open_kfid": "wk1", "external_userid": "wmALICE",
        "send_time": now, "origin": 3, "msgtype": "text", "text": {"content": "hi"}}),
    )
    .unwrap();
    // Every replica sees the page (they all may: observing twice is harmless).
    for budget in &replicas {
        budget.observe(&said).await.expect("redis");
    }
    let alice = Customer::new("wk1", "wmALICE");
    let tries: Vec<_> = (0..20)
        .map(|i| {
            let (budget, alice) = (replicas[i % replicas.len()].clone(), alice.clone());
            tokio::spawn(async move {
                let permit = budget.reserve(&alice, 1).await;
                // Keep what was granted: a permit dropped unused would give it back.
                permit.map(std::mem::forget)
            })
        })
        .collect();
    let mut granted = 0;
    for attempt in tries {
        match attempt.await.expect("task") {
            Ok(()) => granted += 1,
            Err(BudgetError::NotEnough { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(granted, 5);
    let left = replicas[0].allowance(&alice).await.expect("redis").left;
    assert_eq!(left, 0);
}
