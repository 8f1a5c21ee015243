//! The public notification endpoint. Answers Graph's validation handshake, checks every
//! notification's tenant and clientState without any lookup, turns genuine ones into one
//! `changes` job per container (a single batch send), and replies 202 well inside Graph's
//! 3-second deadline. Lifecycle events go to the scheduler's queue.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::{info, warn};

use crate::clientstate::{ClientStateKey, ct_eq};
use crate::clock::Clock;
use crate::model::{ChangeJob, ChangeReason, ContainerId, LifecycleJob, SCHEMA_VERSION};
use crate::store::{MessageSink, OutMessage, QueueName};

/// Larger bodies are refused with 413 before parsing. Graph batches notifications, but a
/// collection of a few hundred stays far below this.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_VALIDATION_TOKEN_CHARS: usize = 4096;

pub struct WebhookDeps {
    pub tenant_id: String,
    pub key: ClientStateKey,
    pub sink: Arc<dyn MessageSink>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct Collection {
    value: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    #[serde(default)]
    subscription_id: String,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    lifecycle_event: Option<String>,
}

/// What one POST amounted to, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Triage {
    pub changes: Vec<ChangeJob>,
    pub lifecycle: Vec<LifecycleJob>,
    pub rejected: usize,
}

/// The container a notification's `resource` names: `drives/{id}/root` (how we subscribe to
/// a drive), or a message of a mailbox. Graph names the mailbox's user with its tenant,
/// `users/{user}@{tenant}/messages/{message}` (graph-facts §13.1, the example of
/// `change-notifications-delivery-webhooks.md`); the user alone is accepted too, and either
/// under a folder (`Users/{id}/mailFolders('inbox')/Messages/{message}`). A tenant other than
/// ours names nothing, as does anything else.
fn container_of(tenant_id: &str, resource: &str) -> Option<ContainerId> {
    let parts: Vec<&str> = resource.trim_start_matches('/').split('/').collect();
    let is = |i: usize, word: &str| parts.get(i).is_some_and(|p| p.eq_ignore_ascii_case(word));
    let id = parts.get(1).copied().filter(|id| !id.is_empty())?;
    if is(0, "drives") && is(2, "root") && parts.len() == 3 {
        return Some(ContainerId::new(tenant_id, id));
    }
    let id = match id.rsplit_once('@') {
        Some((user, tenant)) if !user.is_empty() && tenant.eq_ignore_ascii_case(tenant_id) => user,
        Some(_) => return None,
        None => id,
    };
    let message_at = if is(2, "messages") {
        3
    } else if parts.get(2).is_some_and(|p| is_mail_folder(p)) && is(3, "messages") {
        4
    } else {
        return None;
    };
    let message = parts.get(message_at).filter(|m| !m.is_empty());
    (is(0, "users") && message.is_some() && parts.len() == message_at + 1).then(|| ContainerId::mailbox(tenant_id, id))
}

/// `mailFolders('inbox')` or `mailFolders/{id}` written as one segment by Graph.
fn is_mail_folder(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    lower.starts_with("mailfolders(") && lower.ends_with(')') && lower.len() > "mailfolders()".len()
}

/// Sorts a notification collection into genuine changes, lifecycle events and rejects.
pub fn triage(deps: &WebhookDeps, body: &[u8], now: DateTime<Utc>) -> Result<Triage, serde_json::Error> {
    let collection: Collection = serde_json::from_slice(body)?;
    let mut out = Triage::default();
    let mut containers = BTreeSet::new();
    for raw in collection.value {
        let Ok(n) = serde_json::from_value::<Notification>(raw) else {
            out.rejected += 1;
            continue;
        };
        let tenant_ok = n.tenant_id.as_deref().is_some_and(|t| ct_eq(t, &deps.tenant_id));
        let vouched = n.client_state.as_deref().and_then(|cs| deps.key.verify(&deps.tenant_id, cs).ok());
        let Some(vouched) = vouched.filter(|_| tenant_ok) else {
            out.rejected += 1;
            continue;
        };
        if let Some(event) = n.lifecycle_event {
            out.lifecycle.push(LifecycleJob {
                v: SCHEMA_VERSION,
                tenant_id: deps.tenant_id.clone(),
                subscription_id: n.subscription_id,
                event,
                container_tag: vouched.container_tag,
                received_at: now,
            });
            continue;
        }
        match n.resource.as_deref().and_then(|r| container_of(&deps.tenant_id, r)) {
            Some(container) if container.tag() == vouched.container_tag => {
                containers.insert(container);
            }
            _ => out.rejected += 1,
        }
    }
    out.changes =
        containers.into_iter().map(|container| ChangeJob::new(container, ChangeReason::Notification, now)).collect();
    Ok(out)
}

async fn enqueue(deps: &WebhookDeps, triage: &Triage) -> Result<(), crate::store::StoreError> {
    let changes = triage
        .changes
        .iter()
        .map(|job| OutMessage {
            body: serde_json::to_string(job).unwrap_or_default(),
            group_id: Some(job.container.group_id()),
            delay: None,
        })
        .collect::<Vec<_>>();
    if !changes.is_empty() {
        deps.sink.send(QueueName::Changes, changes).await?;
    }
    let lifecycle = triage
        .lifecycle
        .iter()
        .map(|job| OutMessage { body: serde_json::to_string(job).unwrap_or_default(), group_id: None, delay: None })
        .collect::<Vec<_>>();
    if !lifecycle.is_empty() {
        deps.sink.send(QueueName::Lifecycle, lifecycle).await?;
    }
    Ok(())
}

fn plain(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn notifications(
    State(deps): State<Arc<WebhookDeps>>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The handshake: echo the URL-decoded token as plain text.
    if let Some(token) = query.get("validationToken") {
        if token.chars().count() > MAX_VALIDATION_TOKEN_CHARS || token.chars().any(char::is_control) {
            return plain(StatusCode::BAD_REQUEST, "invalid validation token".into());
        }
        info!("answered subscription validation");
        return plain(StatusCode::OK, token.clone());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !is_json {
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected application/json".into());
    }
    let triage = match triage(&deps, &body, deps.clock.now()) {
        Ok(t) => t,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "malformed notification collection".into()),
    };
    if triage.rejected > 0 {
        // Never log the clientState itself.
        warn!(rejected = triage.rejected, "ignored notifications with a wrong tenant, clientState or resource");
    }
    if let Err(err) = enqueue(&deps, &triage).await {
        warn!(error = %err, "could not enqueue notifications; Graph will retry");
        return plain(StatusCode::SERVICE_UNAVAILABLE, "try again".into());
    }
    info!(containers = triage.changes.len(), lifecycle = triage.lifecycle.len(), "accepted notifications");
    plain(StatusCode::ACCEPTED, String::new())
}

/// `POST /graph/notifications`, served by `lambda_http` in AWS and `axum::serve` locally.
pub fn router(deps: Arc<WebhookDeps>) -> Router {
    Router::new()
        .route("/graph/notifications", post(notifications))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(deps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::opaque_id;
    use crate::store::memory::MemorySink;

    fn deps(sink: Arc<MemorySink>) -> WebhookDeps {
        WebhookDeps {
            tenant_id: "tenant-1".into(),
            key: ClientStateKey::new("webhook-test-key-webhook-test-key-0123").expect("key"),
            sink,
            clock: crate::clock::system(),
        }
    }

    fn body(items: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "value": items })).expect("json")
    }

    #[test]
    fn genuine_notifications_coalesce_per_container() {
        let d = deps(Arc::new(MemorySink::default()));
        let cs = d.key.derive("tenant-1", "drive-a");
        let n = serde_json::json!({"subscriptionId": "s", "clientState": cs, "tenantId": "tenant-1", "resource": "drives/drive-a/root", "changeType": "updated"});
        let t = triage(&d, &body(&[n.clone(), n]), Utc::now()).expect("parse");
        assert_eq!(t.rejected, 0);
        assert_eq!(t.changes.len(), 1);
        assert_eq!(t.changes[0].container.graph_id, "drive-a");
    }

    #[test]
    fn forged_foreign_and_mismatched_notifications_enqueue_nothing() {
        let d = deps(Arc::new(MemorySink::default()));
        let cs = d.key.derive("tenant-1", "drive-a");
        let forged =
            serde_json::json!({"clientState": "guess", "tenantId": "tenant-1", "resource": "drives/drive-a/root"});
        let foreign = serde_json::json!({"clientState": cs, "tenantId": "tenant-2", "resource": "drives/drive-a/root"});
        let other_drive =
            serde_json::json!({"clientState": cs, "tenantId": "tenant-1", "resource": "drives/drive-b/root"});
        let t = triage(&d, &body(&[forged, foreign, other_drive, serde_json::json!(42)]), Utc::now()).expect("parse");
        assert_eq!(t.rejected, 4);
        assert!(t.changes.is_empty() && t.lifecycle.is_empty());
    }

    #[test]
    fn lifecycle_events_go_to_the_scheduler_without_the_client_state() {
        let d = deps(Arc::new(MemorySink::default()));
        let cs = d.key.derive("tenant-1", "drive-a");
        let n = serde_json::json!({"subscriptionId": "s1", "clientState": cs, "tenantId": "tenant-1", "lifecycleEvent": "missed"});
        let t = triage(&d, &body(&[n]), Utc::now()).expect("parse");
        assert_eq!(t.lifecycle.len(), 1);
        assert_eq!(t.lifecycle[0].container_tag, opaque_id("drive-a"));
        assert!(!serde_json::to_string(&t.lifecycle[0]).expect("json").contains(&cs));
    }

    #[test]
    fn message_notifications_name_the_mailbox_whatever_the_case_of_its_user_id() {
        let d = deps(Arc::new(MemorySink::default()));
        let mailbox = ContainerId::mailbox("tenant-1", "user-a");
        let cs = d.key.derive("tenant-1", &mailbox.scoped_id());
        let n = |resource: &str| serde_json::json!({"subscriptionId": "s", "clientState": cs, "tenantId": "tenant-1", "resource": resource, "changeType": "created"});
        let genuine = [n("Users/USER-A/Messages/AAMk1"), n("users/user-a/mailFolders('inbox')/messages/AAMk2")];
        let t = triage(&d, &body(&genuine), Utc::now()).expect("parse");
        assert_eq!(t.rejected, 0);
        assert_eq!(t.changes.iter().map(|c| c.container.clone()).collect::<Vec<_>>(), vec![mailbox]);
        // The same clientState does not vouch for the user's drive, nor another mailbox.
        let t =
            triage(&d, &body(&[n("drives/user-a/root"), n("Users/user-b/Messages/AAMk1")]), Utc::now()).expect("parse");
        assert_eq!(t.rejected, 2);
    }

    /// The notification of Graph's webhook docs (`change-notifications-delivery-webhooks.md`,
    /// "Change notification example"), its placeholders filled with GUIDs.
    fn documented(client_state: &str, user: &str, tenant: &str) -> serde_json::Value {
        serde_json::json!({
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "5ee3f5c5-0e43-4e38-b2f1-34c3ed4b2b5b",
            "subscriptionExpirationDateTime": "2016-03-19T22:11:09.952Z",
            "clientState": client_state,
            "changeType": "created",
            "resource": format!("users/{user}@{tenant}/messages/AAMkAGUwNjQ4ZjIxLTAAA="),
            "tenantId": TENANT_GUID,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": format!("Users/{user}@{tenant}/Messages/AAMkAGUwNjQ4ZjIxLTAAA="),
                "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                "id": "AAMkAGUwNjQ4ZjIxLTAAA="
            }
        })
    }

    const TENANT_GUID: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
    const USER_A: &str = "2f3a2c3e-1d4b-4e5f-9a6b-7c8d9e0f1a2b";
    const USER_B: &str = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";

    #[test]
    fn the_documented_outlook_notification_names_our_mailbox() {
        // Given the webhook of tenant TENANT_GUID and a subscription on mailbox A
        let d = WebhookDeps { tenant_id: TENANT_GUID.into(), ..deps(Arc::new(MemorySink::default())) };
        let mailbox = ContainerId::mailbox(TENANT_GUID, USER_A);
        let cs = d.key.derive(TENANT_GUID, &mailbox.scoped_id());

        // When Graph sends the documented notification, the user and tenant in any case
        let upper = (USER_A.to_ascii_uppercase(), TENANT_GUID.to_ascii_uppercase());
        let t =
            triage(&d, &body(&[documented(&cs, USER_A, TENANT_GUID), documented(&cs, &upper.0, &upper.1)]), Utc::now())
                .expect("parse");

        // Then it is one change job for mailbox A
        assert_eq!(t.rejected, 0);
        assert_eq!(t.changes.iter().map(|c| c.container.clone()).collect::<Vec<_>>(), vec![mailbox]);
    }

    #[test]
    fn a_mailbox_client_state_vouches_for_that_mailbox_in_our_tenant_only() {
        let d = WebhookDeps { tenant_id: TENANT_GUID.into(), ..deps(Arc::new(MemorySink::default())) };
        let cs = d.key.derive(TENANT_GUID, &ContainerId::mailbox(TENANT_GUID, USER_A).scoped_id());
        let other_tenant = "11111111-2222-3333-4444-555555555555";
        for (user, tenant) in [
            (USER_B, TENANT_GUID),
            (&USER_B.to_ascii_uppercase(), TENANT_GUID),
            (USER_A, other_tenant),
            (USER_A, ""),
            ("", TENANT_GUID),
            (&format!("{USER_A}@{TENANT_GUID}"), other_tenant),
        ] {
            let t = triage(&d, &body(&[documented(&cs, user, tenant)]), Utc::now()).expect("parse");
            assert_eq!((t.rejected, t.changes.len()), (1, 0), "{user}@{tenant}");
        }
    }

    #[test]
    fn resources_other_than_a_drive_root_or_a_message_are_not_containers() {
        let of = |r: &str| container_of("t", r);
        assert_eq!(of("/drives/abc/root"), Some(ContainerId::new("t", "abc")));
        assert_eq!(of("drives/abc/root"), Some(ContainerId::new("t", "abc")));
        assert_eq!(of("Users/U1/Messages/m"), Some(ContainerId::mailbox("t", "u1")));
        assert_eq!(of("Users/u1/mailFolders('AAMkF')/Messages/m"), Some(ContainerId::mailbox("t", "u1")));
        assert_eq!(of("users/U1@t/messages/m"), Some(ContainerId::mailbox("t", "u1")));
        assert_eq!(of("Users/u1@T/mailFolders('AAMkF')/Messages/m"), Some(ContainerId::mailbox("t", "u1")));
        for bad in [
            "users/u/drive/root",
            "drives//root",
            "drives/abc/root/x",
            "sites/s",
            "Users/u1/Messages",
            "Users/u1/Messages/",
            "Users/u1/Events/e",
            "Users//Messages/m",
            "Users/u1/mailFolders()/Messages/m",
            "Users/u1/Messages/m/attachments",
            "Groups/g/Messages/m",
            "users/u1@other/messages/m",
            "users/@t/messages/m",
            "users/u1@/messages/m",
            "drives/abc@t/root/x",
        ] {
            assert_eq!(of(bad), None, "{bad}");
        }
    }
}
