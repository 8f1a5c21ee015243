//! [`SyncStates`]: a container's delta link, checkpoint and full-scan epoch.

use super::container;
use crate::model::SyncState;
use crate::store::SyncStates;

contract_tests!(a_sync_state_starts_empty_and_round_trips);

async fn a_sync_state_starts_empty_and_round_trips(catalog: &impl SyncStates) {
    // Given a container never synced, its state is the default
    assert_eq!(catalog.sync_state(&container()).await.expect("sync"), SyncState::default());

    // When a state is put, then it reads back whole
    let state =
        SyncState { delta_link: Some("https://graph/delta?token=x".into()), items_enqueued: 3, ..Default::default() };
    catalog.put_sync_state(&container(), &state).await.expect("put sync");
    assert_eq!(catalog.sync_state(&container()).await.expect("sync"), state);
}
