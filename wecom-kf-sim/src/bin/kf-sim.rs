//! `kf-sim`: the WeCom kf simulator as a server any language can test against.
//!
//! ```text
//! cargo run -p wecom-kf-sim --bin kf-sim -- --port 8080
//! cargo run -p wecom-kf-sim --bin kf-sim -- --port 8080 \
//!     --callback-url http://127.0.0.1:3000/kf/callback --callback-token T --callback-aes-key K
//! ```
//!
//! With a callback URL (and the callback's token and 43-character EncodingAESKey, as set in
//! the admin console), every item logged for `sync_msg` (customer messages and media,
//! servicers' events, send failures) is POSTed there as an encrypted `kf_msg_or_event`
//! callback, and retried if not answered within 5 s, as WeCom does.
//!
//! `--untokened-sync-per-minute N` sets how many `sync_msg` calls without a callback token
//! an account takes per minute before 45009; `--route-new-sessions` hands new
//! conversations to receiving servicers, as WeCom's own routing does. The control API is
//! described in the `wecom_kf_sim` crate docs.

use std::net::SocketAddr;
use std::time::Duration;

use wecom_kf_sim::{MAX_SPAN, SimCallback, SimConfig, Simulator};

const USAGE: &str = "usage: kf-sim [--port N] [--corp-id ID] [--secret S] [--open-kfid ID]... [--token-lifetime SECONDS]
              [--callback-url URL --callback-token TOKEN --callback-aes-key KEY]
              [--untokened-sync-per-minute N] [--route-new-sessions]";

fn parse_args() -> Result<(SimConfig, u16), String> {
    let mut config = SimConfig::default();
    let mut port = 8080;
    let mut open_kfids = Vec::new();
    let (mut callback_url, mut callback_token, mut callback_key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--corp-id" => config.corp_id = value()?,
            "--secret" => config.secret = value()?,
            "--open-kfid" => open_kfids.push(value()?),
            "--token-lifetime" => {
                let secs: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--token-lifetime: {e}"))?;
                if secs > MAX_SPAN.as_secs() {
                    return Err(format!(
                        "--token-lifetime: {secs} s is over the simulator's {} s",
                        MAX_SPAN.as_secs()
                    ));
                }
                config.token_lifetime = Duration::from_secs(secs);
            }
            "--untokened-sync-per-minute" => {
                config.untokened_sync_per_minute = value()?
                    .parse()
                    .map_err(|e| format!("--untokened-sync-per-minute: {e}"))?;
            }
            "--route-new-sessions" => config.route_new_sessions = true,
            "--callback-url" => callback_url = Some(value()?),
            "--callback-token" => callback_token = Some(value()?),
            "--callback-aes-key" => callback_key = Some(value()?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !open_kfids.is_empty() {
        config.open_kfids = open_kfids;
    }
    config.callback = match (callback_url, callback_token, callback_key) {
        (Some(url), Some(token), Some(key)) => Some(SimCallback::new(url, token, key)),
        (None, None, None) => None,
        _ => {
            return Err(format!(
                "callbacks need all of --callback-url, --callback-token and --callback-aes-key\n{USAGE}"
            ));
        }
    };
    Ok((config, port))
}

#[tokio::main]
async fn main() {
    let (config, port) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let sim = match Simulator::start_with(config, SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("kf-sim: can't start on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("kf-sim listening: base URL {}", sim.base_url());
    println!("  corp id   {}", sim.corp_id());
    println!("  secret    {}", sim.secret());
    println!("  open_kfid {}", sim.open_kfid());
    println!("control API: POST /sim/customer/enter, /sim/customer/link, /sim/customer/message,");
    println!("  /sim/customer/media, /sim/customer/refuse, /sim/media, /sim/push,");
    println!("  /sim/servicer/take, /sim/servicer/status, /sim/session/end, /sim/clock/advance,");
    println!("  /sim/faults, /sim/tokens/revoke; GET /sim/sent");
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
