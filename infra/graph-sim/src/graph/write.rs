//! Graph writes on driveItems (graph-facts §6; driveitem.md): simple upload
//! `PUT .../{parent}:/{name}:/content` (new or existing file by name,
//! `?@microsoft.graph.conflictBehavior=`, default `replace`) and
//! `PUT .../items/{id}/content` (new content = a new version of the same
//! item, sharing kept), `PATCH` rename/move, `POST .../children` folders and
//! `DELETE`. Bodies over `simple_upload_max` answer `413`; `If-Match`
//! mismatches `412`. Each write lands in the drive's change log (new eTag,
//! new cTag for content, lastModifiedDateTime), so delta and change
//! notifications report it exactly like an admin mutation.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::items::drive_not_found;
use super::render::{Mode, item_json};
use crate::Inner;
use crate::content::{Content, ContentBlob};
use crate::error::{GraphError, GraphResult};
use crate::notify::drive_changed;
use crate::store::ItemKind;
use crate::store::ids::IdRng;
use crate::store::tree::Drive;
use crate::store::write::Conflict;

/// Largest JSON body accepted on metadata writes.
pub const JSON_BODY_MAX: u64 = 1024 * 1024;
pub const CONFLICT_ANNOTATION: &str = "@microsoft.graph.conflictBehavior";

/// What every write handler needs about its request.
pub struct Ctx<'a> {
    pub sim: &'a Arc<Inner>,
    pub base: &'a str,
    pub drive: &'a str,
    pub headers: &'a HeaderMap,
}

pub fn access_denied() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "accessDenied",
        "Access denied. You do not have permission to perform this action or access this resource.",
    )
}

/// `403 accessDenied` while the `forbid_writes` fault covers `drive`.
pub fn check_writable(sim: &Inner, drive: &str) -> GraphResult<()> {
    if sim.lock().faults.forbid_writes.contains(drive) {
        return Err(access_denied());
    }
    Ok(())
}

/// `If-Match` must name the current eTag (or be `*` for an existing item);
/// `If-None-Match` must not. `etag` is `None` when no item exists yet.
pub fn check_preconditions(headers: &HeaderMap, etag: Option<&str>) -> GraphResult<()> {
    // eTags contain commas themselves, so match by containment.
    let matches = |h: header::HeaderName| {
        headers.get(h).and_then(|v| v.to_str().ok()).map(|v| etag.is_some_and(|e| v.trim() == "*" || v.contains(e)))
    };
    let failed = matches(header::IF_MATCH) == Some(false) || matches(header::IF_NONE_MATCH) == Some(true);
    if failed {
        return Err(GraphError::new(
            StatusCode::PRECONDITION_FAILED,
            "resourceModified",
            "The resource has changed since the caller last read it (eTag mismatch).",
        ));
    }
    Ok(())
}

fn too_large(limit: u64) -> GraphError {
    GraphError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalidRequest",
        format!("The request body exceeds the maximum of {limit} bytes; use an upload session."),
    )
}

/// Reads a body of at most `limit` bytes (`413` beyond, judged on
/// `Content-Length` first). A body cut off mid-way is thrown away (`400`).
pub async fn read_body(headers: &HeaderMap, body: Body, limit: u64) -> GraphResult<Bytes> {
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if announced.is_some_and(|n: u64| n > limit) {
        return Err(too_large(limit));
    }
    let mut buf = BytesMut::with_capacity(announced.unwrap_or(0).min(limit) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| GraphError::bad_request("The request body was cut off."))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Consumes and discards a body, so that an early rejection reaches the
/// client as a response rather than a connection reset mid-upload.
pub async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
}

/// A JSON body (empty counts as `{}`), `400` when malformed.
pub fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> GraphResult<T> {
    let raw = if raw.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { raw };
    serde_json::from_slice(raw).map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}")))
}

/// The item as Graph returns it after a write, with `status`.
pub fn item_response(sim: &Inner, base: &str, drive: &str, id: &str, status: StatusCode) -> GraphResult<Response> {
    let view = {
        let st = sim.lock();
        let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
        d.view(id).ok_or_else(|| GraphError::not_found("The resource could not be found."))?
    };
    Ok((status, Json(item_json(sim, base, &view, Mode::Get))).into_response())
}

fn with_drive<T>(ctx: &Ctx<'_>, f: impl FnOnce(&mut Drive, bool) -> GraphResult<T>) -> GraphResult<T> {
    let mut st = ctx.sim.lock();
    let visible = st.new_hash_visible(ctx.sim.cfg.hash_missing_probability);
    let d = st.drives.get_mut(ctx.drive).ok_or_else(drive_not_found)?;
    f(d, visible)
}

/// Splits `a/b/name.txt` into (`a/b`, `name.txt`).
pub fn split_path(path: &str) -> (&str, &str) {
    path.trim_end_matches('/').rsplit_once('/').unwrap_or(("", path))
}

/// `PUT /items/{id}/content`: new content for an existing file.
pub async fn put_existing(ctx: Ctx<'_>, item: &str, body: Body) -> GraphResult<Response> {
    let bytes = read_body(ctx.headers, body, ctx.sim.cfg.simple_upload_max).await?;
    let blob = ContentBlob::new(Content::Inline(bytes));
    let id = with_drive(&ctx, |d, visible| {
        let it = d.live(item)?;
        if it.kind != ItemKind::File {
            return Err(GraphError::bad_request("Content can only be uploaded to a file, not a folder."));
        }
        check_preconditions(ctx.headers, Some(&it.etag()))?;
        let id = it.id.clone();
        d.set_content(&id, blob, visible)?;
        Ok(id)
    })?;
    drive_changed(ctx.sim, ctx.drive);
    item_response(ctx.sim, ctx.base, ctx.drive, &id, StatusCode::OK)
}

/// `PUT /items/{base}:/{path}:/content`: a file by name, created or replaced.
pub async fn put_by_path(
    ctx: Ctx<'_>,
    base_item: &str,
    path: &str,
    q: &HashMap<String, String>,
    body: Body,
) -> GraphResult<Response> {
    let conflict = Conflict::parse(q.get(CONFLICT_ANNOTATION).map(String::as_str), Conflict::Replace)?;
    let bytes = read_body(ctx.headers, body, ctx.sim.cfg.simple_upload_max).await?;
    let blob = ContentBlob::new(Content::Inline(bytes));
    let (dir, name) = split_path(path);
    let written = with_drive(&ctx, |d, visible| {
        let parent =
            d.by_rel_path(base_item, dir).ok_or_else(|| GraphError::not_found("The parent folder does not exist."))?;
        let parent = parent.id.clone();
        check_preconditions(ctx.headers, d.child_named(&parent, name).map(|i| i.etag()).as_deref())?;
        d.put_file(&parent, name, blob, conflict, visible, &mut IdRng::random())
    })?;
    drive_changed(ctx.sim, ctx.drive);
    let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
    item_response(ctx.sim, ctx.base, ctx.drive, &written.id, status)
}

#[derive(Deserialize)]
struct FolderReq {
    name: Option<String>,
    folder: Option<Value>,
    file: Option<Value>,
    #[serde(rename = "@microsoft.graph.conflictBehavior")]
    conflict: Option<String>,
}

/// `POST /items/{parent}/children` with a `folder` facet → `201`.
pub async fn create_folder(ctx: Ctx<'_>, parent: &str, body: Body) -> GraphResult<Response> {
    let req: FolderReq = parse_json(&read_body(ctx.headers, body, JSON_BODY_MAX).await?)?;
    let name = req.name.ok_or_else(|| GraphError::bad_request("The 'name' property is required."))?;
    if req.file.is_some() || req.folder.is_none() {
        return Err(GraphError::bad_request(
            "Only folders can be created here (send \"folder\": {}); upload files with PUT .../content.",
        ));
    }
    let conflict = Conflict::parse(req.conflict.as_deref(), Conflict::Fail)?;
    let id = with_drive(&ctx, |d, _| d.create_folder(parent, &name, conflict, &mut IdRng::random()))?;
    drive_changed(ctx.sim, ctx.drive);
    item_response(ctx.sim, ctx.base, ctx.drive, &id, StatusCode::CREATED)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentRef {
    id: Option<String>,
    drive_id: Option<String>,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchReq {
    name: Option<String>,
    parent_reference: Option<ParentRef>,
    #[serde(rename = "@microsoft.graph.conflictBehavior")]
    conflict: Option<String>,
}

/// The folder a `parentReference` names, by `id` or by `path`
/// (`/drive/root:/a/b`).
fn target_parent(d: &Drive, drive: &str, p: &ParentRef) -> GraphResult<Option<String>> {
    if p.drive_id.as_deref().is_some_and(|id| id != drive) {
        return Err(GraphError::bad_request("Moving an item to another drive is not supported; copy it instead."));
    }
    if let Some(id) = &p.id {
        return Ok(Some(d.live(id)?.id.clone()));
    }
    let Some(path) = &p.path else {
        return Ok(None);
    };
    let rel =
        path.split_once("root:").map(|(_, r)| r).ok_or_else(|| GraphError::bad_request("Invalid parent path."))?;
    let folder =
        d.by_rel_path("root", rel).ok_or_else(|| GraphError::not_found("The parent folder does not exist."))?;
    Ok(Some(folder.id.clone()))
}

/// `PATCH /items/{id}`: rename and/or move; id, content and sharing stay.
pub async fn patch(ctx: Ctx<'_>, item: &str, body: Body) -> GraphResult<Response> {
    let req: PatchReq = parse_json(&read_body(ctx.headers, body, JSON_BODY_MAX).await?)?;
    let conflict = Conflict::parse(req.conflict.as_deref(), Conflict::Fail)?;
    let changed = with_drive(&ctx, |d, _| {
        check_preconditions(ctx.headers, Some(&d.live(item)?.etag()))?;
        let parent = match &req.parent_reference {
            Some(p) => target_parent(d, ctx.drive, p)?,
            None => None,
        };
        if req.name.is_none() && parent.is_none() {
            return Ok(false);
        }
        d.move_item(item, req.name.clone(), parent, conflict)?;
        Ok(true)
    })?;
    if changed {
        drive_changed(ctx.sim, ctx.drive);
    }
    let id = with_drive(&ctx, |d, _| Ok(d.live(item)?.id.clone()))?;
    item_response(ctx.sim, ctx.base, ctx.drive, &id, StatusCode::OK)
}

/// `DELETE /items/{id}` → `204`; the item and its descendants become
/// tombstones that delta reports as deleted.
pub fn delete(ctx: Ctx<'_>, item: &str) -> GraphResult<Response> {
    with_drive(&ctx, |d, _| {
        check_preconditions(ctx.headers, Some(&d.live(item)?.etag()))?;
        d.delete(item)
    })?;
    drive_changed(ctx.sim, ctx.drive);
    Ok(StatusCode::NO_CONTENT.into_response())
}
