//! Exponential backoff for our own retries, with jitter so that retries from many workers
//! spread instead of arriving together.

use std::time::Duration;

use rand::Rng;

/// A retry schedule: `first`, then `factor` times the previous wait up to `max`, each plus up
/// to 50 % jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub factor: u32,
    pub max: Duration,
}

impl Backoff {
    /// Graph calls (transport failures, 500/502/504): 100 ms, 400 ms, 1.6 s, ...
    pub const GRAPH: Backoff = Backoff { first: Duration::from_millis(100), factor: 4, max: Duration::MAX };
    /// AWS calls (partial batch failures, unprocessed keys): 50 ms, 100 ms, 200 ms, ... at
    /// most 2 s.
    pub const AWS: Backoff = Backoff { first: Duration::from_millis(50), factor: 2, max: Duration::from_secs(2) };

    /// The wait before retry number `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let base = self.first.saturating_mul(self.factor.saturating_pow(retry)).min(self.max);
        let jitter_ms = rand::rng().random_range(0..=base.as_millis() as u64 / 2);
        base.saturating_add(Duration::from_millis(jitter_ms))
    }

    /// Sleeps the wait before retry number `retry`.
    pub async fn sleep(&self, retry: u32) {
        tokio::time::sleep(self.delay(retry)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(backoff: Backoff, expected_base_ms: &[(u32, u64)]) {
        for &(retry, base_ms) in expected_base_ms {
            let wait = backoff.delay(retry).as_millis() as u64;
            assert!((base_ms..=base_ms * 3 / 2).contains(&wait), "retry {retry}: {wait} ms");
        }
    }

    #[test]
    fn graph_retries_wait_four_times_longer_each_time_with_bounded_jitter() {
        check(Backoff::GRAPH, &[(0, 100), (1, 400), (2, 1_600)]);
    }

    #[test]
    fn aws_retries_double_their_wait_up_to_two_seconds() {
        check(Backoff::AWS, &[(0, 50), (1, 100), (5, 1_600), (6, 2_000), (40, 2_000)]);
    }
}
