//! [`SyncStates`]: a container's delta link, checkpoint and full-scan epoch.

use super::container;
use crate::model::{ContainerId, SyncState};
use crate::store::{SyncStates, seen_mark};

contract_tests!(a_sync_state_starts_empty_and_round_trips, a_full_scan_reads_back_every_item_it_recorded_as_seen);

async fn a_sync_state_starts_empty_and_round_trips(catalog: &impl SyncStates) {
    // Given a container never synced, its state is the default
    assert_eq!(catalog.sync_state(&container()).await.expect("sync"), SyncState::default());

    // When a state is put, then it reads back whole
    let state =
        SyncState { delta_link: Some("https://graph/delta?token=x".into()), items_enqueued: 3, ..Default::default() };
    catalog.put_sync_state(&container(), &state).await.expect("put sync");
    assert_eq!(catalog.sync_state(&container()).await.expect("sync"), state);
}

async fn a_full_scan_reads_back_every_item_it_recorded_as_seen(catalog: &impl SyncStates) {
    // Given 2,500 items seen by one scan over three pages (one page redelivered), and items
    // seen by another scan and in another container
    let ids: Vec<String> = (0..2500).map(|i| format!("01ITEM{i:05}")).collect();
    for page in ids.chunks(1200) {
        catalog.record_seen(&container(), "epoch-1", page).await.expect("record");
    }
    catalog.record_seen(&container(), "epoch-1", &ids[..10]).await.expect("redelivered");
    catalog.record_seen(&container(), "epoch-2", &["other".to_owned()]).await.expect("record");
    catalog.record_seen(&ContainerId::new("t", "elsewhere"), "epoch-1", &["x".to_owned()]).await.expect("record");

    // Then the scan reads back exactly its own marks
    let seen = catalog.seen_in_scan(&container(), "epoch-1").await.expect("seen");
    assert_eq!(seen.len(), 2500);
    assert!(ids.iter().all(|id| seen.contains(&seen_mark(id))));
    assert!(!seen.contains(&seen_mark("other")) && !seen.contains(&seen_mark("x")));
    assert!(catalog.seen_in_scan(&container(), "epoch-3").await.expect("seen").is_empty());
}
