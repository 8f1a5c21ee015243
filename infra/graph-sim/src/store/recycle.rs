//! A drive's recycle bin (graph-facts §13.10). Every delete, Graph or admin, puts the
//! deleted item and the descendants it took with it in the bin; restoring brings them
//! back as they were: the same ids, names, content, versions and `lastModifiedDateTime`,
//! and by default the same eTags and cTags, so a backup meets an identity it already holds.
//! The restore goes through the change log, so delta reports every restored item alive
//! again. Nothing empties the bin.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use super::tree::Drive;
use crate::error::GraphError;

/// One delete: the item asked for and the descendants it took with it.
#[derive(Debug, Clone)]
pub struct Recycled {
    pub id: String,
    /// The item and its descendants, parents first, each with the eTag version it had.
    pub members: Vec<(String, u64)>,
    pub deleted_at: DateTime<Utc>,
}

impl Drive {
    /// Brings back a deleted item and its descendants with their ids, names, content and
    /// times; under its old parent if that is still there, else under the root. Their old
    /// eTags come back too unless `new_etag`, which gives each a fresh one. Returns where
    /// the item now lives (its parent's id).
    pub fn restore(&mut self, id: &str, new_etag: bool) -> Result<String, GraphError> {
        let Some(at) = self.recycle_bin.iter().position(|r| r.id == id) else {
            return Err(match self.items.get(id) {
                Some(item) if !item.deleted => GraphError::bad_request("The item is not deleted."),
                Some(_) => GraphError::not_found(
                    "The item is not in the recycle bin itself; restore the deleted folder that held it.",
                ),
                None => GraphError::not_found("The item could not be found in the recycle bin."),
            });
        };
        let old_parent = self.items.get(id).and_then(|i| i.parent_id.clone()).unwrap_or_default();
        let parent = match self.resolve(&old_parent) {
            Some(p) if p.kind.is_container() => p.id.clone(),
            _ => self.root_id.clone(),
        };
        let name = self.items.get(id).map(|i| i.name.clone()).unwrap_or_default();
        self.check_placement(&parent, &name, None).map_err(|e| {
            if e.status == StatusCode::CONFLICT {
                GraphError::new(
                    StatusCode::CONFLICT,
                    "nameAlreadyExists",
                    format!("The item cannot be restored: an item named '{name}' already exists there."),
                )
            } else {
                e
            }
        })?;
        let entry = self.recycle_bin.remove(at);
        for (member, etag_ver) in &entry.members {
            let seq = self.record(member);
            let Some(item) = self.items.get_mut(member) else { continue };
            item.deleted = false;
            item.deletion_unreported = false;
            item.changed_seq = seq;
            item.etag_ver = if new_etag { item.etag_ver + 1 } else { *etag_ver };
            if *member == entry.id {
                item.parent_id = Some(parent.clone());
            }
            let (kind, under) = (item.kind, item.parent_id.clone().unwrap_or_default());
            if kind.is_container() {
                self.children.insert(member.clone(), Vec::new());
            }
            self.children.entry(under).or_default().push(member.clone());
        }
        Ok(parent)
    }
}
