//! SharePoint sites (graph-facts-sharepoint §1): `GET /sites/getAllSites` (root sites of
//! every collection, personal ones included, paged), `GET /sites/delta` (enumeration, then
//! changes and deletions, `410` after the `expire_sites_delta` fault), a site by id or by
//! `{hostname}:/{path}`, its direct subsites, its libraries (`system` ones only with
//! `$select=system`), and the `gate` every drive request passes: a fully archived site's
//! libraries answer `423`, a denied site's `403`, and a `Sites.Selected` app reaches only
//! the libraries of sites granted to it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::Params;
use super::items::drive_json;
use super::render::ts;
use crate::apps::{self, Caller};
use crate::error::{GraphError, GraphResult};
use crate::store::State as Tenant;
use crate::store::sites::Site;
use crate::{Inner, base_url};

pub fn site_not_found() -> GraphError {
    GraphError::not_found("Requested site could not be found")
}

fn locked() -> GraphError {
    GraphError::new(StatusCode::LOCKED, "resourceLocked", "The site is archived.")
}

/// Whether a comma-separated `$select` names `field` (any case).
fn selects(select: Option<&str>, field: &str) -> bool {
    select.is_some_and(|s| s.split(',').any(|f| f.trim().eq_ignore_ascii_case(field)))
}

/// Keeps `id` and the `$select`ed fields of an object.
fn pick_fields(full: Value, select: Option<&str>) -> Value {
    let (Some(select), Value::Object(m)) = (select, &full) else {
        return full;
    };
    let out: Map<String, Value> =
        m.iter().filter(|(k, _)| *k == "id" || selects(Some(select), k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Value::Object(out)
}

pub fn site_json(s: &Site, select: Option<&str>) -> Value {
    let mut collection = json!({"hostname": s.hostname});
    if let (true, Some(status)) = (selects(select, "siteCollection"), &s.archived) {
        collection["archivalDetails"] = json!({"archiveStatus": status});
    }
    let mut full = json!({
        "id": s.id,
        "name": s.name,
        "displayName": s.display_name,
        "webUrl": s.web_url(),
        "createdDateTime": ts(s.created),
        "lastModifiedDateTime": ts(s.modified),
        "isPersonalSite": s.is_personal(),
        "siteCollection": collection,
    });
    if s.is_root() {
        full["root"] = json!({});
    }
    pick_fields(full, select)
}

/// The site an app may read: live, not denied, and either tenant-wide read permission or a
/// `Sites.Selected` grant on its site collection.
fn readable<'a>(st: &'a Tenant, caller: &Caller, id: &str) -> GraphResult<&'a Site> {
    let site = st.sites.get(id).filter(|s| !s.deleted).ok_or_else(site_not_found)?;
    allowed(st, caller, site, "read")?;
    Ok(site)
}

/// `403` unless `caller` may `role` (`read`/`write`) `site` (see [`readable`]).
fn allowed(st: &Tenant, caller: &Caller, site: &Site, role: &str) -> GraphResult<()> {
    if site.denied {
        return Err(apps::files_denied());
    }
    let tenant_wide = if role == "read" { apps::FILES_READ_TENANT } else { apps::FILES_WRITE_TENANT };
    if caller.has_any(tenant_wide) {
        return Ok(());
    }
    let collection = st.sites.collection_root(&site.id).unwrap_or(site);
    if caller.has_any(&[apps::SITES_SELECTED]) && collection.grants(&caller.client_id, role) {
        Ok(())
    } else {
        Err(apps::files_denied())
    }
}

fn tenant_wide(caller: &Caller) -> GraphResult<()> {
    if caller.has_any(apps::SITES_READ_TENANT) { Ok(()) } else { Err(apps::files_denied()) }
}

/// `$top` (1..=999, default 100) and the offset a signed `$skiptoken` of `kind` carries.
fn paging(sim: &Inner, q: &HashMap<String, String>, kind: &str) -> GraphResult<(usize, usize)> {
    let top = match q.get("$top").map(|t| t.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=999).contains(&n) => n,
        Some(_) => return Err(GraphError::bad_request("Invalid page size: '$top' must be between 1 and 999.")),
    };
    let offset = match q.get("$skiptoken") {
        None => 0,
        Some(t) => sim
            .signer
            .verify(t)
            .filter(|f| f.first().map(String::as_str) == Some(kind))
            .and_then(|f| f.get(1).and_then(|o| o.parse::<usize>().ok()))
            .ok_or_else(|| GraphError::bad_request("Invalid skip token."))?,
    };
    Ok((top, offset))
}

/// `{"value": page}` plus an `@odata.nextLink` to `url` when more follow.
fn paged(sim: &Inner, url: &str, kind: &str, q: &HashMap<String, String>, all: Vec<Value>) -> GraphResult<Value> {
    let (top, offset) = paging(sim, q, kind)?;
    let total = all.len();
    let value: Vec<Value> = all.into_iter().skip(offset).take(top).collect();
    let mut body = json!({ "value": value });
    if offset + top < total {
        let token = sim.signer.sign(&[kind, &(offset + top).to_string()]);
        let mut link = format!("{url}?$top={top}&$skiptoken={token}");
        if let Some(s) = q.get("$select") {
            link.push_str(&format!("&$select={}", utf8_percent_encode(s, NON_ALPHANUMERIC)));
        }
        body["@odata.nextLink"] = json!(link);
    }
    Ok(body)
}

/// Everything under `GET /sites/`.
pub async fn sites_rest(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(rest): Path<String>,
    Query(q): Params,
    headers: HeaderMap,
) -> GraphResult<Response> {
    let base = base_url(&headers);
    let select = q.get("$select").map(String::as_str);
    if rest == "getAllSites" {
        tenant_wide(&caller)?;
        let all: Vec<Value> = {
            let st = sim.lock();
            st.sites.roots().filter(|s| !s.deleted).map(|s| site_json(s, select)).collect()
        };
        return Ok(Json(paged(&sim, &format!("{base}/v1.0/sites/getAllSites"), "allsites", &q, all)?).into_response());
    }
    if rest == "delta" || rest == "delta()" {
        tenant_wide(&caller)?;
        return super::sites_delta::delta(&sim, &base, &q).map(|v| Json(v).into_response());
    }
    let (site, action) = parse_site_address(&rest)?;
    let st = sim.lock();
    let id = match site {
        SiteRef::Id(id) => id.to_string(),
        SiteRef::Path(host, path) => st.sites.by_path(host, path).ok_or_else(site_not_found)?.id.clone(),
    };
    let s = readable(&st, &caller, &id)?;
    match action.as_slice() {
        [] => Ok(Json(site_json(s, select)).into_response()),
        ["sites"] => {
            let kids: Vec<Value> = st.sites.children(&s.id).into_iter().map(|c| site_json(c, select)).collect();
            let url = format!("{base}/v1.0/sites/{}/sites", s.id);
            drop(st);
            Ok(Json(paged(&sim, &url, &format!("subsites-{}", id.to_lowercase()), &q, kids)?).into_response())
        }
        ["drives"] => {
            let system = selects(select, "system");
            let value: Vec<Value> = s
                .libraries
                .iter()
                .filter_map(|d| st.drives.get(d))
                .filter(|d| system || !d.library.as_ref().is_some_and(|l| l.system))
                .map(|d| {
                    let mut j = drive_json(d, &base);
                    if d.library.as_ref().is_some_and(|l| l.system) {
                        j["system"] = json!({});
                    }
                    pick_fields(j, select)
                })
                .collect();
            Ok(Json(json!({ "value": value })).into_response())
        }
        ["drive"] => {
            let d = s.libraries.iter().filter_map(|d| st.drives.get(d)).next().ok_or_else(site_not_found)?;
            Ok(Json(drive_json(d, &base)).into_response())
        }
        [.., last] => Err(GraphError::bad_request(format!("Resource not found for the segment '{last}'."))),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SiteRef<'a> {
    Id(&'a str),
    /// `{hostname}:/{server-relative path}`.
    Path(&'a str, &'a str),
}

/// `{id}/action...` or `{hostname}:/{path}[:/action...]`.
fn parse_site_address(rest: &str) -> GraphResult<(SiteRef<'_>, Vec<&str>)> {
    if let Some((host, tail)) = rest.split_once(":/") {
        if host.contains('/') {
            return Err(GraphError::bad_request("Invalid hostname for this tenancy"));
        }
        let (path, action) = tail.split_once(':').unwrap_or((tail, ""));
        return Ok((SiteRef::Path(host, path), action.split('/').filter(|s| !s.is_empty()).collect()));
    }
    let mut segs = rest.split('/').filter(|s| !s.is_empty());
    let id = segs.next().ok_or_else(site_not_found)?;
    Ok((SiteRef::Id(id), segs.collect()))
}

/// `GET /groups`: Microsoft 365 and security groups; `$filter` only as
/// `groupTypes/any(c:c eq 'Unified')` (graph-facts-sharepoint §1.1).
pub async fn groups(State(sim): State<Arc<Inner>>, Query(q): Params, headers: HeaderMap) -> GraphResult<Json<Value>> {
    let unified_only = match q.get("$filter") {
        None => false,
        Some(f) if f.replace(' ', "").eq_ignore_ascii_case("groupTypes/any(c:ceq'Unified')") => true,
        Some(_) => {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "Request_UnsupportedQuery",
                "Unsupported or invalid query filter clause specified for property 'groupTypes' of resource 'Group'.",
            ));
        }
    };
    let all: Vec<Value> = {
        let st = sim.lock();
        st.sites
            .groups
            .iter()
            .filter(|g| g.unified || !unified_only)
            .map(|g| {
                json!({
                    "id": g.id,
                    "displayName": g.display_name,
                    "mail": g.mail,
                    "mailEnabled": g.unified,
                    "securityEnabled": !g.unified,
                    "groupTypes": if g.unified { json!(["Unified"]) } else { json!([]) },
                    "resourceProvisioningOptions": if g.team { json!(["Team"]) } else { json!([]) },
                })
            })
            .collect()
    };
    let kind = if unified_only { "groups-unified" } else { "groups" };
    let mut body = paged(&sim, &format!("{}/v1.0/groups", base_url(&headers)), kind, &q, all)?;
    if let (Some(link), Some(f)) = (body.get("@odata.nextLink").and_then(Value::as_str), q.get("$filter")) {
        body["@odata.nextLink"] = json!(format!("{link}&$filter={}", utf8_percent_encode(f, NON_ALPHANUMERIC)));
    }
    Ok(Json(body))
}

/// `GET /groups/{id}/sites/root`: the group's team site.
pub async fn group_site(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(group): Path<String>,
    Query(q): Params,
) -> GraphResult<Json<Value>> {
    let st = sim.lock();
    let g = st.sites.group(&group).ok_or_else(|| {
        GraphError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{group}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    })?;
    let site = g.site_id.clone().ok_or_else(site_not_found)?;
    let s = readable(&st, &caller, &site)?;
    Ok(Json(site_json(s, q.get("$select").map(String::as_str))))
}

/// In front of `/drives/{d}/…` and `/users/{u}/drive…`: a library of a denied site `403`, of
/// a fully archived site `423` (its content, not `GET /drives/{d}` itself), and an app with
/// only `Sites.Selected` needs a `read` (or, to write, `write`) grant on the site collection.
pub async fn gate(State(sim): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let segs: Vec<&str> = req.uri().path().split('/').filter(|s| !s.is_empty()).collect();
    // (drive or user, whether the request reaches below the drive itself)
    let target = match segs.as_slice() {
        ["drives", d, rest @ ..] => Some((None, *d, !rest.is_empty())),
        ["users", u, "drive", rest @ ..] => Some((Some(*u), "", !rest.is_empty())),
        _ => None,
    };
    let writing = !matches!(*req.method(), Method::GET | Method::HEAD);
    let verdict = match (target, req.extensions().get::<Caller>()) {
        (Some((user, drive, content)), Some(caller)) => {
            let st = sim.lock();
            let drive = match user {
                Some(u) => super::users::drive_of(&st, u).ok(),
                None => Some(drive.to_string()),
            };
            drive.map_or(Ok(()), |d| drive_verdict(&st, caller, &d, writing, content))
        }
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn drive_verdict(st: &Tenant, caller: &Caller, drive: &str, writing: bool, content: bool) -> GraphResult<()> {
    let Some(site) = st.sites.site_of_drive(drive) else {
        return Ok(());
    };
    allowed(st, caller, site, if writing { "write" } else { "read" })?;
    let collection = st.sites.collection_root(&site.id).unwrap_or(site);
    if content && (site.fully_archived() || collection.fully_archived()) {
        return Err(locked());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_addresses() {
        let (s, a) = parse_site_address("contoso.sharepoint.com:/sites/finance").expect("path form");
        assert_eq!(s, SiteRef::Path("contoso.sharepoint.com", "sites/finance"));
        assert!(a.is_empty());
        let (s, a) = parse_site_address("contoso.sharepoint.com:/sites/finance:/drives").expect("path + action");
        assert_eq!(s, SiteRef::Path("contoso.sharepoint.com", "sites/finance"));
        assert_eq!(a, vec!["drives"]);
        let (s, a) = parse_site_address("h,1,2/sites").expect("id form");
        assert_eq!(s, SiteRef::Id("h,1,2"));
        assert_eq!(a, vec!["sites"]);
    }
}
