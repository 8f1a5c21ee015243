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
        let mut state = self.write();
        for slot in 0..slots {
            let key = (tenant_id.to_owned(), resource.to_owned(), slot);
            if state.slots.get(&key).is_none_or(|held| *held < now) {
                state.slots.insert(key, until);
                let (tenant_id, resource) = (tenant_id.to_owned(), resource.to_owned());
                return Ok(Some(SlotLease { tenant_id, resource, slot, until }));
            }
        }
        Ok(None)
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
