//! What stands in a restore's way, found by its plan step: a dry run lists these, a run
//! counts them. In place, the catalog alone tells (items created after the restore time, and
//! names at that time now held by another item); an alternate target is compared with what
//! Graph holds there now, one folder listing per folder the restore would merge into.

use std::collections::HashMap;

use super::tree::Tree;
use crate::graph::{GraphClient, ItemKind as GraphKind};
use crate::model::{ConflictPolicy, ItemKind, ItemVersion, RestoreJob, RestoreScope, RestoreTarget};
use crate::pipeline::PipelineError;

/// One item in the way, with what the restore will do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Conflict {
    pub item_id: String,
    pub path: String,
    pub detail: String,
}

fn name_key(v: &ItemVersion) -> Option<(String, String)> {
    Some((v.parent_id.clone()?, v.name.as_deref()?.to_lowercase()))
}

/// Conflicts of an in-place rollback, from the catalog's states at T and now.
pub(super) fn in_place(tree: &Tree, job: &RestoreJob) -> Vec<Conflict> {
    let scope = Tree::in_scope(&tree.at, &job.scope);
    let restored: HashMap<&str, &ItemVersion> = scope.iter().map(|v| (v.key.item_id.as_str(), *v)).collect();
    let created_after: Vec<&ItemVersion> =
        Tree::in_scope(&tree.now, &job.scope).into_iter().filter(|v| !tree.at.contains_key(&v.key.item_id)).collect();
    let mut conflicts: Vec<Conflict> = created_after
        .iter()
        .map(|v| Conflict {
            item_id: v.key.item_id.clone(),
            path: tree.path(&v.key.item_id),
            detail: if job.quarantine_new_items {
                "created after the restore time: will be moved to the quarantine folder".into()
            } else {
                "created after the restore time: will be left in place".into()
            },
        })
        .collect();

    // Who holds each (folder, name) now, among the items that stay where they are: those the
    // restore does not move (outside its scope at T) and new ones that are not quarantined.
    let stays = |v: &ItemVersion| {
        let id = v.key.item_id.as_str();
        let quarantined = job.quarantine_new_items && !tree.at.contains_key(id);
        !restored.contains_key(id) && !quarantined
    };
    let holders: HashMap<(String, String), &ItemVersion> =
        tree.now.values().filter(|v| stays(v)).filter_map(|v| Some((name_key(v)?, v))).collect();
    for v in &scope {
        let Some(holder) = name_key(v).and_then(|k| holders.get(&k)) else { continue };
        if holder.key.item_id == v.key.item_id {
            continue;
        }
        let held_by = tree.path(&holder.key.item_id);
        let detail = match (tree.now.contains_key(&v.key.item_id), v.kind, holder.kind) {
            (true, _, _) => format!("its name is now held by {held_by}: putting the name back will fail"),
            (false, ItemKind::File, _) => {
                format!("its name is now held by {held_by}: will be recreated under a new name")
            }
            (false, _, ItemKind::File) => format!("its name is now held by the file {held_by}: will fail"),
            (false, _, _) => format!("its name is now held by the folder {held_by}: will be merged into it"),
        };
        conflicts.push(Conflict { item_id: v.key.item_id.clone(), path: tree.path(&v.key.item_id), detail });
    }
    conflicts.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.item_id.cmp(&b.item_id)));
    conflicts
}

/// Conflicts of a restore into another folder: the scope's tree is laid over what the target
/// holds now, folder by folder, through the folders both have (where the restore merges).
pub(super) async fn alternate(
    graph: &GraphClient,
    tree: &Tree,
    job: &RestoreJob,
    root_id: &str,
) -> Result<Vec<Conflict>, PipelineError> {
    let RestoreTarget::Alternate { drive_id, folder_id } = &job.target else { return Ok(Vec::new()) };
    let scope = Tree::in_scope(&tree.at, &job.scope);
    let mut children: HashMap<&str, Vec<&ItemVersion>> = HashMap::new();
    for v in &scope {
        if let Some(parent) = v.parent_id.as_deref() {
            children.entry(parent).or_default().push(v);
        }
    }
    let top: Vec<&ItemVersion> = match &job.scope {
        RestoreScope::Container => children.get(root_id).cloned().unwrap_or_default(),
        RestoreScope::Item { item_id } => tree.at.get(item_id).into_iter().collect(),
    };
    let policy = match job.conflict {
        ConflictPolicy::Rename => "will be restored under a new name",
        ConflictPolicy::Replace => "will replace it",
        ConflictPolicy::Skip => "will be skipped",
    };
    let mut conflicts = Vec::new();
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
        for v in items {
            let Some(held) = v.name.as_deref().and_then(|n| by_name.get(&n.to_lowercase())) else { continue };
            let is_folder = |k: GraphKind| k != GraphKind::File;
            let detail = match (v.kind == ItemKind::File, is_folder(held.kind)) {
                (false, true) => {
                    pending.push((held.id.clone(), children.get(v.key.item_id.as_str()).cloned().unwrap_or_default()));
                    continue;
                }
                (true, false) => format!("a file of that name is in the target: {policy}"),
                (true, true) => format!("a folder of that name is in the target: {policy}"),
                (false, false) => "a file of that name is in the target: the folder will fail".to_owned(),
            };
            conflicts.push(Conflict { item_id: v.key.item_id.clone(), path: tree.path(&v.key.item_id), detail });
        }
    }
    conflicts.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.item_id.cmp(&b.item_id)));
    Ok(conflicts)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{TimeZone, Utc};

    use super::super::tree::Tree;
    use crate::model::{
        ContainerId, ItemKind, ItemVersion, RestoreJob, RestoreScope, RestoreTarget, SCHEMA_VERSION, Verification,
    };

    fn version(id: &str, kind: ItemKind, name: &str, parent: &str) -> ItemVersion {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        ItemVersion {
            v: SCHEMA_VERSION,
            key: ContainerId::new("t", "d").item(id),
            version: format!("{id}-1"),
            kind,
            name: Some(name.to_owned()),
            parent_id: Some(parent.to_owned()),
            ctag: None,
            modified: t,
            captured_at: t,
            deleted: false,
            content: None,
            verification: Verification::NoContent,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        }
    }

    fn tree(at: &[ItemVersion], now: &[ItemVersion]) -> Tree {
        let map = |vs: &[ItemVersion]| vs.iter().map(|v| (v.key.item_id.clone(), v.clone())).collect::<HashMap<_, _>>();
        Tree { at: map(at), now: map(now) }
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
        let found = super::in_place(&tree(&at, &now), &job(false));

        // Then the two new files are in the way, and b.txt will come back under a new name
        let got: Vec<(&str, &str)> = found.iter().map(|c| (c.item_id.as_str(), c.detail.as_str())).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.contains(&("b2", "created after the restore time: will be left in place")));
        assert!(got.contains(&("note", "created after the restore time: will be left in place")));
        assert!(got.iter().any(|(id, d)| *id == "b" && d.contains("/docs/B.TXT") && d.contains("new name")), "{got:?}");

        // When the new items are quarantined, their names are free again
        let found = super::in_place(&tree(&at, &now), &job(true));
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
        let found = super::in_place(&tree(&at, &now), &scoped);

        // Then a's rename back is reported as failing; x (outside the scope) stays
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].item_id, "a");
        assert!(found[0].detail.contains("will fail"), "{}", found[0].detail);
        // And with the whole drive in scope, x moves back to `other`: no conflict
        assert!(super::in_place(&tree(&at, &now), &job(false)).is_empty());
    }
}
