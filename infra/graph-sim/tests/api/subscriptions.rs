//! Subscriptions: validation handshake, notifications, lifecycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode as AxStatus;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{fast_config, start};

#[derive(Clone)]
struct Receiver {
    echo_correctly: bool,
    tx: mpsc::UnboundedSender<Value>,
    tokens: Arc<Mutex<Vec<String>>>,
}

async fn hook(
    State(r): State<Receiver>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = q.get("validationToken") {
        if let Ok(mut t) = r.tokens.lock() {
            t.push(token.clone());
        }
        let reply = if r.echo_correctly { token.clone() } else { format!("{token}!") };
        return (AxStatus::OK, [("content-type", "text/plain")], reply).into_response();
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        let _ = r.tx.send(v);
    }
    AxStatus::ACCEPTED.into_response()
}

/// A webhook receiver; returns its URL, the notifications it gets and the validation tokens seen.
pub async fn receiver(echo_correctly: bool) -> (String, mpsc::UnboundedReceiver<Value>, Arc<Mutex<Vec<String>>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let state = Receiver { echo_correctly, tx, tokens: Arc::clone(&tokens) };
    let app = Router::new().route("/hook", post(hook)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook?tenant=contoso", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx, tokens)
}

pub fn expiry(minutes: i64) -> String {
    (Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339()
}

#[tokio::test]
async fn subscription_handshake_then_notifications_carry_client_state() {
    // A coalescing window wide enough that two back-to-back admin calls fall into it even on
    // a loaded machine.
    let sim = start(graph_sim::SimConfig { notification_delay: Duration::from_millis(1500), ..fast_config() }).await;
    let drive = sim.seed_one(3, 0).await;
    let (url, mut rx, tokens) = receiver(true).await;

    let created = sim
        .http
        .post(format!("{}/v1.0/subscriptions", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .json(&json!({"changeType": "updated", "notificationUrl": url,
            "resource": format!("/drives/{drive}/root"), "expirationDateTime": expiry(60),
            "clientState": "s3cret"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let sub: Value = created.json().await.expect("json");
    assert_eq!(sub["notificationContentType"], "application/json");
    let token = tokens.lock().map(|t| t[0].clone()).unwrap_or_default();
    assert!(token.contains(' ') && token.contains('+'), "token needs URL-encoding: {token}");

    // Two quick changes are coalesced into one POST.
    for name in ["one.txt", "two.txt"] {
        sim.post_admin(&format!("/drives/{drive}/items"), json!({"name": name, "kind": "file", "size": 1})).await;
    }
    let n = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notification in time")
        .expect("notification");
    let first = &n["value"][0];
    assert_eq!(first["clientState"], "s3cret");
    assert_eq!(first["subscriptionId"], sub["id"]);
    assert_eq!(first["resource"], format!("drives/{drive}/root"));
    assert_eq!(first["changeType"], "updated");
    assert!(tokio::time::timeout(Duration::from_millis(400), rx.recv()).await.is_err());

    // Lifecycle events go to the notification URL when no lifecycle URL was given.
    let id = sub["id"].as_str().unwrap_or("");
    sim.post_admin("/lifecycle", json!({"subscription_id": id, "event": "subscriptionRemoved"})).await;
    let l = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("lifecycle").expect("body");
    assert_eq!(l["value"][0]["lifecycleEvent"], "subscriptionRemoved");
    assert_eq!(sim.get(&format!("/subscriptions/{id}")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn subscriptions_graph_rejects_are_rejected() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (bad_url, _rx, _) = receiver(false).await;
    let (good_url, _rx2, _) = receiver(true).await;
    let root = format!("/drives/{drive}/root");
    let cases = [
        json!({"changeType": "updated", "notificationUrl": bad_url, "resource": root, "expirationDateTime": expiry(60)}),
        json!({"changeType": "created", "notificationUrl": good_url, "resource": root, "expirationDateTime": expiry(60)}),
        json!({"changeType": "updated", "notificationUrl": good_url, "resource": format!("/drives/{drive}"), "expirationDateTime": expiry(60)}),
        json!({"changeType": "updated", "notificationUrl": good_url, "resource": root, "expirationDateTime": expiry(42_400)}),
        json!({"changeType": "updated", "notificationUrl": good_url, "resource": root, "expirationDateTime": expiry(-5)}),
        json!({"changeType": "updated", "notificationUrl": good_url, "resource": root, "expirationDateTime": expiry(60), "clientState": "x".repeat(129)}),
        json!({"changeType": "updated", "notificationUrl": "http://example.com/hook", "resource": root, "expirationDateTime": expiry(60)}),
    ];
    for (i, body) in cases.iter().enumerate() {
        let r = sim
            .http
            .post(format!("{}/v1.0/subscriptions", sim.base))
            .bearer_auth(&sim.subscriber_token)
            .json(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "case {i}");
    }
    let ok = sim
        .http
        .post(format!("{}/v1.0/subscriptions", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .json(&json!({"changeType": "updated", "notificationUrl": good_url, "resource": root.trim_start_matches('/'), "expirationDateTime": expiry(42_000)}))
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::CREATED);
    let sub: Value = ok.json().await.expect("json");
    let id = sub["id"].as_str().unwrap_or("");
    let renewed = sim
        .http
        .patch(format!("{}/v1.0/subscriptions/{id}", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .json(&json!({"expirationDateTime": expiry(100)}))
        .send()
        .await
        .expect("patch");
    assert_eq!(renewed.status(), StatusCode::OK);
    let deleted = sim
        .http
        .delete(format!("{}/v1.0/subscriptions/{id}", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn dropped_and_duplicated_notifications_are_counted() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (url, mut rx, _) = receiver(true).await;
    let created = sim
        .http
        .post(format!("{}/v1.0/subscriptions", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .json(&json!({"changeType": "updated", "notificationUrl": url,
            "resource": format!("/users/adele@contoso.test/drive/root"),
            "expirationDateTime": expiry(60), "clientState": "c"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let items = format!("/drives/{drive}/items");

    sim.post_admin("/faults", json!({"kind": "drop_notifications", "count": 1})).await;
    sim.post_admin(&items, json!({"name": "a.txt", "kind": "file", "size": 1})).await;
    assert!(tokio::time::timeout(Duration::from_millis(600), rx.recv()).await.is_err());

    sim.post_admin("/faults", json!({"kind": "duplicate_notifications", "count": 1})).await;
    sim.post_admin(&items, json!({"name": "b.txt", "kind": "file", "size": 1})).await;
    for _ in 0..2 {
        let n =
            tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("duplicate delivered").expect("body");
        assert_eq!(n["value"][0]["resource"], "users/adele@contoso.test/drive/root");
    }
    let stats = sim.admin_ok(reqwest::Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["notifications_sent"], 2);
    assert_eq!(stats["notifications_failed"], 1);
}

#[tokio::test]
async fn graph_writes_notify_like_admin_mutations() {
    // Given a subscription on the drive root
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (url, mut rx, _) = receiver(true).await;
    let body = json!({"changeType": "updated", "notificationUrl": url,
        "resource": format!("/drives/{drive}/root"), "expirationDateTime": expiry(60)});
    let created = sim.send_json(reqwest::Method::POST, "/subscriptions", body).await;
    assert_eq!(created.status(), StatusCode::CREATED);

    // When the restore side writes (simple upload, then a folder)
    let put = sim.put_bytes(&format!("/drives/{drive}/root:/restored.txt:/content"), b"back").await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let r = sim
        .send_json(reqwest::Method::POST, &format!("/drives/{drive}/root/children"), json!({"name": "R", "folder": {}}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Then one coalesced notification arrives for the drive
    let n = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("notification in time").expect("body");
    assert_eq!(n["value"][0]["resource"], format!("drives/{drive}/root"));
}

/// Sharing changes notify only subscriptions created with `Prefer: includesecuritywebhooks`
/// (graph-facts-sharepoint §2.1: without it, an external share produced no notification).
#[tokio::test]
async fn sharing_notifies_only_subscriptions_that_asked_for_security_webhooks() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(2, 0).await;
    let file = sim.ground_truth(&drive).await.into_iter().find(|i| i["kind"] == "file").expect("a file");
    let file = file["id"].as_str().expect("id").to_owned();
    let (plain_url, mut plain, _) = receiver(true).await;
    let (secure_url, mut secure, _) = receiver(true).await;
    for (url, prefer) in [(&plain_url, None), (&secure_url, Some("includesecuritywebhooks"))] {
        let mut req = sim.http.post(format!("{}/v1.0/subscriptions", sim.base)).bearer_auth(&sim.subscriber_token);
        if let Some(p) = prefer {
            req = req.header("Prefer", p);
        }
        let body = json!({"changeType": "updated", "notificationUrl": url,
            "resource": format!("/drives/{drive}/root"), "expirationDateTime": expiry(60)});
        assert_eq!(req.json(&body).send().await.expect("create").status(), StatusCode::CREATED);
    }

    sim.post_admin(
        &format!("/drives/{drive}/items/{file}/share"),
        json!({"email": "guest@example.com", "roles": ["read"]}),
    )
    .await;

    let n = tokio::time::timeout(Duration::from_secs(5), secure.recv()).await.expect("in time").expect("body");
    assert_eq!(n["value"][0]["resource"], format!("drives/{drive}/root"));
    assert!(
        tokio::time::timeout(Duration::from_millis(600), plain.recv()).await.is_err(),
        "no security webhooks asked"
    );

    // An ordinary change reaches both.
    sim.post_admin(&format!("/drives/{drive}/items"), json!({"name": "new.txt", "kind": "file", "size": 1})).await;
    for rx in [&mut plain, &mut secure] {
        assert!(tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.is_ok());
    }
}
