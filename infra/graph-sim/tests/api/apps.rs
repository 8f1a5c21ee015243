//! Three apps with their own permissions; subscriptions belong to their app; subscriptions
//! that vanish early; users whose every request fails; users deleted.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Sim, expect, fast_config, start};
use crate::subscriptions::{expiry, receiver};

/// Two users with a OneDrive and a mailbox; returns (id, drive id) of each.
async fn seed_two(sim: &Sim) -> Vec<(String, String)> {
    let v = sim
        .post_admin(
            "/seed",
            json!({"seed": 3, "users": [
                {"user_principal_name": "adele@contoso.test", "has_drive": true, "files": 2, "mail": {"messages": 2}},
                {"user_principal_name": "bianca@contoso.test", "has_drive": true, "files": 2, "mail": {"messages": 2}}]}),
        )
        .await;
    let users = v["users"].as_array().cloned().unwrap_or_default();
    users.iter().map(|u| (s(&u["id"]), s(&u["drive_id"]))).collect()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// `method path` with `token` and an optional JSON body.
async fn call(sim: &Sim, token: &str, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let url = if path.starts_with("http") { path.to_string() } else { format!("{}/v1.0{path}", sim.base) };
    let mut req = sim.http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.expect("graph request")
}

fn subscription(url: &str, resource: &str, change_type: &str) -> Value {
    json!({"changeType": change_type, "notificationUrl": url, "lifecycleNotificationUrl": url,
        "resource": resource, "expirationDateTime": expiry(60), "clientState": "c"})
}

async fn denied(r: reqwest::Response, code: &str) {
    let body = expect(r, StatusCode::FORBIDDEN).await;
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string() && body["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn each_app_may_do_only_what_its_permissions_allow() {
    let sim = start(fast_config()).await;
    let users = seed_two(&sim).await;
    let (user, drive) = &users[0];
    let (url, _rx, _) = receiver(true).await;
    let reader = &sim.token;

    // Given the reader (User.Read.All, Files.Read.All, Mail.Read): it reads everything...
    for path in ["/users".to_string(), format!("/users/{user}/drive"), format!("/drives/{drive}/root/delta")] {
        assert_eq!(call(&sim, reader, Method::GET, &path, None).await.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(call(&sim, reader, Method::GET, &format!("/users/{user}/mailFolders/inbox"), None).await.status(), 200);
    // ...and writes nothing: files, folders, mail...
    let put = sim
        .http
        .put(format!("{}/v1.0/drives/{drive}/root:/x.txt:/content", sim.base))
        .bearer_auth(reader)
        .body("x")
        .send()
        .await
        .expect("put");
    denied(put, "accessDenied").await;
    let folder = json!({"name": "F", "folder": {}});
    denied(
        call(&sim, reader, Method::POST, &format!("/drives/{drive}/root/children"), Some(folder)).await,
        "accessDenied",
    )
    .await;
    let mail_folder = json!({"displayName": "Restored"});
    let r = call(&sim, reader, Method::POST, &format!("/users/{user}/mailFolders"), Some(mail_folder.clone())).await;
    denied(r, "ErrorAccessDenied").await;
    // ...nor subscribes to a drive (Files.ReadWrite.All is needed).
    let drive_sub = subscription(&url, &format!("/drives/{drive}/root"), "updated");
    denied(call(&sim, reader, Method::POST, "/subscriptions", Some(drive_sub.clone())).await, "ExtensionError").await;

    // The restorer writes, but does not read the directory.
    let r =
        call(&sim, &sim.restorer_token, Method::POST, &format!("/users/{user}/mailFolders"), Some(mail_folder)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    denied(call(&sim, &sim.restorer_token, Method::GET, "/users", None).await, "Authorization_RequestDenied").await;

    // The subscriber subscribes; it reads neither the directory nor writes mail (Graph's price
    // for drive subscriptions is that it may write files).
    let r = call(&sim, &sim.subscriber_token, Method::POST, "/subscriptions", Some(drive_sub)).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    denied(call(&sim, &sim.subscriber_token, Method::GET, "/users", None).await, "Authorization_RequestDenied").await;
    let mail_folder = json!({"displayName": "Other"});
    let r =
        call(&sim, &sim.subscriber_token, Method::POST, &format!("/users/{user}/mailFolders"), Some(mail_folder)).await;
    denied(r, "ErrorAccessDenied").await;
}

#[tokio::test]
async fn a_drive_subscription_needs_files_read_write_and_a_message_subscription_mail_read() {
    let sim = start(fast_config()).await;
    let users = seed_two(&sim).await;
    let (user, drive) = &users[0];
    let (url, _rx, _) = receiver(true).await;
    let drive_sub = subscription(&url, &format!("/drives/{drive}/root"), "updated");
    let mail_sub = subscription(&url, &format!("/users/{user}/messages"), "created,updated,deleted");
    let create = |token: String, body: Value| {
        let sim = &sim;
        async move { call(sim, &token, Method::POST, "/subscriptions", Some(body)).await }
    };

    // Mail.Read is enough for messages (the reader has it), not for a drive.
    assert_eq!(create(sim.token.clone(), mail_sub.clone()).await.status(), StatusCode::CREATED);
    denied(create(sim.token.clone(), drive_sub.clone()).await, "ExtensionError").await;

    // When the subscriber loses Mail.Read, its new tokens cannot subscribe to messages; the
    // token it holds keeps the permissions it was issued with, as Entra's roles claim does.
    let subscriber = sim.app("subscriber").client_id.clone();
    let app = sim
        .admin_ok(Method::PATCH, &format!("/apps/{subscriber}"), json!({"permissions": ["Files.ReadWrite.All"]}))
        .await;
    assert_eq!(app["permissions"], json!(["Files.ReadWrite.All"]));
    assert_eq!(create(sim.subscriber_token.clone(), mail_sub.clone()).await.status(), StatusCode::CREATED);
    let fresh = sim.token_of("subscriber").await;
    denied(create(fresh.clone(), mail_sub).await, "ExtensionError").await;
    assert_eq!(create(fresh, drive_sub).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn subscriptions_belong_to_the_app_that_created_them() {
    let sim = start(graph_sim::SimConfig { subscription_page_size: 2, ..fast_config() }).await;
    let users = seed_two(&sim).await;
    let (url, _rx, _) = receiver(true).await;
    let sub = sim.subscriber_token.clone();
    let mut mine = Vec::new();
    for (user, drive) in &users {
        for body in [
            subscription(&url, &format!("/drives/{drive}/root"), "updated"),
            subscription(&url, &format!("/users/{user}/messages"), "created"),
        ] {
            let r = call(&sim, &sub, Method::POST, "/subscriptions", Some(body)).await;
            mine.push(s(&expect(r, StatusCode::CREATED).await["id"]));
        }
    }
    let r = call(
        &sim,
        &sim.token,
        Method::POST,
        "/subscriptions",
        Some(subscription(&url, &format!("/users/{}/messages", users[0].0), "created")),
    )
    .await;
    let readers = s(&expect(r, StatusCode::CREATED).await["id"]);

    // The subscriber lists its four, two a page, without clientState.
    let mut listed = Vec::new();
    let mut next = Some("/subscriptions".to_string());
    let mut pages = 0;
    while let Some(link) = next {
        let page = expect(call(&sim, &sub, Method::GET, &link, None).await, StatusCode::OK).await;
        pages += 1;
        for v in page["value"].as_array().cloned().unwrap_or_default() {
            assert!(v["clientState"].is_null(), "Graph does not return clientState on a list");
            listed.push(s(&v["id"]));
        }
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    listed.sort();
    mine.sort();
    assert_eq!((listed, pages), (mine.clone(), 2));

    // The reader sees its own only, and cannot renew or delete the subscriber's.
    let page = expect(call(&sim, &sim.token, Method::GET, "/subscriptions", None).await, StatusCode::OK).await;
    assert_eq!(
        page["value"].as_array().map(|v| v.iter().map(|s| s["id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(readers)])
    );
    let theirs = format!("/subscriptions/{}", mine[0]);
    let renew = json!({"expirationDateTime": expiry(90)});
    assert_eq!(
        call(&sim, &sim.token, Method::PATCH, &theirs, Some(renew.clone())).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(call(&sim, &sim.token, Method::DELETE, &theirs, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(call(&sim, &sub, Method::PATCH, &theirs, Some(renew)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_dropped_subscription_vanishes_without_a_lifecycle_event() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(1, 0).await;
    let (url, mut rx, _) = receiver(true).await;
    let body = subscription(&url, &format!("/drives/{drive}/root"), "updated");
    let r = call(&sim, &sim.subscriber_token, Method::POST, "/subscriptions", Some(body)).await;
    let id = s(&expect(r, StatusCode::CREATED).await["id"]);

    // When Graph loses it...
    let dropped = sim.admin(Method::POST, &format!("/subscriptions/{id}/drop"), Value::Null).await;
    assert_eq!(dropped.status(), StatusCode::NO_CONTENT);

    // ...renewing it answers 404, the list no longer has it, and nobody was told.
    let renew = json!({"expirationDateTime": expiry(90)});
    let r = call(&sim, &sim.subscriber_token, Method::PATCH, &format!("/subscriptions/{id}"), Some(renew)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let page = sim.get_json("/subscriptions").await;
    assert_eq!(page["value"], json!([]));
    assert!(tokio::time::timeout(Duration::from_millis(800), rx.recv()).await.is_err(), "no lifecycle event");
}

#[tokio::test]
async fn requests_about_a_faulted_user_fail_while_the_rest_answer() {
    let sim = start(fast_config()).await;
    let users = seed_two(&sim).await;
    let ((a, a_drive), (b, b_drive)) = (&users[0], &users[1]);
    sim.post_admin(
        "/faults",
        json!({"kind": "user_errors", "users": ["adele@contoso.test"], "status": 403, "code": "accessDenied"}),
    )
    .await;

    for path in [
        format!("/users/{a}/drive"),
        "/users/adele@contoso.test/drive".to_string(),
        format!("/drives/{a_drive}/root/delta"),
        format!("/users/{a}/mailFolders/inbox"),
    ] {
        let body = expect(sim.get(&path).await, StatusCode::FORBIDDEN).await;
        assert_eq!(body["error"]["code"], "accessDenied", "{path}");
    }
    for path in [format!("/users/{b}/drive"), format!("/drives/{b_drive}/root/delta"), "/users".to_string()] {
        assert_eq!(sim.get(&path).await.status(), StatusCode::OK, "{path}");
    }

    // The throttled variant carries Retry-After.
    sim.post_admin("/faults", json!({"kind": "user_errors", "users": [b], "status": 429, "retry_after": 7})).await;
    let r = sim.get(&format!("/users/{b}/mailFolders/inbox")).await;
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
    assert_eq!(expect(r, StatusCode::TOO_MANY_REQUESTS).await["error"]["code"], "TooManyRequests");

    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    assert_eq!(sim.get(&format!("/users/{a}/drive")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_deleted_user_is_gone_from_every_route() {
    let sim = start(fast_config()).await;
    let users = seed_two(&sim).await;
    let (a, a_drive) = &users[0];
    let r = sim.admin(Method::DELETE, &format!("/users/{a}"), Value::Null).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    for (path, code) in [
        (format!("/users/{a}"), "Request_ResourceNotFound"),
        (format!("/users/{a}/drive"), "Request_ResourceNotFound"),
        (format!("/drives/{a_drive}/root/delta"), "itemNotFound"),
        (format!("/users/{a}/mailFolders/inbox"), "ErrorInvalidUser"),
    ] {
        assert_eq!(expect(sim.get(&path).await, StatusCode::NOT_FOUND).await["error"]["code"], code, "{path}");
    }
    let listed = sim.get_json("/users").await;
    assert_eq!(listed["value"].as_array().map(Vec::len), Some(1));
}
