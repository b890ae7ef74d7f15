//! Request serialization and page parsing: the generated types against `serde_json::Value`,
//! the way the reference library (and most SDKs) build and read bodies.
//!
//! ```text
//! cargo bench --bench codec
//! ```
//!
//! Serialization: each outgoing message type and the `sync_msg` request, built from `&str`
//! inputs and encoded to bytes. Ours builds the generated request, validates it (as the
//! client does before every send) and encodes it; the baseline builds the same body with
//! `json!` and encodes it, with no validation at all.
//!
//! Parsing: a 1,000-item `sync_msg` page of every received type and event, decoded into
//! `SyncMsgResponse` (typed, lossless: every item keeps its raw JSON) the way the client
//! does (`SyncMsgResponse::from_body`), against decoding it into a `serde_json::Value`; and
//! through `serde_json::from_slice`, the way any other caller may. A counting allocator
//! reports the allocations of one decode.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};
use support::{compare, format_ns, keep, verdict};
use wecom_kf::{
    Request,
    types::{
        CaLink, File, Image, Link, Location, Menu, MenuClick, MenuItem, MenuMiniProgram, MenuText,
        MenuView, MiniProgram, OutgoingMsg, SendMsgRequest, SyncMsgRequest, SyncMsgResponse, Text,
        Video, Voice, VoiceFormat,
    },
};

/// Counts what the process allocates, so the parse table can report it.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// plain relaxed atomics that never touch the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// (allocations, bytes) made by `f`.
fn allocations_of<T>(f: impl FnOnce() -> T) -> (u64, u64) {
    let (count, bytes) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    );
    keep(f());
    (
        ALLOCATIONS.load(Ordering::Relaxed) - count,
        ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes,
    )
}

const USER: &str = "wmAJ2GCAAAme1XQRC-NI-q0_ZM9ukoAw";
const KF: &str = "wkAJ2GCAAASSm4_FhToWMFea0xAFfd3Q";
const MEDIA: &str = "2iSLeVyqzk4eX0IB5kTi9Ljfa2rt9dwfq5WKRQ4Nvvgw";

/// Builds, validates and encodes a body, as the client does before sending it.
fn ours_encode(request: &impl Request) -> Vec<u8> {
    assert!(request.validate().is_ok(), "the bench bodies are valid");
    request.to_body().unwrap_or_default()
}

fn ours(msg: impl Into<OutgoingMsg>) -> Vec<u8> {
    ours_encode(&SendMsgRequest::new(USER, KF, msg).msgid("order-42"))
}

fn encode(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn menu() -> Menu {
    Menu::new()
        .head_content("您对本次服务是否满意呢?")
        .list([
            MenuItem::from(MenuClick::new("101", "满意")),
            MenuClick::new("102", "不满意").into(),
            MenuView::new("https://work.weixin.qq.com", "自助查询").into(),
            MenuMiniProgram::new("wx123123123123123", "pages/index", "打开小程序").into(),
            MenuText::new("纯文本").no_newline(0u32).into(),
        ])
        .tail_content("欢迎再次光临")
}

type Case = (&'static str, Box<dyn FnMut()>, Box<dyn FnMut()>);

/// (name, baseline, ours) for every body the serialization table covers.
fn serialization_cases() -> Vec<Case> {
    let text = "你购买的物品已发货，可点击链接查看物流状态http://work.weixin.qq.com/xxxxxx";
    let envelope = |msgtype: &str, payload: Value| json!({"touser": USER, "open_kfid": KF, "msgid": "order-42", "msgtype": msgtype, msgtype: payload});
    vec![
        (
            "text",
            Box::new(move || keep(encode(&envelope("text", json!({"content": text}))))),
            Box::new(move || keep(ours(Text::new(text)))),
        ),
        (
            "image",
            Box::new(move || keep(encode(&envelope("image", json!({"media_id": MEDIA}))))),
            Box::new(|| keep(ours(Image::new(MEDIA)))),
        ),
        (
            "voice",
            Box::new(move || keep(encode(&envelope("voice", json!({"media_id": MEDIA}))))),
            Box::new(|| keep(ours(Voice::new(MEDIA)))),
        ),
        (
            "video",
            Box::new(move || keep(encode(&envelope("video", json!({"media_id": MEDIA}))))),
            Box::new(|| keep(ours(Video::new(MEDIA)))),
        ),
        (
            "file",
            Box::new(move || keep(encode(&envelope("file", json!({"media_id": MEDIA}))))),
            Box::new(|| keep(ours(File::new(MEDIA)))),
        ),
        (
            "link",
            Box::new(move || {
                keep(encode(&envelope(
                    "link",
                    json!({"title": "企业如何增长？", "desc": "今年中秋节公司有豪礼相送",
                           "url": "https://work.weixin.qq.com", "thumb_media_id": MEDIA}),
                )))
            }),
            Box::new(|| {
                keep(ours(
                    Link::new("企业如何增长？", "https://work.weixin.qq.com", MEDIA)
                        .desc("今年中秋节公司有豪礼相送"),
                ))
            }),
        ),
        (
            "miniprogram",
            Box::new(move || {
                keep(encode(&envelope(
                    "miniprogram",
                    json!({"appid": "wx123123123123123", "title": "欢迎报名夏令营",
                           "thumb_media_id": MEDIA, "pagepath": "pages/index"}),
                )))
            }),
            Box::new(|| {
                keep(ours(
                    MiniProgram::new("wx123123123123123", MEDIA, "pages/index")
                        .title("欢迎报名夏令营"),
                ))
            }),
        ),
        (
            "msgmenu",
            Box::new(move || {
                keep(encode(&envelope(
                    "msgmenu",
                    json!({"head_content": "您对本次服务是否满意呢?", "list": [
                        {"type": "click", "click": {"id": "101", "content": "满意"}},
                        {"type": "click", "click": {"id": "102", "content": "不满意"}},
                        {"type": "view", "view": {"url": "https://work.weixin.qq.com", "content": "自助查询"}},
                        {"type": "miniprogram", "miniprogram": {"appid": "wx123123123123123", "pagepath": "pages/index", "content": "打开小程序"}},
                        {"type": "text", "text": {"content": "纯文本", "no_newline": 0}}
                    ], "tail_content": "欢迎再次光临"}),
                )))
            }),
            Box::new(|| keep(ours(menu()))),
        ),
        (
            "location",
            Box::new(move || {
                keep(encode(&envelope(
                    "location",
                    json!({"name": "广州国际媒体港", "address": "广东省广州市海珠区滨江东路",
                           "latitude": 23.106_021_881_103_5, "longitude": 113.320_503_234_863}),
                )))
            }),
            Box::new(|| {
                keep(ours(
                    Location::new(23.106_021_881_103_5, 113.320_503_234_863)
                        .name("广州国际媒体港")
                        .address("广东省广州市海珠区滨江东路"),
                ))
            }),
        ),
        (
            "ca_link",
            Box::new(move || {
                keep(encode(&envelope(
                    "ca_link",
                    json!({"link_url": "https://work.weixin.qq.com/ca/cawcde06d0fd42a9d7"}),
                )))
            }),
            Box::new(|| {
                keep(ours(CaLink::new(
                    "https://work.weixin.qq.com/ca/cawcde06d0fd42a9d7",
                )))
            }),
        ),
        (
            "sync_msg request",
            Box::new(|| {
                keep(encode(&json!({"cursor": "4gw7MepFLfgF2VC5npN",
                    "token": "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR",
                    "limit": 1000, "voice_format": 0, "open_kfid": KF})))
            }),
            Box::new(|| {
                let request = SyncMsgRequest::new(KF)
                    .cursor("4gw7MepFLfgF2VC5npN")
                    .token("ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMzxhFmHVGcra996NR")
                    .limit(1000u32)
                    .voice_format(VoiceFormat::Amr);
                keep(ours_encode(&request))
            }),
        ),
    ]
}

/// A `sync_msg` page of `items` items cycling through every received example.
fn mixed_page(items: usize) -> String {
    let examples: serde_json::Map<String, Value> =
        serde_json::from_str(include_str!("../tests/fixtures/received_examples.json"))
            .unwrap_or_default();
    assert!(!examples.is_empty(), "the received examples fixture parses");
    let examples: Vec<&Value> = examples.values().collect();
    let msg_list: Vec<Value> = (0..items)
        .map(|i| {
            let mut item = examples[i % examples.len()].clone();
            item["msgid"] = json!(format!("msg-{i:06}"));
            item
        })
        .collect();
    json!({"errcode": 0, "errmsg": "ok", "next_cursor": "4gw7MepFLfgF2VC5npN", "has_more": 1, "msg_list": msg_list})
        .to_string()
}

fn main() {
    // `codec --profile-parse` only parses the page, for a profiler to watch.
    if std::env::args().any(|a| a == "--profile-parse") {
        let page = mixed_page(1000);
        let start = std::time::Instant::now();
        while start.elapsed().as_secs() < 5 {
            keep(SyncMsgResponse::from_body(page.as_bytes()).ok());
        }
        return;
    }
    let samples = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);

    println!("## Request serialization (goal: ours ≥ 3× faster)\n");
    println!("| body | `json!` + encode | ours: build + validate + encode | speedup | goal |");
    println!("|---|---:|---:|---:|:---:|");
    let mut speedups = Vec::new();
    for (name, baseline, candidate) in serialization_cases() {
        let result = compare(samples, baseline, candidate);
        speedups.push(result.speedup());
        println!(
            "| {name} | {} | {} | {:.2}× | {} |",
            format_ns(result.baseline_ns),
            format_ns(result.candidate_ns),
            result.speedup(),
            verdict(result.speedup(), 3.0)
        );
    }
    let geomean = (speedups.iter().map(|s| s.ln()).sum::<f64>() / speedups.len() as f64).exp();
    println!("\ngeometric mean speedup: {geomean:.2}×\n");

    let page = mixed_page(1000);
    let bytes = page.as_bytes();
    let typed = SyncMsgResponse::from_body(bytes).unwrap_or_else(|e| {
        panic!("the bench page must parse: {e}");
    });
    assert_eq!(
        Some(&typed),
        serde_json::from_slice::<SyncMsgResponse>(bytes)
            .ok()
            .as_ref(),
        "both readings read the same"
    );
    assert_eq!(typed.msg_list.len(), 1000);
    let unknown = typed
        .msg_list
        .iter()
        .filter(|m| matches!(m.content, wecom_kf::types::Received::Unknown { .. }))
        .count();
    println!("## Page parsing (goal: ours ≥ 1.5× faster)\n");
    println!(
        "A 1,000-item page, {} KiB, every received type and event ({unknown} of the items are unknown types, kept raw).\n",
        bytes.len() / 1024
    );
    let result = compare(
        samples.min(15),
        || keep(serde_json::from_slice::<Value>(bytes).ok()),
        || keep(SyncMsgResponse::from_body(bytes).ok()),
    );
    let through_serde = compare(
        samples.min(15),
        || keep(serde_json::from_slice::<Value>(bytes).ok()),
        || keep(serde_json::from_slice::<SyncMsgResponse>(bytes).ok()),
    );
    // A SIMD parser's `Value`, as a second baseline from the same bytes in the same run.
    let simd = compare(
        samples.min(15),
        || keep(serde_json::from_slice::<Value>(bytes).ok()),
        || keep(sonic_rs::from_slice::<sonic_rs::Value>(bytes).ok()),
    );
    let (value_allocs, value_bytes) =
        allocations_of(|| serde_json::from_slice::<Value>(bytes).ok());
    let (sonic_allocs, sonic_bytes) =
        allocations_of(|| sonic_rs::from_slice::<sonic_rs::Value>(bytes).ok());
    let (typed_allocs, typed_bytes) = allocations_of(|| SyncMsgResponse::from_body(bytes).ok());
    let (serde_allocs, serde_bytes) =
        allocations_of(|| serde_json::from_slice::<SyncMsgResponse>(bytes).ok());
    println!(
        "| decode into | time per page | vs `serde_json::Value` | allocations | bytes allocated |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `serde_json::Value` (baseline) | {} | 1.00× | {value_allocs} | {value_bytes} |",
        format_ns(result.baseline_ns)
    );
    println!(
        "| `sonic_rs::Value` (SIMD, second baseline) | {} | {:.2}× | {sonic_allocs} | {sonic_bytes} |",
        format_ns(simd.candidate_ns),
        simd.speedup()
    );
    println!(
        "| `SyncMsgResponse::from_body` (ours, as the client reads; every item's text kept) | {} | {:.2}× | {typed_allocs} | {typed_bytes} |",
        format_ns(result.candidate_ns),
        result.speedup()
    );
    println!(
        "| `SyncMsgResponse` through `serde_json::from_slice` | {} | {:.2}× | {serde_allocs} | {serde_bytes} |",
        format_ns(through_serde.candidate_ns),
        through_serde.speedup()
    );
    println!(
        "\nspeedup: {:.2}× {} (allocations {:.2}× of the baseline's); against sonic-rs's `Value`: {:.2}×",
        result.speedup(),
        verdict(result.speedup(), 1.5),
        typed_allocs as f64 / value_allocs.max(1) as f64,
        simd.candidate_ns / result.candidate_ns
    );
}
