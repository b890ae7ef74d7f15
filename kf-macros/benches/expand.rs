//! Codegen cost: how long `endpoints!` takes to expand the shipped `endpoints.toml`, and
//! API files with 10, 100 and 1,000 endpoints (growth should be linear).
//!
//! ```text
//! cargo bench -p kf-macros --bench expand                       # optimized
//! cargo bench -p kf-macros --bench expand --profile user-macro  # as a user's build runs it
//! ```
//!
//! A proc-macro crate exports only macros, so this binary compiles the generator's modules
//! itself (model, check, lower, ir, diagnostic, emit, names), the same files the macro uses.

// The included modules bring their unit tests' imports along; nothing here uses them.
#![allow(dead_code, unused_imports)]

#[path = "../src/check.rs"]
mod check;
#[path = "../src/diagnostic.rs"]
mod diagnostic;
#[path = "../src/emit/mod.rs"]
mod emit;
#[path = "../src/ir.rs"]
mod ir;
#[path = "../src/lower.rs"]
mod lower;
#[path = "../src/model.rs"]
mod model;
#[path = "../src/names.rs"]
mod names;
#[path = "../src/read.rs"]
mod read;

use std::hint::black_box;
use std::time::{Duration, Instant};

use emit::{Methods, Options, expand};

/// One endpoint with a request struct, a response struct and a few limited fields.
fn synthetic_api(endpoints: usize) -> String {
    let mut toml = String::from(
        "[[error]]\ncode = 95000\nname = \"InvalidOpenKfId\"\nmeaning = \"m\"\nhint = \"h\"\nretry = \"never\"\n\n",
    );
    for i in 0..endpoints {
        toml.push_str(&format!(
            r#"[[struct]]
name = "Item{i}"
summary = "An item."
doc = 94661
fields = [
  {{ name = "id", type = "string", required = true, max_bytes = 64, server = "rejects", doc = "The id." }},
  {{ name = "count", type = "u32", min = 1, max = 100, doc = "A count." }},
]

[[struct]]
name = "Answer{i}"
summary = "An answer."
doc = 94661
fields = [
  {{ name = "items", type = "[Item{i}]", doc = "The items." }},
]

[[endpoint]]
name = "call_{i}"
method = "POST"
path = "kf/call_{i}"
doc = 94661
summary = "Calls endpoint {i}."
response = "Answer{i}"
errors = [95000]
fields = [
  {{ name = "open_kfid", type = "string", required = true, max_bytes = 64, server = "rejects", doc = "The account." }},
  {{ name = "cursor", type = "string", doc = "Where to start." }},
  {{ name = "limit", type = "u32", min = 1, max = 1000, doc = "Page size." }},
]

"#
        ));
    }
    toml
}

/// The median time of `f` over `runs` runs, after two warm-up runs.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..2 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// The floor any TOML-driven generator pays: reading the file into toml's document tree
/// (`DeTable`, what the macro reads its model from).
fn time_toml_parse(source: &str, runs: usize) -> Duration {
    median_time(runs, || {
        black_box(toml::de::DeTable::parse(black_box(source)).ok());
    })
}

/// The median time of `expand` over `runs` runs.
fn time_expand(source: &str, runs: usize) -> Duration {
    let options = Options {
        display_path: "bench.toml".into(),
        track_path: None,
        methods: Methods::Inherent,
        krate: quote::quote!(::wecom_kf),
    };
    let expands = expand(source, &options).is_ok_and(|t| !t.is_empty());
    assert!(expands, "the bench input must expand without errors");
    median_time(runs, || {
        black_box(expand(black_box(source), &options).ok());
    })
}

fn main() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../endpoints.toml"))
            .expect("endpoints.toml");
    // `--profile user-macro` (debug assertions on, opt-level 0) builds this the way a user's
    // `cargo build` compiles the macro; `cargo bench` alone, optimized.
    let (build, goal) = if cfg!(debug_assertions) {
        ("unoptimized, as a user's build runs it", 250)
    } else {
        ("optimized", 100)
    };
    println!("## Codegen cost, {build} (goal: shipped file under {goal} ms, linear growth)\n");
    println!(
        "Baseline: parsing the same file into toml's document tree (`DeTable`), measured beside it.\n"
    );
    println!(
        "| API file | endpoints | bytes | expansion (median) | TOML parse alone | expansion / parse | per endpoint |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut per_endpoint = Vec::new();
    let files = std::iter::once(("endpoints.toml (shipped)".to_owned(), shipped)).chain(
        [10, 100, 1000]
            .into_iter()
            .map(|n| (format!("synthetic {n}"), synthetic_api(n))),
    );
    for (name, source) in files {
        let count = source.matches("[[endpoint]]").count();
        let runs = if source.len() > 500_000 { 5 } else { 15 };
        let time = time_expand(&source, runs);
        let parse = time_toml_parse(&source, runs);
        let each = time.as_secs_f64() * 1e6 / count as f64;
        if name.starts_with("synthetic") {
            per_endpoint.push(each);
        }
        println!(
            "| {name} | {count} | {} | {:.2} ms | {:.2} ms | {:.1}× | {each:.0} µs |",
            source.len(),
            time.as_secs_f64() * 1e3,
            parse.as_secs_f64() * 1e3,
            time.as_secs_f64() / parse.as_secs_f64(),
        );
    }
    println!(
        "\ngrowth: per-endpoint cost at 1,000 endpoints is {:.2}× the cost at 10 (1.0 = linear)",
        per_endpoint[2] / per_endpoint[0]
    );
}
