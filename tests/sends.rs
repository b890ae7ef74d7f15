//! Sends that may be retried, against the simulator: every attempt of a send carries the
//! same `msgid`, and a retry the simulator refuses as a repeated `msgid` is reported as
//! "may have arrived", not as a plain failure.

use std::time::Duration;

use wecom_kf::{Client, Delivery, Error, RetryPolicy};
use wecom_kf_sim::{Fault, Simulator};

const ALICE: &str = "wmALICE";

async fn setup() -> (Simulator, Client, String) {
    let sim = Simulator::start().await.expect("simulator");
    let client = sim
        .client_builder()
        .retry_policy(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
        })
        .build()
        .expect("client");
    let kf = sim.open_kfid().to_owned();
    sim.customer_says(&kf, ALICE, "hi").expect("customer");
    (sim, client, kf)
}

#[tokio::test]
async fn a_send_gets_one_id_that_the_answer_echoes() {
    let (sim, client, kf) = setup().await;
    sim.inject("kf/send_msg", Fault::Busy, 2);
    let sent = client.send_text(ALICE, &kf, "hello").await.expect("send");
    assert_eq!(sent.msgid.len(), 32, "the client's id: {}", sent.msgid);
    let accepted = sim.sent();
    assert_eq!(accepted.len(), 1, "delivered once");
    assert_eq!(accepted[0].msgid, sent.msgid);
}

/// The first attempt was processed (here: an earlier send with the same id), the next
/// one is answered busy, and the retry is refused as a duplicate `msgid`.
#[tokio::test]
async fn busy_then_duplicate_is_maybe_sent() {
    let (sim, client, kf) = setup().await;
    client
        .send_text(ALICE, &kf, "once")
        .msgid("order-42")
        .await
        .expect("first send");
    sim.inject("kf/send_msg", Fault::Busy, 1);
    let err = client
        .send_text(ALICE, &kf, "once")
        .msgid("order-42")
        .await
        .unwrap_err();
    assert_eq!(err.delivery(), Delivery::MaybeSent, "{err:?}");
    assert!(
        matches!(&err, Error::MaybeDelivered { retry_id: Some(id), .. } if id == "order-42"),
        "{err:?}"
    );
    assert_eq!(sim.sent().len(), 1, "delivered once");
}

#[tokio::test]
async fn every_send_gets_a_fresh_id_of_its_own() {
    let (sim, client, kf) = setup().await;
    let mut ids = std::collections::HashSet::new();
    for n in 0..5 {
        let sent = client
            .send_text(ALICE, &kf, format!("#{n}"))
            .await
            .expect("send");
        assert!(sent.msgid.bytes().all(|b| b.is_ascii_hexdigit()));
        ids.insert(sent.msgid);
    }
    assert_eq!(ids.len(), 5, "no id reused");
    assert_eq!(sim.sent().len(), 5);
}

#[tokio::test]
async fn invalid_parameter_says_which_cause_it_has() {
    use wecom_kf::ErrCode;
    let (sim, client, kf) = setup().await;
    // A msgid used before: nothing is malformed.
    client
        .send_text(ALICE, &kf, "one")
        .msgid("order-42")
        .await
        .expect("send");
    let again = client
        .send_text(ALICE, &kf, "two")
        .msgid("order-42")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some(ErrCode::DuplicateMsgid));
    assert_eq!(again.code().map(ErrCode::value), Some(40058));
    assert!(
        again
            .to_string()
            .contains("every send needs a msgid of its own"),
        "{again}"
    );
    // A used one-time code.
    let code = sim
        .customer_enters(&kf, "wmBOB")
        .expect("enters")
        .expect("a welcome code");
    client
        .send_text_on_event(&code, "欢迎")
        .await
        .expect("welcome");
    let used = client.send_text_on_event(&code, "欢迎").await.unwrap_err();
    assert_eq!(used.code(), Some(ErrCode::EventCodeUsedOrExpired));
    assert!(!used.to_string().contains("fix the request"), "{used}");
    // Anything else with 40058 keeps the general meaning.
    assert_eq!(
        ErrCode::from_answer(40058, "invalid parameter: touser"),
        ErrCode::InvalidParameter
    );
    assert_eq!(
        ErrCode::from_answer(40058, "Invalid Cursor"),
        ErrCode::InvalidCursor
    );
    assert_eq!(ErrCode::from_value(40058), ErrCode::InvalidParameter);
    assert!(matches!(used, Error::Api { .. }));
}
