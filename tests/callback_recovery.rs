//! The callback server never goes silent for an account: a handler that panics or hangs
//! is followed by pulls for the callbacks that come after it.
#![cfg(feature = "callback-server")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::callbacks::{crypto, post_callback};
use wecom_kf::callback::server;
use wecom_kf::{MemoryCursorStore, SyncStream, sync::Page};
use wecom_kf_sim::Simulator;

/// A bot on a loopback port whose handler misbehaves on its first call.
async fn bot(
    sim: &Simulator,
    first_call: fn() -> Misbehaviour,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let handled = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let sync = Arc::new(
        SyncStream::new(
            sim.client_builder().build().expect("client"),
            MemoryCursorStore::new(),
        )
        .handler_timeout(Duration::from_millis(200)),
    );
    let app = server::router(crypto(sim), sync, {
        let handled = handled.clone();
        move |page: Page| {
            let (handled, calls) = (handled.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    match first_call() {
                        Misbehaviour::Panic => panic!("the handler's bug"),
                        Misbehaviour::Hang => std::future::pending::<()>().await,
                    }
                }
                let mut handled = handled.lock().expect("log");
                handled.extend(page.messages.into_iter().map(|m| m.msgid));
                Ok::<_, std::io::Error>(())
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, handled)
}

enum Misbehaviour {
    Panic,
    Hang,
}

async fn the_account_is_pulled_again_after(first_call: fn() -> Misbehaviour) {
    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let (addr, handled) = bot(&sim, first_call).await;
    let http = reqwest::Client::new();
    let crypto = crypto(&sim);

    let first = sim
        .customer_says(&kf, "wmALICE", "你好")
        .expect("customer writes");
    post_callback(&http, &crypto, addr, &kf, &first.callback_token).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = sim
        .customer_says(&kf, "wmALICE", "在吗")
        .expect("customer writes");
    post_callback(&http, &crypto, addr, &kf, &second.callback_token).await;

    // Bounded: an account gone silent fails here.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = handled.lock().expect("log").clone();
        if got.contains(&first.msgid) && got.contains(&second.msgid) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the account went silent: handled {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_panics_does_not_silence_its_account() {
    the_account_is_pulled_again_after(|| Misbehaviour::Panic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_hangs_does_not_silence_its_account() {
    the_account_is_pulled_again_after(|| Misbehaviour::Hang).await;
}
