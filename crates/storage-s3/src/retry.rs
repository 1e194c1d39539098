//! Bounded exponential backoff with jitter, for transient store failures.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::StoreError;

/// How often and how patiently to retry a request that failed transiently.
///
/// Attempt `n` (counting retries from 1) waits a random time in
/// `[cap/2, cap]` where `cap = min(max_delay, base_delay * 2^(n-1))`:
/// exponential, bounded, and jittered so many clients hitting the same
/// throttled bucket do not retry in lockstep. Permanent errors
/// ([`StoreError::is_retryable`] false) are returned at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included; 1 means never retry.
    pub max_attempts: u32,
    /// Cap of the first wait.
    pub base_delay: Duration,
    /// No wait is longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 tries, waits capped at 100 ms, 200 ms, 400 ms, 800 ms: about 1.5 s
    /// worst case before giving up.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once.
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        let cap = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = cap / 2;
        let jitter_nanos = rng.gen_range(0..=(cap - half).as_nanos() as u64);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the attempts
    /// run out; returns the last error then.
    pub async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(e) if e.is_retryable() && tries < self.max_attempts => {
                    let wait = self.delay(tries, &mut rand::thread_rng());
                    tracing::warn!(%e, what, tries, ?wait, "transient store failure; retrying");
                    tokio::time::sleep(wait).await;
                    tries += 1;
                }
                result => return result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn delays_grow_then_stay_bounded() {
        let policy = RetryPolicy::default();
        let mut rng = rand::thread_rng();
        for retry in 1..40 {
            let cap = (policy.base_delay * 2u32.saturating_pow(retry - 1)).min(policy.max_delay);
            for _ in 0..50 {
                let d = policy.delay(retry, &mut rng);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "retry {retry}: {d:?} vs cap {cap:?}"
                );
            }
        }
        assert!(policy.delay(u32::MAX, &mut rng) <= policy.max_delay);
    }

    #[test]
    fn delays_are_jittered() {
        let policy = RetryPolicy::default();
        let mut rng = rand::thread_rng();
        let delays: std::collections::HashSet<_> =
            (0..20).map(|_| policy.delay(3, &mut rng)).collect();
        assert!(delays.len() > 1, "no jitter: {delays:?}");
    }

    async fn count_attempts(policy: RetryPolicy, failures: Vec<StoreError>) -> (u32, bool) {
        let calls = AtomicU32::new(0);
        let failures = std::sync::Mutex::new(failures);
        let result = policy
            .run("test", || {
                calls.fetch_add(1, Ordering::SeqCst);
                let next = failures.lock().unwrap().pop();
                async move { next.map_or(Ok(()), Err) }
            })
            .await;
        (calls.load(Ordering::SeqCst), result.is_ok())
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let failures = vec![StoreError::transient("503"), StoreError::transient("429")];
        assert_eq!(count_attempts(fast(), failures).await, (3, true));
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let failures = (0..10).map(|_| StoreError::transient("timeout")).collect();
        assert_eq!(count_attempts(fast(), failures).await, (4, false));
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        for permanent in [
            StoreError::not_found("k"),
            StoreError::PermissionDenied {
                detail: "403".into(),
            },
            StoreError::backend("400"),
            StoreError::too_large("k", 10, Some(11)),
        ] {
            assert_eq!(count_attempts(fast(), vec![permanent]).await, (1, false));
        }
    }

    #[tokio::test]
    async fn no_retry_policy_tries_once() {
        let failures = vec![StoreError::transient("503")];
        assert_eq!(
            count_attempts(RetryPolicy::no_retry(), failures).await,
            (1, false)
        );
    }
}
