//! SharePoint's resource-unit budget as Graph reports it. From 80 % of an app's per-minute
//! budget, Graph adds `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds
//! until the window resets; IETF draft-03) to its answers, for the window closest to
//! exhaustion, which may be the daily one (graph-facts-sharepoint §2.4). The client keeps the
//! latest of them so that workers can pause *before* Graph has to answer 429; on a 429 the
//! reset also bounds the wait from below.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

/// Share of a window's budget (per cent of `RateLimit-Limit`) left unspent: at or below it the
/// tenant's drive work pauses until the window resets. It is what the calls already on their
/// way when the pause is shared may still spend: with the template's concurrency (20 copiers
/// × 4 copies, 5 large-item copiers, 10 enumerators), at most about 105 calls are in flight
/// for a tenant, each 1 resource unit (a delta without a token, 2). At the smallest tenant's
/// 1,250 units a minute, 10 % is 125 units, which covers them; 5 % (62) would not.
pub const BUDGET_RESERVE_PERCENT: u64 = 10;

/// The most a reserve holds back, in resource units. The calls in flight do not grow with the
/// budget: without a cap, 10 % of a 1.2 M-unit daily window would leave hours of work undone
/// waiting for a reset.
pub const BUDGET_RESERVE_MAX_UNITS: u64 = 500;

/// The longest window SharePoint meters (a day). A longer `RateLimit-Reset` is malformed.
const LONGEST_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// One report of the budget window closest to exhaustion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Resource units the window allows.
    pub limit: u64,
    /// Resource units left in the window.
    pub remaining: u64,
    /// Until the window resets, from when the answer was received.
    pub reset: Duration,
}

impl RateLimit {
    /// The three headers, if all are present and well formed; anything else is ignored.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        Some(Self {
            limit: leading_number(headers, "ratelimit-limit")?,
            remaining: leading_number(headers, "ratelimit-remaining")?,
            reset: reset(headers)?,
        })
    }

    /// Resource units this window keeps for the calls in flight.
    pub fn reserve(&self) -> u64 {
        (self.limit.saturating_mul(BUDGET_RESERVE_PERCENT).div_ceil(100)).min(BUDGET_RESERVE_MAX_UNITS)
    }

    /// The window is down to its reserve: pause until it resets.
    pub fn is_low(&self) -> bool {
        self.remaining <= self.reserve()
    }
}

/// `RateLimit-Reset`, if well formed and within a day.
pub(crate) fn reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = Duration::from_secs(leading_number(headers, "ratelimit-reset")?);
    (reset <= LONGEST_WINDOW).then_some(reset)
}

/// The first item of a header as a number: draft-03 allows `1250, 1250;w=60` in
/// `RateLimit-Limit`.
fn leading_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    value.split([',', ';']).next()?.trim().parse().ok()
}

/// The latest budget report and when it was received, shared by a client's clones.
#[derive(Debug, Default)]
pub(super) struct BudgetWatch {
    latest: Mutex<Option<(RateLimit, Instant)>>,
}

impl BudgetWatch {
    /// Keeps the report an answer carries. An answer without one changes nothing: Exchange
    /// and the download hosts do not report SharePoint's budget, and a report lapses at its
    /// reset anyway.
    pub(super) fn observe(&self, headers: &HeaderMap) {
        if let Some(report) = RateLimit::from_headers(headers) {
            self.record(report, Instant::now());
        }
    }

    fn record(&self, report: RateLimit, at: Instant) {
        *self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((report, at));
    }

    /// Until the window resets, if the latest report shows it down to its reserve.
    pub(super) fn pause(&self) -> Option<Duration> {
        self.pause_at(Instant::now())
    }

    fn pause_at(&self, now: Instant) -> Option<Duration> {
        let (report, at) = (*self.latest.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))?;
        let left = report.reset.checked_sub(now.saturating_duration_since(at))?;
        (report.is_low() && !left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn check(pairs: &[(&str, &str)], expected: Option<(u64, u64, u64)>) {
        let expected =
            expected.map(|(limit, remaining, reset)| RateLimit { limit, remaining, reset: Duration::from_secs(reset) });
        assert_eq!(RateLimit::from_headers(&headers(pairs)), expected, "{pairs:?}");
    }

    #[test]
    fn the_three_headers_make_a_report_and_anything_malformed_none() {
        let full = [("RateLimit-Limit", "1250"), ("RateLimit-Remaining", "40"), ("RateLimit-Reset", "35")];
        check(&full, Some((1250, 40, 35)));
        check(
            &[("ratelimit-limit", "1250, 1250;w=60"), ("ratelimit-remaining", " 7 "), ("ratelimit-reset", "3600")],
            Some((1250, 7, 3600)),
        );
        check(&full[..2], None);
        check(&[], None);
        check(&[("RateLimit-Limit", "many"), full[1], full[2]], None);
        check(&[full[0], ("RateLimit-Remaining", "-3"), full[2]], None);
        check(&[full[0], full[1], ("RateLimit-Reset", "Wed, 21 Oct 2015 07:28:00 GMT")], None);
        check(&[full[0], full[1], ("RateLimit-Reset", "86401")], None);
    }

    #[test]
    fn the_reserve_is_a_tenth_of_the_window_at_most_five_hundred_units() {
        let report = |limit, remaining| RateLimit { limit, remaining, reset: Duration::from_secs(30) };
        assert_eq!(report(1250, 0).reserve(), 125);
        assert_eq!(report(6250, 0).reserve(), 500);
        assert_eq!(report(1_200_000, 0).reserve(), 500);
        assert_eq!(report(5, 0).reserve(), 1);
        assert!(report(1250, 125).is_low());
        assert!(!report(1250, 126).is_low());
        assert!(!report(1_200_000, 501).is_low());
    }

    #[test]
    fn a_low_report_pauses_until_its_reset_and_then_lapses() {
        let watch = BudgetWatch::default();
        let at = Instant::now();
        assert_eq!(watch.pause_at(at), None, "no report, no pause");

        watch.record(RateLimit { limit: 1250, remaining: 100, reset: Duration::from_secs(40) }, at);
        assert_eq!(watch.pause_at(at + Duration::from_secs(10)), Some(Duration::from_secs(30)));
        assert_eq!(watch.pause_at(at + Duration::from_secs(40)), None, "the window has reset");

        watch.record(RateLimit { limit: 1250, remaining: 900, reset: Duration::from_secs(40) }, at);
        assert_eq!(watch.pause_at(at), None, "plenty left");
    }

    #[test]
    fn an_answer_without_a_report_keeps_the_last_one() {
        let watch = BudgetWatch::default();
        watch.observe(&headers(&[
            ("RateLimit-Limit", "1250"),
            ("RateLimit-Remaining", "3"),
            ("RateLimit-Reset", "50"),
        ]));
        watch.observe(&headers(&[("content-type", "application/json")]));
        watch.observe(&headers(&[("RateLimit-Limit", "1250"), ("RateLimit-Remaining", "oops")]));
        assert!(watch.pause().is_some_and(|p| p > Duration::from_secs(45)));
    }
}
