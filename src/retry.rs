//! One retry loop for every retryable failure (the store, the broker, the CRM): exponential
//! backoff from `first`, capped at `max`, at most `limit` retries, or forever for work that
//! must never be skipped. Only what the caller classes retryable is retried: nothing retries
//! a permanent error forever. Each retry is logged and counted
//! (`appealflow_retries_total{what}`).

use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    /// Retries after the first attempt; `None` retries until it succeeds.
    pub limit: Option<u32>,
}

impl Backoff {
    /// The store and the broker: 100 ms doubling to 10 s.
    pub const fn services(limit: Option<u32>) -> Backoff {
        Backoff { first: Duration::from_millis(100), max: Duration::from_secs(10), limit }
    }

    /// The wait before retry number `retry` (0 = the first).
    pub fn delay(&self, retry: u32) -> Duration {
        self.first.saturating_mul(2u32.saturating_pow(retry.min(16))).min(self.max)
    }
}

/// Runs `attempt` until it succeeds, fails in a way `retryable` refuses, or the retries run
/// out; returns the outcome and how many attempts it took.
pub async fn retry<T, E, F, Fut>(
    what: &'static str,
    policy: Backoff,
    retryable: impl Fn(&E) -> bool,
    mut attempt: F,
) -> (Result<T, E>, u32)
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(e) if retryable(&e) && policy.limit.is_none_or(|limit| retries < limit) => {
                let delay = policy.delay(retries);
                crate::telemetry::events::Retrying { what, error: &e, retry_in: delay }.emit();
                tokio::time::sleep(delay).await;
                retries += 1;
            }
            outcome => return (outcome, retries + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap() {
        let b = Backoff { first: Duration::from_millis(100), max: Duration::from_secs(1), limit: None };
        let waits: Vec<u128> = (0..6).map(|r| b.delay(r).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn a_retryable_failure_is_retried_up_to_the_limit_and_a_permanent_one_never() {
        let policy =
            Backoff { first: Duration::from_millis(1), max: Duration::from_millis(1), limit: Some(2) };
        let mut calls = 0;
        let (out, attempts) = retry(
            "test",
            policy,
            |_: &String| true,
            || {
                calls += 1;
                async { Err::<(), _>("down".to_string()) }
            },
        )
        .await;
        assert_eq!((out.is_err(), attempts, calls), (true, 3, 3));
        let mut calls = 0;
        let (_, attempts) = retry(
            "test",
            policy,
            |e: &String| e != "refused",
            || {
                calls += 1;
                async { Err::<(), _>("refused".to_string()) }
            },
        )
        .await;
        assert_eq!((attempts, calls), (1, 1));
    }
}
