//! End to end: `send_text` through the client against raw `reqwest` and against wechatpy,
//! all talking to the same minimal local server; and the token's single flight.
//!
//! ```text
//! cargo bench --bench http
//! ```
//!
//! The server answers fixed JSON (`gettoken` and `kf/send_msg`) from its own thread and
//! runtime, so both sides of every comparison meet the same server. The raw baseline posts
//! a pre-serialized body with a token it already knows and reads the answer's bytes; ours
//! builds, validates and encodes the message, attaches the cached token, checks `errcode`
//! and decodes the answer. The wechatpy rows run `benches/wechatpy_send.py` when wechatpy
//! is installed (`benches/run` installs it; CI doesn't).

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use serde_json::Value;
use support::{percentile_ms, verdict};

const CORP_ID: &str = "ww-bench";
const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-token";
const USER: &str = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw";
const KF: &str = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q";
const TEXT: &str = "hello from the benchmark";
const SENT: &str = r#"{"errcode":0,"errmsg":"ok","msgid":"bench-msgid"}"#;

/// The minimal server: fixed answers, and a count of `gettoken` calls.
struct Server {
    base_url: String,
    gettoken_calls: Arc<AtomicUsize>,
}

fn start_server(gettoken_delay: Duration) -> Server {
    let gettoken_calls = Arc::new(AtomicUsize::new(0));
    let counter = gettoken_calls.clone();
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let app = Router::new()
                .route(
                    "/cgi-bin/gettoken",
                    get(move || {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(gettoken_delay).await;
                            format!(
                                r#"{{"errcode":0,"errmsg":"ok","access_token":"{TOKEN}","expires_in":7200}}"#
                            )
                        }
                    }),
                )
                .route("/cgi-bin/kf/send_msg", post(|| async { SENT }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a loopback port");
            tx.send(listener.local_addr().expect("local address"))
                .expect("main thread waits");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("the server starts");
    Server {
        base_url: format!("http://{addr}/cgi-bin/"),
        gettoken_calls,
    }
}

fn client_for(server: &Server) -> wecom_kf::Client {
    wecom_kf::Client::builder()
        .corp_id(CORP_ID)
        .secret(SECRET)
        .base_url(&server.base_url)
        .build()
        .expect("client")
}

/// Throughput and latencies of one side of a comparison.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    /// `concurrency` senders that each waited `latencies` in all: by Little's law they
    /// complete `concurrency / mean latency` sends a second.
    fn from_latencies(mut latencies: Vec<Duration>, concurrency: usize) -> Run {
        latencies.sort();
        let mean = latencies.iter().sum::<Duration>().as_secs_f64() / latencies.len() as f64;
        Run {
            rps: concurrency as f64 / mean,
            p50_ms: percentile_ms(&latencies, 50.0),
            p99_ms: percentile_ms(&latencies, 99.0),
        }
    }
}

/// One send; `true` when it succeeded.
type Send = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = bool> + std::marker::Send>> + std::marker::Send + Sync,
>;

fn ours(client: &wecom_kf::Client) -> Send {
    let client = client.clone();
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { client.send_text(USER, KF, TEXT).await.is_ok() })
    })
}

fn raw(server: &Server) -> Send {
    let http = reqwest::Client::new();
    let url: Arc<str> = format!("{}kf/send_msg?access_token={TOKEN}", server.base_url).into();
    let body = bytes::Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "touser": USER, "open_kfid": KF, "msgtype": "text", "text": {"content": TEXT}
        }))
        .expect("encode"),
    );
    Arc::new(move || {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        Box::pin(async move {
            match http
                .post(&*url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
            {
                Ok(response) => response.bytes().await.is_ok(),
                Err(_) => false,
            }
        })
    })
}

/// `concurrency` tasks, each sending `per_task` pairs: one send of each side, in turns
/// (and in alternating order), so both sides meet the same machine at the same moments.
async fn compare_sends(concurrency: usize, per_task: usize, a: Send, b: Send) -> (Run, Run) {
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (a, b) = (a.clone(), b.clone());
            tokio::spawn(async move {
                let (mut a_times, mut b_times) = (Vec::new(), Vec::new());
                for i in 0..per_task {
                    for side in [(task + i) % 2, (task + i + 1) % 2] {
                        let (send, times) = if side == 0 {
                            (&a, &mut a_times)
                        } else {
                            (&b, &mut b_times)
                        };
                        let start = Instant::now();
                        assert!(send().await, "every benchmark send succeeds");
                        times.push(start.elapsed());
                    }
                }
                (a_times, b_times)
            })
        })
        .collect();
    let (mut a_all, mut b_all) = (Vec::new(), Vec::new());
    for task in tasks {
        let (a_times, b_times) = task.await.expect("bench task");
        a_all.extend(a_times);
        b_all.extend(b_times);
    }
    (
        Run::from_latencies(a_all, concurrency),
        Run::from_latencies(b_all, concurrency),
    )
}

/// wechatpy's run, or why there is none.
fn wechatpy(server: &Server, threads: usize, requests: usize) -> Result<Run, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/wechatpy_send.py");
    let output = Command::new("python3")
        .arg(script)
        .args([
            "--base-url",
            &server.base_url,
            "--corp-id",
            CORP_ID,
            "--secret",
            SECRET,
        ])
        .args(["--open-kfid", KF, "--touser", USER, "--content", TEXT])
        .args([
            "--requests",
            &requests.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
        .map_err(|e| format!("python3 did not start: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(stderr.lines().last().unwrap_or("failed").to_owned());
    }
    let report: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("unreadable report: {e}"))?;
    if report["errors"].as_u64() != Some(0) {
        return Err(format!("wechatpy reported errors: {report}"));
    }
    let number = |key: &str| {
        report[key]
            .as_f64()
            .ok_or(format!("no `{key}` in {report}"))
    };
    Ok(Run {
        rps: number("throughput_rps")?,
        p50_ms: number("p50_ms")?,
        p99_ms: number("p99_ms")?,
    })
}

fn main() {
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6400);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let server = start_server(Duration::ZERO);
    let client = client_for(&server);
    println!("## End to end: `send_text` against a local server (goal: ours ≥ 0.95× raw)\n");
    println!(
        "{} sends per side at concurrency 1, {requests} at 64. Each task alternates one raw send and one of ours,\nso both sides share the machine's every moment; req/s is concurrency / mean latency.\n",
        requests * 3
    );
    println!(
        "| concurrency | raw reqwest (req/s) | ours (req/s) | ratio | raw p50 / p99 | ours p50 / p99 | goal |"
    );
    println!("|---:|---:|---:|---:|---:|---:|:---:|");
    let mut ours_runs = std::collections::HashMap::new();
    for concurrency in [1, 64] {
        let (r, o) = runtime.block_on(async {
            // Warm both sides: connections, the token, the allocator.
            compare_sends(concurrency, 50, raw(&server), ours(&client)).await;
            // One at a time, a send mostly waits on loopback: more of them steady the ratio.
            let pairs = if concurrency == 1 {
                requests * 3
            } else {
                requests / concurrency
            };
            compare_sends(concurrency, pairs, raw(&server), ours(&client)).await
        });
        ours_runs.insert(concurrency, o);
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.2}× | {:.3} / {:.3} ms | {:.3} / {:.3} ms | {} |",
            r.rps,
            o.rps,
            o.rps / r.rps,
            r.p50_ms,
            r.p99_ms,
            o.p50_ms,
            o.p99_ms,
            verdict(o.rps / r.rps, 0.95)
        );
    }

    println!("\n## Against wechatpy (goal: ours ≥ 10× its throughput)\n");
    println!("The same server and message; wechatpy's own `kf_message.send_text`.\n");
    println!(
        "| wechatpy mode | wechatpy (req/s) | p50 / p99 | ours (req/s), same concurrency | ratio | goal |"
    );
    println!("|---|---:|---:|---:|---:|:---:|");
    for (mode, threads, concurrency) in [("sequential", 1, 1), ("thread pool of 64", 64, 64)] {
        match wechatpy(&server, threads, 2000) {
            Ok(py) => {
                let o = ours_runs[&concurrency];
                println!(
                    "| {mode} | {:.0} | {:.3} / {:.3} ms | {:.0} | {:.1}× | {} |",
                    py.rps,
                    py.p50_ms,
                    py.p99_ms,
                    o.rps,
                    o.rps / py.rps,
                    verdict(o.rps / py.rps, 10.0)
                );
            }
            Err(why) => println!("| {mode} | not run: {why} | | | | |"),
        }
    }

    println!("\n## Token single flight: 1,000 concurrent sends on a cold client\n");
    println!(
        "`gettoken` answers after 50 ms. Baseline: the same 1,000 sends once the token is cached.\n"
    );
    let slow_token = start_server(Duration::from_millis(50));
    let (cold, warm, calls) = runtime.block_on(async {
        let client = client_for(&slow_token);
        let burst = |client: wecom_kf::Client| async move {
            let start = Instant::now();
            let sends: Vec<_> = (0..1000)
                .map(|_| {
                    let client = client.clone();
                    tokio::spawn(async move { client.send_text(USER, KF, TEXT).await.is_ok() })
                })
                .collect();
            for send in sends {
                assert!(send.await.expect("send task"), "every send succeeds");
            }
            start.elapsed()
        };
        let cold = burst(client.clone()).await;
        let calls = slow_token.gettoken_calls.load(Ordering::SeqCst);
        let warm = burst(client).await;
        (cold, warm, calls)
    });
    println!("| gettoken requests | cold: all 1,000 done | warm: all 1,000 done | cold / warm |");
    println!("|---:|---:|---:|---:|");
    println!(
        "| {calls} {} | {:.1} ms | {:.1} ms | {:.2}× |",
        if calls == 1 { "✓" } else { "✗" },
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        cold.as_secs_f64() / warm.as_secs_f64()
    );
}
