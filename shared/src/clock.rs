//! What time it is, as the steps ask it: every decision that depends on "now" (a lease ended, a
//! subscription is due for renewal, a restore time lies in the future) reads the [`Clock`] of
//! its deps, so a test moves time with a [`ManualClock`] instead of sleeping. Binaries wire
//! [`system`].

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The clock every binary runs on.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: shared (`Arc<ManualClock>` is an `Arc<dyn Clock>`),
/// set or advanced from any thread.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { now: Mutex::new(start) }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = t;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_set_or_advanced() {
        let start = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.123456789Z").expect("time").with_timezone(&Utc);
        let clock = Arc::new(ManualClock::new(start));
        let shared: Arc<dyn Clock> = clock.clone();
        assert_eq!(shared.now(), start);

        clock.advance(chrono::Duration::minutes(90));
        assert_eq!(shared.now(), start + chrono::Duration::minutes(90));
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}
