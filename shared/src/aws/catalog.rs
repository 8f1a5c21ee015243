//! The catalog on one DynamoDB table (on-demand): keys `PK`/`SK` (strings) and two global
//! secondary indexes, `GSI1` on `G1PK`/`G1SK` and `GSI2` on `G2PK`/`G2SK` (strings, projection
//! ALL). No LSI (10 GB item-collection cap).
//!
//! The rows and their keys are in `keys.rs`, the one place that builds a key.
//!
//! Index partitions: `GSI1` `H#` lists a drive's heads; `GSI1` `VC#` holds every version of a
//! drive grouped by item, oldest first within an item (a drive "as of T", its change history);
//! `GSI2` `VP#` holds every version that had a given parent (a folder's children as of T: an
//! item moved out of a folder keeps its old rows there, so candidates are confirmed against the
//! item's head or its history, see `as_of`); `GSI1` `RJ#` lists a tenant's restore jobs by
//! creation time.
//!
//! Times are RFC 3339 UTC with milliseconds (`2024-05-01T10:00:00.000Z`), so string order is
//! time order: an item's versions sort by Microsoft 365 modification time, and "as of T" is one
//! descending query bounded by `V#{T}$` (`$` sorts after `#`, so versions modified within T's
//! millisecond are included).
//!
//! Nothing here deletes a row (the pipeline's roles lack `dynamodb:DeleteItem`): cleared
//! failures are marked `resolved`. A version costs two writes: the version row, conditional
//! on absence (the commit point, idempotent under redelivery; its index attributes ride on the
//! same put), and the head, conditional on not regressing a newer current version. Version
//! rows committed before the index attributes existed are not in `VC#`/`VP#` until backfilled.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{backoff, sdk_error};
use crate::model::{
    ContainerId, ContainerRecord, ItemFailure, ItemHead, ItemKey, ItemVersion, ObjectRef, SCHEMA_VERSION, SyncState,
};
use crate::model::{RestoreItemReport, RestoreJob, RestorePlan, RestoreStatus};
use crate::store::{
    Commit, Containers, Coordination, ExportParts, Failures, ItemHistory, OutcomeCounts, Page, PointInTime,
    RestoreJobs, SlotLease, StoreError, SyncStates,
};

mod as_of;
mod keys;
mod restore;

pub use keys::sortable_time;
use keys::*;

const SERVICE: &str = "dynamodb";
const GSI1: &str = "GSI1";
const GSI2: &str = "GSI2";
const BATCH_GET_MAX: usize = 100;
const BATCH_GET_ATTEMPTS: u32 = 8;
const MARK_SEEN_CONCURRENCY: usize = 16;

type Row = HashMap<String, AttributeValue>;

/// DynamoDB catalog on one table with the layout above.
#[derive(Clone, Debug)]
pub struct DynamoCatalog {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn key(pk: String, sk: impl Into<String>) -> Row {
    HashMap::from([("PK".to_owned(), s(pk)), ("SK".to_owned(), s(sk))])
}

fn json<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| StoreError::Malformed(format!("cannot serialise catalog document: {e}")))
}

fn attr_s<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    row.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn parse_doc<T: DeserializeOwned>(row: &Row, name: &str) -> Result<T, StoreError> {
    let text = attr_s(row, name).ok_or_else(|| StoreError::Malformed(format!("catalog row lacks `{name}`")))?;
    serde_json::from_str(text).map_err(|e| StoreError::Malformed(format!("catalog `{name}`: {e}")))
}

fn parse_time(row: &Row, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let text = attr_s(row, name).ok_or_else(|| StoreError::Malformed(format!("catalog row lacks `{name}`")))?;
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Malformed(format!("catalog `{name}`: {e}")))
}

fn parse_version(row: &Row) -> Result<ItemVersion, StoreError> {
    let version: ItemVersion = parse_doc(row, "doc")?;
    if version.v > SCHEMA_VERSION {
        return Err(StoreError::Malformed(format!("item version schema v{} is newer than this build", version.v)));
    }
    Ok(version)
}

fn parse_head(row: &Row) -> Result<ItemHead, StoreError> {
    Ok(ItemHead {
        current: parse_version(row)?,
        record: parse_doc(row, "record")?,
        seen_epoch: attr_s(row, "seen_epoch").map(str::to_owned),
    })
}

fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(err, SdkError::ServiceError(e) if e.err().code() == Some("ConditionalCheckFailedException"))
}

impl DynamoCatalog {
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(config), table)
    }

    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get_row(&self, key: Row, consistent: bool) -> Result<Option<Row>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "GetItem", e))?;
        Ok(out.item)
    }

    async fn put_row(&self, row: Row) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(row))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "PutItem", e))?;
        Ok(())
    }

    /// Every row of a query, following `LastEvaluatedKey`.
    async fn query_all(
        &self,
        index: Option<&str>,
        key_condition: &str,
        filter: Option<&str>,
        names: HashMap<String, String>,
        values: Row,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        let mut start: Option<Row> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(key_condition)
                .set_filter_expression(filter.map(str::to_owned))
                .set_expression_attribute_names((!names.is_empty()).then(|| names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(SERVICE, "Query", e))?;
            rows.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        Ok(rows)
    }

    /// Newest-first version rows of an item with SK between `V#` and `upper`.
    async fn query_versions(
        &self,
        item: &ItemKey,
        upper: Option<String>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        let mut values = HashMap::from([(":pk".to_owned(), s(item_pk(item))), (":lo".to_owned(), s(VERSION_PREFIX))]);
        let condition = match upper {
            Some(hi) => {
                values.insert(":hi".to_owned(), s(hi));
                "PK = :pk AND SK BETWEEN :lo AND :hi"
            }
            None => "PK = :pk AND begins_with(SK, :lo)",
        };
        let mut found = Vec::new();
        let mut start: Option<Row> = None;
        while found.len() < limit {
            let page_limit = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(page_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(SERVICE, "Query", e))?;
            for row in out.items() {
                found.push(parse_version(row)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Advances the head to `version` unless the head is newer (`strict`: also unless it is
    /// exactly as new, so a redelivered older twin never displaces the current one).
    async fn advance_head(&self, version: &ItemVersion, record: &ObjectRef, strict: bool) -> Result<(), StoreError> {
        let condition = if strict {
            "attribute_not_exists(PK) OR #modified < :m"
        } else {
            "attribute_not_exists(PK) OR #modified <= :m"
        };
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(item_pk(&version.key), HEAD_SK)))
            .update_expression("SET #doc = :doc, #record = :record, #modified = :m, G1PK = :g1pk, G1SK = :g1sk")
            .condition_expression(condition)
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_names("#record", "record")
            .expression_attribute_names("#modified", "modified")
            .expression_attribute_values(":doc", json(version)?)
            .expression_attribute_values(":record", json(record)?)
            .expression_attribute_values(":m", s(sortable_time(version.modified)))
            .expression_attribute_values(":g1pk", s(heads_g1pk(&version.key.container)))
            .expression_attribute_values(":g1sk", s(version.key.item_id.clone()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(SERVICE, "UpdateItem", e)),
        }
    }
}

#[async_trait]
impl ItemHistory for DynamoCatalog {
    async fn head(&self, item: &ItemKey) -> Result<Option<ItemHead>, StoreError> {
        self.get_row(key(item_pk(item), HEAD_SK), true).await?.as_ref().map(parse_head).transpose()
    }

    async fn heads(
        &self,
        container: &ContainerId,
        item_ids: &[String],
    ) -> Result<HashMap<String, ItemHead>, StoreError> {
        let mut ids: Vec<&String> = item_ids.iter().collect();
        ids.sort();
        ids.dedup(); // BatchGetItem rejects duplicate keys
        let mut heads = HashMap::new();
        for chunk in ids.chunks(BATCH_GET_MAX) {
            let keys = chunk.iter().map(|id| key(item_pk(&container.item(id.as_str())), HEAD_SK)).collect();
            let mut pending = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Malformed(format!("BatchGetItem request: {e}")))?;
            let mut attempt = 0;
            loop {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error(SERVICE, "BatchGetItem", e))?;
                for row in out.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let head = parse_head(&row)?;
                    heads.insert(head.current.key.item_id.clone(), head);
                }
                match out.unprocessed_keys.unwrap_or_default().remove(&self.table) {
                    Some(rest) if !rest.keys().is_empty() => {
                        attempt += 1;
                        if attempt >= BATCH_GET_ATTEMPTS {
                            return Err(StoreError::Service {
                                service: SERVICE,
                                message: format!("BatchGetItem: {} keys still unprocessed", rest.keys().len()),
                                retryable: true,
                            });
                        }
                        backoff(attempt).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(heads)
    }

    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError> {
        let rows = self
            .query_all(
                Some(GSI1),
                "G1PK = :p",
                None,
                HashMap::new(),
                HashMap::from([(":p".to_owned(), s(heads_g1pk(container)))]),
            )
            .await?;
        rows.iter().map(parse_head).collect()
    }

    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError> {
        let mut row = key(item_pk(&version.key), version_sk(version.modified, &version.version));
        row.insert("doc".to_owned(), json(version)?);
        row.insert("record".to_owned(), json(record)?);
        let index_sk = version_index_sk(version);
        row.insert("G1PK".to_owned(), s(versions_g1pk(&version.key.container)));
        row.insert("G1SK".to_owned(), s(index_sk.clone()));
        if let Some(parent_id) = &version.parent_id {
            row.insert("G2PK".to_owned(), s(children_g2pk(&version.key.container, parent_id)));
            row.insert("G2SK".to_owned(), s(index_sk));
        }
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(row))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        let commit = match sent {
            Ok(_) => Commit::Created,
            Err(e) if is_condition_failed(&e) => Commit::AlreadyCommitted,
            Err(e) => return Err(sdk_error(SERVICE, "PutItem", e)),
        };
        // On redelivery the head is advanced again (strictly), which repairs a crash between
        // the two writes and is a no-op otherwise.
        self.advance_head(version, record, commit == Commit::AlreadyCommitted).await?;
        Ok(commit)
    }

    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError> {
        self.query_versions(item, None, limit).await
    }

    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError> {
        let upper = versions_until_sk(at);
        Ok(self.query_versions(item, Some(upper), 1).await?.pop())
    }

    async fn mark_seen(&self, container: &ContainerId, item_ids: &[String], epoch: &str) -> Result<(), StoreError> {
        futures::stream::iter(item_ids.iter().map(Ok))
            .try_for_each_concurrent(MARK_SEEN_CONCURRENCY, |id| async move {
                let sent = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(key(item_pk(&container.item(id.as_str())), HEAD_SK)))
                    .update_expression("SET #seen = :e")
                    .expression_attribute_names("#seen", "seen_epoch")
                    .condition_expression("attribute_exists(PK)")
                    .expression_attribute_values(":e", s(epoch))
                    .send()
                    .await;
                match sent {
                    Ok(_) => Ok(()),
                    Err(e) if is_condition_failed(&e) => Ok(()),
                    Err(e) => Err(sdk_error(SERVICE, "UpdateItem", e)),
                }
            })
            .await
    }
}

#[async_trait]
impl PointInTime for DynamoCatalog {
    async fn container_as_of(
        &self,
        container: &ContainerId,
        at: DateTime<Utc>,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        self.container_versions_as_of(container, at).await
    }

    async fn children_as_of(
        &self,
        container: &ContainerId,
        parent_id: &str,
        at: DateTime<Utc>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemVersion>, StoreError> {
        self.children_page_as_of(container, parent_id, at, cursor, limit).await
    }

    async fn changes_between(
        &self,
        container: &ContainerId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ItemVersion>, StoreError> {
        self.versions_between(container, from, to, limit).await
    }
}

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
}

#[async_trait]
impl Containers for DynamoCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        let row = self.get_row(key(tenant_pk(&container.tenant_id), registry_sk(container)), false).await?;
        row.as_ref().map(|r| parse_doc(r, "doc")).transpose()
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut records = Vec::new();
        for prefix in [DRIVE_PREFIX, MAILBOX_PREFIX] {
            let rows = self
                .query_all(
                    None,
                    "PK = :pk AND begins_with(SK, :prefix)",
                    None,
                    HashMap::new(),
                    HashMap::from([(":pk".to_owned(), s(tenant_pk(tenant_id))), (":prefix".to_owned(), s(prefix))]),
                )
                .await?;
            for row in &rows {
                records.push(parse_doc(row, "doc")?);
            }
        }
        Ok(records)
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        let c = &record.container;
        let mut row = key(tenant_pk(&c.tenant_id), registry_sk(c));
        row.insert("doc".to_owned(), json(record)?);
        self.put_row(row).await
    }
}

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
        match sent {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(SERVICE, "UpdateItem", e)),
        }
    }

    /// One row per resource, one attribute per slot holding its lease's end: a slot is taken
    /// by a conditional update (free or expired), starting at a slot picked from the clock so
    /// that concurrent workers rarely collide; a release removes it only if still ours.
    async fn acquire_slot(
        &self,
        tenant_id: &str,
        resource: &str,
        slots: u32,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<SlotLease>, StoreError> {
        let slots = slots.max(1);
        let start = now.timestamp_subsec_micros() % slots;
        for slot in (0..slots).map(|i| (start + i) % slots) {
            let sent = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(slots_pk(tenant_id, resource), STATE_SK)))
                .update_expression("SET #slot = :until")
                .condition_expression("attribute_not_exists(#slot) OR #slot < :now")
                .expression_attribute_names("#slot", slot_attribute(slot))
                .expression_attribute_values(":until", s(sortable_time(until)))
                .expression_attribute_values(":now", s(sortable_time(now)))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    let (tenant_id, resource) = (tenant_id.to_owned(), resource.to_owned());
                    return Ok(Some(SlotLease { tenant_id, resource, slot, until }));
                }
                Err(e) if is_condition_failed(&e) => continue,
                Err(e) => return Err(sdk_error(SERVICE, "UpdateItem", e)),
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
        match sent {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(SERVICE, "UpdateItem", e)),
        }
    }
}

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
        match sent {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()), // nothing to clear
            Err(e) => Err(sdk_error(SERVICE, "UpdateItem", e)),
        }
    }

    async fn failures(&self, container: &ContainerId) -> Result<Vec<ItemFailure>, StoreError> {
        let rows = self
            .query_all(
                None,
                "PK = :pk AND begins_with(SK, :fail)",
                Some("#resolved = :no"),
                HashMap::from([("#resolved".to_owned(), "resolved".to_owned())]),
                HashMap::from([
                    (":pk".to_owned(), s(container_pk(container))),
                    (":fail".to_owned(), s(FAILURE_PREFIX)),
                    (":no".to_owned(), AttributeValue::Bool(false)),
                ]),
            )
            .await?;
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

#[async_trait]
impl RestoreJobs for DynamoCatalog {
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError> {
        self.put_restore_job(job).await
    }

    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError> {
        self.get_restore_job(id).await
    }

    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError> {
        self.query_restore_jobs(tenant_id, limit).await
    }

    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<(), StoreError> {
        self.update_restore_status(id, status, plan).await
    }

    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError> {
        self.record_outcome(report, bytes).await
    }

    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<(), StoreError> {
        self.update_restore_counts(id, status, counts).await
    }

    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError> {
        self.get_restore_report(job_id, item_id).await
    }

    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError> {
        self.query_restore_reports(job_id, cursor, limit).await
    }
}

#[async_trait]
impl ExportParts for DynamoCatalog {
    async fn record_export_part(&self, job_id: &str, part: &crate::model::ExportPart) -> Result<bool, StoreError> {
        self.put_export_part(job_id, part).await
    }

    async fn export_parts(&self, job_id: &str) -> Result<Vec<crate::model::ExportPart>, StoreError> {
        self.query_export_parts(job_id).await
    }
}
