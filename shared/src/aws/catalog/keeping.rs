//! The vault keeper's state: the head's `locked_until` (how far its version's objects are
//! locked), set only while the head is still that version, and one run row per task in the
//! tenant's partition (`T#` / `KEEPER#task`), saved under an optimistic revision.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::history::LOCKED_UNTIL;
use super::keys::{HEAD_SK, item_pk, keeper_sk, sortable_time, tenant_pk, version_sk};
use super::{DynamoCatalog, applied, attr_s, key, s};
use crate::model::ItemHead;
use crate::store::{StoreError, VaultKeeping};

#[async_trait]
impl VaultKeeping for DynamoCatalog {
    async fn set_head_lock(&self, head: &ItemHead, until: DateTime<Utc>) -> Result<bool, StoreError> {
        let version = &head.current;
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(item_pk(&version.key), HEAD_SK)))
            .update_expression("SET #locked = :until")
            .condition_expression("#order = :o")
            .expression_attribute_names("#locked", LOCKED_UNTIL)
            .expression_attribute_names("#order", "order")
            .expression_attribute_values(":until", s(sortable_time(until)))
            .expression_attribute_values(":o", s(version_sk(version.order_time(), &version.version)))
            .send()
            .await;
        applied(sent, "UpdateItem")
    }

    async fn keeper_run(&self, tenant_id: &str, task: &str) -> Result<Option<(String, u64)>, StoreError> {
        let Some(row) = self.get_row(key(tenant_pk(tenant_id), keeper_sk(task)), true).await? else {
            return Ok(None);
        };
        let doc = attr_s(&row, "doc").ok_or_else(|| StoreError::Malformed("keeper run lacks `doc`".to_owned()))?;
        let revision = row
            .get("revision")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| StoreError::Malformed("keeper run lacks `revision`".to_owned()))?;
        Ok(Some((doc.to_owned(), revision)))
    }

    async fn put_keeper_run(
        &self,
        tenant_id: &str,
        task: &str,
        run: &str,
        revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut row = key(tenant_pk(tenant_id), keeper_sk(task));
        row.insert("doc".to_owned(), s(run));
        row.insert("revision".to_owned(), AttributeValue::N((revision.unwrap_or(0) + 1).to_string()));
        let put = self.client.put_item().table_name(&self.table).set_item(Some(row));
        let put = match revision {
            None => put.condition_expression("attribute_not_exists(PK)"),
            Some(r) => put
                .condition_expression("#rev = :r")
                .expression_attribute_names("#rev", "revision")
                .expression_attribute_values(":r", AttributeValue::N(r.to_string())),
        };
        applied(put.send().await, "PutItem")
    }
}
