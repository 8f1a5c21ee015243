//! The restore's view of a container: every item as it was at T and as it is now, read from
//! the catalog, with the scope, depth and path of an item.

use std::collections::HashMap;

use crate::model::{ItemKind, ItemVersion, RestoreJob, RestoreScope};
use crate::pipeline::PipelineError;
use crate::store::RestorerCatalog;

/// The restore's view of a container: versions at T and heads now.
pub(super) struct Tree {
    pub(super) at: HashMap<String, ItemVersion>,
    pub(super) now: HashMap<String, ItemVersion>,
}

impl Tree {
    pub(super) async fn load(catalog: &dyn RestorerCatalog, job: &RestoreJob) -> Result<Tree, PipelineError> {
        let mut tree = Self::load_as_of(catalog, job).await?;
        tree.now = catalog
            .list_heads(&job.container)
            .await?
            .into_iter()
            .filter(|h| !h.current.deleted)
            .map(|h| (h.current.key.item_id.clone(), h.current))
            .collect();
        Ok(tree)
    }

    /// The container as of T only, without the heads now (an export needs nothing else).
    pub(super) async fn load_as_of(catalog: &dyn RestorerCatalog, job: &RestoreJob) -> Result<Tree, PipelineError> {
        let at = catalog
            .container_as_of(&job.container, job.as_of)
            .await?
            .into_iter()
            .filter(|v| !v.deleted && v.kind != ItemKind::Root)
            .map(|v| (v.key.item_id.clone(), v))
            .collect();
        Ok(Tree { at, now: HashMap::new() })
    }

    /// Items of `map` inside the scope (the scope item and its descendants).
    pub(super) fn in_scope<'a>(map: &'a HashMap<String, ItemVersion>, scope: &RestoreScope) -> Vec<&'a ItemVersion> {
        match scope {
            RestoreScope::Container => map.values().collect(),
            RestoreScope::Item { item_id } => {
                map.values().filter(|v| Self::descends(map, &v.key.item_id, item_id)).collect()
            }
        }
    }

    fn descends(map: &HashMap<String, ItemVersion>, id: &str, ancestor: &str) -> bool {
        let mut cur = Some(id.to_owned());
        let mut hops = 0;
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            hops += 1;
            if hops > 10_000 {
                return false;
            }
            cur = map.get(&c).and_then(|v| v.parent_id.clone());
        }
        false
    }

    pub(super) fn depth(&self, id: &str) -> usize {
        let mut depth = 0;
        let mut cur = self.at.get(id).and_then(|v| v.parent_id.clone());
        while let Some(c) = cur {
            depth += 1;
            if depth > 10_000 {
                break;
            }
            cur = self.at.get(&c).and_then(|v| v.parent_id.clone());
        }
        depth
    }

    pub(super) fn path(&self, id: &str) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(id.to_owned());
        while let Some(c) = cur {
            let Some(v) = self.at.get(&c).or_else(|| self.now.get(&c)) else { break };
            parts.push(v.name.clone().unwrap_or_default());
            if parts.len() > 10_000 {
                break;
            }
            cur = v.parent_id.clone();
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}
