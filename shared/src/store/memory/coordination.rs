//! Throttle deadlines and concurrency slots.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryCatalog;
use crate::store::{Coordination, SlotLease, StoreError};

#[async_trait]
impl Coordination for MemoryCatalog {
    async fn throttled_until(&self, tenant_id: &str, resource: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.read().throttles.get(&(tenant_id.to_owned(), resource.to_owned())).copied())
    }

    async fn throttle(&self, tenant_id: &str, resource: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let mut state = self.write();
        let current = state.throttles.entry((tenant_id.to_owned(), resource.to_owned())).or_insert(until);
        *current = (*current).max(until);
        Ok(())
    }

    async fn acquire_slot(
        &self,
        tenant_id: &str,
        resource: &str,
        slots: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SlotLease>, StoreError> {
        // As the adapter does: one consistent read, then a conditional write on a free slot
        // (none when every slot is held).
        let free = |state: &super::CatalogState, slot: u32| {
            state.slots.get(&(tenant_id.to_owned(), resource.to_owned(), slot)).is_none_or(|held| *held < now)
        };
        let Some(slot) = ({
            let state = self.read();
            (0..slots).find(|slot| free(&state, *slot))
        }) else {
            return Ok(None);
        };
        let mut state = self.write();
        if !free(&state, slot) {
            return Ok(None);
        }
        state.slots.insert((tenant_id.to_owned(), resource.to_owned(), slot), until);
        let (tenant_id, resource) = (tenant_id.to_owned(), resource.to_owned());
        Ok(Some(SlotLease { tenant_id, resource, slot, until }))
    }

    async fn release_slot(&self, lease: &SlotLease) -> Result<(), StoreError> {
        let mut state = self.write();
        let key = (lease.tenant_id.clone(), lease.resource.clone(), lease.slot);
        if state.slots.get(&key) == Some(&lease.until) {
            state.slots.remove(&key);
        }
        Ok(())
    }
}
