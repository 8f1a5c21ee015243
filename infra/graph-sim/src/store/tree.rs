//! One drive's item tree and its change log. Every mutation bumps the drive's
//! sequence number and appends `(seq, item id)` to the log; delta (see
//! [`super::delta`]) answers "what changed since token seq S" from it. Deleted
//! items stay as tombstones so delta can report them with `deleted: {}`, and in the
//! recycle bin ([`super::recycle`]) until restored.
//! Writes go through the same naming rules Graph applies ([`crate::names`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::delta::Resync;
use super::ids::IdRng;
use super::recycle::Recycled;
use super::{Item, ItemKind, ItemView, PastVersion};
use crate::content::ContentBlob;
use crate::error::GraphError;
use crate::names;

/// Versions kept per file, the current one included (ODfB's default limit).
pub const MAX_VERSIONS: usize = 500;

pub struct Drive {
    pub id: String,
    pub owner_id: String,
    pub owner_name: String,
    pub root_id: String,
    pub items: HashMap<String, Item>,
    /// Live children per container, in creation order.
    pub children: HashMap<String, Vec<String>>,
    pub seq: u64,
    pub log: Vec<(u64, String)>,
    /// Random per drive incarnation: tokens from a replaced drive are stale.
    pub incarnation: String,
    /// Bumped by the `expire_delta_tokens` fault; older tokens answer 410.
    pub token_epoch: u64,
    /// How that 410 reads (chosen by the same fault).
    pub resync: Resync,
    /// Deleted items that can be restored, in the order they were deleted.
    pub recycle_bin: Vec<Recycled>,
    /// Fault: a folder's delete is logged for the folder only, so delta reports no
    /// deletion of its descendants (graph-facts §13.8).
    pub omit_descendant_deletions: bool,
    /// Set when the drive is a SharePoint document library rather than a OneDrive.
    pub library: Option<Library>,
    /// Bytes the drive may hold (the `drive_quota` knob); `None` = the default 1 TiB.
    pub quota: Option<u64>,
}

/// What makes a drive a document library of a site.
#[derive(Debug, Clone)]
pub struct Library {
    pub name: String,
    pub web_url: String,
    /// Hidden from `/sites/{id}/drives` unless `$select` names `system`.
    pub system: bool,
    /// The Microsoft 365 group owning the site: `(id, displayName)`.
    pub group: Option<(String, String)>,
}

/// What a new item is made of.
pub struct NewItem {
    pub name: String,
    pub kind: ItemKind,
    pub blob: Option<Arc<ContentBlob>>,
    pub hash_visible: bool,
}

impl Drive {
    pub fn new(id: String, owner_id: String, owner_name: String, ids: &mut IdRng) -> Self {
        let root_id = ids.item_id();
        let now = Utc::now();
        let root = Item {
            id: root_id.clone(),
            guid: ids.guid(),
            name: "root".into(),
            parent_id: None,
            kind: ItemKind::Root,
            blob: None,
            etag_ver: 1,
            ctag_ver: 1,
            created: now,
            modified: now,
            created_seq: 0,
            changed_seq: 0,
            deleted: false,
            hash_visible: true,
            version: 1,
            history: Vec::new(),
            permissions: Vec::new(),
            deletion_unreported: false,
        };
        let mut items = HashMap::new();
        items.insert(root_id.clone(), root);
        Self {
            id,
            owner_id,
            owner_name,
            root_id: root_id.clone(),
            items,
            children: HashMap::from([(root_id, Vec::new())]),
            seq: 0,
            log: Vec::new(),
            incarnation: crate::signer::nonce(),
            token_epoch: 0,
            resync: Resync::default(),
            recycle_bin: Vec::new(),
            omit_descendant_deletions: false,
            quota: None,
            library: None,
        }
    }

    /// Resolves `root` and ids to a live item id.
    pub fn resolve(&self, id: &str) -> Option<&Item> {
        let id = if id.eq_ignore_ascii_case("root") { self.root_id.as_str() } else { id };
        self.items.get(id).filter(|i| !i.deleted)
    }

    pub fn live(&self, id: &str) -> Result<&Item, GraphError> {
        self.resolve(id).ok_or_else(|| GraphError::not_found("The resource could not be found."))
    }

    /// `/a/b/name`; the root is ``.
    pub fn path_of(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut cur = self.items.get(id);
        while let Some(item) = cur {
            if item.kind == ItemKind::Root {
                break;
            }
            parts.push(item.name.as_str());
            cur = item.parent_id.as_deref().and_then(|p| self.items.get(p));
        }
        parts.reverse();
        parts.iter().map(|p| format!("/{p}")).collect()
    }

    pub fn depth(&self, id: &str) -> usize {
        let mut d = 0;
        let mut cur = self.items.get(id).and_then(|i| i.parent_id.clone());
        while let Some(p) = cur {
            d += 1;
            cur = self.items.get(&p).and_then(|i| i.parent_id.clone());
        }
        d
    }

    /// Resolves `/a/b` (or `a/b`, `` for root) to a live item.
    pub fn by_path(&self, path: &str) -> Option<&Item> {
        let mut cur = self.resolve("root")?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            let lower = part.to_lowercase();
            let next = self
                .children
                .get(&cur.id)?
                .iter()
                .filter_map(|c| self.items.get(c))
                .find(|c| c.name.to_lowercase() == lower)?;
            cur = next;
        }
        Some(cur)
    }

    pub fn live_children(&self, id: &str) -> &[String] {
        self.children.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(super) fn record(&mut self, id: &str) -> u64 {
        self.seq += 1;
        self.log.push((self.seq, id.to_string()));
        self.seq
    }

    pub(super) fn check_placement(&self, parent_id: &str, name: &str, moving: Option<&str>) -> Result<(), GraphError> {
        names::validate_name(name)?;
        let parent = self.live(parent_id)?;
        if !parent.kind.is_container() {
            return Err(GraphError::bad_request("The parent item is not a folder."));
        }
        let siblings = self
            .live_children(&parent.id)
            .iter()
            .filter(|c| Some(c.as_str()) != moving)
            .filter_map(|c| self.items.get(c))
            .map(|i| i.name.as_str());
        names::check_sibling_clash(name, siblings)?;
        names::validate_path_len(&format!("{}/{}", self.path_of(&parent.id), name))
    }

    pub fn create(&mut self, parent_id: &str, new: NewItem, ids: &mut IdRng) -> Result<String, GraphError> {
        self.check_placement(parent_id, &new.name, None)?;
        let parent = self.live(parent_id)?.id.clone();
        let id = ids.item_id();
        let now = Utc::now();
        let seq = self.record(&id);
        self.items.insert(
            id.clone(),
            Item {
                id: id.clone(),
                guid: ids.guid(),
                name: new.name,
                parent_id: Some(parent.clone()),
                kind: new.kind,
                blob: new.blob,
                etag_ver: 1,
                ctag_ver: 1,
                created: now,
                modified: now,
                created_seq: seq,
                changed_seq: seq,
                deleted: false,
                hash_visible: new.hash_visible,
                version: 1,
                history: Vec::new(),
                permissions: Vec::new(),
                deletion_unreported: false,
            },
        );
        if new.kind.is_container() {
            self.children.insert(id.clone(), Vec::new());
        }
        self.children.entry(parent).or_default().push(id.clone());
        Ok(id)
    }

    pub fn set_content(&mut self, id: &str, blob: Arc<ContentBlob>, hash_visible: bool) -> Result<(), GraphError> {
        self.set_content_dated(id, blob, hash_visible, None)
    }

    /// New content, last modified `at` (now if `None`): migration tools and "copy over
    /// with an older file" keep the source's older time.
    pub fn set_content_dated(
        &mut self,
        id: &str,
        blob: Arc<ContentBlob>,
        hash_visible: bool,
        at: Option<DateTime<Utc>>,
    ) -> Result<(), GraphError> {
        let item = self.live(id)?;
        if item.kind != ItemKind::File {
            return Err(GraphError::bad_request("Only files have content."));
        }
        let id = item.id.clone();
        let seq = self.record(&id);
        if let Some(item) = self.items.get_mut(&id) {
            // The superseded content stays reachable as a version (ODfB keeps history).
            if let Some(old) = item.blob.replace(blob) {
                item.history.push(PastVersion { number: item.version, blob: old, modified: item.modified });
                let excess = (item.history.len() + 1).saturating_sub(MAX_VERSIONS);
                item.history.drain(..excess);
            }
            item.version += 1;
            item.etag_ver += 1;
            item.ctag_ver += 1;
            item.modified = at.unwrap_or_else(Utc::now);
            item.changed_seq = seq;
            item.hash_visible = hash_visible;
        }
        Ok(())
    }

    /// Gives a file just written the dates its upload asked for (`fileSystemInfo`), as part
    /// of that write: no change of its own. `None` keeps the date the write gave it.
    pub fn set_file_dates(
        &mut self,
        id: &str,
        created: Option<DateTime<Utc>>,
        modified: Option<DateTime<Utc>>,
    ) -> Result<(), GraphError> {
        let id = self.live(id)?.id.clone();
        if let Some(item) = self.items.get_mut(&id) {
            item.created = created.unwrap_or(item.created);
            item.modified = modified.unwrap_or(item.modified);
        }
        Ok(())
    }

    /// Sets `lastModifiedDateTime` to `at`, older or not: a metadata change (new eTag, same
    /// cTag) that delta reports like any other.
    pub fn set_modified(&mut self, id: &str, at: DateTime<Utc>) -> Result<(), GraphError> {
        let item = self.live(id)?;
        if item.kind == ItemKind::Root {
            return Err(GraphError::bad_request("The root's modification time cannot be set."));
        }
        let id = item.id.clone();
        let seq = self.record(&id);
        if let Some(item) = self.items.get_mut(&id) {
            item.etag_ver += 1;
            item.modified = at;
            item.changed_seq = seq;
        }
        Ok(())
    }

    /// Rename and/or move; new eTag, same cTag (content untouched).
    pub fn rename_move(
        &mut self,
        id: &str,
        new_name: Option<String>,
        new_parent: Option<String>,
    ) -> Result<(), GraphError> {
        let item = self.live(id)?;
        if item.kind == ItemKind::Root {
            return Err(GraphError::bad_request("The root cannot be renamed or moved."));
        }
        let id = item.id.clone();
        let old_parent = item.parent_id.clone().unwrap_or_default();
        let name = new_name.unwrap_or_else(|| item.name.clone());
        let parent = match new_parent {
            Some(p) => self.live(&p)?.id.clone(),
            None => old_parent.clone(),
        };
        let mut cur = Some(parent.clone());
        while let Some(c) = cur {
            if c == id {
                return Err(GraphError::bad_request("An item cannot be moved into itself or its descendants."));
            }
            cur = self.items.get(&c).and_then(|i| i.parent_id.clone());
        }
        self.check_placement(&parent, &name, Some(&id))?;
        let longest = self.longest_descendant_suffix(&id);
        names::validate_path_len(&format!("{}/{}{}", self.path_of(&parent), name, "x".repeat(longest)))?;
        let seq = self.record(&id);
        if let Some(item) = self.items.get_mut(&id) {
            item.name = name;
            item.parent_id = Some(parent.clone());
            item.etag_ver += 1;
            item.modified = Utc::now();
            item.changed_seq = seq;
        }
        if parent != old_parent {
            if let Some(v) = self.children.get_mut(&old_parent) {
                v.retain(|c| c != &id);
            }
            self.children.entry(parent).or_default().push(id);
        }
        Ok(())
    }

    fn longest_descendant_suffix(&self, id: &str) -> usize {
        let base = self.path_of(id).chars().count();
        let mut longest = 0;
        let mut stack = vec![id.to_string()];
        while let Some(c) = stack.pop() {
            longest = longest.max(self.path_of(&c).chars().count() - base);
            stack.extend(self.live_children(&c).iter().cloned());
        }
        longest
    }

    /// Deletes an item and (first) all its descendants; each gets a tombstone, and all of
    /// them together one entry in the recycle bin.
    pub fn delete(&mut self, id: &str) -> Result<usize, GraphError> {
        let item = self.live(id)?;
        if item.kind == ItemKind::Root {
            return Err(GraphError::new(StatusCode::FORBIDDEN, "accessDenied", "The root cannot be deleted."));
        }
        let id = item.id.clone();
        let mut order = Vec::new();
        let mut stack = vec![id.clone()];
        while let Some(c) = stack.pop() {
            stack.extend(self.live_children(&c).iter().cloned());
            order.push(c);
        }
        let members = order.iter().filter_map(|c| self.items.get(c)).map(|i| (i.id.clone(), i.etag_ver)).collect();
        self.recycle_bin.push(Recycled { id: id.clone(), members, deleted_at: Utc::now() });
        order.reverse();
        for c in &order {
            // Under the fault a descendant is deleted without a log entry: delta never says so.
            let unreported = self.omit_descendant_deletions && *c != id;
            let seq = if unreported { self.seq } else { self.record(c) };
            if let Some(item) = self.items.get_mut(c) {
                item.deleted = true;
                item.changed_seq = seq;
                item.etag_ver += 1;
                item.deletion_unreported = unreported;
            }
            self.children.remove(c);
        }
        let parent = self.items.get(&id).and_then(|i| i.parent_id.clone());
        if let Some(v) = parent.and_then(|p| self.children.get_mut(&p)) {
            v.retain(|c| c != &id);
        }
        Ok(order.len())
    }

    /// Makes every hidden hash visible again (admin `fill_hashes`).
    pub fn fill_hashes(&mut self) {
        for item in self.items.values_mut() {
            item.hash_visible = true;
        }
    }

    fn subtree_size(&self, id: &str) -> u64 {
        let mut total = 0;
        let mut stack = vec![id.to_string()];
        while let Some(c) = stack.pop() {
            if let Some(b) = self.items.get(&c).and_then(|i| i.blob.as_ref()) {
                total += b.size();
            }
            stack.extend(self.live_children(&c).iter().cloned());
        }
        total
    }

    /// Snapshot of one item (live or tombstone) for rendering.
    pub fn view(&self, id: &str) -> Option<ItemView> {
        let item = self.items.get(id)?;
        let size = match (&item.blob, item.kind) {
            (Some(b), _) => b.size(),
            (None, ItemKind::File) => 0,
            (None, _) if item.deleted => 0,
            (None, _) => self.subtree_size(id),
        };
        Some(ItemView {
            drive_id: self.id.clone(),
            drive_type: if self.library.is_some() { "documentLibrary" } else { "business" },
            id: item.id.clone(),
            name: item.name.clone(),
            kind: item.kind,
            size,
            etag: item.etag(),
            ctag: item.ctag(),
            created: item.created,
            modified: item.modified,
            parent_id: item.parent_id.clone(),
            parent_path: item.parent_id.as_deref().map(|p| self.path_of(p)),
            child_count: self.live_children(id).len(),
            blob: item.blob.clone(),
            hash_visible: item.hash_visible,
            deleted: item.deleted,
        })
    }
}
