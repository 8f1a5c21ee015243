//! Outlook message subscriptions: resources, limits, per-message
//! notifications with resourceData, and lifecycle events.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::common::{Body, expect, fast_config, start};
use crate::subscriptions::{expiry, receiver};

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

async fn next(rx: &mut UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").expect("a body")
}

#[tokio::test]
async fn message_subscriptions_notify_each_change_with_resource_data_and_lifecycle_events() {
    // Given a mailbox and a webhook for changes and one for lifecycle events
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 5})).await;
    let (hook, mut changes, _) = receiver(true).await;
    let (lifecycle, mut events, _) = receiver(true).await;
    let create = |resource: String, minutes: i64, immutable: bool| {
        let body = json!({"changeType": "created,updated,deleted", "notificationUrl": hook,
            "lifecycleNotificationUrl": lifecycle, "resource": resource,
            "expirationDateTime": expiry(minutes), "clientState": "mail-secret"});
        let prefer: &[(&str, &str)] = if immutable { &[("prefer", r#"IdType="ImmutableId""#)] } else { &[] };
        sim.send(Method::POST, "/subscriptions", Body::Json(body), prefer)
    };

    // When subscriptions are asked for beyond the Outlook cap, on a drive-only change type, and properly
    let too_long = create(format!("users/{user}/messages"), 10_081, true).await;
    let inbox_sub =
        expect(create(format!("users/{user}/mailFolders('inbox')/messages"), 10_000, true).await, StatusCode::CREATED)
            .await;
    let all_sub = expect(create(format!("/users/{user}/messages"), 60, false).await, StatusCode::CREATED).await;
    let nobody = create("users/ghost@contoso.test/messages".into(), 60, true).await;

    // Then only the valid ones exist
    assert_eq!(too_long.status(), StatusCode::BAD_REQUEST);
    assert_eq!(nobody.status(), StatusCode::NOT_FOUND);

    // When mail arrives in the Inbox
    let delivered = sim.post_admin(&format!("/mailboxes/{user}/messages"), json!({"subject": "ping"})).await;
    let mut got: Vec<Value> = Vec::new();
    while got.len() < 2 {
        got.extend(next(&mut changes).await["value"].as_array().cloned().unwrap_or_default());
    }

    // Then each subscription hears "created" for it, under the id kind it asked for
    let for_sub = |id: &Value| got.iter().find(|n| n["subscriptionId"] == *id).cloned().expect("notified");
    let inbox_n = for_sub(&inbox_sub["id"]);
    assert_eq!(inbox_n["changeType"], "created");
    assert_eq!(inbox_n["clientState"], "mail-secret");
    // (as Graph's docs show it: the user named with its tenant)
    let tenant = sim.cfg.tenant_id.clone();
    let mid = s(&delivered["immutable_id"]);
    assert_eq!(inbox_n["resource"], format!("users/{user}@{tenant}/messages/{mid}"));
    assert_eq!(inbox_n["resourceData"]["@odata.id"], format!("Users/{user}@{tenant}/Messages/{mid}"));
    assert_eq!(inbox_n["resourceData"]["@odata.type"], "#Microsoft.Graph.Message");
    assert_eq!(inbox_n["resourceData"]["id"], delivered["immutable_id"]);
    assert_eq!(for_sub(&all_sub["id"])["resourceData"]["id"], delivered["rest_id"]);

    // When it is moved out of the Inbox
    let id = s(&delivered["immutable_id"]);
    sim.admin_ok(Method::PATCH, &format!("/mailboxes/{user}/messages/{id}"), json!({"folder": "archive"})).await;
    let mut moved: Vec<Value> = Vec::new();
    while moved.len() < 2 {
        moved.extend(next(&mut changes).await["value"].as_array().cloned().unwrap_or_default());
    }
    // Then the Inbox subscription hears "deleted" and the mailbox-wide one "updated"
    let kind = |sub: &Value| moved.iter().find(|n| n["subscriptionId"] == *sub).map(|n| s(&n["changeType"]));
    assert_eq!(kind(&inbox_sub["id"]).as_deref(), Some("deleted"));
    assert_eq!(kind(&all_sub["id"]).as_deref(), Some("updated"));

    // And lifecycle events reach the lifecycle URL; subscriptionRemoved deletes the subscription
    for event in ["missed", "subscriptionRemoved"] {
        sim.post_admin("/lifecycle", json!({"subscription_id": inbox_sub["id"], "event": event})).await;
        let e = next(&mut events).await;
        assert_eq!(e["value"][0]["lifecycleEvent"], event);
        assert_eq!(e["value"][0]["clientState"], "mail-secret");
    }
    assert_eq!(sim.get(&format!("/subscriptions/{}", s(&inbox_sub["id"]))).await.status(), StatusCode::NOT_FOUND);
}
