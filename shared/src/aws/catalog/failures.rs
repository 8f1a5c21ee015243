//! Items that failed to back up (`C#` / `FAIL#...`). Nothing deletes a row (the pipeline's
//! roles lack `dynamodb:DeleteItem`): a cleared failure is marked `resolved`.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::keys::{FAILURE_PREFIX, container_pk, failure_sk, sortable_time};
use super::{DynamoCatalog, SERVICE, all_rows, applied, attr_s, key, parse_time, s, sdk_error};
use crate::model::{ContainerId, ItemFailure, ItemKey};
use crate::store::{Failures, StoreError};

#[async_trait]
impl Failures for DynamoCatalog {
    async fn record_failure(&self, item: &ItemKey, reason: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(container_pk(&item.container), failure_sk(&item.item_id))))
            .update_expression("SET #item = :item, #reason = :reason, #last = :at, #resolved = :no ADD #attempts :one")
            .expression_attribute_names("#item", "item_id")
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_names("#last", "last_attempt")
            .expression_attribute_names("#resolved", "resolved")
            .expression_attribute_names("#attempts", "attempts")
            .expression_attribute_values(":item", s(item.item_id.clone()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":at", s(sortable_time(at)))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":one", AttributeValue::N("1".to_owned()))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "UpdateItem", e))?;
        Ok(())
    }

    async fn clear_failure(&self, item: &ItemKey) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(container_pk(&item.container), failure_sk(&item.item_id))))
            .update_expression("SET #resolved = :yes")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#resolved", "resolved")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        applied(sent, "UpdateItem").map(|_| ()) // nothing to clear
    }

    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError> {
        let query = self
            .query()
            .key_condition_expression("PK = :pk AND begins_with(SK, :fail)")
            .filter_expression("#resolved = :no")
            .expression_attribute_names("#resolved", "resolved")
            .expression_attribute_values(":pk", s(container_pk(container)))
            .expression_attribute_values(":fail", s(FAILURE_PREFIX))
            .expression_attribute_values(":no", AttributeValue::Bool(false));
        let rows = all_rows(query).await?;
        rows.iter()
            .map(|row| {
                let item_id = attr_s(row, "item_id")
                    .ok_or_else(|| StoreError::Malformed("failure row lacks `item_id`".to_owned()))?;
                let attempts =
                    row.get("attempts").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
                Ok(ItemFailure {
                    key: container.item(item_id),
                    reason: attr_s(row, "reason").unwrap_or_default().to_owned(),
                    attempts,
                    last_attempt: parse_time(row, "last_attempt")?,
                })
            })
            .collect()
    }
}
