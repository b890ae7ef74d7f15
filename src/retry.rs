//! When and how long to wait before trying a request again.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Retries for requests that certainly did not take effect: WeCom's "busy" codes (-1,
/// rate limits) and connections that were never made. Idempotent endpoints (`sync_msg`,
/// `gettoken`) are also retried after timeouts; sends never are.
///
/// The waits after a rate limit (45009) and the deadline of a whole call are set on the
/// [`ClientBuilder`](crate::ClientBuilder) (`rate_limit_backoff`, `call_deadline`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 turns retrying off.
    pub max_retries: u32,
    /// The wait before the first retry; it doubles each time, with jitter.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so many clients don't retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        jittered(self.initial_backoff, self.max_backoff, retry)
    }
}

/// The default first wait after a rate limit: a 45009 block lasts about a minute, so
/// the 200 ms of ordinary backoff would spend every retry inside it.
pub(crate) const DEFAULT_RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait after a rate limit (unless the first wait is longer).
const MAX_RATE_LIMIT_BACKOFF: Duration = Duration::from_secs(60);
/// The default deadline of one call, retries included.
pub(crate) const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(60);

/// What one call's retry loop follows: the policy, the longer waits after a rate limit,
/// and the call's deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Retries {
    pub(crate) policy: RetryPolicy,
    /// The first wait after a rate limit; doubles like the policy's.
    pub(crate) rate_limit_backoff: Duration,
    /// No retry starts whose wait would end past this much time after the call began.
    pub(crate) deadline: Option<Duration>,
}

/// Why the last attempt is retried, which sets how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Busy, or a connection that failed: the policy's backoff.
    Backoff,
    /// Rate limited: the longer backoff.
    RateLimited,
}

impl Retries {
    /// The wait before retry number `retry` (0-based), or `None` when none may start: the
    /// retries are used up, or the wait would end past the deadline (`elapsed` is how long
    /// the call has run).
    pub(crate) fn next(&self, wait: Wait, retry: u32, elapsed: Duration) -> Option<Duration> {
        if retry >= self.policy.max_retries {
            return None;
        }
        let wait = match wait {
            Wait::Backoff => self.policy.backoff(retry),
            Wait::RateLimited => jittered(
                self.rate_limit_backoff,
                MAX_RATE_LIMIT_BACKOFF.max(self.rate_limit_backoff),
                retry,
            ),
        };
        match self.deadline {
            Some(deadline) if elapsed.saturating_add(wait) >= deadline => None,
            _ => Some(wait),
        }
    }
}

/// `initial` doubled `retry` times, capped at `max`, with equal jitter.
fn jittered(initial: Duration, max: Duration, retry: u32) -> Duration {
    let exponential = initial.saturating_mul(1u32 << retry.min(16)).min(max);
    let half = exponential / 2;
    let random = RandomState::new().build_hasher().finish();
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % jitter_nanos.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        let first = p.backoff(0);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let capped = p.backoff(10);
        assert!(capped >= Duration::from_millis(150) && capped <= Duration::from_millis(300));
    }

    fn retries(deadline: Option<Duration>) -> Retries {
        Retries {
            policy: RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(400),
            },
            rate_limit_backoff: Duration::from_secs(4),
            deadline,
        }
    }

    fn within(wait: Option<Duration>, low_ms: u64, high_ms: u64) -> bool {
        wait.is_some_and(|w| {
            w >= Duration::from_millis(low_ms) && w <= Duration::from_millis(high_ms)
        })
    }

    #[test]
    fn rate_limits_wait_longer_and_double_past_the_policy_cap() {
        let r = retries(None);
        let zero = Duration::ZERO;
        assert!(within(r.next(Wait::Backoff, 0, zero), 50, 100));
        assert!(within(r.next(Wait::Backoff, 2, zero), 200, 400));
        assert!(within(r.next(Wait::RateLimited, 0, zero), 2_000, 4_000));
        assert!(within(r.next(Wait::RateLimited, 2, zero), 8_000, 16_000));
        assert_eq!(r.next(Wait::RateLimited, 3, zero), None, "retries used up");
        let long = Retries {
            policy: RetryPolicy {
                max_retries: 20,
                ..r.policy.clone()
            },
            ..r
        };
        assert!(
            within(long.next(Wait::RateLimited, 10, zero), 30_000, 60_000),
            "capped at a minute"
        );
    }

    #[test]
    fn no_retry_starts_that_would_end_past_the_deadline() {
        let r = retries(Some(Duration::from_secs(10)));
        assert!(r.next(Wait::Backoff, 0, Duration::from_secs(9)).is_some());
        assert_eq!(
            r.next(Wait::Backoff, 0, Duration::from_secs(10)),
            None,
            "the deadline has passed"
        );
        // The first rate-limit wait is at least 2 s: from 8 s on, it would end past 10 s.
        assert!(
            r.next(Wait::RateLimited, 0, Duration::from_secs(5))
                .is_some()
        );
        assert_eq!(r.next(Wait::RateLimited, 0, Duration::from_secs(8)), None);
        assert!(
            retries(None)
                .next(Wait::RateLimited, 0, Duration::from_secs(3600))
                .is_some(),
            "no deadline"
        );
    }
}
