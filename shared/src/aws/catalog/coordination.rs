//! Throttle deadlines (`THROTTLE#` / `STATE`) and concurrency slots (`SLOTS#` / `STATE`), shared
//! by every Lambda instance.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::keys::{STATE_SK, slot_attribute, slots_pk, sortable_time, throttle_pk};
use super::{DynamoCatalog, applied, attr_s, key, parse_time, s};
use crate::store::{Coordination, SlotLease, StoreError};

#[async_trait]
impl Coordination for DynamoCatalog {
    async fn throttled_until(&self, tenant_id: &str, resource: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.get_row(key(throttle_pk(tenant_id, resource), STATE_SK), false).await? {
            Some(row) => parse_time(&row, "until").map(Some),
            None => Ok(None),
        }
    }

    async fn throttle(&self, tenant_id: &str, resource: &str, until: DateTime<Utc>) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(throttle_pk(tenant_id, resource), STATE_SK)))
            .update_expression("SET #until = :u")
            .condition_expression("attribute_not_exists(PK) OR #until < :u")
            .expression_attribute_names("#until", "until")
            .expression_attribute_values(":u", s(sortable_time(until)))
            .send()
            .await;
        applied(sent, "UpdateItem").map(|_| ())
    }

    /// One row per resource, one attribute per slot holding its lease's end. The row is read
    /// first (consistently), so that finding every slot held costs a read, not a failed write
    /// per slot; a free or expired slot is then taken by a conditional update, starting at one
    /// picked from the clock so that concurrent workers rarely collide. A release removes a
    /// slot's lease only if it is still ours.
    async fn acquire_slot(
        &self,
        tenant_id: &str,
        resource: &str,
        slots: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SlotLease>, StoreError> {
        let slots = slots.max(1);
        let row = self.get_row(key(slots_pk(tenant_id, resource), STATE_SK), true).await?.unwrap_or_default();
        // As the condition below compares: lease ends as sortable text.
        let now_s = sortable_time(now);
        let free = |slot: u32| attr_s(&row, &slot_attribute(slot)).is_none_or(|held| held < now_s.as_str());
        let start = now.timestamp_subsec_micros() % slots;
        for slot in (0..slots).map(|i| (start + i) % slots).filter(|s| free(*s)) {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(slots_pk(tenant_id, resource), STATE_SK)))
                .update_expression("SET #slot = :until")
                .condition_expression("attribute_not_exists(#slot) OR #slot < :now")
                .expression_attribute_names("#slot", slot_attribute(slot))
                .expression_attribute_values(":until", s(sortable_time(until)))
                .expression_attribute_values(":now", s(now_s.clone()))
                .send()
                .await;
            if applied(sent, "UpdateItem")? {
                let (tenant_id, resource) = (tenant_id.to_owned(), resource.to_owned());
                return Ok(Some(SlotLease { tenant_id, resource, slot, until }));
            }
        }
        Ok(None)
    }

    async fn release_slot(&self, lease: &SlotLease) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(slots_pk(&lease.tenant_id, &lease.resource), STATE_SK)))
            .update_expression("REMOVE #slot")
            .condition_expression("#slot = :until")
            .expression_attribute_names("#slot", slot_attribute(lease.slot))
            .expression_attribute_values(":until", s(sortable_time(lease.until)))
            .send()
            .await;
        applied(sent, "UpdateItem").map(|_| ())
    }
}
