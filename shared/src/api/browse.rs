//! Read-only routes: a folder's children as of T, an item's history, a
//! download link for one version, and the changes in a window. Drives and mailboxes answer the
//! same four routes (`/v1/drives/{id}/...`, `/v1/mailboxes/{id}/...`); a mailbox's folders are
//! its folders, its files its messages (MIME, downloaded as `.eml`).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use base64::Engine;
use chrono::{DateTime, DurationRound, SubsecRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::{
    ApiDeps, ApiError, ApiPath, ApiQuery, DOWNLOAD_LINK_LIFETIME, Deps, Holder, Owner, check_as_of, parse_limit,
    parse_time,
};
use crate::model::{ContainerId, ItemKind, ItemVersion, MailMeta, Verification};

/// Catalog reads in flight for one request.
const READ_CONCURRENCY: usize = 16;

// ---------------------------------------------------------------------------------------
// GET /v1/{drives|mailboxes}/{id}/children

pub(crate) const CHILDREN_DEFAULT_LIMIT: usize = 200;
pub(crate) const CHILDREN_MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChildrenQuery {
    parent: Option<String>,
    at: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// An item as it was at the listing's moment.
#[derive(Serialize)]
struct Child {
    id: String,
    name: Option<String>,
    kind: ItemKind,
    size: Option<u64>,
    modified: DateTime<Utc>,
    version: String,
    deleted: bool,
    sha256: Option<String>,
    /// A message's headers, dates and flags (mailboxes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    mail: Option<MailMeta>,
}

#[derive(Serialize)]
pub(crate) struct Children {
    #[serde(flatten)]
    owner: Owner,
    parent_id: String,
    at: DateTime<Utc>,
    items: Vec<Child>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next: Option<String>,
}

/// The API's page cursor: the catalog's cursor plus the moment of the listing, so that the
/// pages of a listing that defaulted `at` to "now" all show the same moment.
#[derive(Serialize, Deserialize)]
struct ChildrenCursor {
    at: DateTime<Utc>,
    c: String,
}

const MAX_CURSOR_CHARS: usize = 4096;

impl ChildrenCursor {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(cursor: &str) -> Result<Self, ApiError> {
        if cursor.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let json =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| ApiError::InvalidCursor)?;
        serde_json::from_slice(&json).map_err(|_| ApiError::InvalidCursor)
    }
}

pub(crate) async fn children(
    State(deps): Deps,
    ApiPath(drive_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChildrenQuery>,
) -> Result<Json<Children>, ApiError> {
    list_children(&deps, Holder::Drive, &drive_id, q).await.map(Json)
}

pub(crate) async fn mailbox_children(
    State(deps): Deps,
    ApiPath(mailbox_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChildrenQuery>,
) -> Result<Json<Children>, ApiError> {
    list_children(&deps, Holder::Mailbox, &mailbox_id, q).await.map(Json)
}

async fn list_children(deps: &ApiDeps, holder: Holder, id: &str, q: ChildrenQuery) -> Result<Children, ApiError> {
    // "As of" has millisecond precision: the moment shown is the moment applied.
    let now = deps.clock.now().trunc_subsecs(3);
    let limit = parse_limit(q.limit.as_deref(), CHILDREN_DEFAULT_LIMIT, CHILDREN_MAX_LIMIT)?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty()).map(ChildrenCursor::decode).transpose()?;
    let at = match (q.at.as_deref(), &cursor) {
        (Some(at), Some(cursor)) => {
            let at = parse_time("at", at)?;
            // The catalog would refuse it too; say so before reading anything.
            if at != cursor.at {
                return Err(ApiError::InvalidCursor);
            }
            at
        }
        (Some(at), None) => parse_time("at", at)?,
        (None, Some(cursor)) => cursor.at,
        (None, None) => now,
    };
    let record = holder.record(deps, id).await?;
    check_as_of("at", at, &record, now)?;
    let container = record.container;
    let parent = q.parent.as_deref().unwrap_or("root");
    let parent_id = resolve_parent(deps, holder, &container, parent, at).await?;
    let page =
        deps.catalog.children_as_of(&container, &parent_id, at, cursor.as_ref().map(|c| c.c.as_str()), limit).await?;
    let items = page
        .items
        .into_iter()
        .filter(|v| !v.deleted)
        .map(|v| Child {
            size: v.content.as_ref().map(|c| c.size),
            sha256: v.content.as_ref().map(|c| c.sha256.clone()),
            id: v.key.item_id,
            name: v.name,
            kind: v.kind,
            modified: v.modified,
            version: v.version,
            deleted: false,
            mail: v.mail,
        })
        .collect();
    let next = page.next.map(|c| ChildrenCursor { at, c }.encode());
    Ok(Children { owner: holder.owner(container.graph_id), parent_id, at, items, next })
}

/// `root` means the drive's root folder (a mailbox's `msgfolderroot`); any other id must have
/// been a folder at `at`.
async fn resolve_parent(
    deps: &ApiDeps,
    holder: Holder,
    container: &ContainerId,
    parent: &str,
    at: DateTime<Utc>,
) -> Result<String, ApiError> {
    let root_id = deps.catalog.sync_state(container).await?.root_id;
    if parent == "root" {
        return root_id.ok_or_else(|| {
            ApiError::NotFound(format!(
                "the root of {} {} is not known yet (first backup running)",
                holder.noun(),
                container.graph_id
            ))
        });
    }
    if root_id.as_deref() == Some(parent) {
        return Ok(parent.to_owned());
    }
    match deps.catalog.version_at(&container.item(parent), at).await? {
        Some(v) if !v.deleted && !v.kind.has_content() => Ok(parent.to_owned()),
        Some(v) if !v.deleted => {
            Err(ApiError::InvalidParameter(format!("parent {parent} is a {}, not a folder", kind_noun(v.kind))))
        }
        _ => Err(ApiError::NotFound(format!(
            "no folder {parent} in {} {} at that time",
            holder.noun(),
            container.graph_id
        ))),
    }
}

fn kind_noun(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Message => "message",
        _ => "file",
    }
}

// ---------------------------------------------------------------------------------------
// GET /v1/{drives|mailboxes}/{id}/items/{item_id}/versions

pub(crate) const VERSIONS_DEFAULT_LIMIT: usize = 100;
pub(crate) const VERSIONS_MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionsQuery {
    limit: Option<String>,
}

#[derive(Serialize)]
struct VersionEntry {
    version: String,
    kind: ItemKind,
    modified: DateTime<Utc>,
    captured_at: DateTime<Utc>,
    deleted: bool,
    name: Option<String>,
    parent_id: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    verification: Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    mail: Option<MailMeta>,
    /// From when this row is the item's state, when that is not its Microsoft 365 time (a
    /// state current again, a later verification): the time as-of reads order it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    current_from: Option<DateTime<Utc>>,
    /// Why the row exists beside another of the same version, or why its bytes are not
    /// Graph's (`as_served`).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

impl From<ItemVersion> for VersionEntry {
    fn from(v: ItemVersion) -> Self {
        Self {
            size: v.content.as_ref().map(|c| c.size),
            sha256: v.content.as_ref().map(|c| c.sha256.clone()),
            version: v.version,
            kind: v.kind,
            modified: v.modified,
            captured_at: v.captured_at,
            deleted: v.deleted,
            name: v.name,
            parent_id: v.parent_id,
            verification: v.verification,
            mail: v.mail,
            current_from: v.current_from,
            note: v.note,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct History {
    #[serde(flatten)]
    owner: Owner,
    item_id: String,
    /// Newest first.
    versions: Vec<VersionEntry>,
}

pub(crate) async fn versions(
    State(deps): Deps,
    ApiPath((drive_id, item_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> Result<Json<History>, ApiError> {
    history(&deps, Holder::Drive, drive_id, item_id, q).await.map(Json)
}

pub(crate) async fn mailbox_versions(
    State(deps): Deps,
    ApiPath((mailbox_id, item_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> Result<Json<History>, ApiError> {
    history(&deps, Holder::Mailbox, mailbox_id, item_id, q).await.map(Json)
}

async fn history(
    deps: &ApiDeps,
    holder: Holder,
    id: String,
    item_id: String,
    q: VersionsQuery,
) -> Result<History, ApiError> {
    let limit = parse_limit(q.limit.as_deref(), VERSIONS_DEFAULT_LIMIT, VERSIONS_MAX_LIMIT)?;
    let record = holder.record(deps, &id).await?;
    let versions = deps.catalog.versions(&record.container.item(item_id.as_str()), limit).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("no backed-up item {item_id} in {} {id}", holder.noun())));
    }
    Ok(History { owner: holder.owner(id), item_id, versions: versions.into_iter().map(VersionEntry::from).collect() })
}

// ---------------------------------------------------------------------------------------
// GET /v1/{drives|mailboxes}/{id}/items/{item_id}/download

/// How far back a named version is looked for.
const VERSION_LOOKUP_LIMIT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadQuery {
    version: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct DownloadLink {
    /// Presigned GET of the exact S3 version recorded for this item version.
    url: String,
    expires_at: DateTime<Utc>,
    /// Check the downloaded bytes against this.
    sha256: String,
    size: u64,
    version: String,
    name: Option<String>,
}

pub(crate) async fn download(
    State(deps): Deps,
    ApiPath((drive_id, item_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Json<DownloadLink>, ApiError> {
    download_link(&deps, Holder::Drive, &drive_id, &item_id, q).await.map(Json)
}

/// A message's MIME as it was backed up: save it as `.eml`.
pub(crate) async fn mailbox_download(
    State(deps): Deps,
    ApiPath((mailbox_id, item_id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Json<DownloadLink>, ApiError> {
    download_link(&deps, Holder::Mailbox, &mailbox_id, &item_id, q).await.map(Json)
}

async fn download_link(
    deps: &ApiDeps,
    holder: Holder,
    id: &str,
    item_id: &str,
    q: DownloadQuery,
) -> Result<DownloadLink, ApiError> {
    let record = holder.record(deps, id).await?;
    let history = deps.catalog.versions(&record.container.item(item_id), VERSION_LOOKUP_LIMIT).await?;
    if history.is_empty() {
        return Err(ApiError::NotFound(format!("no backed-up item {item_id} in {} {id}", holder.noun())));
    }
    let chosen = match q.version.as_deref() {
        Some(wanted) => history
            .into_iter()
            .find(|v| v.version == wanted)
            .ok_or_else(|| ApiError::NotFound(format!("item {item_id} has no backed-up version {wanted}")))?,
        // The newest state that is not a deletion: what a person means by "the file".
        None => history
            .into_iter()
            .find(|v| !v.deleted)
            .ok_or_else(|| ApiError::NoContent(format!("item {item_id} has only deletions backed up")))?,
    };
    let content = match (&chosen.content, chosen.deleted) {
        (Some(content), false) => content,
        (_, true) => return Err(ApiError::NoContent(format!("version {} records a deletion", chosen.version))),
        (None, false) => return Err(ApiError::NoContent(format!("item {item_id} is a folder, not a file"))),
    };
    let link = deps.presigner.presign_get(&content.object, deps.clock.now(), DOWNLOAD_LINK_LIFETIME).await?;
    Ok(DownloadLink {
        url: link.url,
        expires_at: link.expires_at,
        sha256: content.sha256.clone(),
        size: content.size,
        version: chosen.version.clone(),
        name: chosen.name.clone(),
    })
}

// ---------------------------------------------------------------------------------------
// GET /v1/{drives|mailboxes}/{id}/changes

pub(crate) const CHANGES_DEFAULT_LIMIT: usize = 1000;
pub(crate) const CHANGES_MAX_LIMIT: usize = 5000;
/// Window when `from` is not given.
const CHANGES_DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
struct Change {
    item_id: String,
    version: String,
    kind: ItemKind,
    modified: DateTime<Utc>,
    captured_at: DateTime<Utc>,
    deleted: bool,
    name: Option<String>,
    /// The item's name in its previous version, when this version renamed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_name: Option<String>,
    parent_id: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub(crate) struct MinuteBucket {
    minute: DateTime<Utc>,
    versions: usize,
    /// Versions whose name got a different extension than the previous version's (`.docx` →
    /// `.docx.locked`): the signature of a mass encryption.
    renamed_extensions: usize,
}

#[derive(Serialize)]
pub(crate) struct Changes {
    #[serde(flatten)]
    owner: Owner,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Oldest first.
    versions: Vec<Change>,
    /// True when `limit` cut the window short: ask again from the last version's `modified`.
    truncated: bool,
    /// Per minute with at least one version, oldest first, over `versions`.
    histogram: Vec<MinuteBucket>,
}

pub(crate) async fn changes(
    State(deps): Deps,
    ApiPath(drive_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<Changes>, ApiError> {
    changes_in_window(&deps, Holder::Drive, &drive_id, q).await.map(Json)
}

pub(crate) async fn mailbox_changes(
    State(deps): Deps,
    ApiPath(mailbox_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<Changes>, ApiError> {
    changes_in_window(&deps, Holder::Mailbox, &mailbox_id, q).await.map(Json)
}

async fn changes_in_window(deps: &ApiDeps, holder: Holder, id: &str, q: ChangesQuery) -> Result<Changes, ApiError> {
    let limit = parse_limit(q.limit.as_deref(), CHANGES_DEFAULT_LIMIT, CHANGES_MAX_LIMIT)?;
    let to = q.to.as_deref().map(|t| parse_time("to", t)).transpose()?.unwrap_or_else(Utc::now);
    let from = q.from.as_deref().map(|t| parse_time("from", t)).transpose()?.unwrap_or(to - CHANGES_DEFAULT_WINDOW);
    if from > to {
        return Err(ApiError::InvalidParameter("from must not be later than to".into()));
    }
    let container = holder.record(deps, id).await?.container;
    // One more than asked tells whether the window was cut short.
    let mut versions = deps.catalog.changes_between(&container, from, to, limit + 1).await?;
    let truncated = versions.len() > limit;
    versions.truncate(limit);
    let previous = previous_names(deps, &container, &versions).await?;
    let histogram = histogram(&versions, &previous);
    let versions = versions
        .into_iter()
        .zip(previous)
        .map(|(v, previous)| Change {
            previous_name: previous.filter(|p| v.name.as_ref().is_some_and(|n| n != p)),
            size: v.content.as_ref().map(|c| c.size),
            sha256: v.content.as_ref().map(|c| c.sha256.clone()),
            item_id: v.key.item_id,
            version: v.version,
            kind: v.kind,
            modified: v.modified,
            captured_at: v.captured_at,
            deleted: v.deleted,
            name: v.name,
            parent_id: v.parent_id,
        })
        .collect();
    Ok(Changes { owner: holder.owner(container.graph_id), from, to, versions, truncated, histogram })
}

/// For each version (oldest first), the name of the same item's previous version: the one
/// before it in the window, or else the one current just before it (one catalog read per item
/// whose previous version lies before the window).
async fn previous_names(
    deps: &ApiDeps,
    container: &ContainerId,
    versions: &[ItemVersion],
) -> Result<Vec<Option<String>>, ApiError> {
    let mut first_seen: HashMap<&str, usize> = HashMap::new();
    let mut last_name: HashMap<&str, Option<String>> = HashMap::new();
    let mut previous = vec![None; versions.len()];
    for (i, v) in versions.iter().enumerate() {
        let id = v.key.item_id.as_str();
        match last_name.insert(id, v.name.clone()) {
            Some(name) => previous[i] = name,
            None => {
                first_seen.insert(id, i);
            }
        }
    }
    let before: Vec<(usize, Option<String>)> = futures::stream::iter(first_seen.into_values())
        .map(|i| async move {
            let v = &versions[i];
            let just_before = v.modified - TimeDelta::milliseconds(1);
            let prior = deps.catalog.version_at(&container.item(v.key.item_id.as_str()), just_before).await?;
            Ok::<_, ApiError>((i, prior.and_then(|p| p.name)))
        })
        .buffer_unordered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    for (i, name) in before {
        previous[i] = name;
    }
    Ok(previous)
}

fn extension(name: &str) -> Option<String> {
    std::path::Path::new(name).extension().map(|e| e.to_string_lossy().to_lowercase())
}

pub(crate) fn histogram(versions: &[ItemVersion], previous: &[Option<String>]) -> Vec<MinuteBucket> {
    let mut buckets: BTreeMap<DateTime<Utc>, MinuteBucket> = BTreeMap::new();
    for (v, previous) in versions.iter().zip(previous) {
        let minute = v.modified.duration_trunc(TimeDelta::minutes(1)).unwrap_or(v.modified);
        let bucket = buckets.entry(minute).or_insert(MinuteBucket { minute, versions: 0, renamed_extensions: 0 });
        bucket.versions += 1;
        if let (Some(name), Some(previous)) = (&v.name, previous)
            && extension(name) != extension(previous)
        {
            bucket.renamed_extensions += 1;
        }
    }
    buckets.into_values().collect()
}
