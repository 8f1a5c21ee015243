//! The vault keeper's state, with the DynamoDB adapter's conditions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::index::Changed;
use super::{MemoryCatalog, version_sort_key};
use crate::model::ItemHead;
use crate::store::{StoreError, VaultKeeping};

#[async_trait]
impl VaultKeeping for MemoryCatalog {
    async fn set_head_lock(&self, head: &ItemHead, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let key = &head.current.key;
        let order = version_sort_key(head.current.order_time(), &head.current.version);
        let mut state = self.write();
        let Some(row) = state.table.heads.get_mut(key).filter(|row| row.order == order) else {
            return Ok(false);
        };
        row.head.locked_until = Some(until);
        state.changed(Changed::Head(key));
        Ok(true)
    }

    async fn keeper_run(&self, tenant_id: &str, task: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(self.read().keeper_runs.get(&(tenant_id.to_owned(), task.to_owned())).cloned())
    }

    async fn put_keeper_run(
        &self,
        tenant_id: &str,
        task: &str,
        run: &str,
        revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut state = self.write();
        let slot = (tenant_id.to_owned(), task.to_owned());
        if state.keeper_runs.get(&slot).map(|(_, r)| *r) != revision {
            return Ok(false);
        }
        state.keeper_runs.insert(slot, (run.to_owned(), revision.unwrap_or(0) + 1));
        Ok(true)
    }
}
