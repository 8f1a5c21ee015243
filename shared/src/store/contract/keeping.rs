//! [`VaultKeeping`]: the head's `locked_until`, set only while the head is still the version
//! read, cleared by a commit that moves the head; each keeper task's run, saved under an
//! optimistic revision.

use super::{at, container, record, state};
use crate::model::{ContainerId, ContainerRecord};
use crate::store::{Commit, Containers, ItemHistory, VaultKeeping};

contract_tests!(
    a_head_lock_reads_back_from_every_head_read,
    a_head_lock_is_refused_once_the_head_moved,
    only_a_commit_that_moves_the_head_clears_its_lock,
    keeper_runs_are_saved_under_a_revision,
    keeper_runs_are_kept_per_tenant_and_task,
);

async fn a_head_lock_reads_back_from_every_head_read(catalog: &(impl ItemHistory + VaultKeeping)) {
    // Given an item with one version, not locked by the keeper yet
    let item = container().item("i");
    catalog.commit_version(&state("i", "e1", "root", "2024-05-01T10:00:00Z"), &record("1")).await.expect("commit");
    let head = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!(head.locked_until, None);

    // When the keeper records its lock
    let until = at("2024-08-01T10:00:00Z");
    assert!(catalog.set_head_lock(&head, until).await.expect("set lock"));

    // Then the single read, the batched read and the listing all carry it, the version unchanged
    let read = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!(read.locked_until, Some(until));
    assert_eq!((&read.current, &read.record), (&head.current, &head.record));
    let batched = catalog.heads(&container(), &["i".to_owned()]).await.expect("heads");
    assert_eq!(batched.get("i").and_then(|h| h.locked_until), Some(until));
    let listed = catalog.list_heads(&container()).await.expect("list heads");
    assert_eq!(listed.iter().map(|h| h.locked_until).collect::<Vec<_>>(), [Some(until)]);

    // And a later extension moves it on
    let later = at("2024-10-01T10:00:00Z");
    assert!(catalog.set_head_lock(&read, later).await.expect("extend again"));
    assert_eq!(catalog.head(&item).await.expect("head").expect("exists").locked_until, Some(later));
}

async fn a_head_lock_is_refused_once_the_head_moved(catalog: &(impl ItemHistory + VaultKeeping)) {
    // Given the head read at e1, then moved to e2 by a commit
    let item = container().item("i");
    catalog.commit_version(&state("i", "e1", "root", "2024-05-01T10:00:00Z"), &record("1")).await.expect("e1");
    let stale = catalog.head(&item).await.expect("head").expect("exists");
    catalog.commit_version(&state("i", "e2", "root", "2024-05-02T10:00:00Z"), &record("2")).await.expect("e2");

    // When the keeper records the lock of e1's objects
    let refused = catalog.set_head_lock(&stale, at("2024-08-01T10:00:00Z")).await.expect("set lock");

    // Then it is refused and the head (e2) carries no lock
    assert!(!refused);
    let head = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!((head.current.version.as_str(), head.locked_until), ("e2", None));

    // And a head that was never committed is refused too, writing nothing
    let mut ghost = stale.clone();
    ghost.current.key = container().item("ghost");
    assert!(!catalog.set_head_lock(&ghost, at("2024-08-01T10:00:00Z")).await.expect("set lock"));
    assert_eq!(catalog.head(&container().item("ghost")).await.expect("head"), None);
}

async fn only_a_commit_that_moves_the_head_clears_its_lock(catalog: &(impl ItemHistory + VaultKeeping)) {
    // Given e2 the head, locked by the keeper
    let item = container().item("i");
    let (e1, e2, e3) = (
        state("i", "e1", "root", "2024-05-01T10:00:00Z"),
        state("i", "e2", "root", "2024-05-02T10:00:00Z"),
        state("i", "e3", "root", "2024-05-03T10:00:00Z"),
    );
    catalog.commit_version(&e2, &record("2")).await.expect("e2");
    let head = catalog.head(&item).await.expect("head").expect("exists");
    let until = at("2024-08-01T10:00:00Z");
    assert!(catalog.set_head_lock(&head, until).await.expect("set lock"));

    // When e2 is redelivered and an older e1 arrives late
    assert_eq!(catalog.commit_version(&e2, &record("2")).await.expect("e2 again"), Commit::AlreadyCommitted);
    assert_eq!(catalog.commit_version(&e1, &record("1")).await.expect("late e1"), Commit::Created);

    // Then the head is still e2 and keeps its lock
    let head = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!((head.current.version.as_str(), head.locked_until), ("e2", Some(until)));

    // When a newer e3 is committed
    assert_eq!(catalog.commit_version(&e3, &record("3")).await.expect("e3"), Commit::Created);

    // Then the head is e3 with no lock recorded, in every read
    let head = catalog.head(&item).await.expect("head").expect("exists");
    assert_eq!((head.current.version.as_str(), head.locked_until), ("e3", None));
    let batched = catalog.heads(&container(), &["i".to_owned()]).await.expect("heads");
    assert_eq!(batched.get("i").map(|h| h.locked_until), Some(None));
    let listed = catalog.list_heads(&container()).await.expect("list heads");
    assert_eq!(listed.iter().map(|h| h.locked_until).collect::<Vec<_>>(), [None]);
}

async fn keeper_runs_are_saved_under_a_revision(catalog: &impl VaultKeeping) {
    // Given no run saved
    assert_eq!(catalog.keeper_run("tenant-1", "verify").await.expect("read"), None);

    // When one is created, and a second invocation also tries to create one
    assert!(catalog.put_keeper_run("tenant-1", "verify", r#"{"n":1}"#, None).await.expect("create"));
    assert!(!catalog.put_keeper_run("tenant-1", "verify", r#"{"n":"other"}"#, None).await.expect("second create"));

    // Then the first reads back as revision 1
    assert_eq!(catalog.keeper_run("tenant-1", "verify").await.expect("read"), Some((r#"{"n":1}"#.to_owned(), 1)));

    // When it is saved at revision 1, then a stale save at revision 1 comes
    assert!(catalog.put_keeper_run("tenant-1", "verify", r#"{"n":2}"#, Some(1)).await.expect("update"));
    assert!(!catalog.put_keeper_run("tenant-1", "verify", r#"{"n":"stale"}"#, Some(1)).await.expect("stale"));
    assert!(!catalog.put_keeper_run("tenant-1", "verify", r#"{"n":"ahead"}"#, Some(7)).await.expect("ahead"));

    // Then the update stands, as revision 2, and the next one builds on it
    assert_eq!(catalog.keeper_run("tenant-1", "verify").await.expect("read"), Some((r#"{"n":2}"#.to_owned(), 2)));
    assert!(catalog.put_keeper_run("tenant-1", "verify", r#"{"n":3}"#, Some(2)).await.expect("update"));
    assert_eq!(catalog.keeper_run("tenant-1", "verify").await.expect("read"), Some((r#"{"n":3}"#.to_owned(), 3)));
}

async fn keeper_runs_are_kept_per_tenant_and_task(catalog: &(impl ItemHistory + Containers + VaultKeeping)) {
    // Given runs of two tasks in tenant-1 and one in tenant-2, beside tenant-1's registered
    // drive (the same partition) and an item of it
    let registered = ContainerRecord {
        container: container(),
        user_id: "u".into(),
        user_principal_name: None,
        discovered_at: at("2024-05-01T00:00:00Z"),
        subscription_id: None,
        subscription_expires: None,
        problem: None,
        site: None,
    };
    catalog.put_container(&registered).await.expect("register");
    catalog.commit_version(&state("i", "e1", "root", "2024-05-01T10:00:00Z"), &record("1")).await.expect("commit");
    assert!(catalog.put_keeper_run("tenant-1", "extend", "extend-1", None).await.expect("extend"));
    assert!(catalog.put_keeper_run("tenant-1", "verify", "verify-1", None).await.expect("verify"));
    assert!(catalog.put_keeper_run("tenant-2", "verify", "verify-2", None).await.expect("tenant-2"));
    assert!(catalog.put_keeper_run("tenant-1", "verify", "verify-1b", Some(1)).await.expect("update"));

    // Then each reads back alone, with its own revision
    let read =
        |tenant: &'static str, task: &'static str| async move { catalog.keeper_run(tenant, task).await.expect("read") };
    assert_eq!(read("tenant-1", "extend").await, Some(("extend-1".to_owned(), 1)));
    assert_eq!(read("tenant-1", "verify").await, Some(("verify-1b".to_owned(), 2)));
    assert_eq!(read("tenant-2", "verify").await, Some(("verify-2".to_owned(), 1)));
    assert_eq!(read("tenant-2", "extend").await, None);

    // And the tenant's registry and heads are untouched by them
    assert_eq!(catalog.list_containers("tenant-1").await.expect("list containers"), [registered]);
    assert!(catalog.list_containers("tenant-2").await.expect("list containers").is_empty());
    assert_eq!(catalog.list_heads(&container()).await.expect("list heads").len(), 1);
    assert!(catalog.list_heads(&ContainerId::new("tenant-2", "b!drive")).await.expect("list heads").is_empty());
}
