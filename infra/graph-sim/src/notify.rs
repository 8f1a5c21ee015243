//! Webhook delivery (graph-facts §2, §3): the validation handshake run when a
//! subscription is created, change notifications coalesced per drive over
//! `notification_delay` and POSTed as a `changeNotificationCollection`
//! (driveItem notifications carry no item detail, only "something under the
//! root changed"), Outlook message notifications (one per message change,
//! with `resourceData`), retries on failure, and lifecycle events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};

use crate::Inner;
use crate::error::GraphError;
use crate::store::mail::Message;
use crate::store::{Subscription, Watched};

fn validation_failed(detail: &str) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        format!("Subscription validation request failed. {detail}"),
    )
}

/// POSTs `?validationToken=...` and expects the decoded token back as
/// `text/plain` with 200 within the validation timeout.
pub async fn validate_endpoint(sim: &Inner, endpoint: &str) -> Result<(), GraphError> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {} +{}",
        uuid::Uuid::new_v4(),
        crate::signer::nonce()
    );
    let mut url =
        url::Url::parse(endpoint).map_err(|_| validation_failed("The notification URL is not a valid URL."))?;
    url.query_pairs_mut().append_pair("validationToken", &token);
    let resp = sim
        .http
        .post(url)
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(sim.cfg.validation_timeout)
        .send()
        .await
        .map_err(|e| {
            let why = if e.is_timeout() {
                "Response did not arrive within 10 seconds."
            } else {
                "The endpoint could not be reached."
            };
            validation_failed(why)
        })?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(validation_failed(&format!(
            "Must respond with 200 OK to this request (got {}).",
            resp.status().as_u16()
        )));
    }
    let plain = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/plain"));
    let body = resp.text().await.map_err(|_| validation_failed("The response body could not be read."))?;
    if !plain {
        return Err(validation_failed("The response must have Content-Type text/plain."));
    }
    if body != token {
        return Err(validation_failed("The response body must be the URL-decoded validationToken."));
    }
    Ok(())
}

/// Counts one notification as in flight for as long as it lives.
struct InFlight(Arc<Inner>);

impl InFlight {
    fn new(sim: &Arc<Inner>) -> Self {
        sim.notifications_in_flight.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(sim))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.notifications_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Records that `drive` changed; one notification per coalescing window.
pub fn drive_changed(sim: &Arc<Inner>, drive: &str) {
    notify_drive(sim, drive, false);
}

/// A sharing or permission change on a drive: only subscriptions created with
/// `Prefer: includesecuritywebhooks` hear of it; delta and eTags do not change.
pub fn drive_security_changed(sim: &Arc<Inner>, drive: &str) {
    notify_drive(sim, drive, true);
}

fn notify_drive(sim: &Arc<Inner>, drive: &str, security: bool) {
    // Coalesced per drive and kind: a pending security notice must not swallow a change.
    let key = if security { format!("{drive}#security") } else { drive.to_string() };
    let first = sim.pending_notify.lock().map(|mut p| p.insert(key.clone())).unwrap_or(false);
    if !first {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let waiting = InFlight::new(sim);
    let sim = Arc::clone(sim);
    let drive = drive.to_string();
    handle.spawn(async move {
        let _waiting = waiting;
        tokio::time::sleep(sim.cfg.notification_delay).await;
        if let Ok(mut p) = sim.pending_notify.lock() {
            p.remove(&key);
        }
        let batches = {
            let mut st = sim.lock();
            st.prune_subscriptions(Utc::now());
            let mut by_url: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            let watched = Watched::DriveRoot(drive.clone());
            for s in st.subscriptions.values().filter(|s| s.watched == watched && (!security || s.security_webhooks)) {
                by_url.entry(s.notification_url.clone()).or_default().push(change_notification(&sim, s));
            }
            by_url
        };
        for (url, value) in batches {
            let sending = InFlight::new(&sim);
            let sim = Arc::clone(&sim);
            tokio::spawn(async move {
                let _sending = sending;
                deliver(&sim, &url, json!({ "value": value })).await
            });
        }
    });
}

fn change_notification(sim: &Inner, s: &Subscription) -> Value {
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": s.expiration.to_rfc3339(),
        "clientState": s.client_state,
        "changeType": "updated",
        "resource": s.resource,
        "tenantId": sim.cfg.tenant_id,
    })
}

/// A change to one message (by immutable id), as the notifier needs it.
#[derive(Debug, Clone)]
pub enum MailChange {
    Created { id: String, folder: String },
    Updated { id: String, folder: String },
    Moved { id: String, from: String, to: String },
    Deleted { id: String, folder: String },
}

/// The REST id the message last had in `folder`.
fn rest_id_in<'a>(m: &'a Message, folder: &str) -> &'a str {
    m.placements.iter().rev().find(|p| p.folder.as_deref() == Some(folder)).map_or(m.rest_id(), |p| &p.rest_id)
}

/// Sends Outlook change notifications for `changes` in `user_id`'s mailbox:
/// one per message and matching subscription (no coalescing, unlike drives),
/// batched into one POST per notification URL. A move is `deleted` for a
/// subscription on the old folder, `created` on the new one and `updated`
/// for a mailbox-wide one.
pub fn mail_changed(sim: &Arc<Inner>, user_id: &str, changes: Vec<MailChange>) {
    if changes.is_empty() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let batches = {
        let mut st = sim.lock();
        st.prune_subscriptions(Utc::now());
        let Some(mb) = st.mailboxes.get(user_id) else {
            return;
        };
        let mut by_url: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for s in st.subscriptions.values() {
            let Watched::Messages { user_id: watched_user, folder: scope } = &s.watched else {
                continue;
            };
            if watched_user != user_id {
                continue;
            }
            let in_scope = |f: &str| scope.as_deref().is_none_or(|s| s == f);
            for change in &changes {
                let (id, kind, folder) = match change {
                    MailChange::Created { id, folder } if in_scope(folder) => (id, "created", folder),
                    MailChange::Updated { id, folder } if in_scope(folder) => (id, "updated", folder),
                    MailChange::Deleted { id, folder } if in_scope(folder) => (id, "deleted", folder),
                    MailChange::Moved { id, to, .. } if scope.is_none() => (id, "updated", to),
                    MailChange::Moved { id, from, .. } if scope.as_deref() == Some(from) => (id, "deleted", from),
                    MailChange::Moved { id, to, .. } if scope.as_deref() == Some(to) => (id, "created", to),
                    _ => continue,
                };
                if !s.change_type.split(',').any(|c| c.trim() == kind) {
                    continue;
                }
                let Some(m) = mb.any_message(id) else {
                    continue;
                };
                let mid = if s.immutable_ids { m.immutable_id.as_str() } else { rest_id_in(m, folder) };
                by_url
                    .entry(s.notification_url.clone())
                    .or_default()
                    .push(message_notification(sim, s, kind, user_id, mid, m));
            }
        }
        by_url
    };
    for (url, value) in batches {
        let sending = InFlight::new(sim);
        let sim = Arc::clone(sim);
        tokio::spawn(async move {
            let _sending = sending;
            deliver(&sim, &url, json!({ "value": value })).await
        });
    }
}

/// As Graph's webhook docs show it (`change-notifications-delivery-webhooks.md`, "Change
/// notification example"; graph-facts §13.1): the user is named `{user}@{tenant}`, `resource`
/// in lower case (`users/.../messages/...`), `resourceData["@odata.id"]` capitalised.
fn message_notification(sim: &Inner, s: &Subscription, kind: &str, user_id: &str, mid: &str, m: &Message) -> Value {
    let tenant = &sim.cfg.tenant_id;
    let resource = format!("users/{user_id}@{tenant}/messages/{mid}");
    let odata_id = format!("Users/{user_id}@{tenant}/Messages/{mid}");
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": s.expiration.to_rfc3339(),
        "clientState": s.client_state,
        "changeType": kind,
        "resource": resource,
        "tenantId": sim.cfg.tenant_id,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": odata_id,
            "@odata.etag": format!("W/\"{}\"", m.change_key()),
            "id": mid,
        },
    })
}

/// Sends a lifecycle event for `s` (to its lifecycle URL, else its notification URL).
pub fn send_lifecycle(sim: &Arc<Inner>, s: &Subscription, event: &str) {
    let body = json!({"value": [{
        "subscriptionId": s.id,
        "subscriptionExpirationDateTime": s.expiration.to_rfc3339(),
        "tenantId": sim.cfg.tenant_id,
        "clientState": s.client_state,
        "lifecycleEvent": event,
    }]});
    let url = s.lifecycle_url.clone().unwrap_or_else(|| s.notification_url.clone());
    let sending = InFlight::new(sim);
    let sim = Arc::clone(sim);
    tokio::spawn(async move {
        let _sending = sending;
        deliver(&sim, &url, body).await
    });
}

/// One POST (twice under `duplicate_notifications`), retried on failure.
async fn deliver(sim: &Arc<Inner>, url: &str, body: Value) {
    let copies = {
        let mut st = sim.lock();
        if st.faults.drop_notifications > 0 {
            st.faults.drop_notifications -= 1;
            st.stats.notifications_failed += 1;
            return;
        }
        if st.faults.duplicate_notifications > 0 {
            st.faults.duplicate_notifications -= 1;
            2
        } else {
            1
        }
    };
    for _ in 0..copies {
        let mut delivered = false;
        for attempt in 0..=sim.cfg.notification_retries {
            if attempt > 0 {
                tokio::time::sleep(sim.cfg.notification_retry_delay).await;
            }
            let sent = sim.http.post(url).json(&body).timeout(sim.cfg.notification_timeout).send().await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                delivered = true;
                break;
            }
        }
        let mut st = sim.lock();
        if delivered {
            st.stats.notifications_sent += 1;
        } else {
            st.stats.notifications_failed += 1;
            tracing::warn!(attempts = sim.cfg.notification_retries + 1, "notification dropped");
        }
    }
}
