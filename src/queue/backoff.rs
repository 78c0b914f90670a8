//! Exponential backoff with full jitter, shared by broker reconnection and webhook retries.
//!
//! Full jitter (a uniform delay between zero and the exponential cap) spreads retries of many
//! clients that failed at the same moment, e.g. every worker after a broker restart.

use std::time::Duration;

/// The delay before retry number `attempt` (0 for the first retry): uniform in
/// `[cap/2, cap]` where `cap = min(max, base * 2^attempt)`. Half the cap is kept as a floor so
/// the delays still grow visibly, which operators expect when reading logs.
pub fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let cap = base.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(max);
    let half = cap / 2;
    let jitter_ms = rand::random_range(0..=half.as_millis().max(1) as u64);
    half + Duration::from_millis(jitter_ms).min(cap - half)
}

/// A counter of consecutive failures that hands out growing delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `base`, never waits more than `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff { attempt: 0, base, max }
    }

    /// The next delay; each call grows it.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay(self.attempt, self.base, self.max);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_within_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        for attempt in 0..40 {
            let cap = base.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(max);
            for _ in 0..20 {
                let d = delay(attempt, base, max);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "attempt {attempt}: {d:?} outside [{:?}, {cap:?}]",
                    cap / 2
                );
            }
        }
        assert!(delay(10, base, max) >= Duration::from_millis(2500));
    }

    #[test]
    fn jitter_spreads_retries_of_the_same_attempt() {
        let ds: std::collections::HashSet<_> = (0..50)
            .map(|_| delay(4, Duration::from_millis(100), Duration::from_secs(60)))
            .collect();
        assert!(ds.len() > 10, "only {} distinct delays", ds.len());
    }
}
