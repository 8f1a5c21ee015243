//! `/subscriptions` (graph-facts §1) for drive roots (only `changeType:
//! "updated"`, resource `/drives/{id}/root` or `/users/{id}/drive/root`,
//! expiration within `subscription_max_minutes`) and Outlook messages
//! (`created,updated,deleted` on `/users/{id}/messages` or one folder's
//! messages, within `mail_subscription_max_minutes`, at most 1,000 per
//! mailbox, ids immutable when created with `Prefer: IdType="ImmutableId"`);
//! `clientState` ≤ 128 chars,
//! and creation only after the notification (and lifecycle) URL passes the
//! validation handshake. PATCH renews, DELETE removes, `reauthorize` is a no-op.
//!
//! A subscription belongs to the app that created it (`subscription-list.md`: an app calling
//! with application permissions lists the subscriptions *it* created): `GET /subscriptions`
//! lists the caller's only, paged by `@odata.nextLink`, without `clientState` ("not returned
//! for security purposes"); another app's subscription answers `404` to GET, PATCH, DELETE and
//! reauthorize, as an unknown id does (what Graph answers there is not documented). Creating
//! one needs `Files.ReadWrite.All` for a drive root and `Mail.Read` for messages; the other
//! operations need the same permission as creating it did (else `403 ExtensionError`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::mail::{Prefer, mailbox_not_enabled, mailbox_owner};
use super::users::drive_of;
use crate::apps::{Caller, DRIVE_SUBSCRIPTION, MESSAGE_SUBSCRIPTION, SITES_SELECTED, subscription_denied};
use crate::error::{GraphError, GraphResult};
use crate::notify::validate_endpoint;
use crate::store::sites::Sites;
use crate::store::{Subscription, Watched};
use crate::{Inner, base_url};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    change_type: Option<String>,
    notification_url: Option<String>,
    lifecycle_notification_url: Option<String>,
    resource: Option<String>,
    expiration_date_time: Option<String>,
    client_state: Option<String>,
    latest_supported_tls_version: Option<String>,
}

fn bad(msg: impl Into<String>) -> GraphError {
    GraphError::new(StatusCode::BAD_REQUEST, "InvalidRequest", msg)
}

pub fn subscription_json(s: &Subscription) -> Value {
    json!({
        "id": s.id,
        "resource": s.resource,
        "applicationId": s.application_id,
        "changeType": s.change_type,
        "clientState": s.client_state,
        "notificationUrl": s.notification_url,
        "notificationQueryOptions": null,
        "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": s.expiration.to_rfc3339(),
        "creatorId": s.creator_id,
        "includeResourceData": false,
        "latestSupportedTlsVersion": s.tls,
        "encryptionCertificate": null,
        "encryptionCertificateId": null,
        "notificationUrlAppId": null,
        "notificationContentType": "application/json",
    })
}

fn check_url(url: &str, field: &str) -> GraphResult<()> {
    let u = url::Url::parse(url).map_err(|_| bad(format!("{field} is not a valid URL.")))?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1") | Some("localhost") | Some("[::1]") | Some("::1"));
    match u.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(bad(format!("{field} must be an HTTPS URL."))),
    }
}

/// `403` unless `caller` holds the permission that subscribing to `watched` takes; an app
/// with only `Sites.Selected` may watch a library (or OneDrive) whose site collection grants
/// it `write`, the least that Graph's per-site consent gives for what `Files.ReadWrite.All` does.
fn may_subscribe(sites: &Sites, caller: &Caller, watched: &Watched, operation: &str) -> GraphResult<()> {
    let wanted = match watched {
        Watched::DriveRoot(_) => DRIVE_SUBSCRIPTION,
        Watched::Messages { .. } => MESSAGE_SUBSCRIPTION,
    };
    if caller.has_any(wanted) {
        return Ok(());
    }
    if let Watched::DriveRoot(drive) = watched
        && caller.has_any(&[SITES_SELECTED])
    {
        let collection = sites.site_of_drive(drive).and_then(|s| sites.collection_root(&s.id));
        if collection.is_some_and(|c| c.grants(&caller.client_id, "write")) {
            return Ok(());
        }
    }
    Err(subscription_denied(operation))
}

fn max_minutes(sim: &Inner, watched: &Watched) -> i64 {
    match watched {
        Watched::DriveRoot(_) => sim.cfg.subscription_max_minutes,
        Watched::Messages { .. } => sim.cfg.mail_subscription_max_minutes,
    }
}

fn parse_expiration(raw: &str, max_minutes: i64) -> GraphResult<DateTime<Utc>> {
    let exp = DateTime::parse_from_rfc3339(raw)
        .map_err(|_| bad("expirationDateTime is not a valid DateTimeOffset."))?
        .with_timezone(&Utc);
    let now = Utc::now();
    if exp <= now {
        return Err(bad("Subscription expiration can only be in the future."));
    }
    if exp > now + Duration::minutes(max_minutes) {
        return Err(bad(format!("Subscription expiration can only be {max_minutes} minutes in the future.")));
    }
    Ok(exp)
}

/// What a resource path watches, and the path as echoed. Drives: the root
/// only. Mail: `users/{u}/messages`, `users/{u}/mailFolders('{f}')/messages`
/// or `users/{u}/mailFolders/{f}/messages` (the mailbox must be usable).
fn resolve_resource(sim: &Inner, raw: &str) -> GraphResult<(Watched, String)> {
    let norm = raw.trim().trim_start_matches('/').trim_end_matches('/');
    let segs: Vec<&str> = norm.split('/').collect();
    let st = sim.lock();
    let watched = match segs.as_slice() {
        ["drives", d, "root"] => {
            if !st.drives.contains_key(*d) {
                return Err(GraphError::new(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found."));
            }
            Watched::DriveRoot(d.to_string())
        }
        ["users", u, "drive", "root"] => Watched::DriveRoot(drive_of(&st, u)?),
        ["users", u, "messages"] => Watched::Messages { user_id: mailbox_owner(&st, u)?, folder: None },
        ["users", u, folder, "messages"] | ["users", u, "mailFolders", folder, "messages"] => {
            let folder = match folder.strip_prefix("mailFolders('").and_then(|f| f.strip_suffix("')")) {
                Some(f) => f,
                None if segs.len() == 5 => folder,
                None => return Err(bad(format!("Resource '{raw}' is not supported."))),
            };
            let user_id = mailbox_owner(&st, u)?;
            let mb = st.mailboxes.get(&user_id).ok_or_else(mailbox_not_enabled)?;
            let folder = mb.folder_or_404(folder)?.id.clone();
            Watched::Messages { user_id, folder: Some(folder) }
        }
        _ => {
            return Err(bad(format!("Resource '{raw}' is not supported; subscribe to a drive root or to messages.")));
        }
    };
    Ok((watched, norm.to_string()))
}

/// Outlook allows at most this many subscriptions per mailbox (all apps).
const MAILBOX_SUBSCRIPTION_QUOTA: usize = 1000;

pub async fn create(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> GraphResult<Response> {
    let b: CreateBody =
        serde_json::from_slice(&body).map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}")))?;
    let change_type = b.change_type.ok_or_else(|| bad("changeType is required."))?;
    let notification_url = b.notification_url.ok_or_else(|| bad("notificationUrl is required."))?;
    check_url(&notification_url, "notificationUrl")?;
    if let Some(l) = &b.lifecycle_notification_url {
        check_url(l, "lifecycleNotificationUrl")?;
    }
    let resource = b.resource.ok_or_else(|| bad("resource is required."))?;
    let (watched, resource) = resolve_resource(&sim, &resource)?;
    may_subscribe(&sim.lock().sites, &caller, &watched, "Create")?;
    let allowed: &[&str] = match watched {
        Watched::DriveRoot(_) => &["updated"],
        Watched::Messages { .. } => &["created", "updated", "deleted"],
    };
    if change_type.split(',').any(|c| !allowed.contains(&c.trim())) {
        return Err(bad(format!(
            "The changeType '{change_type}' is not supported for this resource; it supports {}.",
            allowed.join(", ")
        )));
    }
    let raw_exp = b.expiration_date_time.ok_or_else(|| bad("expirationDateTime is required."))?;
    let expiration = parse_expiration(&raw_exp, max_minutes(&sim, &watched))?;
    if let Watched::Messages { user_id, .. } = &watched {
        let mut st = sim.lock();
        st.prune_subscriptions(Utc::now());
        let on_mailbox = st
            .subscriptions
            .values()
            .filter(|s| matches!(&s.watched, Watched::Messages { user_id: u, .. } if u == user_id))
            .count();
        if on_mailbox >= MAILBOX_SUBSCRIPTION_QUOTA {
            return Err(GraphError::new(
                StatusCode::FORBIDDEN,
                "ExtensionError",
                "The mailbox has reached its limit of 1000 subscriptions.",
            ));
        }
    }
    if b.client_state.as_ref().is_some_and(|c| c.chars().count() > 128) {
        return Err(bad("clientState must be at most 128 characters."));
    }
    validate_endpoint(&sim, &notification_url).await?;
    if let Some(l) = &b.lifecycle_notification_url {
        validate_endpoint(&sim, l).await?;
    }
    let prefer = Prefer::parse(&headers);
    let sub = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        watched,
        immutable_ids: prefer.immutable_ids,
        security_webhooks: prefer.security_webhooks,
        resource,
        change_type,
        notification_url,
        lifecycle_url: b.lifecycle_notification_url,
        expiration,
        client_state: b.client_state,
        application_id: caller.client_id.clone(),
        creator_id: caller.client_id.clone(),
        tls: b.latest_supported_tls_version.unwrap_or_else(|| "v1_2".into()),
    };
    let json = subscription_json(&sub);
    sim.lock().subscriptions.insert(sub.id.clone(), sub);
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

fn not_found(id: &str) -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("The object was not found: subscription '{id}'."),
    )
}

/// The caller's live subscription `id`, if it may still do `operation` on it.
fn owned<'a>(
    st: &'a mut crate::store::State,
    caller: &Caller,
    id: &str,
    operation: &str,
) -> GraphResult<&'a mut Subscription> {
    st.prune_subscriptions(Utc::now());
    let s = st.subscriptions.get_mut(id).filter(|s| s.application_id == caller.client_id);
    let s = s.ok_or_else(|| not_found(id))?;
    may_subscribe(&st.sites, caller, &s.watched, operation)?;
    Ok(s)
}

/// `GET /subscriptions`: the caller's, those it may still hold, oldest id first, paged.
pub async fn list(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> GraphResult<Json<Value>> {
    let after = match q.get("$skiptoken") {
        None => None,
        Some(t) => Some(
            sim.signer
                .verify(t)
                .filter(|f| f.first().map(String::as_str) == Some("subs") && f.get(1) == Some(&caller.client_id))
                .and_then(|f| f.get(2).cloned())
                .ok_or_else(|| bad("The $skiptoken is not valid."))?,
        ),
    };
    let mut st = sim.lock();
    st.prune_subscriptions(Utc::now());
    let st = &*st;
    let mut mine: Vec<&Subscription> = st
        .subscriptions
        .values()
        .filter(|s| {
            s.application_id == caller.client_id && may_subscribe(&st.sites, &caller, &s.watched, "Get").is_ok()
        })
        .filter(|s| after.as_ref().is_none_or(|a| &s.id > a))
        .collect();
    mine.sort_by(|a, b| a.id.cmp(&b.id));
    let size = sim.cfg.subscription_page_size.max(1);
    let value: Vec<Value> = mine
        .iter()
        .take(size)
        .map(|s| {
            let mut v = subscription_json(s);
            v["clientState"] = Value::Null;
            v
        })
        .collect();
    let base = base_url(&headers);
    let mut body = json!({ "@odata.context": format!("{base}/v1.0/$metadata#subscriptions"), "value": value });
    if let (true, Some(last)) = (mine.len() > size, mine.get(size - 1)) {
        let token = sim.signer.sign(&["subs", &caller.client_id, &last.id]);
        body["@odata.nextLink"] = json!(format!("{base}/v1.0/subscriptions?$skiptoken={token}"));
    }
    Ok(Json(body))
}

pub async fn get_one(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<Json<Value>> {
    let mut st = sim.lock();
    let mut v = subscription_json(owned(&mut st, &caller, &id, "Get")?);
    v["clientState"] = Value::Null;
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchBody {
    expiration_date_time: Option<String>,
}

pub async fn update(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let b: PatchBody =
        serde_json::from_slice(&body).map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}")))?;
    let raw = b.expiration_date_time.ok_or_else(|| bad("expirationDateTime is required."))?;
    let watched = owned(&mut sim.lock(), &caller, &id, "Update")?.watched.clone();
    let exp = parse_expiration(&raw, max_minutes(&sim, &watched))?;
    let mut st = sim.lock();
    let s = owned(&mut st, &caller, &id, "Update")?;
    s.expiration = exp;
    Ok(Json(subscription_json(s)))
}

pub async fn delete(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<StatusCode> {
    let mut st = sim.lock();
    owned(&mut st, &caller, &id, "Delete")?;
    st.subscriptions.remove(&id);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn reauthorize(
    State(sim): State<Arc<Inner>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> GraphResult<StatusCode> {
    owned(&mut sim.lock(), &caller, &id, "Reauthorize")?;
    Ok(StatusCode::NO_CONTENT)
}
