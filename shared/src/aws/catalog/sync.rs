//! Each container's sync state (`C#` / `SYNC`): delta link, checkpoint, full-scan epoch; and
//! what a full scan saw (`C#` / `SEEN#{epoch}#{row}`: marks, expiring on their own).

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::Utc;

use super::keys::{SYNC_SK, container_pk, seen_prefix};
use super::{DynamoCatalog, all_rows, attr_s, json, key, parse_doc, s};
use crate::model::{ContainerId, SyncState};
use crate::store::{SEEN_MARKS_PER_ROW, StoreError, SyncStates, seen_mark};

/// How long a scan's marks are kept: far longer than any scan runs.
const SEEN_ROWS_LIVE_DAYS: i64 = 14;

#[async_trait]
impl SyncStates for DynamoCatalog {
    async fn sync_state(&self, container: &ContainerId) -> Result<SyncState, StoreError> {
        match self.get_row(key(container_pk(container), SYNC_SK), true).await? {
            Some(row) => parse_doc(&row, "doc"),
            None => Ok(SyncState::default()),
        }
    }

    async fn put_sync_state(&self, container: &ContainerId, state: &SyncState) -> Result<(), StoreError> {
        let mut row = key(container_pk(container), SYNC_SK);
        row.insert("doc".to_owned(), json(state)?);
        self.put_row(row).await
    }

    async fn record_seen(&self, container: &ContainerId, epoch: &str, item_ids: &[String]) -> Result<(), StoreError> {
        let expires = (Utc::now() + chrono::Duration::days(SEEN_ROWS_LIVE_DAYS)).timestamp();
        for chunk in item_ids.chunks(SEEN_MARKS_PER_ROW) {
            // A redelivered page writes a row of its own: marks are a set, duplicates harmless.
            let sk = format!("{}{}", seen_prefix(epoch), uuid::Uuid::new_v4());
            let mut row = key(container_pk(container), sk);
            let marks: Vec<String> = chunk.iter().map(|id| seen_mark(id)).collect();
            row.insert("marks".to_owned(), s(marks.join(",")));
            row.insert("expires".to_owned(), aws_sdk_dynamodb::types::AttributeValue::N(expires.to_string()));
            self.put_row(row).await?;
        }
        Ok(())
    }

    async fn seen_in_scan(&self, container: &ContainerId, epoch: &str) -> Result<HashSet<String>, StoreError> {
        let query = self
            .query()
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(container_pk(container)))
            .expression_attribute_values(":prefix", s(seen_prefix(epoch)))
            .consistent_read(true);
        let mut seen = HashSet::new();
        for row in all_rows(query).await? {
            let marks = attr_s(&row, "marks").unwrap_or_default();
            seen.extend(marks.split(',').filter(|m| !m.is_empty()).map(str::to_owned));
        }
        Ok(seen)
    }
}
