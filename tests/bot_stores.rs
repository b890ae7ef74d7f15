//! What every bot store promises, checked the same way on the memory, file and Redis
//! stores: a page recorded twice adds nothing, the inbox depth follows, messages come back
//! byte for byte, one claim per customer at a time, and a claim that expired or was
//! taken over can change nothing (its fence is refused).

mod common;

use std::time::Duration;

use wecom_kf::bot::{
    BotStore, Claim, ClaimLost, Entry, FileBotStore, Journaled, MemoryBotStore, PlannedPart,
};
use wecom_kf::reply::Customer;
use wecom_kf::types::{ReceivedMsg, Text};

fn message(msgid: &str, user: &str, text: &str) -> ReceivedMsg {
    let raw = format!(
        r#"{{"msgid":"{msgid}","open_kfid":"wkSTORE","external_userid":"{user}","send_time":1700000000,"origin":3,"msgtype":"text","text":{{"content":"{text}"}},"extra_field_kept":1.50}}"#
    );
    serde_json::from_str(&raw).expect("a received message")
}

fn entry(msgid: &str, user: &str, text: &str) -> Entry {
    Entry {
        key: msgid.to_owned(),
        customer: Customer::new("wkSTORE", user),
        message: message(msgid, user, text),
    }
}

fn journal(turn: &str) -> Journaled {
    Journaled {
        turn: turn.to_owned(),
        covers: vec![turn.to_owned()],
        parts: (0..2)
            .map(|i| PlannedPart {
                msgid: format!("{turn}-reply{i}"),
                message: Text::new(format!("part {i}")).into(),
                sent: false,
            })
            .collect(),
    }
}

fn lost(result: Result<impl std::fmt::Debug, wecom_kf::token::StoreError>) -> bool {
    match result {
        Err(error) => ClaimLost::is(error.as_ref()),
        Ok(value) => panic!("a stale claim was obeyed: {value:?}"),
    }
}

async fn records_each_message_once_and_keeps_its_text(store: &dyn BotStore) {
    let alice = Customer::new("wkSTORE", "wmALICE");
    let page = vec![
        entry("m1", "wmALICE", "hi"),
        entry("m2", "wmALICE", "订单 123"),
        entry("m3", "wmBOB", "hello"),
    ];
    let recorded = store.record(page.clone()).await.expect("record");
    assert_eq!((recorded.added, recorded.duplicates), (3, 0));
    assert_eq!(recorded.customers.len(), 2);
    assert_eq!(recorded.depths, [("wkSTORE".to_owned(), 3)]);
    let again = store.record(page).await.expect("record again");
    assert_eq!(
        (again.added, again.duplicates),
        (0, 3),
        "a page handed over again"
    );
    assert!(again.customers.is_empty());

    let work = store.work(&alice).await.expect("work");
    let keys: Vec<&str> = work.pending.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["m1", "m2"], "oldest first");
    assert_eq!(
        work.pending[1].message.raw.as_str(),
        message("m2", "wmALICE", "订单 123").raw.as_str(),
        "byte for byte, the unknown field and its 1.50 included"
    );
    let claim = store
        .claim(&alice, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("free");
    let done = store
        .done(&claim, "m1", &["m1".to_owned(), "m2".to_owned()])
        .await
        .expect("done");
    assert_eq!(done.depth, 1, "bob's message is left");
    assert!(!done.has_work, "alice has nothing left");
    assert!(
        !store.release(&claim).await.expect("release"),
        "nor after letting go"
    );
    let with_work = store.customers_with_work().await.expect("customers");
    assert_eq!(with_work, [Customer::new("wkSTORE", "wmBOB")]);
}

async fn a_stale_claim_changes_nothing(store: &dyn BotStore) {
    let carol = Customer::new("wkSTORE", "wmCAROL");
    store
        .record(vec![entry("c1", "wmCAROL", "在吗")])
        .await
        .expect("record");
    let ttl = Duration::from_millis(300);
    let first: Claim = store
        .claim(&carol, ttl)
        .await
        .expect("claim")
        .expect("free");
    assert!(
        store.claim(&carol, ttl).await.expect("claim").is_none(),
        "one holder at a time"
    );
    assert!(store.renew(&first, ttl).await.expect("renew"));
    // The holder stalls past its claim; another replica takes the customer over.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let second = store
        .claim(&carol, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("expired, so free");
    assert!(second.fence > first.fence, "fences only grow");

    assert!(lost(store.journal(&first, journal("c1")).await));
    assert!(lost(store.failed(&first).await));
    assert!(!store.renew(&first, ttl).await.expect("renew"));
    store
        .journal(&second, journal("c1"))
        .await
        .expect("journal");
    assert!(lost(store.part_sent(&first, "c1", 0).await));
    assert!(lost(store.done(&first, "c1", &["c1".to_owned()]).await));
    store.part_sent(&second, "c1", 0).await.expect("mark");
    // Releasing a stale claim lets go of nothing.
    store.release(&first).await.expect("release");
    assert!(store.claim(&carol, ttl).await.expect("claim").is_none());

    let work = store.work(&carol).await.expect("work");
    let journaled = work.journaled.expect("the holder's journal");
    assert_eq!(
        journaled.parts.iter().map(|p| p.sent).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(work.pending.len(), 1, "the stale done removed nothing");
    assert_eq!(store.failed(&second).await.expect("failed"), 1);
    store
        .done(&second, "c1", &["c1".to_owned()])
        .await
        .expect("done");
    store.release(&second).await.expect("release");
    assert!(store.claim(&carol, ttl).await.expect("claim").is_some());
}

/// A message recorded while its customer is claimed (by a replica whose worker then
/// couldn't claim them) is reported by `done` and again by `release`, so the holder goes
/// on instead of leaving it to the sweep.
async fn work_recorded_meanwhile_is_reported(store: &dyn BotStore) {
    let erin = Customer::new("wkSTORE", "wmERIN");
    store
        .record(vec![entry("e1", "wmERIN", "你好")])
        .await
        .expect("record");
    let claim = store
        .claim(&erin, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("free");
    store
        .record(vec![entry("e2", "wmERIN", "还在吗")])
        .await
        .expect("record");
    let done = store
        .done(&claim, "e1", &["e1".to_owned()])
        .await
        .expect("done");
    assert!(done.has_work, "e2 came while e1 was answered");
    assert!(store.release(&claim).await.expect("release"), "e2 waits");
    let claim = store
        .claim(&erin, Duration::from_secs(5))
        .await
        .expect("claim")
        .expect("released");
    store.journal(&claim, journal("e2")).await.expect("journal");
    let done = store.done(&claim, "other-turn", &[]).await.expect("done");
    assert!(done.has_work, "the reply to e2 is journaled, not closed");
    let done = store
        .done(&claim, "e2", &["e2".to_owned()])
        .await
        .expect("done");
    assert!(!done.has_work);
    assert!(!store.release(&claim).await.expect("release"));
}

async fn check(store: &dyn BotStore) {
    records_each_message_once_and_keeps_its_text(store).await;
    a_stale_claim_changes_nothing(store).await;
    work_recorded_meanwhile_is_reported(store).await;
}

#[tokio::test]
async fn the_memory_store_keeps_its_promises() {
    check(&MemoryBotStore::new()).await;
}

#[tokio::test]
async fn the_file_store_keeps_its_promises() {
    let dir = std::env::temp_dir().join(format!("wecom-kf-bot-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    check(&FileBotStore::new(&dir).expect("store")).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn the_redis_store_keeps_its_promises_across_handles() {
    let redis = common::redis_server::RedisServer::start();
    check(&redis.connect().await.bot_store()).await;
    // Two replicas' handles: what one recorded, the other doesn't record again, and a
    // claim one holds the other can't take.
    let (one, two) = (
        redis.connect().await.bot_store(),
        redis.connect().await.bot_store(),
    );
    let dave = Customer::new("wkSTORE", "wmDAVE");
    one.record(vec![entry("d1", "wmDAVE", "hi")])
        .await
        .expect("record");
    let again = two
        .record(vec![entry("d1", "wmDAVE", "hi")])
        .await
        .expect("record");
    assert_eq!(again.duplicates, 1);
    let held = one
        .claim(&dave, Duration::from_secs(5))
        .await
        .expect("claim");
    assert!(held.is_some());
    assert!(
        two.claim(&dave, Duration::from_secs(5))
            .await
            .expect("claim")
            .is_none()
    );
}
