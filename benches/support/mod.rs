//! What the bench binaries share: interleaved timing and the report's number formats.
//!
//! These machines are noisy, so a figure is never a lone absolute time: each comparison
//! runs the baseline and the candidate in alternating samples (drift hits both alike) and
//! reports the ratio of their medians.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median nanoseconds per call of a baseline and of a candidate, measured side by side.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub baseline_ns: f64,
    pub candidate_ns: f64,
}

impl Comparison {
    /// How many times faster the candidate is (above 1 = faster than the baseline).
    pub fn speedup(&self) -> f64 {
        self.baseline_ns / self.candidate_ns
    }
}

/// How many calls make one sample of about `target`.
fn batch_size(f: &mut impl FnMut(), target: Duration) -> u64 {
    let mut n = 1u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= target / 4 || n >= 1 << 24 {
            let per_call = elapsed.as_secs_f64() / n as f64;
            return ((target.as_secs_f64() / per_call.max(1e-9)) as u64).max(1);
        }
        n *= 4;
    }
}

fn sample(f: &mut impl FnMut(), batch: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..batch {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / batch as f64
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times `baseline` and `candidate` in `samples` alternating samples of about 20 ms each.
pub fn compare(
    samples: usize,
    mut baseline: impl FnMut(),
    mut candidate: impl FnMut(),
) -> Comparison {
    let target = Duration::from_millis(20);
    let base_batch = batch_size(&mut baseline, target);
    let cand_batch = batch_size(&mut candidate, target);
    let mut base = Vec::with_capacity(samples);
    let mut cand = Vec::with_capacity(samples);
    for _ in 0..samples {
        base.push(sample(&mut baseline, base_batch));
        cand.push(sample(&mut candidate, cand_batch));
    }
    Comparison {
        baseline_ns: median(&mut base),
        candidate_ns: median(&mut cand),
    }
}

/// Keeps the optimizer from dropping a result.
pub fn keep<T>(value: T) {
    black_box(value);
}

/// Nearest-rank percentile of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1e3
}

/// `1234.5` → `"1.23 µs"`.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// `✓` when `ratio` meets `goal`, `✗` when it doesn't.
pub fn verdict(ratio: f64, goal: f64) -> &'static str {
    if ratio >= goal { "✓" } else { "✗" }
}
