//! What a bot's dashboards see, with a recording `tracing` layer and `metrics` recorder: a
//! span per API attempt and per turn, and the runtime's counters — never content, tokens
//! or secrets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use wecom_kf::bot::{Answer, Bot, MemoryBotStore};
use wecom_kf::reply::Turn;
use wecom_kf::{MemoryCursorStore, types::Text};
use wecom_kf_sim::Simulator;

/// A span's name and its fields as text.
type SpanRecord = (String, HashMap<String, String>);

/// Every span closed (`.0`), and the open ones by id (`.1`).
#[derive(Clone, Default)]
struct Spans(
    Arc<Mutex<Vec<SpanRecord>>>,
    Arc<Mutex<HashMap<u64, SpanRecord>>>,
);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.1
            .lock()
            .unwrap()
            .insert(id.into_u64(), (attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.1.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.1.lock().unwrap().remove(&id.into_u64()) {
            self.0.lock().unwrap().push(span);
        }
    }
}

/// Counters and histogram samples by name and labels.
#[derive(Clone, Default)]
struct Metrics(Arc<Mutex<HashMap<String, Arc<Cell>>>>);

#[derive(Default)]
struct Cell(AtomicU64, Mutex<Vec<f64>>);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

/// A gauge keeps every value it was set to.
impl GaugeFn for Cell {
    fn increment(&self, _: f64) {}
    fn decrement(&self, _: f64) {}
    fn set(&self, value: f64) {
        self.1.lock().unwrap().push(value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Metrics {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    /// The sum of every series of `name` whose labels include `with`.
    fn total(&self, name: &str, with: &str) -> u64 {
        let cells = self.0.lock().unwrap();
        cells
            .iter()
            .filter(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(with))
            .map(|(_, cell)| cell.0.load(Ordering::SeqCst))
            .sum()
    }
}

impl Metrics {
    /// Every value the gauge `name` with labels including `with` was set to, in order.
    fn gauge(&self, name: &str, with: &str) -> Vec<f64> {
        let cells = self.0.lock().unwrap();
        cells
            .iter()
            .filter(|(series, _)| series.starts_with(&format!("{name}{{")) && series.contains(with))
            .flat_map(|(_, cell)| cell.1.lock().unwrap().clone())
            .collect()
    }
}

impl Recorder for Metrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_counters_describe_the_pipeline_without_content_or_secrets() {
    let spans = Spans::default();
    let metrics = Metrics::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .expect("one subscriber");
    metrics::set_global_recorder(metrics.clone()).expect("one recorder");

    let sim = Simulator::start().await.expect("simulator");
    let kf = sim.open_kfid().to_owned();
    let store = Arc::new(MemoryBotStore::new());
    // Six parts for one message: the budget refuses the sixth before it is sent.
    let handler = |_turn: Turn| async {
        let parts = (1..=6)
            .map(|n| Text::new(format!("part {n}")).into())
            .collect();
        Ok::<_, String>(Answer::Messages(parts))
    };
    let client = sim.client_builder().build().expect("client");
    let bot = Bot::new(
        client.clone(),
        MemoryCursorStore::new(),
        store.clone(),
        handler,
    )
    .skip_history(false);
    sim.customer_says(&kf, "wmALICE", "秘密的内容")
        .expect("customer writes");
    bot.pull(&kf).await.expect("pull");
    until("five parts", || sim.sent().len() == 5).await;
    until("the turn's span", || {
        spans
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(name, _)| name == "wecom_kf.turn")
    })
    .await;
    // A second runtime on the same inbox, from an empty cursor: the page comes again.
    let again = Bot::new(client, MemoryCursorStore::new(), store, handler).skip_history(false);
    again.pull(&kf).await.expect("pull");

    let closed = spans.0.lock().unwrap().clone();
    let call = closed
        .iter()
        .find(|(name, fields)| {
            name == "wecom_kf.call"
                && fields.get("endpoint").map(String::as_str) == Some("send_msg")
        })
        .map(|(_, fields)| fields.clone())
        .expect("a span for send_msg");
    assert_eq!(
        call.get("outcome").map(String::as_str),
        Some("ok"),
        "{call:?}"
    );
    assert_eq!(call.get("errcode").map(String::as_str), Some("0"));
    assert!(call.contains_key("latency_ms") && call.contains_key("attempt"));
    let turn = closed
        .iter()
        .find(|(name, _)| name == "wecom_kf.turn")
        .map(|(_, fields)| fields.clone())
        .expect("a span for the turn");
    assert_eq!(turn.get("account"), Some(&kf));
    assert_eq!(
        turn.get("outcome").map(String::as_str),
        Some("answered"),
        "{turn:?}"
    );
    let customer = turn.get("customer").cloned().unwrap_or_default();
    assert!(
        customer.len() == 8 && !customer.contains("ALICE"),
        "a hash, not the id: {customer}"
    );
    // Nothing secret or private in any field of any span.
    let token = sim
        .client_builder()
        .build()
        .unwrap()
        .access_token()
        .await
        .unwrap();
    for (name, fields) in &closed {
        for value in fields.values() {
            for secret in [
                "秘密的内容",
                "part 1",
                sim.secret(),
                token.expose(),
                "wmALICE",
            ] {
                assert!(
                    !value.contains(secret),
                    "{name} carries {secret:?}: {fields:?}"
                );
            }
        }
    }

    assert_eq!(metrics.total("wecom_kf_messages_in_total", &kf), 1);
    assert_eq!(metrics.total("wecom_kf_messages_answered_total", &kf), 1);
    assert_eq!(metrics.total("wecom_kf_budget_refusals_total", &kf), 1);
    assert_eq!(metrics.total("wecom_kf_duplicates_skipped_total", &kf), 1);
    assert!(metrics.total("wecom_kf_api_calls_total", "endpoint=send_msg,outcome=ok") >= 5);
    assert!(
        metrics.total("wecom_kf_sync_lag_seconds", &kf) >= 1,
        "a lag sample per message"
    );
    let depth = metrics.gauge("wecom_kf_inbox_depth", &kf);
    assert_eq!(depth.first(), Some(&1.0), "the message waits: {depth:?}");
    assert_eq!(depth.last(), Some(&0.0), "then it is answered: {depth:?}");
}
