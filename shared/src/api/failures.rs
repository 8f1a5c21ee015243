//! A container's open item failures: what the backup could not take as Graph describes it, each
//! with its reason (files Graph refused, items a delta page sent unusable, messages Exchange
//! refused, bytes recorded as served). `/v1/resources` counts them as `open_failures`; these
//! routes name them. Reasons are shown as recorded: they carry Graph's codes and sizes, never
//! content, names or secrets.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiDeps, ApiError, ApiPath, ApiQuery, Deps, Holder, Owner, parse_limit};
use crate::model::{ContainerId, ItemFailure};

pub(crate) const FAILURES_DEFAULT_LIMIT: usize = 200;
pub(crate) const FAILURES_MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FailuresQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

/// One item the backup could not take as Graph describes it.
#[derive(Serialize)]
struct OpenFailure {
    item_id: String,
    reason: String,
    attempts: u32,
    last_attempt: DateTime<Utc>,
    /// The item's name and parent in its newest backed-up state; absent when nothing of the
    /// item is backed up.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct FailuresPage {
    #[serde(flatten)]
    owner: Owner,
    /// In item id order.
    items: Vec<OpenFailure>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next: Option<String>,
}

pub(crate) async fn drive(
    State(deps): Deps,
    ApiPath(drive_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FailuresQuery>,
) -> Result<Json<FailuresPage>, ApiError> {
    open_failures(&deps, Holder::Drive, drive_id, q).await.map(Json)
}

pub(crate) async fn mailbox(
    State(deps): Deps,
    ApiPath(mailbox_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<FailuresQuery>,
) -> Result<Json<FailuresPage>, ApiError> {
    open_failures(&deps, Holder::Mailbox, mailbox_id, q).await.map(Json)
}

async fn open_failures(deps: &ApiDeps, holder: Holder, id: String, q: FailuresQuery) -> Result<FailuresPage, ApiError> {
    let limit = parse_limit(q.limit.as_deref(), FAILURES_DEFAULT_LIMIT, FAILURES_MAX_LIMIT)?;
    let container = holder.record(deps, &id).await?.container;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let after = cursor.map(|c| FailuresCursor::resume(c, &container)).transpose()?;
    // The catalog hands over a container's open failures whole (one query, as `/v1/resources`
    // counts them); the page is cut here, in item id order, so a cursor resumes after the last
    // id it handed out.
    let mut failures: Vec<ItemFailure> = deps
        .catalog
        .failures(&container)
        .await?
        .into_iter()
        .filter(|f| after.as_deref().is_none_or(|after| f.key.item_id.as_str() > after))
        .collect();
    failures.sort_by(|a, b| a.key.item_id.cmp(&b.key.item_id));
    let more = failures.len() > limit;
    failures.truncate(limit);
    let next = if more { failures.last().map(|f| FailuresCursor::after(&container, &f.key.item_id)) } else { None };
    let ids: Vec<String> = failures.iter().map(|f| f.key.item_id.clone()).collect();
    let mut heads = if ids.is_empty() { HashMap::new() } else { deps.catalog.heads(&container, &ids).await? };
    let items = failures
        .into_iter()
        .map(|f| {
            let current = heads.remove(&f.key.item_id).map(|h| h.current);
            OpenFailure {
                name: current.as_ref().and_then(|v| v.name.clone()),
                parent_id: current.and_then(|v| v.parent_id),
                item_id: f.key.item_id,
                reason: f.reason,
                attempts: f.attempts,
                last_attempt: f.last_attempt,
            }
        })
        .collect();
    Ok(FailuresPage { owner: holder.owner(container.graph_id), items, next })
}

/// The page cursor: the last item id handed out, bound to the container's failure listing so
/// that a cursor of another drive or mailbox is refused rather than silently misread.
#[derive(Serialize, Deserialize)]
struct FailuresCursor {
    listing: String,
    after: String,
}

const MAX_CURSOR_CHARS: usize = 2048;

impl FailuresCursor {
    fn after(container: &ContainerId, item_id: &str) -> String {
        let cursor = Self { listing: listing(container), after: item_id.to_owned() };
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_vec(&cursor).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The item id to resume after.
    fn resume(cursor: &str, container: &ContainerId) -> Result<String, ApiError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let json =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ApiError::InvalidCursor)?;
        let cursor: Self = serde_json::from_slice(&json).map_err(|_| ApiError::InvalidCursor)?;
        if cursor.listing != listing(container) || cursor.after.is_empty() {
            return Err(ApiError::InvalidCursor);
        }
        Ok(cursor.after)
    }
}

/// A digest naming one container's failure listing.
fn listing(container: &ContainerId) -> String {
    use sha2::{Digest, Sha256};
    let kind = if container.is_mailbox() { "mailbox" } else { "drive" };
    let mut hash = Sha256::new();
    for part in ["failures", &container.tenant_id, kind, &container.graph_id] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hex::encode(&hash.finalize()[..12])
}
