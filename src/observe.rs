//! What the crate tells a bot's dashboards, so they need no code of their own: a `tracing`
//! span per API attempt and per handled turn, and counters through the `metrics` facade.
//! Spans and metrics carry endpoints, accounts, error codes, outcomes and timings — never
//! message content, tokens or secrets; a customer is named by a short hash.

use std::time::Instant;

use tracing::Span;

/// One attempt of an API call: its span (`wecom_kf.call`), and what it ended with.
pub(crate) struct Attempt {
    span: Span,
    /// For the metrics' labels (the span has it too).
    #[cfg(feature = "metrics")]
    endpoint: &'static str,
    started: Instant,
}

impl Attempt {
    pub(crate) fn start(endpoint: &'static str, attempt: u32) -> Self {
        let span = tracing::info_span!(
            "wecom_kf.call",
            endpoint,
            attempt,
            outcome = tracing::field::Empty,
            errcode = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        Attempt {
            span,
            #[cfg(feature = "metrics")]
            endpoint,
            started: Instant::now(),
        }
    }

    pub(crate) fn span(&self) -> Span {
        self.span.clone()
    }

    /// Ends the attempt: `outcome` is `ok`, `api` (WeCom refused: `errcode` says why) or
    /// `transport`.
    pub(crate) fn end(&self, outcome: &'static str, errcode: Option<i64>) {
        let elapsed = self.started.elapsed();
        self.span.record("outcome", outcome);
        if let Some(errcode) = errcode {
            self.span.record("errcode", errcode);
        }
        self.span.record(
            "latency_ms",
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        );
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("wecom_kf_api_calls_total", "endpoint" => self.endpoint, "outcome" => outcome)
                .increment(1);
            metrics::histogram!("wecom_kf_api_call_seconds", "endpoint" => self.endpoint)
                .record(elapsed.as_secs_f64());
        }
    }
}

/// A customer as logs and metrics name them: 8 hex digits of a SHA-1 of the account and
/// the customer's id, enough to follow one customer, not to recover who it is.
#[cfg(feature = "bot")]
pub(crate) fn customer_hash(open_kfid: &str, external_userid: &str) -> String {
    use sha1::Digest as _;
    let digest = sha1::Sha1::new()
        .chain_update(open_kfid.as_bytes())
        .chain_update([0])
        .chain_update(external_userid.as_bytes())
        .finalize();
    crate::encode::hex(&digest[..4])
}
