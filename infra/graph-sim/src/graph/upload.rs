//! Resumable uploads (graph-facts §6). `POST .../{parent}:/{name}:/createUploadSession`
//! or `.../items/{id}/createUploadSession` (body optional: `item.name` must
//! match the path, `item.@microsoft.graph.conflictBehavior` defaults to
//! `fail`, `item.fileSize` over the drive's quota → `507`, `deferCommit`,
//! `item.fileSystemInfo` dates the file keeps instead of "now", new file or new
//! version alike; `If-Match` / `If-None-Match` → `412`) answers an `uploadUrl`
//! under `/upload/{token}`.
//! That URL is pre-authenticated: a request carrying `Authorization` is
//! refused with `401`, as Graph may. On it, `PUT` sends fragments (`202`
//! with `nextExpectedRanges`, then `201`/`200` and the driveItem when the
//! last byte arrives), `GET` reports progress for resuming, `DELETE`
//! cancels (`204`) and `POST` with an empty body commits a `deferCommit`
//! session (or retries a failed commit). A session lives
//! `upload_session_lifetime`, extended by each fragment; expired or
//! cancelled sessions answer `404`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::items::{drive_not_found, drive_quota};
use super::render::ts;
use super::write::{self, Ctx, JSON_BODY_MAX, check_preconditions, check_writable, item_response, read_body};
use crate::content::{Content, ContentBlob};
use crate::error::{GraphError, GraphResult};
use crate::notify::drive_changed;
use crate::signer::nonce;
use crate::store::State as Tenant;
use crate::store::ids::IdRng;
use crate::store::upload::{ContentRange, FileDates, MAX_FRAGMENT, UploadSession, UploadTarget};
use crate::store::write::{Conflict, Written};
use crate::store::{ItemKind, tree::Drive};
use crate::{Inner, base_url, names};

pub fn upload_router() -> Router<Arc<Inner>> {
    Router::new().route("/upload/{token}", put(put_fragment).get(status).delete(cancel).post(commit))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SessionItem {
    #[serde(rename = "@microsoft.graph.conflictBehavior")]
    conflict: Option<String>,
    name: Option<String>,
    file_size: Option<u64>,
    file_system_info: Option<FileSystemInfo>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FileSystemInfo {
    created_date_time: Option<String>,
    last_modified_date_time: Option<String>,
}

impl FileSystemInfo {
    /// The dates asked for; a malformed one is `400`, as Graph answers.
    fn dates(&self) -> GraphResult<FileDates> {
        let parse = |raw: &Option<String>| {
            raw.as_deref()
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| GraphError::bad_request("fileSystemInfo holds a malformed date."))
                })
                .transpose()
        };
        Ok(FileDates { created: parse(&self.created_date_time)?, modified: parse(&self.last_modified_date_time)? })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateReq {
    item: Option<SessionItem>,
    defer_commit: Option<bool>,
}

fn name_mismatch() -> GraphError {
    GraphError::bad_request("The name in the request body must match the name of the item addressed.")
}

/// Validates where the session will write; returns the target and the
/// eTag of the item it would overwrite, if any.
fn session_target(
    d: &Drive,
    base_item: &str,
    path: Option<&str>,
    item: &SessionItem,
    conflict: Conflict,
) -> GraphResult<(UploadTarget, Option<String>)> {
    let Some(path) = path else {
        let it = d.live(base_item)?;
        if it.kind != ItemKind::File {
            return Err(GraphError::bad_request("Content can only be uploaded to a file, not a folder."));
        }
        if item.name.as_deref().is_some_and(|n| n != it.name) {
            return Err(name_mismatch());
        }
        return Ok((UploadTarget::Existing { item_id: it.id.clone() }, Some(it.etag())));
    };
    let (dir, name) = write::split_path(path);
    names::validate_name(name)?;
    if item.name.as_deref().is_some_and(|n| n != name) {
        return Err(name_mismatch());
    }
    let parent =
        d.by_rel_path(base_item, dir).ok_or_else(|| GraphError::not_found("The parent folder does not exist."))?;
    if !parent.kind.is_container() {
        return Err(GraphError::bad_request("The parent item is not a folder."));
    }
    let existing = d.child_named(&parent.id, name);
    if conflict == Conflict::Fail && existing.is_some() {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "nameAlreadyExists",
            format!("An item named '{name}' already exists in this folder."),
        ));
    }
    let target = UploadTarget::NewFile { parent_id: parent.id.clone(), name: name.to_string() };
    Ok((target, existing.map(|i| i.etag())))
}

/// `POST .../createUploadSession` → `200 {uploadUrl, expirationDateTime, nextExpectedRanges}`.
pub async fn create_session(ctx: Ctx<'_>, base_item: &str, path: Option<&str>, body: Body) -> GraphResult<Response> {
    let req: CreateReq = write::parse_json(&read_body(ctx.headers, body, JSON_BODY_MAX).await?)?;
    let item = req.item.unwrap_or_default();
    let conflict = Conflict::parse(item.conflict.as_deref(), Conflict::Fail)?;
    let dates = item.file_system_info.as_ref().map(FileSystemInfo::dates).transpose()?.unwrap_or_default();
    let expires = Utc::now() + ctx.sim.cfg.upload_session_lifetime;
    let session_id = {
        let mut st = ctx.sim.lock();
        let d = st.drives.get(ctx.drive).ok_or_else(drive_not_found)?;
        let (target, etag) = session_target(d, base_item, path, &item, conflict)?;
        check_preconditions(ctx.headers, etag.as_deref())?;
        let used: u64 = d.items.values().filter(|i| !i.deleted).filter_map(|i| i.blob.as_ref().map(|b| b.size())).sum();
        if item.file_size.is_some_and(|n| n > drive_quota(d).saturating_sub(used)) {
            return Err(GraphError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quotaLimitReached",
                "Insufficient space available for the declared fileSize.",
            ));
        }
        let now = Utc::now();
        st.uploads.retain(|_, s| s.expires > now);
        let id = nonce();
        let defer = req.defer_commit.unwrap_or(false);
        let mut session = UploadSession::new(ctx.drive.to_string(), target, conflict, defer, item.file_size, expires);
        session.dates = dates;
        st.uploads.insert(id.clone(), session);
        id
    };
    // The session's creator pays for its fragments (resource units).
    let token = ctx.sim.signer.sign(&["up", ctx.drive, &session_id, &crate::throttle::current_client()]);
    Ok(Json(json!({
        "uploadUrl": format!("{}/upload/{token}", ctx.base),
        "expirationDateTime": ts(expires),
        "nextExpectedRanges": ["0-"],
    }))
    .into_response())
}

fn session_gone() -> GraphError {
    GraphError::not_found("The upload session was not found; it may have expired or been cancelled.")
}

/// The session id behind an upload URL; refuses bearer tokens (`401`).
fn session_id(sim: &Inner, token: &str, headers: &HeaderMap) -> GraphResult<String> {
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(GraphError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "The upload URL is pre-authenticated; the request must not carry an Authorization header.",
        ));
    }
    let f = sim.signer.verify(token).ok_or_else(session_gone)?;
    match f.as_slice() {
        [kind, _drive, id, _client] if kind == "up" => Ok(id.clone()),
        _ => Err(session_gone()),
    }
}

/// The live session; an expired one is dropped and answers `404`.
fn live<'a>(st: &'a mut Tenant, id: &str) -> GraphResult<&'a mut UploadSession> {
    if st.uploads.get(id).is_some_and(|s| s.expires <= Utc::now()) {
        st.uploads.remove(id);
    }
    st.uploads.get_mut(id).ok_or_else(session_gone)
}

fn progress(s: &UploadSession, status: StatusCode) -> Response {
    let body = json!({
        "expirationDateTime": ts(s.expires),
        "nextExpectedRanges": s.next_expected_ranges(),
    });
    (status, Json(body)).into_response()
}

fn reply(r: GraphResult<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

async fn put_fragment(
    State(sim): State<Arc<Inner>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    reply(receive(&sim, &token, &headers, body).await)
}

async fn receive(sim: &Arc<Inner>, token: &str, headers: &HeaderMap, body: Body) -> GraphResult<Response> {
    // Each request must stay under 60 MiB. The body is read before any
    // other check so that a rejection arrives as a response, not a reset.
    let bytes = read_body(headers, body, MAX_FRAGMENT - 1).await;
    let id = session_id(sim, token, headers)?;
    let drive = live(&mut sim.lock(), &id)?.drive_id.clone();
    check_writable(sim, &drive)?;
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return Err(GraphError::new(StatusCode::LENGTH_REQUIRED, "invalidRequest", "Content-Length is required."));
    }
    let bytes = bytes?;
    let range = ContentRange::parse(headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()))?;
    {
        let mut st = sim.lock();
        let expire_now = st.faults.expire_sessions_after_fragment > 0;
        let s = live(&mut st, &id)?;
        s.accept(range, &bytes)?;
        s.expires = Utc::now() + sim.cfg.upload_session_lifetime;
        if !s.is_complete() || s.defer_commit {
            let reply = progress(s, StatusCode::ACCEPTED);
            if expire_now {
                s.expires = Utc::now() - chrono::Duration::seconds(1);
                st.faults.expire_sessions_after_fragment -= 1;
            }
            return Ok(reply);
        }
    }
    finish(sim, &base_url(headers), &id)
}

/// Writes the completed upload to its target; the session ends on success
/// and stays (for a retried commit) on failure.
fn finish(sim: &Arc<Inner>, base: &str, id: &str) -> GraphResult<Response> {
    let (drive, written) = {
        let mut st = sim.lock();
        let visible = st.new_hash_visible(sim.cfg.hash_missing_probability);
        let s = live(&mut st, id)?;
        let content =
            s.content().ok_or_else(|| GraphError::bad_request("The upload session has not received all bytes yet."))?;
        let (drive, target, conflict, dates) = (s.drive_id.clone(), s.target.clone(), s.conflict, s.dates);
        let blob = ContentBlob::new(Content::Inline(content));
        let d = st.drives.get_mut(&drive).ok_or_else(drive_not_found)?;
        let written = match target {
            UploadTarget::NewFile { parent_id, name } => {
                d.put_file(&parent_id, &name, blob, conflict, visible, &mut IdRng::random())?
            }
            UploadTarget::Existing { item_id } => {
                d.set_content(&item_id, blob, visible)?;
                Written { id: item_id, created: false }
            }
        };
        d.set_file_dates(&written.id, dates.created, dates.modified)?;
        st.uploads.remove(id);
        (drive, written)
    };
    drive_changed(sim, &drive);
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    item_response(sim, base, &drive, &written.id, status)
}

async fn status(State(sim): State<Arc<Inner>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    reply((|| {
        let id = session_id(&sim, &token, &headers)?;
        Ok(progress(live(&mut sim.lock(), &id)?, StatusCode::OK))
    })())
}

async fn cancel(State(sim): State<Arc<Inner>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    reply((|| {
        let id = session_id(&sim, &token, &headers)?;
        let mut st = sim.lock();
        live(&mut st, &id)?;
        st.uploads.remove(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    })())
}

async fn commit(State(sim): State<Arc<Inner>>, Path(token): Path<String>, headers: HeaderMap, body: Body) -> Response {
    reply(
        async {
            let received = read_body(&headers, body, JSON_BODY_MAX).await;
            let id = session_id(&sim, &token, &headers)?;
            let drive = live(&mut sim.lock(), &id)?.drive_id.clone();
            check_writable(&sim, &drive)?;
            if !received?.is_empty() {
                return Err(GraphError::bad_request("A commit request must have an empty body (Content-Length: 0)."));
            }
            finish(&sim, &base_url(&headers), &id)
        }
        .await,
    )
}
