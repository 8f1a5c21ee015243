//! `GET /users` (paged: 100 by default, `$top` up to 999, `$skiptoken` in
//! `@odata.nextLink`, loose `$select`) and `GET /users/{id}/drive`, which
//! answers `404 ResourceNotFound "User's mysite not found."` for users whose
//! OneDrive was never provisioned (graph-facts §8).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use crate::error::{GraphError, GraphResult};
use crate::store::{State as Tenant, User};
use crate::{Inner, base_url};

use super::items::drive_json;

fn user_json(u: &User, select: Option<&str>) -> Value {
    let full = json!({
        "id": u.id,
        "userPrincipalName": u.upn,
        "displayName": u.display_name,
        "mail": u.upn,
        "accountEnabled": true,
    });
    let Some(select) = select else {
        return full;
    };
    let wanted: Vec<String> = select.split(',').map(|s| s.trim().to_lowercase()).collect();
    let mut out = Map::new();
    if let Value::Object(m) = full {
        for (k, v) in m {
            if k == "id" || wanted.contains(&k.to_lowercase()) {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out)
}

fn user_not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
    )
}

/// The drive id of a user (by id or UPN), or Graph's "no mysite" 404.
pub fn drive_of(st: &Tenant, user: &str) -> GraphResult<String> {
    let u = st.user(user).ok_or_else(|| user_not_found(user))?;
    u.drive_id
        .clone()
        .ok_or_else(|| GraphError::new(StatusCode::NOT_FOUND, "ResourceNotFound", "User's mysite not found."))
}

pub async fn list(
    State(sim): State<Arc<Inner>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> GraphResult<Json<Value>> {
    let top = match q.get("$top") {
        None => 100,
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => n,
            _ => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    "Invalid page size specified: '$top' must be between 1 and 999.",
                ));
            }
        },
    };
    let offset = match q.get("$skiptoken") {
        None => 0,
        Some(t) => sim
            .signer
            .verify(t)
            .filter(|f| f.first().map(String::as_str) == Some("users"))
            .and_then(|f| f.get(1).and_then(|o| o.parse::<usize>().ok()))
            .ok_or_else(|| {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Directory_ExpiredPageToken",
                    "The specified page token value has expired or is invalid.",
                )
            })?,
    };
    let select = q.get("$select").map(String::as_str);
    let st = sim.lock();
    let page: Vec<Value> = st.users.iter().skip(offset).take(top).map(|u| user_json(u, select)).collect();
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#users", base_url(&headers)),
        "value": page,
    });
    if offset + top < st.users.len() {
        let token = sim.signer.sign(&["users", &(offset + top).to_string()]);
        let mut link = format!("{}/v1.0/users?$top={top}&$skiptoken={token}", base_url(&headers));
        if let Some(s) = select {
            link.push_str(&format!(
                "&$select={}",
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
            ));
        }
        body["@odata.nextLink"] = json!(link);
    }
    Ok(Json(body))
}

pub async fn get_one(
    State(sim): State<Arc<Inner>>,
    Path(user): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> GraphResult<Json<Value>> {
    let st = sim.lock();
    let u = st.user(&user).ok_or_else(|| user_not_found(&user))?;
    Ok(Json(user_json(u, q.get("$select").map(String::as_str))))
}

pub async fn user_drive(
    State(sim): State<Arc<Inner>>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> GraphResult<Json<Value>> {
    let st = sim.lock();
    let drive_id = drive_of(&st, &user)?;
    let drive = st.drives.get(&drive_id).ok_or_else(|| GraphError::not_found("The drive could not be found."))?;
    Ok(Json(drive_json(drive, &base_url(&headers))))
}
