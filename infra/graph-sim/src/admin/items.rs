//! Admin drive mutations (create, edit content, rename/move, delete, restore from the
//! recycle bin, ransomware, share) and the ground truth (item listing, versions with
//! their SHA-256). Mutations go through the
//! same naming rules and change log as Graph writes would, then schedule a
//! change notification for the drive.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse;
use crate::Inner;
use crate::content::{Content, ContentBlob};
use crate::error::{GraphError, GraphResult};
use crate::notify::drive_changed;
use crate::store::ids::IdRng;
use crate::store::tree::{Drive, NewItem};
use crate::store::{ItemKind, ItemView, State as Tenant};

fn no_drive() -> GraphError {
    GraphError::not_found("The drive could not be found.")
}

fn drive_mut<'a>(st: &'a mut Tenant, drive: &str) -> GraphResult<&'a mut Drive> {
    st.drives.get_mut(drive).ok_or_else(no_drive)
}

/// Admin item JSON; computes hashes, so call outside the lock.
fn admin_json(v: &ItemView, path: &str) -> Value {
    let file = v.kind == ItemKind::File;
    json!({
        "id": v.id,
        "name": v.name,
        "path": path,
        "parent_id": v.parent_id,
        "kind": v.kind.admin_name(),
        "size": v.size,
        "etag": v.etag,
        "ctag": if file { Some(v.ctag.clone()) } else { None },
        "sha256": v.blob.as_ref().map(|b| b.sha256_hex()),
        "quick_xor_hash": v.blob.as_ref().map(|b| b.quick_xor()),
    })
}

async fn render_all(views: Vec<(ItemView, String)>) -> GraphResult<Vec<Value>> {
    tokio::task::spawn_blocking(move || views.iter().map(|(v, p)| admin_json(v, p)).collect::<Vec<_>>())
        .await
        .map_err(|e| GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "generalException", e.to_string()))
}

fn snapshot(d: &Drive, id: &str) -> Option<(ItemView, String)> {
    Some((d.view(id)?, d.path_of(id)))
}

pub async fn list(State(sim): State<Arc<Inner>>, Path(drive): Path<String>) -> GraphResult<Json<Vec<Value>>> {
    let views: Vec<_> = {
        let st = sim.lock();
        let d = st.drives.get(&drive).ok_or_else(no_drive)?;
        d.full_order().iter().filter(|id| **id != d.root_id).filter_map(|id| snapshot(d, id)).collect()
    };
    Ok(Json(render_all(views).await?))
}

async fn one(sim: &Inner, drive: &str, id: &str) -> GraphResult<Json<Value>> {
    let snap = {
        let st = sim.lock();
        let d = st.drives.get(drive).ok_or_else(no_drive)?;
        snapshot(d, id).ok_or_else(|| GraphError::not_found("No such item."))?
    };
    let mut v = render_all(vec![snap]).await?;
    Ok(Json(v.pop().unwrap_or(Value::Null)))
}

#[derive(Deserialize)]
pub struct ContentSpec {
    size: Option<u64>,
    content_b64: Option<String>,
    seed: Option<u64>,
}

impl ContentSpec {
    fn build(&self) -> GraphResult<Arc<ContentBlob>> {
        let content = match &self.content_b64 {
            Some(b64) => Content::Inline(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| GraphError::bad_request("content_b64 is not valid base64."))?
                    .into(),
            ),
            None => Content::Generated {
                seed: self.seed.unwrap_or_else(|| IdRng::random().next_u64()),
                size: self.size.unwrap_or(0),
            },
        };
        Ok(ContentBlob::new(content))
    }
}

fn hash_visible(sim: &Inner, st: &Tenant) -> bool {
    st.new_hash_visible(sim.cfg.hash_missing_probability)
}

#[derive(Deserialize)]
pub struct CreateReq {
    parent_id: Option<String>,
    parent_path: Option<String>,
    name: String,
    kind: String,
    #[serde(flatten)]
    content: ContentSpec,
}

pub async fn create(
    State(sim): State<Arc<Inner>>,
    Path(drive): Path<String>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: CreateReq = parse(&body)?;
    let kind = match req.kind.as_str() {
        "file" => ItemKind::File,
        "folder" => ItemKind::Folder,
        "package" => ItemKind::Package,
        other => return Err(GraphError::bad_request(format!("Unknown kind '{other}'."))),
    };
    let blob = if kind == ItemKind::File { Some(req.content.build()?) } else { None };
    let id = {
        let mut st = sim.lock();
        let visible = hash_visible(&sim, &st);
        let d = drive_mut(&mut st, &drive)?;
        let parent = match (&req.parent_id, &req.parent_path) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => d
                .by_path(path)
                .map(|i| i.id.clone())
                .ok_or_else(|| GraphError::not_found(format!("No folder at '{path}'.")))?,
            (None, None) => d.root_id.clone(),
        };
        let new = NewItem { name: req.name, kind, blob, hash_visible: visible };
        d.create(&parent, new, &mut IdRng::random())?
    };
    drive_changed(&sim, &drive);
    let Json(v) = one(&sim, &drive, &id).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
pub struct EditContentReq {
    #[serde(flatten)]
    content: ContentSpec,
    /// RFC 3339; the new content's `lastModifiedDateTime` instead of now.
    last_modified: Option<DateTime<Utc>>,
}

pub async fn edit_content(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: EditContentReq = parse(&body)?;
    let blob = req.content.build()?;
    {
        let mut st = sim.lock();
        let visible = hash_visible(&sim, &st);
        drive_mut(&mut st, &drive)?.set_content_dated(&id, blob, visible, req.last_modified)?;
    }
    drive_changed(&sim, &drive);
    one(&sim, &drive, &id).await
}

#[derive(Deserialize)]
pub struct MoveReq {
    name: Option<String>,
    parent_id: Option<String>,
    /// RFC 3339: sets `lastModifiedDateTime` (after any rename or move).
    last_modified: Option<DateTime<Utc>>,
}

/// Rename, move and/or set the modification time (each a new eTag, same cTag).
pub async fn rename_move(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: MoveReq = parse(&body)?;
    {
        let mut st = sim.lock();
        let d = drive_mut(&mut st, &drive)?;
        if req.name.is_some() || req.parent_id.is_some() || req.last_modified.is_none() {
            d.rename_move(&id, req.name, req.parent_id)?;
        }
        if let Some(at) = req.last_modified {
            d.set_modified(&id, at)?;
        }
    }
    drive_changed(&sim, &drive);
    one(&sim, &drive, &id).await
}

pub async fn remove(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    drive_mut(&mut sim.lock(), &drive)?.delete(&id)?;
    drive_changed(&sim, &drive);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct RestoreReq {
    #[serde(default)]
    new_etag: bool,
}

/// Brings a deleted item (and the descendants deleted with it) back from the recycle bin:
/// same id, name, content and `lastModifiedDateTime`, its old eTag and cTag unless
/// `new_etag`; under the root if its parent is gone.
pub async fn restore(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: RestoreReq = parse(&body)?;
    drive_mut(&mut sim.lock(), &drive)?.restore(&id, req.new_etag)?;
    drive_changed(&sim, &drive);
    one(&sim, &drive, &id).await
}

/// What the recycle bin holds: one entry per delete, oldest first.
pub async fn recycle_bin(State(sim): State<Arc<Inner>>, Path(drive): Path<String>) -> GraphResult<Json<Vec<Value>>> {
    let st = sim.lock();
    let d = st.drives.get(&drive).ok_or_else(no_drive)?;
    let entries = d.recycle_bin.iter().filter_map(|r| {
        let item = d.items.get(&r.id)?;
        Some(json!({
            "id": r.id,
            "name": item.name,
            "kind": item.kind.admin_name(),
            "items": r.members.len(),
            "deleted_at": r.deleted_at.to_rfc3339(),
        }))
    });
    Ok(Json(entries.collect()))
}

#[derive(Deserialize)]
pub struct RansomReq {
    extension: Option<String>,
    seed: Option<u64>,
}

/// Every file gets fresh random bytes of the same size and `name + extension`
/// (the rename is skipped where the longer name would break a naming rule).
pub async fn ransomware(
    State(sim): State<Arc<Inner>>,
    Path(drive): Path<String>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: RansomReq = parse(&body)?;
    let ext = req.extension.unwrap_or_else(|| ".locked".into());
    let mut rng = req.seed.map(IdRng::seeded).unwrap_or_else(IdRng::random);
    let started_at = Utc::now();
    let encrypted = {
        let mut st = sim.lock();
        let visible = hash_visible(&sim, &st);
        let d = drive_mut(&mut st, &drive)?;
        let files: Vec<(String, String, u64)> = d
            .full_order()
            .iter()
            .filter_map(|id| d.items.get(id))
            .filter(|i| i.kind == ItemKind::File)
            .map(|i| (i.id.clone(), i.name.clone(), i.blob.as_ref().map_or(0, |b| b.size())))
            .collect();
        for (id, name, size) in &files {
            let blob = ContentBlob::new(Content::Generated { seed: rng.next_u64(), size: *size });
            d.set_content(id, blob, visible)?;
            let _ = d.rename_move(id, Some(format!("{name}{ext}")), None);
        }
        files.len()
    };
    drive_changed(&sim, &drive);
    Ok(Json(json!({
        "encrypted": encrypted,
        "started_at": started_at.to_rfc3339(),
    })))
}

/// Ground truth for `GET .../versions`: every version, current first, with
/// its SHA-256 (computed off the async threads).
pub async fn versions(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
) -> GraphResult<Json<Vec<Value>>> {
    let versions = {
        let st = sim.lock();
        st.drives.get(&drive).ok_or_else(no_drive)?.versions(&id)?
    };
    tokio::task::spawn_blocking(move || {
        versions
            .iter()
            .map(|v| {
                json!({
                    "id": v.id(),
                    "current": v.current,
                    "size": v.blob.size(),
                    "last_modified": v.modified.to_rfc3339(),
                    "sha256": v.blob.sha256_hex(),
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map(Json)
    .map_err(|e| GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "generalException", e.to_string()))
}

#[derive(Deserialize)]
pub struct ShareReq {
    email: String,
    roles: Vec<String>,
}

/// Grants `roles` (`read`, `write`) on an item to a user; the grant shows in
/// Graph's `GET .../permissions`. Sharing does not change eTag or delta.
pub async fn share(
    State(sim): State<Arc<Inner>>,
    Path((drive, id)): Path<(String, String)>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: ShareReq = parse(&body)?;
    if req.roles.is_empty() || req.roles.iter().any(|r| r != "read" && r != "write") {
        return Err(GraphError::bad_request("roles must be a non-empty list of 'read' and 'write'."));
    }
    if !req.email.contains('@') {
        return Err(GraphError::bad_request("email must be an email address."));
    }
    let perm = drive_mut(&mut sim.lock(), &drive)?.share(&id, &req.email, req.roles)?;
    crate::notify::drive_security_changed(&sim, &drive);
    Ok((StatusCode::CREATED, Json(json!({"id": perm.id, "email": perm.email, "roles": perm.roles}))))
}
