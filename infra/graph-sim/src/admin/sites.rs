//! Admin routes for SharePoint: ground truth of every site and library, site and library
//! creation and deletion, archive/deny flags, `Sites.Selected` grants, and the
//! resource-unit throttling budgets and usage.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::parse;
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::seed_sites::{SeedSite, archive_state, create_site};
use crate::store::State as Tenant;
use crate::store::ids::IdRng;
use crate::store::sites::Site;
use crate::throttle::LimitsPatch;

fn no_site() -> GraphError {
    GraphError::not_found("No such site.")
}

fn site_truth(st: &Tenant, s: &Site) -> Value {
    let mut libraries: Vec<Value> = s
        .libraries
        .iter()
        .filter_map(|d| st.drives.get(d))
        .map(|d| {
            let (name, system) = d.library.as_ref().map_or(("OneDrive", false), |l| (l.name.as_str(), l.system));
            json!({"drive_id": d.id, "name": name, "system": system, "deleted": false})
        })
        .collect();
    libraries.extend(
        s.deleted_libraries
            .iter()
            .map(|l| json!({"drive_id": l.drive_id, "name": l.name, "system": l.system, "deleted": true})),
    );
    json!({
        "id": s.id,
        "name": s.name,
        "display_name": s.display_name,
        "web_url": s.web_url(),
        "template": s.template,
        "web_id": s.web_id,
        "collection_id": s.collection_id,
        "parent_id": s.parent,
        "group_id": s.group_id,
        "personal_owner": s.personal_owner,
        "is_personal": s.is_personal(),
        "archived": s.archived,
        "denied": s.denied,
        "deleted": s.deleted,
        "grants": s.grants,
        "libraries": libraries,
    })
}

/// `GET /admin/sites`: every site, deleted and personal ones included.
pub async fn list(State(sim): State<Arc<Inner>>) -> Json<Vec<Value>> {
    let st = sim.lock();
    Json(st.sites.list.iter().map(|s| site_truth(&st, s)).collect())
}

#[derive(Deserialize)]
pub struct NewSiteReq {
    #[serde(flatten)]
    site: SeedSite,
    /// Creates a subsite of this site.
    parent_id: Option<String>,
}

/// `POST /admin/sites`: a site shaped like a seed entry (subsites and libraries included);
/// `sites/delta` reports it. → `201` + its ground truth.
pub async fn create(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: NewSiteReq = parse(&body)?;
    let mut drives = Vec::new();
    let mut st = sim.lock();
    let tenant = sim.cfg.tenant_name.clone();
    let mut rng = IdRng::random();
    let id = create_site(&mut st.sites, &tenant, &req.site, req.parent_id.as_deref(), &mut rng, &mut drives)
        .map_err(GraphError::bad_request)?;
    for d in drives {
        st.drives.insert(d.id.clone(), d);
    }
    let s = st.sites.get(&id).ok_or_else(no_site)?;
    Ok((StatusCode::CREATED, Json(site_truth(&st, s))))
}

/// `PATCH /admin/sites/{id}`: `{"archived"?: status | true | null, "denied"?: bool,
/// "display_name"?: string}`.
pub async fn edit(State(sim): State<Arc<Inner>>, Path(id): Path<String>, body: Bytes) -> GraphResult<Json<Value>> {
    let req: Map<String, Value> = parse(&body)?;
    let archived = req.get("archived").map(archive_state).transpose().map_err(GraphError::bad_request)?;
    let denied = match req.get("denied") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(GraphError::bad_request("denied must be a boolean.")),
    };
    let display = req.get("display_name").and_then(Value::as_str).map(str::to_string);
    let mut st = sim.lock();
    let s = st.sites.get_mut(&id).filter(|s| !s.deleted).ok_or_else(no_site)?;
    let id = s.id.clone();
    if let Some(a) = archived {
        s.archived = a;
    }
    if let Some(d) = denied {
        s.denied = d;
    }
    if let Some(name) = display {
        s.display_name = name;
    }
    st.sites.touch(&id);
    let s = st.sites.get(&id).ok_or_else(no_site)?;
    Ok(Json(site_truth(&st, s)))
}

/// `DELETE /admin/sites/{id}`: the site and its subsites are deleted; their libraries' drive
/// routes answer `404`, `sites/delta` reports the deletion.
pub async fn remove(State(sim): State<Arc<Inner>>, Path(id): Path<String>) -> GraphResult<StatusCode> {
    let mut st = sim.lock();
    let id = st.sites.get(&id).filter(|s| !s.deleted).ok_or_else(no_site)?.id.clone();
    for d in st.sites.delete(&id) {
        st.drives.remove(&d);
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct NewLibrary {
    name: String,
    #[serde(default)]
    system: bool,
}

/// `POST /admin/sites/{id}/libraries` `{"name", "system"?}` → `201 {"drive_id"}`.
pub async fn add_library(
    State(sim): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: NewLibrary = parse(&body)?;
    crate::names::validate_name(&req.name)?;
    let mut st = sim.lock();
    let site = st.sites.get(&id).filter(|s| !s.deleted && !s.is_personal()).ok_or_else(no_site)?;
    let taken = site
        .libraries
        .iter()
        .filter_map(|d| st.drives.get(d))
        .any(|d| d.library.as_ref().is_some_and(|l| l.name.eq_ignore_ascii_case(&req.name)));
    if taken {
        return Err(GraphError::new(StatusCode::CONFLICT, "nameAlreadyExists", "A library with that name exists."));
    }
    let drive = st.sites.new_library(&id, &req.name, req.system, &mut IdRng::random()).ok_or_else(no_site)?;
    let drive_id = drive.id.clone();
    st.drives.insert(drive_id.clone(), drive);
    Ok((StatusCode::CREATED, Json(json!({"drive_id": drive_id}))))
}

/// `DELETE /admin/sites/{id}/libraries/{drive}`: the library is deleted; its drive routes
/// answer `404`.
pub async fn remove_library(
    State(sim): State<Arc<Inner>>,
    Path((id, drive)): Path<(String, String)>,
) -> GraphResult<StatusCode> {
    let mut st = sim.lock();
    let site = st.sites.get(&id).filter(|s| !s.deleted && s.libraries.contains(&drive)).ok_or_else(no_site)?;
    let site_id = site.id.clone();
    let d = st.drives.remove(&drive).ok_or_else(no_site)?;
    let (name, system) = d.library.map_or(("OneDrive".to_string(), false), |l| (l.name, l.system));
    st.sites.drive_site.remove(&drive);
    if let Some(s) = st.sites.get_mut(&site_id) {
        s.libraries.retain(|l| *l != drive);
        s.deleted_libraries.push(crate::store::sites::DeletedLibrary { drive_id: drive, name, system });
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct GrantReq {
    client_id: String,
    roles: Vec<String>,
}

/// `POST /admin/sites/{id}/grants` `{"client_id", "roles": ["read"|"write"|"owner"|"fullcontrol"]}`:
/// what `POST /sites/{id}/permissions` does for a `Sites.Selected` app (graph-facts-sharepoint
/// §1.4); it covers the whole site collection. An empty `roles` revokes.
pub async fn grant(
    State(sim): State<Arc<Inner>>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: GrantReq = parse(&body)?;
    if req.roles.iter().any(|r| !matches!(r.as_str(), "read" | "write" | "owner" | "fullcontrol")) {
        return Err(GraphError::bad_request("roles are read, write, owner or fullcontrol."));
    }
    let mut st = sim.lock();
    let root = st.sites.collection_root(&id).filter(|s| !s.deleted).ok_or_else(no_site)?.id.clone();
    let site = st.sites.get_mut(&root).ok_or_else(no_site)?;
    if req.roles.is_empty() {
        site.grants.remove(&req.client_id);
    } else {
        site.grants.insert(req.client_id, req.roles);
    }
    let s = st.sites.get(&root).ok_or_else(no_site)?;
    Ok((StatusCode::CREATED, Json(site_truth(&st, s))))
}

/// `GET /admin/throttling`.
pub async fn throttling(State(sim): State<Arc<Inner>>) -> Json<Value> {
    Json(sim.throttle.report())
}

/// `PATCH /admin/throttling` `{"ru_per_minute"?, "ru_per_day"?, "minute_window_ms"?,
/// "day_window_ms"?, "blocked_apps"?: [client_id]}`.
pub async fn edit_throttling(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<Json<Value>> {
    let req: LimitsPatch = parse(&body)?;
    if req.minute_window_ms == Some(0) || req.day_window_ms == Some(0) {
        return Err(GraphError::bad_request("A window lasts at least 1 ms."));
    }
    sim.throttle.update(req);
    Ok(Json(sim.throttle.report()))
}

/// `POST /admin/throttling/reset`: every app's usage is forgotten.
pub async fn reset_throttling(State(sim): State<Arc<Inner>>) -> Json<Value> {
    sim.throttle.reset();
    Json(sim.throttle.report())
}
