//! `GET /drives/{d}`, `GET /drives/{d}/items/{i}` (and `/root`), and
//! `GET .../children` paged with `$top` / `@odata.nextLink`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::render::{Mode, item_json, ts};
use crate::error::{GraphError, GraphResult};
use crate::store::tree::Drive;
use crate::{Inner, base_url};

const CHILDREN_PAGE: usize = 200;
/// A simulated drive has 1 TiB unless the `drive_quota` knob says otherwise.
pub const DRIVE_QUOTA: u64 = 1 << 40;

/// The drive's quota in bytes: the `drive_quota` knob's, or [`DRIVE_QUOTA`].
pub fn drive_quota(d: &Drive) -> u64 {
    d.quota.unwrap_or(DRIVE_QUOTA)
}

pub fn drive_json(d: &Drive, base: &str) -> Value {
    let live = d.items.values().filter(|i| !i.deleted);
    let (used, modified) = live.fold((0u64, None), |(used, modified), i| {
        (used + i.blob.as_ref().map_or(0, |b| b.size()), modified.max(Some(i.modified)))
    });
    let total = drive_quota(d);
    let created = d.items.get(&d.root_id).map(|r| ts(r.created));
    let quota = json!({"deleted": 0, "remaining": total.saturating_sub(used), "state": "normal",
                       "total": total, "used": used});
    let Some(lib) = &d.library else {
        return json!({
            "id": d.id,
            "driveType": "business",
            "name": "OneDrive",
            "description": "",
            "createdDateTime": created,
            "lastModifiedDateTime": modified.map(ts),
            "owner": {"user": {"id": d.owner_id, "displayName": d.owner_name}},
            "quota": quota,
            "webUrl": format!("{base}/personal/{}/Documents", d.id),
        });
    };
    let owner = match &lib.group {
        Some((id, name)) => json!({"group": {"id": id, "displayName": name}}),
        None => json!({"user": {"displayName": "System Account"}}),
    };
    json!({
        "id": d.id,
        "driveType": "documentLibrary",
        "name": lib.name,
        "description": "",
        "createdDateTime": created,
        "lastModifiedDateTime": modified.map(ts),
        "owner": owner,
        "quota": quota,
        "webUrl": lib.web_url,
    })
}

pub fn drive_not_found() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "itemNotFound",
        "The provided drive id appears to be malformed, or does not represent a valid drive.",
    )
}

pub async fn get_drive(
    State(sim): State<Arc<Inner>>,
    Path(drive): Path<String>,
    headers: HeaderMap,
) -> GraphResult<Json<Value>> {
    let st = sim.lock();
    let d = st.drives.get(&drive).ok_or_else(drive_not_found)?;
    Ok(Json(drive_json(d, &base_url(&headers))))
}

pub fn get_item(sim: &Arc<Inner>, base: &str, drive: &str, item: &str) -> GraphResult<Response> {
    let view = {
        let st = sim.lock();
        let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
        let id = d.live(item)?.id.clone();
        d.view(&id).ok_or_else(|| GraphError::not_found("The resource could not be found."))?
    };
    Ok(Json(item_json(sim, base, &view, Mode::Get)).into_response())
}

pub fn children(
    sim: &Arc<Inner>,
    base: &str,
    drive: &str,
    item: &str,
    q: &HashMap<String, String>,
) -> GraphResult<Response> {
    let top = q.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(CHILDREN_PAGE).clamp(1, 999);
    let offset = match q.get("$skiptoken") {
        None => 0,
        Some(t) => sim
            .signer
            .verify(t)
            .filter(|f| f.first().map(String::as_str) == Some("children"))
            .and_then(|f| f.get(1).and_then(|o| o.parse::<usize>().ok()))
            .ok_or_else(|| GraphError::bad_request("Invalid skip token."))?,
    };
    let (views, more, item_id) = {
        let st = sim.lock();
        let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
        let it = d.live(item)?;
        let kids = d.live_children(&it.id);
        let views: Vec<_> = kids.iter().skip(offset).take(top).filter_map(|c| d.view(c)).collect();
        (views, offset + top < kids.len(), it.id.clone())
    };
    let value: Vec<Value> = views.iter().map(|v| item_json(sim, base, v, Mode::Get)).collect();
    let mut body = json!({ "value": value });
    if more {
        let token = sim.signer.sign(&["children", &(offset + top).to_string()]);
        body["@odata.nextLink"] =
            json!(format!("{base}/v1.0/drives/{drive}/items/{item_id}/children?$top={top}&$skiptoken={token}"));
    }
    Ok(Json(body).into_response())
}
