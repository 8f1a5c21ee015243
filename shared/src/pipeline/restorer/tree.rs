//! An export's view of a container: every item's whole version as it was at T, with the scope.
//! Restores plan over the compact `outline` instead; an export needs each message's version
//! (its MIME object and metadata) to write it.

use std::collections::HashMap;

use crate::model::{ItemKind, ItemVersion, RestoreJob, RestoreScope};
use crate::pipeline::PipelineError;
use crate::store::RestorerCatalog;

/// The container's versions at T.
pub(super) struct Tree {
    pub(super) at: HashMap<String, ItemVersion>,
}

impl Tree {
    pub(super) async fn load_as_of(catalog: &dyn RestorerCatalog, job: &RestoreJob) -> Result<Tree, PipelineError> {
        let at = catalog
            .container_as_of(&job.container, job.as_of)
            .await?
            .into_iter()
            .filter(|v| !v.deleted && v.kind != ItemKind::Root)
            .map(|v| (v.key.item_id.clone(), v))
            .collect();
        Ok(Tree { at })
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
}
