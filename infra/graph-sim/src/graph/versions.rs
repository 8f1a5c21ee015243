//! File versions and sharing (graph-facts §5). `GET .../versions` lists
//! driveItemVersions newest first, the current one first (`"3.0"`, `"2.0"`,
//! …; `$orderby` is not supported); `GET .../versions/{id}` one of them;
//! `GET .../versions/{id}/content` answers `302` to a pre-authenticated
//! download URL for that version, but, as in Graph, not for the current
//! version (`400`; use `/content`); `POST .../versions/{id}/restoreVersion`
//! makes an old version current again (`204`). `GET .../permissions` lists
//! the item's grants, explicit ones first, then those inherited from
//! ancestors (with `inheritedFrom`).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::items::drive_not_found;
use super::render::{ts, version_download_url};
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::notify::drive_changed;
use crate::store::Permission;
use crate::store::tree::Drive;
use crate::store::write::VersionView;

fn version_json(d: &Drive, v: &VersionView) -> Value {
    json!({
        "id": v.id(),
        "lastModifiedDateTime": ts(v.modified),
        "size": v.blob.size(),
        "lastModifiedBy": {"user": {"id": d.owner_id, "displayName": d.owner_name}},
    })
}

/// `GET .../versions[/{id}[/content]]`.
pub fn get(sim: &Arc<Inner>, base: &str, drive: &str, item: &str, rest: &[&str]) -> GraphResult<Response> {
    let st = sim.lock();
    let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
    match rest {
        [] => {
            let value: Vec<Value> = d.versions(item)?.iter().map(|v| version_json(d, v)).collect();
            Ok(Json(json!({
                "@odata.context": format!("{base}/v1.0/$metadata#drives('{drive}')/items('{item}')/versions"),
                "value": value,
            }))
            .into_response())
        }
        [v] => Ok(Json(version_json(d, &d.version(item, v)?)).into_response()),
        [v, "content"] => {
            let version = d.version(item, v)?;
            if version.current {
                return Err(GraphError::bad_request(
                    "The content of the current version cannot be downloaded from versions; use /content.",
                ));
            }
            let url = version_download_url(sim, base, drive, item, version.number);
            let mut resp = StatusCode::FOUND.into_response();
            if let Ok(v) = HeaderValue::from_str(&url) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        _ => Err(GraphError::bad_request("Resource not found for the segment 'versions'.")),
    }
}

/// `POST .../versions/{id}/restoreVersion` → `204`; a new current version.
pub fn restore(sim: &Arc<Inner>, drive: &str, item: &str, version: &str) -> GraphResult<Response> {
    {
        let mut st = sim.lock();
        let visible = st.new_hash_visible(sim.cfg.hash_missing_probability);
        let d = st.drives.get_mut(drive).ok_or_else(drive_not_found)?;
        d.restore_version(item, version, visible)?;
    }
    drive_changed(sim, drive);
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn permission_json(drive: &str, p: &Permission, inherited_from: Option<&str>) -> Value {
    let user = json!({"email": p.email, "displayName": p.email});
    let mut v = json!({
        "id": p.id,
        "roles": p.roles,
        "grantedTo": {"user": user},
        "grantedToV2": {"user": user},
    });
    if let Some(from) = inherited_from {
        v["inheritedFrom"] = json!({"driveId": drive, "driveType": "business", "id": from});
    }
    v
}

/// `GET .../permissions`.
pub fn permissions(sim: &Arc<Inner>, drive: &str, item: &str) -> GraphResult<Response> {
    let st = sim.lock();
    let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
    let value: Vec<Value> =
        d.permissions(item)?.iter().map(|(p, from)| permission_json(drive, p, from.as_deref())).collect();
    Ok(Json(json!({ "value": value })).into_response())
}
