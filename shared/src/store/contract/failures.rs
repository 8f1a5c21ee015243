//! [`Failures`]: items that failed to back up, with their attempts.

use super::{at, container};
use crate::store::Failures;

contract_tests!(failures_count_attempts_and_clear_without_deleting);

async fn failures_count_attempts_and_clear_without_deleting(catalog: &impl Failures) {
    // Given a failing twice, b failing then cleared, and an item that never failed cleared
    let c = container();
    catalog.record_failure(&c.item("a"), "timeout", at("2024-05-01T10:00:00Z")).await.expect("a");
    catalog.record_failure(&c.item("a"), "503", at("2024-05-01T10:02:00Z")).await.expect("a again");
    catalog.record_failure(&c.item("b"), "403", at("2024-05-01T10:00:00Z")).await.expect("b");
    catalog.clear_failure(&c.item("b")).await.expect("clear b");
    catalog.clear_failure(&c.item("never-failed")).await.expect("clear unknown");

    // Then only a is failing, with its last reason, its attempts and its last attempt
    let failures = catalog.failures(&c).await.expect("failures");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].key, c.item("a"));
    assert_eq!((failures[0].reason.as_str(), failures[0].attempts), ("503", 2));
    assert_eq!(failures[0].last_attempt, at("2024-05-01T10:02:00Z"));

    // And b failing again is counted on from its earlier attempt
    catalog.record_failure(&c.item("b"), "403", at("2024-05-01T10:05:00Z")).await.expect("b again");
    let failures = catalog.failures(&c).await.expect("failures");
    assert_eq!(failures.iter().map(|f| (f.key.item_id.as_str(), f.attempts)).collect::<Vec<_>>(), [("a", 2), ("b", 2)]);
}
