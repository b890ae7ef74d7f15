//! What the router reads of a request, and how loudly it says it refused one.

use std::fmt::Display;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// How much of a callback POST the router reads, and for how long. WeCom's callbacks are
/// well under 1 KB and arrive in one go, so anything bigger or slower is refused, whatever
/// body limit the rest of the app sets (an outer `DefaultBodyLimit::disable()` included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_body: usize,
    read_timeout: Duration,
}

impl Default for Limits {
    /// 64 KiB, read within 10 s.
    fn default() -> Self {
        Limits {
            max_body: 64 << 10,
            read_timeout: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The largest body read; a bigger one is answered 413 (before reading it, when its
    /// length is declared).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How long the body may take to arrive once the headers did; a slower one is
    /// answered 408.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }
}

/// Why a body was not read.
pub(super) enum Unread {
    TooLarge,
    TimedOut,
    Broken,
    NotUtf8,
}

impl Unread {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            Unread::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Unread::TimedOut => StatusCode::REQUEST_TIMEOUT,
            Unread::Broken | Unread::NotUtf8 => StatusCode::BAD_REQUEST,
        }
    }

    pub(super) fn reason(&self) -> &'static str {
        match self {
            Unread::TooLarge => "the body is over the limit",
            Unread::TimedOut => "the body did not arrive in time",
            Unread::Broken => "the body broke off",
            Unread::NotUtf8 => "the body is not UTF-8",
        }
    }

    pub(super) fn into_response(self) -> Response {
        (self.status(), self.reason()).into_response()
    }
}

/// Reads the whole body as text, at most `limits.max_body` bytes within
/// `limits.read_timeout`.
pub(super) async fn read_body(mut body: Body, limits: Limits) -> Result<String, Unread> {
    let declared = HttpBody::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |declared| declared > limits.max_body) {
        return Err(Unread::TooLarge);
    }
    let read = async {
        let mut bytes = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(data) = frame.map_err(|_| Unread::Broken)?.into_data() else {
                continue; // trailers
            };
            if data.len() > limits.max_body.saturating_sub(bytes.len()) {
                return Err(Unread::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
        String::from_utf8(bytes).map_err(|_| Unread::NotUtf8)
    };
    tokio::time::timeout(limits.read_timeout, read)
        .await
        .unwrap_or(Err(Unread::TimedOut))
}

/// Refusals are logged at `warn` at most once per [`RefusalLog::WINDOW`], with how many
/// were folded into it; the others at `debug`. Anyone can send requests that are refused,
/// so they must not be able to flood the log.
pub(super) struct RefusalLog {
    /// When the last `warn` went out, and the refusals since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RefusalLog {
    const WINDOW: Duration = Duration::from_secs(10);

    pub(super) fn new() -> Self {
        RefusalLog {
            state: Mutex::new((None, 0)),
        }
    }

    pub(super) fn refused(&self, what: &'static str, reason: &dyn Display) {
        match self.admit(Instant::now()) {
            Some(suppressed) => tracing::warn!(%reason, suppressed, "{what}"),
            None => tracing::debug!(%reason, "{what}"),
        }
    }

    /// `Some(refusals not warned about since the last warn)` when this one is to be warned
    /// about.
    fn admit(&self, now: Instant) -> Option<u64> {
        // Two numbers; a panic can't leave them in a state worse than a wrong count.
        let mut state = crate::mutex::lock(&self.state);
        let (last, suppressed) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < Self::WINDOW => {
                *suppressed += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warn_per_window_with_the_count_of_the_rest() {
        let log = RefusalLog::new();
        let start = Instant::now();
        assert_eq!(log.admit(start), Some(0));
        for i in 1..=29 {
            assert_eq!(log.admit(start + Duration::from_millis(i * 100)), None);
        }
        let later = start + RefusalLog::WINDOW;
        assert_eq!(
            log.admit(later),
            Some(29),
            "the next warn counts the folded ones"
        );
        assert_eq!(log.admit(later + Duration::from_secs(1)), None);
        assert_eq!(log.admit(later + RefusalLog::WINDOW * 3), Some(1));
    }
}
