//! Each item's versions (`I#` / `V#...`) and its head (`I#` / `HEAD`, listed by `GSI1` `H#`).
//!
//! A version costs two writes: the version row, conditional on absence (the commit point,
//! idempotent under redelivery; its index attributes for `VC#`/`VP#` ride on the same put), and
//! the head, conditional on not regressing a newer current version.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::KeysAndAttributes;
use chrono::{DateTime, Utc};

use super::keys::{
    HEAD_SK, VERSION_PREFIX, children_g2pk, heads_g1pk, item_pk, sortable_time, version_index_sk, version_sk,
    versions_g1pk, versions_until_sk,
};
use super::{
    DynamoCatalog, GSI1, Row, SERVICE, all_rows, applied, first_rows, json, key, parse_doc, parse_time, parse_version,
    s, sdk_error,
};
use crate::backoff::Backoff;
use crate::model::{ContainerId, ItemHead, ItemKey, ItemVersion, ObjectRef};
use crate::store::{Commit, ItemHistory, Listing, Page, StoreError};

const BATCH_GET_MAX: usize = 100;
const BATCH_GET_ATTEMPTS: u32 = 8;

pub(super) fn parse_head(row: &Row) -> Result<ItemHead, StoreError> {
    let locked_until = row.contains_key(LOCKED_UNTIL).then(|| parse_time(row, LOCKED_UNTIL)).transpose()?;
    Ok(ItemHead { current: parse_version(row)?, record: parse_doc(row, "record")?, locked_until })
}

/// The head's attribute saying how far the keeper locked its version's objects.
pub(super) const LOCKED_UNTIL: &str = "locked_until";

impl DynamoCatalog {
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
        let query = self
            .query()
            .key_condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(false)
            .consistent_read(true);
        first_rows(query, limit).await?.iter().map(parse_version).collect()
    }

    /// Advances the head to `version` unless the head is a row at or past it in the item's
    /// history (the version row's sort key orders both, so the head is always the row an
    /// as-of read of now would pick; a redelivery is a no-op). Heads written before `order`
    /// was kept compare by time alone.
    async fn advance_head(&self, version: &ItemVersion, record: &ObjectRef) -> Result<(), StoreError> {
        let condition = "attribute_not_exists(PK) OR #order < :o OR (attribute_not_exists(#order) AND #modified < :m)";
        let order = version_sk(version.order_time(), &version.version);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(item_pk(&version.key), HEAD_SK)))
            .update_expression(
                "SET #doc = :doc, #record = :record, #modified = :m, #order = :o, G1PK = :g1pk, G1SK = :g1sk \
                 REMOVE #locked",
            )
            .condition_expression(condition)
            .expression_attribute_names("#doc", "doc")
            .expression_attribute_names("#record", "record")
            .expression_attribute_names("#modified", "modified")
            .expression_attribute_names("#order", "order")
            .expression_attribute_names("#locked", LOCKED_UNTIL)
            .expression_attribute_values(":doc", json(version)?)
            .expression_attribute_values(":record", json(record)?)
            .expression_attribute_values(":m", s(sortable_time(version.order_time())))
            .expression_attribute_values(":o", s(order))
            .expression_attribute_values(":g1pk", s(heads_g1pk(&version.key.container)))
            .expression_attribute_values(":g1sk", s(version.key.item_id.clone()))
            .send()
            .await;
        applied(sent, "UpdateItem").map(|_| ())
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
            // Not a paging loop: BatchGetItem hands back what it did not read as UnprocessedKeys,
            // asked again after a backoff.
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
                        Backoff::AWS.sleep(attempt).await;
                        pending = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(heads)
    }

    async fn list_heads(&self, container: &ContainerId) -> Result<Vec<ItemHead>, StoreError> {
        let query = self
            .query()
            .index_name(GSI1)
            .key_condition_expression("G1PK = :p")
            .expression_attribute_values(":p", s(heads_g1pk(container)));
        all_rows(query).await?.iter().map(parse_head).collect()
    }

    async fn heads_page(
        &self,
        container: &ContainerId,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<ItemHead>, StoreError> {
        let listing = Listing::heads(container);
        let after = listing.resume(cursor)?;
        let limit = limit.max(1);
        let query = self.query().index_name(GSI1).expression_attribute_values(":p", s(heads_g1pk(container)));
        // The cursor resumes from a key condition on the last head handed out; one head more
        // than the page tells whether there is a next one.
        let query = match after {
            Some(after) => query
                .key_condition_expression("G1PK = :p AND G1SK > :after")
                .expression_attribute_values(":after", s(after)),
            None => query.key_condition_expression("G1PK = :p"),
        };
        let mut heads = first_rows(query, limit + 1).await?.iter().map(parse_head).collect::<Result<Vec<_>, _>>()?;
        let more = heads.len() > limit;
        heads.truncate(limit);
        let next = heads.last().filter(|_| more).map(|h| listing.cursor(&h.current.key.item_id));
        Ok(Page { items: heads, next })
    }

    async fn commit_version(&self, version: &ItemVersion, record: &ObjectRef) -> Result<Commit, StoreError> {
        let mut row = key(item_pk(&version.key), version_sk(version.order_time(), &version.version));
        row.insert("doc".to_owned(), json(version)?);
        row.insert("record".to_owned(), json(record)?);
        let index_sk = version_index_sk(version);
        row.insert("G1PK".to_owned(), s(versions_g1pk(&version.key.container)));
        row.insert("G1SK".to_owned(), s(index_sk.clone()));
        if let Some(parent_id) = &version.parent_id {
            row.insert("G2PK".to_owned(), s(children_g2pk(&version.key.container, parent_id)));
            row.insert("G2SK".to_owned(), s(index_sk));
        }
        let commit = if self.put_new_row(row).await? { Commit::Created } else { Commit::AlreadyCommitted };
        // On redelivery the head is advanced again, which repairs a crash between the two
        // writes and is a no-op otherwise.
        self.advance_head(version, record).await?;
        Ok(commit)
    }

    async fn versions(&self, item: &ItemKey, limit: usize) -> Result<Vec<ItemVersion>, StoreError> {
        self.query_versions(item, None, limit).await
    }

    async fn version_at(&self, item: &ItemKey, at: DateTime<Utc>) -> Result<Option<ItemVersion>, StoreError> {
        let upper = versions_until_sk(at);
        Ok(self.query_versions(item, Some(upper), 1).await?.pop())
    }
}
