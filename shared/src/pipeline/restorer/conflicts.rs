//! What stands in a restore's way, found by its plan step: a dry run lists these, a run
//! counts them. In place, the catalog alone tells (items created after the restore time, and
//! names at that time now held by another item); an alternate target is compared with what
//! Graph holds there now, one folder listing per folder the restore would merge into.

use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};

use super::outline::{Outline, Side, State};
use crate::graph::{GraphClient, ItemKind as GraphKind};
use crate::model::{ConflictPolicy, ItemKind, RestoreJob, RestoreScope, RestoreTarget};
use crate::pipeline::PipelineError;

/// One item in the way, with what the restore will do about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Conflict {
    pub path: String,
    pub item_id: String,
    pub detail: String,
}

/// Every conflict counted, the first `listed` of them (by path) kept: a drive where a
/// million items are in the way lists a thousand, never holds a million reports.
#[derive(Debug)]
pub(super) struct Conflicts {
    pub count: u64,
    kept: BinaryHeap<Conflict>,
    room: usize,
}

impl Conflicts {
    pub(super) fn new(room: usize) -> Self {
        Self { count: 0, kept: BinaryHeap::new(), room }
    }

    fn push(&mut self, conflict: Conflict) {
        self.count += 1;
        self.kept.push(conflict);
        if self.kept.len() > self.room {
            self.kept.pop();
        }
    }

    /// The kept conflicts by path, then item id.
    pub(super) fn listed(self) -> Vec<Conflict> {
        self.kept.into_sorted_vec()
    }
}

/// (parent, a hash of the lower-cased name): where a name is held.
fn name_key(outline: &Outline, state: &State) -> Option<(u32, u64)> {
    let name = outline.name(state);
    if name.is_empty() {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.chars().flat_map(char::to_lowercase).for_each(|c| c.hash(&mut hasher));
    Some((state.parent?, hasher.finish()))
}

fn same_name(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase))
}

/// Conflicts of an in-place rollback, from the catalog's states at T and now.
pub(super) fn in_place(outline: &Outline, job: &RestoreJob, room: usize) -> Conflicts {
    let mut found = Conflicts::new(room);
    let scope = outline.in_scope(Side::At, &job.scope);
    let mut restored = vec![false; outline.len()];
    scope.iter().for_each(|i| restored[*i as usize] = true);
    let is_new = |i: u32| outline.state(Side::At, i).is_none();
    for item in outline.in_scope(Side::Now, &job.scope).into_iter().filter(|i| is_new(*i)) {
        let detail = if job.quarantine_new_items {
            "created after the restore time: will be moved to the quarantine folder"
        } else {
            "created after the restore time: will be left in place"
        };
        found.push(Conflict { path: outline.path(item), item_id: outline.id(item).to_owned(), detail: detail.into() });
    }

    // Who holds each (folder, name) now, among the items that stay where they are: those the
    // restore does not move (outside its scope at T) and new ones that are not quarantined.
    let quarantined = |i: u32| job.quarantine_new_items && is_new(i);
    let stays = |i: u32| !restored[i as usize] && !quarantined(i);
    let mut holders: HashMap<(u32, u64), Vec<u32>> = HashMap::new();
    for i in (0..outline.len() as u32).filter(|i| stays(*i)) {
        if let Some(key) = outline.state(Side::Now, i).and_then(|s| name_key(outline, s)) {
            holders.entry(key).or_default().push(i);
        }
    }
    for item in scope {
        let Some(at) = outline.state(Side::At, item) else { continue };
        let Some(candidates) = name_key(outline, at).and_then(|k| holders.get(&k)) else { continue };
        let holder = candidates
            .iter()
            .copied()
            .find(|h| outline.state(Side::Now, *h).is_some_and(|s| same_name(outline.name(s), outline.name(at))));
        let Some(holder) = holder.filter(|h| *h != item) else { continue };
        let held_kind = outline.state(Side::Now, holder).map(|s| s.kind);
        let held_by = outline.path(holder);
        let exists_now = outline.state(Side::Now, item).is_some();
        let detail = match (exists_now, at.kind, held_kind) {
            (true, _, _) => format!("its name is now held by {held_by}: putting the name back will fail"),
            (false, ItemKind::File, _) => {
                format!("its name is now held by {held_by}: will be recreated under a new name")
            }
            (false, _, Some(ItemKind::File)) => format!("its name is now held by the file {held_by}: will fail"),
            (false, _, _) => format!("its name is now held by the folder {held_by}: will be merged into it"),
        };
        found.push(Conflict { path: outline.path(item), item_id: outline.id(item).to_owned(), detail });
    }
    found
}

/// Conflicts of a restore into another folder: the scope's tree is laid over what the target
/// holds now, folder by folder, through the folders both have (where the restore merges).
pub(super) async fn alternate(
    graph: &GraphClient,
    outline: &Outline,
    job: &RestoreJob,
    root_id: &str,
    room: usize,
) -> Result<Conflicts, PipelineError> {
    let mut found = Conflicts::new(room);
    let RestoreTarget::Alternate { drive_id, folder_id } = &job.target else { return Ok(found) };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for item in outline.in_scope(Side::At, &job.scope) {
        if let Some(parent) = outline.state(Side::At, item).and_then(|s| s.parent) {
            children.entry(parent).or_default().push(item);
        }
    }
    let top: Vec<u32> = match &job.scope {
        RestoreScope::Container => outline.find(root_id).and_then(|r| children.get(&r).cloned()).unwrap_or_default(),
        RestoreScope::Item { item_id } => {
            outline.find(item_id).filter(|i| outline.state(Side::At, *i).is_some()).into_iter().collect()
        }
    };
    let policy = match job.conflict {
        ConflictPolicy::Rename => "will be restored under a new name",
        ConflictPolicy::Replace => "will replace it",
        ConflictPolicy::Skip => "will be skipped",
    };
    let mut pending = vec![(folder_id.clone(), top)];
    while let Some((target, items)) = pending.pop() {
        if items.is_empty() {
            continue;
        }
        let existing = graph.children(drive_id, &target).await?;
        let by_name: HashMap<String, &crate::graph::DriveItem> = existing
            .iter()
            .filter(|i| !i.deleted)
            .filter_map(|i| Some((i.name.as_deref()?.to_lowercase(), i)))
            .collect();
        for item in items {
            let Some(at) = outline.state(Side::At, item) else { continue };
            let Some(held) = by_name.get(&outline.name(at).to_lowercase()) else { continue };
            let is_folder = |k: GraphKind| k != GraphKind::File;
            let detail = match (at.kind == ItemKind::File, is_folder(held.kind)) {
                (false, true) => {
                    pending.push((held.id.clone(), children.get(&item).cloned().unwrap_or_default()));
                    continue;
                }
                (true, false) => format!("a file of that name is in the target: {policy}"),
                (true, true) => format!("a folder of that name is in the target: {policy}"),
                (false, false) => "a file of that name is in the target: the folder will fail".to_owned(),
            };
            found.push(Conflict { path: outline.path(item), item_id: outline.id(item).to_owned(), detail });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::super::outline::tests::{outline as tree, version};
    use super::Conflict;
    use crate::model::{ContainerId, ItemKind, RestoreJob, RestoreScope, RestoreTarget};

    fn in_place(tree: &super::Outline, job: &RestoreJob) -> Vec<Conflict> {
        let found = super::in_place(tree, job, 1_000);
        let count = found.count;
        let listed = found.listed();
        assert_eq!(count, listed.len() as u64);
        listed
    }

    fn job(quarantine: bool) -> RestoreJob {
        RestoreJob {
            quarantine_new_items: quarantine,
            ..RestoreJob::new(
                "j",
                ContainerId::new("t", "d"),
                RestoreScope::Container,
                Utc::now(),
                RestoreTarget::InPlace,
                Utc::now(),
            )
        }
    }

    #[test]
    fn in_place_conflicts_are_new_items_and_names_now_held_by_others() {
        // Given at T: a.txt and b.txt in docs; now: a.txt renamed to a.txt.enc, b.txt deleted,
        // a new file holding b's name (any case), a new note, and c.txt renamed to a.txt's old name
        let file = ItemKind::File;
        let at = [
            version("docs", ItemKind::Folder, "docs", "root"),
            version("a", file, "a.txt", "docs"),
            version("b", file, "b.txt", "docs"),
        ];
        let now = [
            version("docs", ItemKind::Folder, "docs", "root"),
            version("a", file, "a.txt.enc", "docs"),
            version("b2", file, "B.TXT", "docs"),
            version("note", file, "README.txt", "docs"),
        ];

        // When the plan looks for conflicts without quarantine
        let found = in_place(&tree(&at, &now), &job(false));

        // Then the two new files are in the way, and b.txt will come back under a new name
        let got: Vec<(&str, &str)> = found.iter().map(|c| (c.item_id.as_str(), c.detail.as_str())).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&("b2", "created after the restore time: will be left in place")));
        assert!(got.contains(&("note", "created after the restore time: will be left in place")));
        assert!(got.iter().any(|(id, d)| *id == "b" && d.contains("/docs/B.TXT") && d.contains("new name")), "{got:?}");

        // When the new items are quarantined, their names are free again
        let found = in_place(&tree(&at, &now), &job(true));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|c| c.detail.contains("quarantine")));
    }

    #[test]
    fn an_item_whose_name_is_taken_by_an_item_the_restore_leaves_alone_cannot_be_renamed_back() {
        // Given a.txt renamed after T, and an item outside the scope moved in under its old name
        let file = ItemKind::File;
        let at = [
            version("docs", ItemKind::Folder, "docs", "root"),
            version("other", ItemKind::Folder, "other", "root"),
            version("a", file, "a.txt", "docs"),
            version("x", file, "x.txt", "other"),
        ];
        let now = [
            version("docs", ItemKind::Folder, "docs", "root"),
            version("other", ItemKind::Folder, "other", "root"),
            version("a", file, "a-old.txt", "docs"),
            version("x", file, "a.txt", "docs"),
        ];
        let mut scoped = job(false);
        scoped.scope = RestoreScope::Item { item_id: "docs".into() };

        // When the folder docs is restored in place
        let found = in_place(&tree(&at, &now), &scoped);

        // Then a's rename back is reported as failing; x (outside the scope) stays
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].item_id, "a");
        assert!(found[0].detail.contains("will fail"), "{}", found[0].detail);
        // And with the whole drive in scope, x moves back to `other`: no conflict
        assert!(in_place(&tree(&at, &now), &job(false)).is_empty());
    }
}

#[cfg(test)]
mod listing_tests {
    use chrono::Utc;

    use super::super::outline::tests::{outline, version};
    use crate::model::{ContainerId, ItemKind, RestoreJob, RestoreScope, RestoreTarget};

    #[test]
    fn every_conflict_is_counted_and_only_the_first_by_path_are_kept() {
        // Given 30 files created after the restore time in a folder that existed then
        let at = [version("docs", ItemKind::Folder, "docs", "root")];
        let mut now = at.to_vec();
        now.extend((0..30).map(|i| version(&format!("n{i:02}"), ItemKind::File, &format!("new {i:02}.txt"), "docs")));
        let job = RestoreJob::new(
            "j",
            ContainerId::new("t", "d"),
            RestoreScope::Container,
            Utc::now(),
            RestoreTarget::InPlace,
            Utc::now(),
        );

        // When the conflicts are found with room for ten
        let found = super::in_place(&outline(&at, &now), &job, 10);

        // Then all 30 are counted and the ten first paths are listed, in order
        assert_eq!(found.count, 30);
        let paths: Vec<String> = found.listed().into_iter().map(|c| c.path).collect();
        let expected: Vec<String> = (0..10).map(|i| format!("/docs/new {i:02}.txt")).collect();
        assert_eq!(paths, expected);
    }
}
