//! The catalog on one DynamoDB table (on-demand): keys `PK`/`SK` (strings) and two global
//! secondary indexes, `GSI1` on `G1PK`/`G1SK` and `GSI2` on `G2PK`/`G2SK` (strings, projection
//! ALL). No LSI (10 GB item-collection cap).
//!
//! The rows and their keys are in `keys.rs`, the one place that builds a key. Each capability
//! of `crate::store::catalog` is implemented in a file of its own: `history.rs`, `as_of.rs`,
//! `sync.rs`, `containers.rs`, `coordination.rs`, `failures.rs`, `restore.rs` and
//! `export_parts.rs`; this file holds the client and what they share.
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
//! failures are marked `resolved`. A version costs two writes (see `history.rs`). Version rows
//! committed before the index attributes existed are not in `VC#`/`VP#` until backfilled.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::QueryError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::sdk_error;
use crate::model::{ItemVersion, SCHEMA_VERSION};
use crate::store::StoreError;

mod as_of;
mod containers;
mod coordination;
mod export_parts;
mod failures;
mod history;
mod keeping;
mod keys;
mod restore;
mod sync;

pub use keys::sortable_time;

const SERVICE: &str = "dynamodb";
const GSI1: &str = "GSI1";
const GSI2: &str = "GSI2";

type Row = HashMap<String, AttributeValue>;

/// DynamoDB catalog on one table with the layout of `keys.rs`.
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

/// Whether a conditional write was applied: false when its condition did not hold (the
/// caller decides what that means), an error for any other failure.
fn applied<T, E>(sent: Result<T, SdkError<E>>, operation: &str) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match sent {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(e)) if e.err().code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(sdk_error(SERVICE, operation, e)),
    }
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

    /// Puts a row only if its key is new: false if one is already there (which stands).
    async fn put_new_row(&self, row: Row) -> Result<bool, StoreError> {
        let sent = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(row))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        applied(sent, "PutItem")
    }

    /// A query of the table, for the caller to complete and read through the SDK's paginator.
    fn query(&self) -> QueryFluentBuilder {
        self.client.query().table_name(&self.table)
    }

    /// The rows of partition `pk` whose sort key begins with `prefix`.
    fn prefixed(&self, pk: String, prefix: &str) -> QueryFluentBuilder {
        self.query()
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }
}

/// Every row of a query, page after page.
async fn all_rows(query: QueryFluentBuilder) -> Result<Vec<Row>, StoreError> {
    query.into_paginator().items().send().try_collect().await.map_err(query_error)
}

/// The first `limit` rows of a query, in pages of `limit`: the common case is one page, and no
/// page is read once `limit` rows are in (a page cut short by DynamoDB's 1 MB cap is followed
/// by another of `limit`, of which only what is missing is kept).
async fn first_rows(query: QueryFluentBuilder, limit: usize) -> Result<Vec<Row>, StoreError> {
    let mut found = Vec::new();
    if limit == 0 {
        return Ok(found);
    }
    let mut rows = query.into_paginator().page_size(i32::try_from(limit).unwrap_or(i32::MAX)).items().send();
    while found.len() < limit {
        match rows.try_next().await.map_err(query_error)? {
            Some(row) => found.push(row),
            None => break,
        }
    }
    Ok(found)
}

fn query_error(err: SdkError<QueryError>) -> StoreError {
    sdk_error(SERVICE, "Query", err)
}
