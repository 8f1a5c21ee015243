//! Restore jobs: validate a request against the catalog, record the job, queue its plan step;
//! list jobs, show one with its progress, page through its per-item report.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::{
    ApiDeps, ApiError, ApiPath, ApiQuery, DOWNLOAD_LINK_LIFETIME, Deps, NoQuery, check_as_of, parse_limit,
    protected_drive, protected_mailbox,
};
use crate::model::{
    ConflictPolicy, ContainerRecord, ExportPart, RestoreItemReport, RestoreJob, RestoreScope, RestoreStatus,
    RestoreTarget, RestoreTask,
};
use crate::store::{JobEnd, OutMessage, QueueName};

/// A restore request is a few hundred bytes.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// `POST /v1/restores` body.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct RestoreRequest {
    /// What to restore from: a drive, or (exclusive) a user's mailbox.
    #[serde(default)]
    drive_id: Option<String>,
    #[serde(default)]
    mailbox_id: Option<String>,
    scope: RestoreScope,
    as_of: DateTime<Utc>,
    /// The default is an in-place rollback (DESIGN §7).
    #[serde(default = "in_place")]
    target: RestoreTarget,
    #[serde(default)]
    conflict: ConflictPolicy,
    #[serde(default)]
    quarantine_new_items: bool,
    #[serde(default)]
    dry_run: bool,
}

fn in_place() -> RestoreTarget {
    RestoreTarget::InPlace
}

/// A job as the API shows it: the request, its status and its progress.
#[derive(Serialize)]
pub(crate) struct JobView {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    drive_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox_id: Option<String>,
    scope: RestoreScope,
    as_of: DateTime<Utc>,
    target: RestoreTarget,
    conflict: ConflictPolicy,
    quarantine_new_items: bool,
    status: RestoreStatus,
    /// Why the job failed or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    created_at: DateTime<Utc>,
    /// When the job last changed (its status or an item's outcome).
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<DateTime<Utc>>,
    planned_items: u64,
    planned_bytes: u64,
    conflicts: u64,
    restored: u64,
    unchanged: u64,
    skipped: u64,
    failed: u64,
    bytes_restored: u64,
    /// Items with an outcome over planned items, 0..=100; 100 once the job has finished.
    percent: u8,
    /// A finished export's zips, with fresh download links (only on `GET /v1/restores/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<ExportView>,
}

/// What a finished export produced.
#[derive(Serialize)]
pub(crate) struct ExportView {
    /// Messages exported (`.eml` entries), over every part.
    messages: u64,
    /// Bytes of all the zips.
    bytes: u64,
    /// When the links below stop working; ask again for new ones.
    expires_at: DateTime<Utc>,
    parts: Vec<ExportPartView>,
}

#[derive(Serialize)]
pub(crate) struct ExportPartView {
    part: u32,
    /// Presigned GET of the zip.
    url: String,
    bytes: u64,
    sha256: String,
    messages: u64,
    /// Messages of this part left out (see the job's report and the zip's manifest).
    failed: u64,
}

impl From<RestoreJob> for JobView {
    fn from(job: RestoreJob) -> Self {
        Self {
            percent: percent(&job),
            id: job.id,
            drive_id: (!job.container.is_mailbox()).then(|| job.container.graph_id.clone()),
            mailbox_id: job.container.is_mailbox().then(|| job.container.graph_id.clone()),
            scope: job.scope,
            as_of: job.as_of,
            target: job.target,
            conflict: job.conflict,
            quarantine_new_items: job.quarantine_new_items,
            status: job.status,
            reason: job.reason,
            created_at: job.created_at,
            updated_at: job.updated_at,
            planned_items: job.planned_items,
            planned_bytes: job.planned_bytes,
            conflicts: job.conflicts,
            restored: job.restored,
            unchanged: job.unchanged,
            skipped: job.skipped,
            failed: job.failed,
            bytes_restored: job.bytes_restored,
            export: None,
        }
    }
}

pub(crate) fn percent(job: &RestoreJob) -> u8 {
    if matches!(job.status, RestoreStatus::Succeeded | RestoreStatus::CompletedWithErrors) {
        return 100;
    }
    if job.planned_items == 0 {
        return 0;
    }
    let done = job.restored + job.unchanged + job.skipped + job.failed;
    (done.saturating_mul(100) / job.planned_items).min(100) as u8
}

fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if is_json { Ok(()) } else { Err(ApiError::UnsupportedMediaType) }
}

pub(crate) async fn create(
    State(deps): Deps,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_json(&headers)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge(MAX_BODY_BYTES),
        _ => ApiError::InvalidBody(e.body_text()),
    })?;
    let request: RestoreRequest = serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    let now = deps.clock.now();
    let drive = match (&request.drive_id, &request.mailbox_id) {
        (Some(drive), None) => protected_drive(&deps, drive).await?,
        (None, Some(user)) => protected_mailbox(&deps, user).await?,
        _ => return Err(ApiError::InvalidBody("give exactly one of drive_id and mailbox_id".into())),
    };
    check_as_of("as_of", request.as_of, &drive, now)?;
    if let RestoreScope::Item { item_id } = &request.scope {
        match deps.catalog.version_at(&drive.container.item(item_id.as_str()), request.as_of).await? {
            Some(v) if !v.deleted => {}
            _ => {
                return Err(ApiError::NotFound(format!(
                    "item {item_id} of {} did not exist at as_of",
                    drive.container.graph_id
                )));
            }
        }
    }
    match &request.target {
        RestoreTarget::Alternate { drive_id, folder_id } if drive.container.is_mailbox() => {
            check_target_mail_folder(&deps, drive_id, folder_id).await?;
        }
        RestoreTarget::Alternate { drive_id, folder_id } => check_target_folder(&deps, drive_id, folder_id).await?,
        RestoreTarget::Export => check_export(&drive, &request)?,
        RestoreTarget::InPlace => {}
    }
    let id = uuid::Uuid::new_v4().to_string();
    let job = RestoreJob {
        conflict: request.conflict,
        quarantine_new_items: request.quarantine_new_items,
        ..RestoreJob::new(id, drive.container, request.scope, request.as_of, request.target, now)
    };
    // The job row first: the restorer looks it up when the message arrives.
    deps.catalog.create_restore_job(&job).await?;
    let task = RestoreTask::plan(job.id.clone(), request.dry_run);
    let body = serde_json::to_string(&task).map_err(|e| ApiError::InvalidBody(e.to_string()))?;
    deps.sink.send(QueueName::Restores, vec![OutMessage { body, group_id: None, delay: None }]).await?;
    info!(job = %job.id, dry_run = request.dry_run, "restore job planned");
    let location = HeaderValue::from_str(&format!("/v1/restores/{}", job.id))
        .map_err(|e| ApiError::InvalidParameter(e.to_string()))?;
    let mut response = (StatusCode::ACCEPTED, Json(JobView::from(job))).into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

/// Exports are of mail: a drive's files are downloaded one version at a time, or restored.
fn check_export(container: &ContainerRecord, request: &RestoreRequest) -> Result<(), ApiError> {
    if !container.container.is_mailbox() {
        return Err(ApiError::InvalidBody(
            "target export is for mailboxes (mailbox_id): a drive's files are downloaded per version \
             (GET /v1/drives/{drive_id}/items/{item_id}/download) or restored to a drive"
                .into(),
        ));
    }
    if request.quarantine_new_items {
        return Err(ApiError::InvalidBody("quarantine_new_items does not apply to an export".into()));
    }
    Ok(())
}

/// An alternate target must be a protected drive of this tenant and a live folder in it.
async fn check_target_folder(deps: &ApiDeps, drive_id: &str, folder_id: &str) -> Result<(), ApiError> {
    let target = protected_drive(deps, drive_id)
        .await
        .map_err(|_| ApiError::NotFound(format!("target drive {drive_id} is not a protected drive")))?;
    let root_id = deps.catalog.sync_state(&target.container).await?.root_id;
    if (folder_id == "root" && root_id.is_some()) || root_id.as_deref() == Some(folder_id) {
        return Ok(());
    }
    match deps.catalog.head(&target.container.item(folder_id)).await? {
        Some(head) if !head.current.deleted && !head.current.kind.has_content() => Ok(()),
        _ => Err(ApiError::NotFound(format!("no folder {folder_id} in target drive {drive_id}"))),
    }
}

/// A mailbox restore's alternate target: a protected mailbox and one of its folders.
async fn check_target_mail_folder(deps: &ApiDeps, user_id: &str, folder_id: &str) -> Result<(), ApiError> {
    let target = protected_mailbox(deps, user_id)
        .await
        .map_err(|_| ApiError::NotFound(format!("target mailbox {user_id} is not a protected mailbox")))?;
    match deps.catalog.head(&target.container.item(folder_id)).await? {
        Some(head) if !head.current.deleted && head.current.kind == crate::model::ItemKind::MailFolder => Ok(()),
        _ => Err(ApiError::NotFound(format!("no folder {folder_id} in target mailbox {user_id}"))),
    }
}

pub(crate) const JOBS_DEFAULT_LIMIT: usize = 50;
pub(crate) const JOBS_MAX_LIMIT: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    limit: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Jobs {
    /// Newest first.
    jobs: Vec<JobView>,
}

pub(crate) async fn list(State(deps): Deps, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Json<Jobs>, ApiError> {
    let limit = parse_limit(q.limit.as_deref(), JOBS_DEFAULT_LIMIT, JOBS_MAX_LIMIT)?;
    let mut jobs = deps.catalog.list_restore_jobs(&deps.tenant_id, limit).await?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.created_at));
    Ok(Json(Jobs { jobs: jobs.into_iter().map(JobView::from).collect() }))
}

/// The job `id` of this tenant, or 404.
async fn tenant_job(deps: &ApiDeps, id: &str) -> Result<RestoreJob, ApiError> {
    match deps.catalog.restore_job(id).await? {
        Some(job) if job.container.tenant_id == deps.tenant_id => Ok(job),
        _ => Err(ApiError::NotFound(format!("no restore job {id}"))),
    }
}

pub(crate) async fn get(
    State(deps): Deps,
    ApiPath(id): ApiPath<String>,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> Result<Json<JobView>, ApiError> {
    let job = tenant_job(&deps, &id).await?;
    let finished = matches!(job.status, RestoreStatus::Succeeded | RestoreStatus::CompletedWithErrors);
    let export = match job.target {
        RestoreTarget::Export if finished => Some(export_view(&deps, deps.catalog.export_parts(&job.id).await?).await?),
        _ => None,
    };
    Ok(Json(JobView { export, ..job.into() }))
}

/// Cancels a job that has not ended (queued, planned or running): what is restored stays
/// restored, the restorer starts nothing more. The answer shows the job as it stands.
pub(crate) async fn cancel(
    State(deps): Deps,
    ApiPath(id): ApiPath<String>,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> Result<Json<JobView>, ApiError> {
    let job = tenant_job(&deps, &id).await?;
    let end = JobEnd {
        from: &RestoreStatus::ACTIVE,
        to: RestoreStatus::Cancelled,
        reason: "cancelled by request",
        idle_since: None,
    };
    if !deps.catalog.end_restore_job(&job.id, &end).await? {
        // The conditional write lost to the job's own end: say what it is now.
        let now = tenant_job(&deps, &id).await?;
        let status = serde_json::to_value(now.status).ok().and_then(|v| v.as_str().map(str::to_owned));
        return Err(ApiError::JobEnded(format!(
            "restore job {id} is {} and cannot be cancelled",
            status.unwrap_or_default()
        )));
    }
    info!(job = %job.id, "restore job cancelled");
    Ok(Json(tenant_job(&deps, &id).await?.into()))
}

/// The parts of a finished export, each with a link signed now (links are never stored).
async fn export_view(deps: &ApiDeps, parts: Vec<ExportPart>) -> Result<ExportView, ApiError> {
    let now = deps.clock.now();
    let mut views = Vec::with_capacity(parts.len());
    let mut expires_at = now;
    for p in parts {
        // The exports bucket is not versioned: the key alone names the zip.
        let object = crate::model::ObjectRef { key: p.key.clone(), version_id: String::new() };
        let link = deps.exports.presign_get(&object, now, DOWNLOAD_LINK_LIFETIME).await?;
        expires_at = link.expires_at;
        views.push(ExportPartView {
            part: p.part,
            url: link.url,
            bytes: p.bytes,
            sha256: p.sha256,
            messages: p.messages,
            failed: p.failed,
        });
    }
    Ok(ExportView {
        messages: views.iter().map(|p| p.messages).sum(),
        bytes: views.iter().map(|p| p.bytes).sum(),
        expires_at,
        parts: views,
    })
}

pub(crate) const REPORTS_DEFAULT_LIMIT: usize = 200;
pub(crate) const REPORTS_MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemsQuery {
    cursor: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct Reports {
    job_id: String,
    /// In item id order.
    items: Vec<RestoreItemReport>,
    next: Option<String>,
}

pub(crate) async fn items(
    State(deps): Deps,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ItemsQuery>,
) -> Result<Json<Reports>, ApiError> {
    let limit = parse_limit(q.limit.as_deref(), REPORTS_DEFAULT_LIMIT, REPORTS_MAX_LIMIT)?;
    let job = tenant_job(&deps, &id).await?;
    let cursor = q.cursor.as_deref().filter(|c| !c.is_empty());
    let page = deps.catalog.restore_reports(&job.id, cursor, limit).await?;
    Ok(Json(Reports { job_id: job.id, items: page.items, next: page.next }))
}
