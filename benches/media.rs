//! Peak memory of a 45 MB download, streamed into a writer vs buffered into memory.
//!
//! ```text
//! cargo bench --bench media
//! ```
//!
//! Each mode runs in a child process of its own (this binary again), so one mode's peak
//! can't hide the other's: the child reads its resident set before the download and its
//! high-water mark after it (`VmRSS`, `VmHWM` in `/proc/self/status`), and the difference
//! is what the download cost. Linux only.

use std::process::Command;

use wecom_kf_sim::{MediaKind, Simulator};

const FILE_BYTES: usize = 45 * 1024 * 1024;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A child: downloads `media_id` from `base_url` the way `mode` says, prints the peak.
fn child(mode: &str, base_url: &str, media_id: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = wecom_kf::Client::builder()
            .corp_id(wecom_kf_sim::SimConfig::default().corp_id)
            .secret(wecom_kf_sim::SimConfig::default().secret)
            .base_url(base_url)
            .build()
            .expect("client");
        // A first call, so the connection pool and the token are there before measuring.
        client.access_token().await.expect("token");
        let (before, _) = memory();
        let bytes = match mode {
            "streamed" => {
                let mut sink = tokio::io::sink();
                let done = client
                    .download_media(media_id)
                    .to_writer(&mut sink)
                    .await
                    .expect("download");
                done.written
            }
            _ => {
                let media = client
                    .download_media(media_id)
                    .max_bytes(64 * 1024 * 1024)
                    .await
                    .expect("download");
                media.bytes.len() as u64
            }
        };
        let (_, peak) = memory();
        println!("{bytes} {}", peak.saturating_sub(before));
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--child") {
        child(&args[at + 1], &args[at + 2], &args[at + 3]);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let sim = Simulator::start().await.expect("simulator");
        let bytes: Vec<u8> = (0..FILE_BYTES).map(|i| (i % 251) as u8).collect();
        let media_id = sim
            .add_media(MediaKind::File, bytes, Some("big.bin"))
            .expect("a 45 MB file");
        let exe = std::env::current_exe().expect("this binary");
        let mut peaks = Vec::new();
        for mode in ["streamed", "buffered"] {
            let (exe, base, id) = (exe.clone(), sim.base_url(), media_id.clone());
            let output = tokio::task::spawn_blocking(move || {
                Command::new(exe)
                    .args(["--child", mode, &base, &id])
                    .output()
            })
            .await
            .expect("task")
            .expect("child");
            let text = String::from_utf8_lossy(&output.stdout);
            let mut fields = text
                .split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0));
            let (got, peak_kib) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
            assert_eq!(
                got,
                FILE_BYTES as u64,
                "{mode}: the whole file: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            );
            peaks.push((mode, peak_kib));
        }
        println!(
            "## Media download: peak memory for a {} MB file (one run)\n",
            FILE_BYTES / (1024 * 1024)
        );
        println!("| mode | peak resident growth | vs file size |");
        println!("|---|---|---|");
        for (mode, peak) in &peaks {
            let ratio = *peak as f64 * 1024.0 / FILE_BYTES as f64;
            println!(
                "| {mode} | {:.1} MiB | {ratio:.2}× |",
                *peak as f64 / 1024.0
            );
        }
        let (streamed, buffered) = (peaks[0].1.max(1), peaks[1].1.max(1));
        println!(
            "\nstreamed / buffered: {:.3}",
            streamed as f64 / buffered as f64
        );
    });
}
