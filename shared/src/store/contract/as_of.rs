//! [`PointInTime`]: a folder, a container and the change history as of a moment.

use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{at, commit_all, container, ids, is_invalid_cursor, pairs, state, tombstone};
use crate::model::ItemVersion;
use crate::store::{ItemHistory, PointInTime, StoreError, item_order};

contract_tests!(
    a_folder_as_of_a_moment_follows_edits_renames_moves_and_deletions,
    a_container_as_of_a_moment_shows_deletions_and_omits_items_not_yet_created,
    pages_of_children_resume_where_the_cursor_says_and_reject_foreign_cursors,
    the_change_history_window_includes_both_edges_oldest_first,
    every_folder_and_the_container_at_every_moment_are_what_the_history_says,
    a_folder_of_two_thousand_children_reads_completely_a_page_at_a_time,
    the_container_as_of_a_moment_read_a_page_at_a_time_is_the_whole_listing,
);

fn named(name: &str, version: ItemVersion) -> ItemVersion {
    ItemVersion { name: Some(name.to_owned()), ..version }
}

/// A morning in folder A: an edited and renamed document, an item moved out to B, one moved
/// in from B, one deleted, one created late.
fn morning() -> Vec<ItemVersion> {
    vec![
        named("draft.docx", state("doc", "d1", "A", "2024-05-01T10:00:00Z")),
        named("final.docx", state("doc", "d2", "A", "2024-05-01T11:00:00Z")),
        named("final.docx", state("doc", "d3", "A", "2024-05-01T12:00:00Z")),
        state("out", "o1", "A", "2024-05-01T10:00:00Z"),
        state("out", "o2", "B", "2024-05-01T11:00:00Z"),
        state("in", "i1", "B", "2024-05-01T10:00:00Z"),
        state("in", "i2", "A", "2024-05-01T11:30:00Z"),
        state("gone", "g1", "A", "2024-05-01T10:00:00Z"),
        tombstone("gone", Some("A"), "2024-05-01T11:00:00Z"),
        state("late", "l1", "A", "2024-05-01T13:00:00Z"),
    ]
}

/// Every child of `parent` at `t`, following cursors `limit` at a time: (item, version).
async fn all_children(
    catalog: &impl PointInTime,
    parent: &str,
    t: DateTime<Utc>,
    limit: usize,
) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.children_as_of(&container(), parent, t, cursor.as_deref(), limit).await.expect("page");
        assert!(page.items.len() <= limit, "a page of {} for a limit of {limit}", page.items.len());
        all.extend(page.items.into_iter().map(|v| (v.key.item_id, v.version)));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// The container at `t`, following cursors `limit` at a time: (item, version).
async fn all_as_of(catalog: &impl PointInTime, t: DateTime<Utc>, limit: usize) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = catalog.container_as_of_page(&container(), t, cursor.as_deref(), limit).await.expect("page");
        assert!(page.items.len() <= limit, "a page of {} for a limit of {limit}", page.items.len());
        all.extend(ids(page.items));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// The children of `parent` at `t` when they fit on one page.
async fn children(catalog: &impl PointInTime, parent: &str, t: &str) -> Vec<(String, String)> {
    let page = catalog.children_as_of(&container(), parent, at(t), None, 100).await.expect("children");
    assert_eq!(page.next, None);
    ids(page.items)
}

async fn a_folder_as_of_a_moment_follows_edits_renames_moves_and_deletions(catalog: &(impl ItemHistory + PointInTime)) {
    // Given a morning of changes in folders A and B
    commit_all(catalog, &morning()).await;

    // Then before anything existed, A is empty
    assert!(children(catalog, "A", "2024-05-01T09:59:59.999Z").await.is_empty());
    // At 10:30 A holds the draft, the item that later leaves, and the one later deleted
    assert_eq!(
        children(catalog, "A", "2024-05-01T10:30:00Z").await,
        pairs(&[("doc", "d1"), ("gone", "g1"), ("out", "o1")])
    );
    assert_eq!(children(catalog, "B", "2024-05-01T10:30:00Z").await, pairs(&[("in", "i1")]));
    // At 11:45 the moved-out item is B's, the moved-in one A's, the deleted one nobody's
    assert_eq!(children(catalog, "A", "2024-05-01T11:45:00Z").await, pairs(&[("doc", "d2"), ("in", "i2")]));
    assert_eq!(children(catalog, "B", "2024-05-01T11:45:00Z").await, pairs(&[("out", "o2")]));
    // A version modified exactly at T counts; the late item appears only once it exists
    assert_eq!(
        children(catalog, "A", "2024-05-01T13:00:00Z").await,
        pairs(&[("doc", "d3"), ("in", "i2"), ("late", "l1")])
    );
    let renamed = catalog.children_as_of(&container(), "A", at("2024-05-01T11:00:00Z"), None, 10).await;
    assert_eq!(renamed.expect("children").items[0].name.as_deref(), Some("final.docx"));
}

async fn a_container_as_of_a_moment_shows_deletions_and_omits_items_not_yet_created(
    catalog: &(impl ItemHistory + PointInTime),
) {
    commit_all(catalog, &morning()).await;
    let as_of =
        |t: &'static str| async move { ids(catalog.container_as_of(&container(), at(t)).await.expect("as of")) };
    assert!(as_of("2024-05-01T09:00:00Z").await.is_empty());
    assert_eq!(
        as_of("2024-05-01T11:45:00Z").await,
        pairs(&[("doc", "d2"), ("gone", "deleted@2024-05-01T11:00:00.000Z"), ("in", "i2"), ("out", "o2")])
    );
    assert_eq!(as_of("2024-05-01T13:00:00Z").await.len(), 5);
}

async fn pages_of_children_resume_where_the_cursor_says_and_reject_foreign_cursors(
    catalog: &(impl ItemHistory + PointInTime),
) {
    // Given 25 files in A at 10:00, of which every fifth moved to B at 11:00
    let mut versions = Vec::new();
    for i in 0..25 {
        let id = format!("f{i:02}");
        versions.push(state(&id, "1", "A", "2024-05-01T10:00:00Z"));
        if i % 5 == 0 {
            versions.push(state(&id, "2", "B", "2024-05-01T11:00:00Z"));
        }
    }
    commit_all(catalog, &versions).await;

    // When A is read at noon ten at a time
    let t = at("2024-05-01T12:00:00Z");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = catalog.children_as_of(&container(), "A", t, cursor.as_deref(), 10).await.expect("page");
        pages += 1;
        seen.extend(page.items.into_iter().map(|v| v.key.item_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    // Then every child comes exactly once, in order, and none that moved away
    let expected: Vec<String> = (0..25).filter(|i| i % 5 != 0).map(|i| format!("f{i:02}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 2);

    // And a cursor is refused on another folder, at another time, or edited
    let first = catalog.children_as_of(&container(), "A", t, None, 10).await.expect("page");
    let cursor = first.next.expect("a second page");
    let elsewhere = catalog.children_as_of(&container(), "B", t, Some(&cursor), 10).await;
    assert!(is_invalid_cursor(&elsewhere), "{elsewhere:?}");
    let other_time = catalog.children_as_of(&container(), "A", at("2024-05-01T12:00:01Z"), Some(&cursor), 10).await;
    assert!(is_invalid_cursor(&other_time), "{other_time:?}");
    for bad in ["", "not base64!", "eyJ2IjoxfQ", &format!("{cursor}x"), &cursor[1..]] {
        let page = catalog.children_as_of(&container(), "A", t, Some(bad), 10).await;
        assert!(is_invalid_cursor(&page), "{bad}: {page:?}");
    }
    assert!(!StoreError::InvalidCursor.is_retryable());
}

async fn the_change_history_window_includes_both_edges_oldest_first(catalog: &(impl ItemHistory + PointInTime)) {
    commit_all(
        catalog,
        &[
            state("a", "a1", "A", "2024-05-01T10:00:00Z"),
            state("b", "b1", "A", "2024-05-01T10:00:00.500Z"),
            state("a", "a2", "A", "2024-05-01T10:30:00Z"),
            tombstone("b", None, "2024-05-01T11:00:00Z"),
            state("c", "c1", "A", "2024-05-01T11:00:00.001Z"),
        ],
    )
    .await;
    let changes = |from: &'static str, to: &'static str, limit: usize| async move {
        let found = catalog.changes_between(&container(), at(from), at(to), limit).await.expect("changes");
        found.into_iter().map(|v| v.version).collect::<Vec<_>>()
    };
    assert_eq!(
        changes("2024-05-01T10:00:00.500Z", "2024-05-01T11:00:00Z", 10).await,
        ["b1", "a2", "deleted@2024-05-01T11:00:00.000Z"]
    );
    assert_eq!(changes("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", 2).await, ["a1", "b1"]);
    assert!(changes("2024-05-01T11:00:00.002Z", "2024-05-02T00:00:00Z", 10).await.is_empty());
    assert!(changes("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", 0).await.is_empty());
}

/// Edits, renames, moves both ways between folders, a deletion and a late creation; items with
/// many versions so a folder's index rows span pages of two children.
fn history() -> Vec<ItemVersion> {
    let mut versions = vec![
        state("doc", "d1", "A", "2024-05-01T10:00:00Z"),
        state("doc", "d2", "A", "2024-05-01T11:00:00Z"),
        state("doc", "d3", "A", "2024-05-01T12:00:00Z"),
        state("out", "o1", "A", "2024-05-01T10:00:00Z"),
        state("out", "o2", "B", "2024-05-01T11:00:00Z"),
        state("in", "i1", "B", "2024-05-01T10:00:00Z"),
        state("in", "i2", "A", "2024-05-01T11:30:00Z"),
        state("gone", "g1", "A", "2024-05-01T10:00:00Z"),
        tombstone("gone", Some("A"), "2024-05-01T11:00:00Z"),
        state("late", "l1", "A", "2024-05-01T13:00:00Z"),
        // Away and back again: in A, then B, then A.
        state("boomerang", "b1", "A", "2024-05-01T10:00:00Z"),
        state("boomerang", "b2", "B", "2024-05-01T10:30:00Z"),
        state("boomerang", "b3", "A", "2024-05-01T11:15:00Z"),
    ];
    for i in 0..7 {
        let item = format!("busy{i}");
        for edit in 0..4 {
            versions.push(state(&item, &format!("e{edit}"), "A", &format!("2024-05-01T1{edit}:0{i}:00Z")));
        }
    }
    versions
}

/// What "as of `t`" means, read straight off the history: per item, its newest version modified
/// at or before `t`, in item order.
fn current_at(history: &[ItemVersion], t: DateTime<Utc>) -> Vec<ItemVersion> {
    let mut current: Vec<ItemVersion> = Vec::new();
    let mut sorted: Vec<&ItemVersion> = history.iter().filter(|v| v.order_time() <= t).collect();
    sorted.sort_by_key(|v| (item_order(&v.key.item_id), v.order_time(), v.version.clone()));
    for v in sorted {
        match current.last_mut() {
            Some(last) if last.key == v.key => *last = v.clone(),
            _ => current.push(v.clone()),
        }
    }
    current
}

/// The change history read straight off the history: oldest first, ties in item order.
fn changes_in(history: &[ItemVersion], from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<ItemVersion> {
    let mut found: Vec<ItemVersion> =
        history.iter().filter(|v| from <= v.order_time() && v.order_time() <= to).cloned().collect();
    found.sort_by_key(|v| (v.order_time(), item_order(&v.key.item_id), v.version.clone()));
    found.truncate(limit);
    found
}

async fn every_folder_and_the_container_at_every_moment_are_what_the_history_says(
    catalog: &(impl ItemHistory + PointInTime),
) {
    // Given a history of edits, renames, moves both ways, a deletion and a late creation
    let history = history();
    commit_all(catalog, &history).await;

    // Then every folder at every moment, read two or a hundred at a time, has the children the
    // history says, and so does the container
    let moments = [
        "2024-05-01T09:00:00Z",
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:45:00Z",
        "2024-05-01T11:00:00Z",
        "2024-05-01T11:45:00Z",
        "2024-05-01T12:03:00Z",
        "2024-05-01T14:00:00Z",
    ];
    for t in moments.map(at) {
        let current = current_at(&history, t);
        for parent in ["A", "B", "C"] {
            let in_parent = current.iter().filter(|v| !v.deleted && v.parent_id.as_deref() == Some(parent));
            let expected = ids(in_parent.cloned().collect());
            assert_eq!(all_children(catalog, parent, t, 2).await, expected, "{parent} at {t}");
            assert_eq!(all_children(catalog, parent, t, 100).await, expected, "{parent} at {t}");
        }
        let drive = ids(catalog.container_as_of(&container(), t).await.expect("as of"));
        assert_eq!(drive, ids(current), "container at {t}");
    }

    // And the answers are the ones a person expects
    let a = |t| all_children(catalog, "A", at(t), 3);
    assert!(a("2024-05-01T09:00:00Z").await.is_empty());
    let at_1045: Vec<String> = a("2024-05-01T10:45:00Z").await.into_iter().map(|(i, _)| i).collect();
    assert!(at_1045.contains(&"out".to_owned()) && at_1045.contains(&"gone".to_owned()));
    assert!(!at_1045.contains(&"boomerang".to_owned()) && !at_1045.contains(&"in".to_owned()));
    let at_1145 = a("2024-05-01T11:45:00Z").await;
    for (item, version) in [("boomerang", "b3"), ("doc", "d2"), ("in", "i2")] {
        assert!(at_1145.contains(&(item.to_owned(), version.to_owned())), "{item} {version} in {at_1145:?}");
    }
    assert!(!at_1145.iter().any(|(i, _)| i == "out" || i == "gone" || i == "late"));
    let drive = catalog.container_as_of(&container(), at("2024-05-01T11:45:00Z")).await.expect("as of");
    assert!(drive.iter().any(|v| v.key.item_id == "gone" && v.deleted), "deletions are visible");

    // And the change history agrees on its window edges and its limit
    for (from, to, limit) in [
        ("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", 100),
        ("2024-05-01T10:00:00.001Z", "2024-05-01T10:59:59.999Z", 100),
        ("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", 5),
        ("2024-05-02T00:00:00Z", "2024-05-03T00:00:00Z", 5),
    ] {
        let got = catalog.changes_between(&container(), at(from), at(to), limit).await.expect("changes");
        assert_eq!(ids(got), ids(changes_in(&history, at(from), at(to), limit)), "[{from}, {to}] limit {limit}");
    }

    // And a cursor only works for the listing that handed it out
    let t = at("2024-05-01T14:00:00Z");
    let page = catalog.children_as_of(&container(), "A", t, None, 2).await.expect("page");
    let cursor = page.next.expect("a next page");
    let foreign = catalog.children_as_of(&container(), "B", t, Some(&cursor), 2).await;
    assert!(is_invalid_cursor(&foreign), "{foreign:?}");
    let edited = catalog.children_as_of(&container(), "A", t, Some(&cursor[1..]), 2).await;
    assert!(is_invalid_cursor(&edited), "{edited:?}");
}

/// Also prints how long each read takes (`--nocapture`): on moto, for scale only, since moto
/// answers every Query by scanning the whole table.
async fn a_folder_of_two_thousand_children_reads_completely_a_page_at_a_time(
    catalog: &(impl ItemHistory + PointInTime),
) {
    // Given 2,000 files in one folder, 200 of them edited again after the moment we read
    let mut versions = Vec::new();
    for i in 0..2_000 {
        let item = format!("file{i:05}");
        versions.push(state(&item, "1", "big", "2024-05-01T10:00:00Z"));
        if i % 10 == 0 {
            versions.push(state(&item, "2", "big", "2024-05-01T12:00:00Z"));
        }
    }
    let started = Instant::now();
    commit_all(catalog, &versions).await;
    println!("committed {} versions in {:?}", versions.len(), started.elapsed());

    // When the folder is read a page at a time, before and after the later edits
    for (label, t, limit) in [
        ("heads older than T", "2024-05-01T13:00:00Z", 200),
        ("10% changed since T", "2024-05-01T11:00:00Z", 200),
        ("heads older than T", "2024-05-01T13:00:00Z", 1_000),
        ("10% changed since T", "2024-05-01T11:00:00Z", 1_000),
    ] {
        let started = Instant::now();
        let first = catalog.children_as_of(&container(), "big", at(t), None, limit).await.expect("page");
        let first_page = started.elapsed();
        let all = all_children(catalog, "big", at(t), limit).await;
        println!(
            "children_as_of, {label}, limit {limit}: first page {first_page:?}, all 2,000 in {:?}",
            started.elapsed() - first_page
        );

        // Then a full first page comes back, and every child exactly once
        assert_eq!(first.items.len(), limit);
        assert_eq!(all.len(), 2_000);
    }
    let started = Instant::now();
    for i in (0..2_000).step_by(100) {
        let item = container().item(format!("file{i:05}"));
        catalog.version_at(&item, at("2024-05-01T11:00:00Z")).await.expect("version_at").expect("exists");
    }
    println!("version_at: {:?} each, sequentially", started.elapsed() / 20);
    let started = Instant::now();
    let drive = catalog.container_as_of(&container(), at("2024-05-01T11:00:00Z")).await.expect("as of");
    println!("container_as_of, 2,200 versions: {:?}", started.elapsed());
    assert_eq!(drive.len(), 2_000);
}

async fn the_container_as_of_a_moment_read_a_page_at_a_time_is_the_whole_listing(
    catalog: &(impl ItemHistory + PointInTime),
) {
    // Given the history of edits, moves, a deletion and a late creation, plus items whose ids
    // go on with characters below `#` (which sort before the id they extend)
    let mut history = history();
    for id in ["x", "x!1", "x!2", "x!1!a", "xa", "y"] {
        history.push(state(id, "1", "A", "2024-05-01T10:00:00Z"));
        history.push(state(id, "2", "B", "2024-05-01T11:00:00Z"));
    }
    commit_all(catalog, &history).await;

    // Then at every moment, read one, two, three or a hundred items at a time, the pages are
    // the whole listing in the same order, tombstones included
    for t in ["2024-05-01T09:00:00Z", "2024-05-01T10:30:00Z", "2024-05-01T11:45:00Z", "2024-05-01T14:00:00Z"].map(at) {
        let whole = ids(catalog.container_as_of(&container(), t).await.expect("as of"));
        for limit in [1, 2, 3, 100] {
            assert_eq!(all_as_of(catalog, t, limit).await, whole, "at {t}, {limit} a page");
        }
    }
    let late = all_as_of(catalog, at("2024-05-01T14:00:00Z"), 2).await;
    assert!(late.iter().any(|(i, _)| i == "x!1!a") && late.iter().any(|(i, _)| i == "gone"));

    // And a cursor only works for the listing that handed it out: not at another moment, not
    // edited, not for a folder
    let t = at("2024-05-01T14:00:00Z");
    let page = catalog.container_as_of_page(&container(), t, None, 2).await.expect("page");
    let cursor = page.next.expect("a next page");
    let other_moment = catalog.container_as_of_page(&container(), at("2024-05-01T13:00:00Z"), Some(&cursor), 2).await;
    assert!(is_invalid_cursor(&other_moment), "{other_moment:?}");
    let edited = catalog.container_as_of_page(&container(), t, Some(&cursor[1..]), 2).await;
    assert!(is_invalid_cursor(&edited), "{edited:?}");
    let folder = catalog.children_as_of(&container(), "A", t, Some(&cursor), 2).await;
    assert!(is_invalid_cursor(&folder), "{folder:?}");
}
