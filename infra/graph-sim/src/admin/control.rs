//! Admin control routes: seeding, users, app permissions, hashes, lifecycle events,
//! subscriptions and statistics.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse;
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::faults::Stats;
use crate::notify::send_lifecycle;
use crate::seed::{SeedRequest, Seeded, seed_user};
use crate::seed_sites::seed_sites;
use crate::store::ids::IdRng;
use crate::store::mail::Mailbox;
use crate::store::tree::Drive;
use crate::store::{User, Watched};

fn user_json(u: &User) -> Value {
    json!({"id": u.id, "user_principal_name": u.upn, "drive_id": u.drive_id,
           "has_mailbox": u.has_mailbox, "licensed": u.licensed})
}

/// Replaces the tenant (users, drives, subscriptions, delta sessions) with a
/// deterministic one built from the request.
pub async fn seed(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<Json<Value>> {
    let req: SeedRequest = parse(&body)?;
    let mut seen = HashSet::new();
    for u in &req.users {
        if !seen.insert(u.user_principal_name.to_lowercase()) {
            return Err(GraphError::new(
                StatusCode::CONFLICT,
                "nameAlreadyExists",
                format!("Duplicate user '{}'.", u.user_principal_name),
            ));
        }
    }
    let tenant = sim.cfg.tenant_name.clone();
    let built = tokio::task::spawn_blocking(move || {
        let users: Vec<Seeded> = req.users.iter().map(|u| seed_user(req.seed, u)).collect();
        let plain: Vec<User> = users.iter().map(|s| s.user.clone()).collect();
        seed_sites(req.seed, &tenant, &req.sites, &plain).map(|sites| (users, sites))
    })
    .await
    .map_err(|e| GraphError::new(StatusCode::INTERNAL_SERVER_ERROR, "generalException", e.to_string()))?;
    let (built, (sites, libraries)) = built.map_err(GraphError::bad_request)?;
    let mut st = sim.lock();
    st.users.clear();
    st.drives.clear();
    st.mailboxes.clear();
    st.subscriptions.clear();
    st.sessions.clear();
    st.uploads.clear();
    let mut out = Vec::new();
    for Seeded { user, drive, mailbox } in built {
        out.push(user_json(&user));
        if let Some(d) = drive {
            st.drives.insert(d.id.clone(), d);
        }
        if let Some(mb) = mailbox {
            st.mailboxes.insert(user.id.clone(), mb);
        }
        st.users.push(user);
    }
    let site_count = sites.list.len();
    st.sites = sites;
    for d in libraries {
        st.drives.insert(d.id.clone(), d);
    }
    Ok(Json(json!({ "users": out, "sites": site_count })))
}

pub async fn list_users(State(sim): State<Arc<Inner>>) -> Json<Vec<Value>> {
    Json(sim.lock().users.iter().map(user_json).collect())
}

#[derive(Deserialize)]
pub struct AddUser {
    user_principal_name: String,
    display_name: Option<String>,
    #[serde(default)]
    has_drive: bool,
    #[serde(default)]
    has_mailbox: bool,
    #[serde(default = "yes")]
    licensed: bool,
}

fn yes() -> bool {
    true
}

pub async fn add_user(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<(StatusCode, Json<Value>)> {
    let req: AddUser = parse(&body)?;
    let mut st = sim.lock();
    if st.user(&req.user_principal_name).is_some() {
        return Err(GraphError::new(
            StatusCode::CONFLICT,
            "Request_BadRequest",
            "Another object with the same value for property userPrincipalName already exists.",
        ));
    }
    let mut rng = IdRng::random();
    let display = req.display_name.unwrap_or_else(|| req.user_principal_name.clone());
    let mut user = User {
        id: rng.guid(),
        upn: req.user_principal_name,
        display_name: display.clone(),
        drive_id: None,
        has_mailbox: req.has_mailbox,
        licensed: req.licensed,
    };
    if req.has_mailbox {
        st.mailboxes.insert(user.id.clone(), Mailbox::new(&user.id, &mut rng));
    }
    if req.has_drive {
        let d = Drive::new(rng.drive_id(), user.id.clone(), display, &mut rng);
        user.drive_id = Some(d.id.clone());
        let tenant = &sim.cfg.tenant_name;
        st.sites.add_personal(tenant, &user.id, &user.upn, &user.display_name, &d.id, &mut rng);
        st.drives.insert(d.id.clone(), d);
    }
    let json = user_json(&user);
    st.users.push(user);
    Ok((StatusCode::CREATED, Json(json)))
}

/// `PATCH /admin/users/{user}`: what happens to a mailbox after it was found. Without a
/// mailbox (deleted, or soft-deleted for its 30 days) mail routes answer `404
/// MailboxNotEnabledForRESTAPI`; without a licence `403 ErrorAccessDenied`. The mailbox's
/// content is kept, so giving either back brings it back unchanged, as Exchange does.
#[derive(Deserialize)]
pub struct EditUser {
    has_mailbox: Option<bool>,
    licensed: Option<bool>,
}

pub async fn edit_user(
    State(sim): State<Arc<Inner>>,
    axum::extract::Path(user): axum::extract::Path<String>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: EditUser = parse(&body)?;
    let mut st = sim.lock();
    let id = st.user(&user).map(|u| u.id.clone()).ok_or_else(|| GraphError::not_found("No such user."))?;
    if req.has_mailbox == Some(true) && !st.mailboxes.contains_key(&id) {
        let mailbox = Mailbox::new(&id, &mut IdRng::random());
        st.mailboxes.insert(id.clone(), mailbox);
    }
    let u = st.users.iter_mut().find(|u| u.id == id).ok_or_else(|| GraphError::not_found("No such user."))?;
    u.has_mailbox = req.has_mailbox.unwrap_or(u.has_mailbox);
    u.licensed = req.licensed.unwrap_or(u.licensed);
    Ok(Json(user_json(u)))
}

/// `DELETE /admin/users/{user}`: the user leaves the directory with their OneDrive and
/// mailbox; every Graph route about them then answers `404` (`/users/{id}`
/// `Request_ResourceNotFound`, mail `ErrorInvalidUser`, `/drives/{their drive}` `itemNotFound`).
/// Subscriptions on them stay until they expire, silent.
pub async fn delete_user(
    State(sim): State<Arc<Inner>>,
    axum::extract::Path(user): axum::extract::Path<String>,
) -> GraphResult<StatusCode> {
    let mut st = sim.lock();
    let u = st.user(&user).cloned().ok_or_else(|| GraphError::not_found("No such user."))?;
    st.users.retain(|x| x.id != u.id);
    st.mailboxes.remove(&u.id);
    if let Some(d) = &u.drive_id {
        st.drives.remove(d);
        if let Some(site) = st.sites.site_of_drive(d).map(|s| s.id.clone()) {
            st.sites.delete(&site);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /admin/apps`: each app's name, client id and permissions now (secrets are not shown).
pub async fn list_apps(State(sim): State<Arc<Inner>>) -> Json<Value> {
    Json(json!(sim.lock().apps))
}

#[derive(Deserialize)]
pub struct EditApp {
    permissions: Vec<String>,
}

/// `PATCH /admin/apps/{client_id}` `{"permissions": [...]}`: consent changed. As with Entra's
/// `roles` claim, tokens already issued keep the permissions they carry until they expire
/// (the `expire_tokens` fault makes every client fetch a new one at once).
pub async fn edit_app(
    State(sim): State<Arc<Inner>>,
    axum::extract::Path(client_id): axum::extract::Path<String>,
    body: Bytes,
) -> GraphResult<Json<Value>> {
    let req: EditApp = parse(&body)?;
    if req.permissions.iter().any(|p| p.is_empty() || p.contains([',', '|'])) {
        return Err(GraphError::bad_request("A permission is a name like Files.Read.All."));
    }
    let mut st = sim.lock();
    let app =
        st.apps.iter_mut().find(|a| a.client_id == client_id).ok_or_else(|| GraphError::not_found("No such app."))?;
    app.permissions = req.permissions;
    Ok(Json(json!(app)))
}

pub async fn fill_hashes(State(sim): State<Arc<Inner>>) -> Json<Value> {
    for d in sim.lock().drives.values_mut() {
        d.fill_hashes();
    }
    Json(json!({}))
}

#[derive(Deserialize)]
pub struct LifecycleReq {
    subscription_id: String,
    event: String,
}

pub async fn lifecycle(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<Json<Value>> {
    let req: LifecycleReq = parse(&body)?;
    if !matches!(req.event.as_str(), "reauthorizationRequired" | "subscriptionRemoved" | "missed") {
        return Err(GraphError::bad_request(format!("Unknown lifecycle event '{}'.", req.event)));
    }
    let sub = {
        let mut st = sim.lock();
        st.prune_subscriptions(Utc::now());
        let sub = st
            .subscriptions
            .get(&req.subscription_id)
            .cloned()
            .ok_or_else(|| GraphError::not_found("No such subscription."))?;
        if req.event == "subscriptionRemoved" {
            st.subscriptions.remove(&req.subscription_id);
        }
        sub
    };
    send_lifecycle(&sim, &sub, &req.event);
    Ok(Json(json!({})))
}

/// `POST /admin/subscriptions/{id}/drop`: the subscription vanishes before its expiry with no
/// lifecycle event, as Graph sometimes loses one; renewing it then answers `404`.
pub async fn drop_subscription(
    State(sim): State<Arc<Inner>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> GraphResult<StatusCode> {
    let mut st = sim.lock();
    st.prune_subscriptions(Utc::now());
    st.subscriptions.remove(&id).ok_or_else(|| GraphError::not_found("No such subscription."))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn subscriptions(State(sim): State<Arc<Inner>>) -> Json<Vec<Value>> {
    let mut st = sim.lock();
    st.prune_subscriptions(Utc::now());
    Json(
        st.subscriptions
            .values()
            .map(|s| {
                json!({
                    "id": s.id,
                    "applicationId": s.application_id,
                    "resource": s.resource,
                    "drive_id": match &s.watched { Watched::DriveRoot(d) => Some(d), _ => None },
                    "user_id": match &s.watched { Watched::Messages { user_id, .. } => Some(user_id), _ => None },
                    "changeType": s.change_type,
                    "notificationUrl": s.notification_url,
                    "lifecycleNotificationUrl": s.lifecycle_url,
                    "expirationDateTime": s.expiration.to_rfc3339(),
                    "clientState": s.client_state,
                })
            })
            .collect(),
    )
}

pub async fn stats(State(sim): State<Arc<Inner>>) -> Json<Stats> {
    let mut s = sim.lock().stats.clone();
    s.download_bytes = sim.download_bytes.load(Ordering::Relaxed);
    s.notifications_in_flight = sim.notifications_in_flight.load(Ordering::SeqCst);
    s.resource_units = sim.throttle.stats_total();
    Json(s)
}

/// Every app and mailbox's use of Exchange's limits (see `graph::mail_limits`).
pub async fn mail_limits(State(sim): State<Arc<Inner>>) -> Json<Value> {
    Json(crate::graph::mail_limits::report(&sim))
}

pub async fn reset_mail_limits(State(sim): State<Arc<Inner>>) -> Json<Value> {
    crate::graph::mail_limits::reset(&sim);
    Json(json!({}))
}

pub async fn reset_stats(State(sim): State<Arc<Inner>>) -> Json<Value> {
    sim.lock().stats = Stats::default();
    sim.download_bytes.store(0, Ordering::Relaxed);
    sim.throttle.reset_stats_total();
    Json(json!({}))
}
