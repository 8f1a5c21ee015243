//! Outlook throttling per mailbox: concurrency, request rate, upload volume.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Body, expect, fast_config, start};

#[tokio::test]
async fn a_fifth_concurrent_request_on_a_mailbox_is_throttled_with_retry_after() {
    // Given slow mail requests on a mailbox
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 3})).await;
    sim.post_admin("/faults", json!({"kind": "mail_latency", "ms": 1000})).await;
    sim.post_admin("/stats/reset", json!({})).await;

    // When six requests are in flight at once
    let path = format!("/users/{user}/mailFolders");
    let replies = futures::future::join_all((0..6).map(|_| sim.get(&path))).await;

    // Then four are served and two refused with Exchange's throttling error
    let mut refused = Vec::new();
    let mut served = 0;
    for r in replies {
        match r.status() {
            StatusCode::OK => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(r.headers().get("retry-after").is_some());
                refused.push(r.json::<Value>().await.expect("json"));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((served, refused.len()), (4, 2));
    assert_eq!(refused[0]["error"]["code"], "ApplicationThrottled");
    assert!(refused[0]["error"]["message"].as_str().unwrap_or("").contains("MailboxConcurrency"));
    // And once they are done, the mailbox serves again; stats count mail requests and throttling
    sim.post_admin("/faults", json!({"kind": "mail_latency", "ms": 0})).await;
    assert_eq!(sim.get(&path).await.status(), StatusCode::OK);
    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["throttled"], 2);
    assert_eq!(stats["by_route"]["mail_folders"], 7);
}

#[tokio::test]
async fn request_rate_and_upload_volume_are_limited_per_mailbox() {
    // Given small Outlook limits
    let cfg =
        graph_sim::SimConfig { mail_requests_per_window: 5, mail_upload_bytes_per_window: 100_000, ..fast_config() };
    let sim = start(cfg).await;
    sim.post_admin(
        "/seed",
        json!({"users": [{"user_principal_name": "a@contoso.test"}, {"user_principal_name": "b@contoso.test"}]}),
    )
    .await;

    // When a mailbox gets six requests in the window
    let statuses: Vec<StatusCode> = {
        let mut out = Vec::new();
        for _ in 0..6 {
            out.push(sim.get("/users/a@contoso.test/mailFolders").await.status());
        }
        out
    };
    // Then the sixth is refused for minutes, while another mailbox is unaffected
    assert_eq!(statuses[..5], [StatusCode::OK; 5]);
    let r = sim.get("/users/a@contoso.test/mailFolders").await;
    let wait: u64 =
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(wait > 60, "retry after {wait}s");
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);

    // When another mailbox uploads more than its volume allows
    let body = |n: usize| json!({"subject": "x", "body": {"contentType": "text", "content": "y".repeat(n)}});
    let path = "/users/b@contoso.test/messages";
    let first = sim.send(Method::POST, path, Body::Json(body(60_000)), &[]).await;
    let second = sim.send(Method::POST, path, Body::Json(body(60_000)), &[]).await;
    expect(first, StatusCode::CREATED).await;
    let err = expect(second, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(err["error"]["message"].as_str().unwrap_or("").contains("Upload"), "{err}");
}
