//! [`ItemHistory`]: commits, heads, history and the version at a moment.

use super::{at, commit_all, container, is_invalid_cursor, record, state};
use crate::model::ContainerId;
use crate::store::{Commit, ItemHistory};

contract_tests!(
    commits_are_idempotent_and_the_head_follows_microsoft_365_time,
    the_version_at_a_moment_includes_versions_modified_within_that_millisecond,
    heads_are_read_in_batches_and_listed_per_container,
    heads_listed_a_page_at_a_time_are_every_head_once,
);

async fn commits_are_idempotent_and_the_head_follows_microsoft_365_time(catalog: &impl ItemHistory) {
    // Given v2 committed, then a late v1, then both redelivered
    let item = container().item("01ITEM");
    let v1 = state("01ITEM", "\"{A},1\"", "root", "2024-05-01T10:00:00Z");
    let v2 = state("01ITEM", "\"{A},2\"", "root", "2024-05-02T10:00:00.250Z");
    assert_eq!(catalog.commit_version(&v2, &record("2")).await.expect("v2"), Commit::Created);
    assert_eq!(catalog.commit_version(&v1, &record("1")).await.expect("v1"), Commit::Created);
    assert_eq!(catalog.commit_version(&v1, &record("1")).await.expect("v1 again"), Commit::AlreadyCommitted);
    assert_eq!(catalog.commit_version(&v2, &record("2")).await.expect("v2 again"), Commit::AlreadyCommitted);

    // Then the head is v2, history is newest first, and as-of picks by modification time
    let head = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!((head.current.clone(), head.record.clone()), (v2.clone(), record("2")));
    assert_eq!(catalog.versions(&item, 10).await.expect("versions"), vec![v2.clone(), v1.clone()]);
    assert_eq!(catalog.versions(&item, 1).await.expect("versions"), vec![v2.clone()]);
    let as_of = |t: &'static str| {
        let item = &item;
        async move { catalog.version_at(item, at(t)).await.expect("version_at") }
    };
    assert_eq!(as_of("2024-05-01T09:59:59.999Z").await, None);
    assert_eq!(as_of("2024-05-01T10:00:00Z").await, Some(v1.clone()));
    assert_eq!(as_of("2024-05-02T10:00:00.249Z").await, Some(v1.clone()));
    assert_eq!(as_of("2024-05-02T10:00:00.250Z").await, Some(v2.clone()));
}

async fn the_version_at_a_moment_includes_versions_modified_within_that_millisecond(catalog: &impl ItemHistory) {
    // Given two versions, the second modified half a second into its second
    let item = container().item("i");
    commit_all(
        catalog,
        &[state("i", "e1", "root", "2024-05-01T10:00:00Z"), state("i", "e2", "root", "2024-05-02T10:00:00.500Z")],
    )
    .await;

    // Then each moment sees the version modified at or before it, to the millisecond
    let as_of = |t: &'static str| {
        let item = &item;
        async move { catalog.version_at(item, at(t)).await.expect("version_at").map(|v| v.version) }
    };
    assert_eq!(as_of("2024-05-01T09:59:59.999Z").await, None);
    assert_eq!(as_of("2024-05-01T10:00:00Z").await.as_deref(), Some("e1"));
    assert_eq!(as_of("2024-05-02T10:00:00.499Z").await.as_deref(), Some("e1"));
    assert_eq!(as_of("2024-05-02T10:00:00.500Z").await.as_deref(), Some("e2"));
    assert_eq!(as_of("2024-05-02T10:00:00.500999Z").await.as_deref(), Some("e2"));
}

async fn heads_are_read_in_batches_and_listed_per_container(catalog: &impl ItemHistory) {
    // Given one item of 130 in ten committed (more heads than one BatchGetItem reads), and one
    // more item the scan will not see
    let ids: Vec<String> = (0..130).map(|i| format!("item-{i:03}")).collect();
    for id in ids.iter().step_by(10) {
        let v = state(id, "e", "root", "2024-05-01T00:00:00Z");
        catalog.commit_version(&v, &record(id)).await.expect("commit");
    }
    commit_all(catalog, &[state("01ITEM", "e", "root", "2024-05-01T00:00:00Z")]).await;

    // When all 130 heads are asked for (one twice)
    let mut wanted = ids.clone();
    wanted.push("item-000".to_owned());
    let found = catalog.heads(&container(), &wanted).await.expect("heads");

    // Then the committed ones are found, and every head of the container is listed
    assert_eq!(found.len(), 13);
    assert_eq!(found["item-120"].record, record("item-120"));
    let heads = catalog.list_heads(&container()).await.expect("list heads");
    assert_eq!(heads.len(), 14);
    assert!(catalog.head(&container().item("item-001")).await.expect("head").is_none());
}

async fn heads_listed_a_page_at_a_time_are_every_head_once(catalog: &impl ItemHistory) {
    // Given 25 items of a container, one edited twice, and an item of another container
    let ids: Vec<String> = (0..25).map(|i| format!("item-{i:03}")).collect();
    let mut versions: Vec<_> = ids.iter().map(|id| state(id, "e1", "root", "2024-05-01T00:00:00Z")).collect();
    versions.push(state("item-007", "e2", "root", "2024-05-02T00:00:00Z"));
    commit_all(catalog, &versions).await;
    let mut elsewhere = state("item-100", "e1", "root", "2024-05-01T00:00:00Z");
    elsewhere.key = ContainerId::new("tenant-1", "b!other").item("item-100");
    commit_all(catalog, &[elsewhere]).await;

    for limit in [1, 4, 25, 100] {
        // When the heads are listed `limit` at a time
        let (mut listed, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let page = catalog.heads_page(&container(), cursor.as_deref(), limit).await.expect("page");
            assert!(page.items.len() <= limit);
            pages += 1;
            listed.extend(page.items.into_iter().map(|h| (h.current.key.item_id, h.current.version)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }

        // Then each head of the container comes once, in id order, as it is now
        let mut expected: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), "e1".to_owned())).collect();
        expected[7].1 = "e2".to_owned();
        assert_eq!(listed, expected, "{limit} a page");
        assert!(pages <= 25usize.div_ceil(limit) + 1, "{pages} pages of {limit}");
    }

    // And a cursor of this listing is refused by another container's
    let page = catalog.heads_page(&container(), None, 2).await.expect("page");
    let foreign = catalog.heads_page(&ContainerId::new("tenant-1", "b!other"), page.next.as_deref(), 2).await;
    assert!(is_invalid_cursor(&foreign), "{foreign:?}");
}
