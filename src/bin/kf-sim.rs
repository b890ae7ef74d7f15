//! `kf-sim`: the WeCom kf simulator as a server any language can test against.
//!
//! ```text
//! cargo run --features sim --bin kf-sim -- --port 8080
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use wecom_kf::sim::{SimConfig, Simulator};

const USAGE: &str = "usage: kf-sim [--port N] [--corp-id ID] [--secret S] [--open-kfid ID]... [--token-lifetime SECONDS]";

fn parse_args() -> Result<(SimConfig, u16), String> {
    let mut config = SimConfig::default();
    let mut port = 8080;
    let mut open_kfids = Vec::new();
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
                let secs = value()?
                    .parse()
                    .map_err(|e| format!("--token-lifetime: {e}"))?;
                config.token_lifetime = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if !open_kfids.is_empty() {
        config.open_kfids = open_kfids;
    }
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
            eprintln!("kf-sim: can't listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("kf-sim listening: base URL {}", sim.base_url());
    println!("  corp id   {}", sim.corp_id());
    println!("  secret    {}", sim.secret());
    println!("  open_kfid {}", sim.open_kfid());
    println!("control API: POST /sim/customer/enter, /sim/customer/message, /sim/servicer/take,");
    println!(
        "  /sim/session/end, /sim/clock/advance, /sim/faults, /sim/tokens/revoke; GET /sim/sent"
    );
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
