//! Graph's write semantics on one drive (graph-facts §5, §6): what happens
//! when a name is already taken (`@microsoft.graph.conflictBehavior` `fail`
//! → `409 nameAlreadyExists`, `replace`, `rename` → "name 1.ext"), new
//! content for an existing file as a new version of the *same* item (its id
//! and sharing survive), the version list, and sharing grants, explicit and
//! inherited from ancestors. Every change goes through the change log in
//! [`super::tree`], so delta and notifications see it like any other edit.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::ids::IdRng;
use super::tree::{Drive, NewItem};
use super::{Item, ItemKind, Permission};
use crate::content::ContentBlob;
use crate::error::GraphError;
use crate::names;

/// `@microsoft.graph.conflictBehavior`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    /// The annotation's value, or `default` when absent; anything else is a 400.
    pub fn parse(raw: Option<&str>, default: Conflict) -> Result<Self, GraphError> {
        match raw.map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("fail") => Ok(Conflict::Fail),
            Some("replace") => Ok(Conflict::Replace),
            Some("rename") => Ok(Conflict::Rename),
            Some(other) => Err(GraphError::bad_request(format!(
                "Invalid value '{other}' for @microsoft.graph.conflictBehavior; expected fail, replace or rename."
            ))),
        }
    }
}

/// The item a write produced and whether it is new (`201`) or updated (`200`).
#[derive(Debug, Clone)]
pub struct Written {
    pub id: String,
    pub created: bool,
}

/// One entry of `GET .../versions`.
#[derive(Debug, Clone)]
pub struct VersionView {
    pub number: u64,
    pub current: bool,
    pub modified: DateTime<Utc>,
    pub blob: Arc<ContentBlob>,
}

impl VersionView {
    pub fn id(&self) -> String {
        format!("{}.0", self.number)
    }
}

fn name_taken(name: &str) -> GraphError {
    GraphError::new(
        StatusCode::CONFLICT,
        "nameAlreadyExists",
        format!("An item named '{name}' already exists in this folder."),
    )
}

/// `report.docx` → `report 1.docx`; `notes` → `notes 2`.
fn numbered(name: &str, n: u64) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} {n}.{ext}"),
        _ => format!("{name} {n}"),
    }
}

impl Drive {
    /// The live item at `path` (`a/b.txt`, no leading slash needed) under the
    /// live item `base` (an id or `root`); names match ignoring case.
    pub fn by_rel_path(&self, base: &str, path: &str) -> Option<&Item> {
        let mut cur = self.resolve(base)?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur = self.child_named(&cur.id, part)?;
        }
        Some(cur)
    }

    /// The live child of `parent` called `name`, ignoring case.
    pub fn child_named(&self, parent: &str, name: &str) -> Option<&Item> {
        let lower = name.to_lowercase();
        self.live_children(parent).iter().filter_map(|c| self.items.get(c)).find(|c| c.name.to_lowercase() == lower)
    }

    /// `name`, or the first "name N.ext" free under `parent` (`except` is the
    /// item being moved, which does not clash with itself).
    fn free_name(&self, parent: &str, name: &str, except: Option<&str>) -> String {
        let taken = |n: &str| self.child_named(parent, n).is_some_and(|i| Some(i.id.as_str()) != except);
        if !taken(name) {
            return name.to_string();
        }
        (1..).map(|n| numbered(name, n)).find(|c| !taken(c)).unwrap_or_else(|| name.to_string())
    }

    fn container(&self, parent: &str) -> Result<String, GraphError> {
        let p = self.live(parent)?;
        if !p.kind.is_container() {
            return Err(GraphError::bad_request("The parent item is not a folder."));
        }
        Ok(p.id.clone())
    }

    /// Writes file `name` under `parent`. An existing file of that name gets
    /// the content as a new version (same id) under `replace`; an existing
    /// folder is deleted and a new file takes its place.
    pub fn put_file(
        &mut self,
        parent: &str,
        name: &str,
        blob: Arc<ContentBlob>,
        conflict: Conflict,
        hash_visible: bool,
        ids: &mut IdRng,
    ) -> Result<Written, GraphError> {
        names::validate_name(name)?;
        let parent = self.container(parent)?;
        let mut name = name.to_string();
        if let Some(existing) = self.child_named(&parent, &name) {
            let (id, kind) = (existing.id.clone(), existing.kind);
            match conflict {
                Conflict::Fail => return Err(name_taken(&name)),
                Conflict::Replace if kind == ItemKind::File => {
                    self.set_content(&id, blob, hash_visible)?;
                    return Ok(Written { id, created: false });
                }
                Conflict::Replace => {
                    self.delete(&id)?;
                }
                Conflict::Rename => name = self.free_name(&parent, &name, None),
            }
        }
        let new = NewItem { name, kind: ItemKind::File, blob: Some(blob), hash_visible };
        Ok(Written { id: self.create(&parent, new, ids)?, created: true })
    }

    /// Creates folder `name` under `parent`; `replace` deletes whatever held the name.
    pub fn create_folder(
        &mut self,
        parent: &str,
        name: &str,
        conflict: Conflict,
        ids: &mut IdRng,
    ) -> Result<String, GraphError> {
        names::validate_name(name)?;
        let parent = self.container(parent)?;
        let mut name = name.to_string();
        if let Some(existing) = self.child_named(&parent, &name) {
            let id = existing.id.clone();
            match conflict {
                Conflict::Fail => return Err(name_taken(&name)),
                Conflict::Replace => {
                    self.delete(&id)?;
                }
                Conflict::Rename => name = self.free_name(&parent, &name, None),
            }
        }
        self.create(&parent, NewItem { name, kind: ItemKind::Folder, blob: None, hash_visible: true }, ids)
    }

    /// Rename and/or move under `conflict`; the item keeps its id, content
    /// and sharing.
    pub fn move_item(
        &mut self,
        id: &str,
        name: Option<String>,
        parent: Option<String>,
        conflict: Conflict,
    ) -> Result<(), GraphError> {
        let item = self.live(id)?;
        let id = item.id.clone();
        let target_parent = match &parent {
            Some(p) => self.container(p)?,
            None => item.parent_id.clone().unwrap_or_default(),
        };
        let mut target_name = name.unwrap_or_else(|| item.name.clone());
        names::validate_name(&target_name)?;
        let clash = self.child_named(&target_parent, &target_name).map(|i| i.id.clone()).filter(|c| *c != id);
        if let Some(other) = clash {
            match conflict {
                Conflict::Fail => return Err(name_taken(&target_name)),
                Conflict::Replace => {
                    self.delete(&other)?;
                }
                Conflict::Rename => target_name = self.free_name(&target_parent, &target_name, Some(&id)),
            }
        }
        self.rename_move(&id, Some(target_name), Some(target_parent))
    }

    fn live_file(&self, id: &str) -> Result<&Item, GraphError> {
        let item = self.live(id)?;
        if item.kind != ItemKind::File {
            return Err(GraphError::bad_request("Versions are only available for files."));
        }
        Ok(item)
    }

    /// Every version of a file, current first, then newest to oldest.
    pub fn versions(&self, id: &str) -> Result<Vec<VersionView>, GraphError> {
        let item = self.live_file(id)?;
        let mut out = Vec::with_capacity(item.history.len() + 1);
        if let Some(blob) = &item.blob {
            out.push(VersionView { number: item.version, current: true, modified: item.modified, blob: blob.clone() });
        }
        out.extend(item.history.iter().rev().map(|v| VersionView {
            number: v.number,
            current: false,
            modified: v.modified,
            blob: v.blob.clone(),
        }));
        Ok(out)
    }

    /// One version by id (`"2.0"`, or the bare `"2"`).
    pub fn version(&self, id: &str, version_id: &str) -> Result<VersionView, GraphError> {
        let number = version_id.strip_suffix(".0").unwrap_or(version_id).parse::<u64>().ok();
        self.versions(id)?
            .into_iter()
            .find(|v| Some(v.number) == number)
            .ok_or_else(|| GraphError::not_found(format!("Version '{version_id}' of the item was not found.")))
    }

    /// `restoreVersion`: the old content becomes a new current version.
    pub fn restore_version(&mut self, id: &str, version_id: &str, hash_visible: bool) -> Result<(), GraphError> {
        let v = self.version(id, version_id)?;
        if v.current {
            return Err(GraphError::bad_request("The current version cannot be restored."));
        }
        let id = self.live(id)?.id.clone();
        self.set_content(&id, v.blob, hash_visible)
    }

    /// Grants on `id`: its own, then those inherited from each ancestor
    /// (with the ancestor's id), nearest first.
    pub fn permissions(&self, id: &str) -> Result<Vec<(Permission, Option<String>)>, GraphError> {
        let item = self.live(id)?;
        let mut out: Vec<_> = item.permissions.iter().map(|p| (p.clone(), None)).collect();
        let mut cur = item.parent_id.clone();
        while let Some(p) = cur {
            let Some(parent) = self.items.get(&p) else { break };
            out.extend(parent.permissions.iter().map(|perm| (perm.clone(), Some(parent.id.clone()))));
            cur = parent.parent_id.clone();
        }
        Ok(out)
    }

    /// Adds a grant to `id` (admin: "share with a user").
    pub fn share(&mut self, id: &str, email: &str, roles: Vec<String>) -> Result<Permission, GraphError> {
        let id = self.live(id)?.id.clone();
        let perm = Permission { id: crate::signer::nonce(), roles, email: email.to_string() };
        if let Some(item) = self.items.get_mut(&id) {
            item.permissions.push(perm.clone());
        }
        Ok(perm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;

    fn blob(s: &'static str) -> Arc<ContentBlob> {
        ContentBlob::new(Content::Inline(bytes::Bytes::from_static(s.as_bytes())))
    }

    fn drive() -> (Drive, IdRng) {
        let mut ids = IdRng::seeded(1);
        (Drive::new("d".into(), "u".into(), "U".into(), &mut ids), ids)
    }

    #[test]
    fn conflict_behaviours_on_an_existing_file() {
        let (mut d, mut ids) = drive();
        let root = d.root_id.clone();
        let first = d.put_file(&root, "Report.docx", blob("v1"), Conflict::Fail, true, &mut ids).expect("new");
        assert!(first.created);
        let err = d.put_file(&root, "report.DOCX", blob("v2"), Conflict::Fail, true, &mut ids).expect_err("clash");
        assert_eq!(err.code, "nameAlreadyExists");
        let renamed = d.put_file(&root, "report.docx", blob("v2"), Conflict::Rename, true, &mut ids).expect("rename");
        assert_eq!(d.items[&renamed.id].name, "report 1.docx");
        let replaced = d.put_file(&root, "REPORT.docx", blob("v3"), Conflict::Replace, true, &mut ids).expect("ok");
        assert_eq!((replaced.id.as_str(), replaced.created), (first.id.as_str(), false));
        let versions = d.versions(&first.id).expect("versions");
        let listed: Vec<_> = versions.iter().map(|v| (v.id(), v.current)).collect();
        assert_eq!(listed, [("2.0".to_string(), true), ("1.0".to_string(), false)]);
        assert_eq!(d.version(&first.id, "1.0").expect("v1").blob.size(), 2);
    }

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("a.b.txt", 2), "a.b 2.txt");
        assert_eq!(numbered("notes", 1), "notes 1");
        assert_eq!(numbered(".bashrc", 1), ".bashrc 1");
    }
}
