//! [`Coordination`]: throttle deadlines and concurrency slots shared by every worker.

use super::at;
use crate::store::Coordination;

contract_tests!(
    a_throttle_deadline_only_moves_later,
    slots_are_taken_while_free_or_expired_and_released_only_by_their_holder,
);

async fn a_throttle_deadline_only_moves_later(catalog: &impl Coordination) {
    let until = || async { catalog.throttled_until("tenant-1", "sharepoint").await.expect("read") };
    assert_eq!(until().await, None);
    catalog.throttle("tenant-1", "sharepoint", at("2024-05-01T10:05:00Z")).await.expect("throttle");
    catalog.throttle("tenant-1", "sharepoint", at("2024-05-01T10:01:00Z")).await.expect("earlier");
    assert_eq!(until().await, Some(at("2024-05-01T10:05:00Z")));
    catalog.throttle("tenant-1", "sharepoint", at("2024-05-01T10:09:00Z")).await.expect("later");
    assert_eq!(until().await, Some(at("2024-05-01T10:09:00Z")));
    assert_eq!(catalog.throttled_until("tenant-1", "drive").await.expect("read"), None);
}

async fn slots_are_taken_while_free_or_expired_and_released_only_by_their_holder(catalog: &impl Coordination) {
    // Given the three slots of a mailbox taken until 10:10
    let (now, later) = (at("2024-05-01T10:00:00Z"), at("2024-05-01T10:10:00Z"));
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases
            .push(catalog.acquire_slot("tenant-1", "mailbox.x", 3, now, later).await.expect("acquire").expect("free"));
    }
    let mut slots: Vec<u32> = leases.iter().map(|l| l.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [0, 1, 2]);

    // Then a fourth is refused, another mailbox's are free, and a released slot is taken again
    assert_eq!(catalog.acquire_slot("tenant-1", "mailbox.x", 3, now, later).await.expect("acquire"), None);
    assert!(catalog.acquire_slot("tenant-1", "mailbox.y", 3, now, later).await.expect("other").is_some());
    catalog.release_slot(&leases[1]).await.expect("release");
    let again = catalog.acquire_slot("tenant-1", "mailbox.x", 3, now, later).await.expect("acquire").expect("freed");
    assert_eq!(again.slot, leases[1].slot);

    // And an expired lease is taken over; its late release leaves the new holder alone
    let after = at("2024-05-01T10:11:00Z");
    let taken = catalog
        .acquire_slot("tenant-1", "mailbox.x", 3, after, at("2024-05-01T10:21:00Z"))
        .await
        .expect("acquire")
        .expect("expired slot");
    catalog.release_slot(&leases.iter().find(|l| l.slot == taken.slot).cloned().expect("old")).await.expect("late");
    assert_eq!(
        catalog
            .acquire_slot("tenant-1", "mailbox.x", 3, after, after)
            .await
            .expect("acquire")
            .map(|l| l.slot)
            .filter(|s| *s == taken.slot),
        None
    );
}
