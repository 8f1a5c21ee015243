//! Injected throttling and broken transfers.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{fast_config, start};

#[tokio::test]
async fn throttle_gives_retry_after_then_recovers() {
    let sim = start(fast_config()).await;
    sim.seed_one(0, 0).await;
    sim.post_admin(
        "/faults",
        json!({"kind": "throttle", "status": 429, "retry_after": 2, "count": 1, "path_contains": "/users"}),
    )
    .await;
    let r = sim.get("/users").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["code"], "TooManyRequests");
    assert_eq!(sim.get("/users").await.status(), StatusCode::OK);

    sim.post_admin("/faults", json!({"kind": "throttle", "status": 503, "count": 1})).await;
    let r = sim.get("/users").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().get("retry-after").is_some());

    let stats = sim.admin_ok(reqwest::Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["throttled"], 2);
    assert!(stats["by_route"]["users"].as_u64().unwrap_or(0) >= 3, "{stats}");
}

#[tokio::test]
async fn truncated_download_ends_before_content_length() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let file = sim
        .post_admin(&format!("/drives/{drive}/items"), json!({"name": "big.bin", "kind": "file", "size": 1_000_000}))
        .await;
    let r = sim.get(&format!("/drives/{drive}/items/{}/content", file["id"].as_str().unwrap_or(""))).await;
    let url = r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
    sim.post_admin("/faults", json!({"kind": "truncate", "count": 1, "path_contains": "/download/"})).await;
    let resp = sim.http.get(&url).send().await.expect("headers arrive");
    assert_eq!(resp.content_length(), Some(1_000_000));
    let mut got = 0usize;
    let mut failed = false;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => got += c.len(),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body stream must error");
    assert!(got < 1_000_000, "got {got} bytes");

    sim.post_admin("/faults", json!({"kind": "reset", "count": 1, "path_contains": "/users"})).await;
    let reset = match sim.http.get(format!("{}/v1.0/users", sim.base)).bearer_auth(&sim.token).send().await {
        Ok(r) => r.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(reset, "a reset request must fail at the transport level");
    let full = sim.http.get(&url).send().await.expect("retry").bytes().await.expect("body");
    assert_eq!(full.len(), 1_000_000);
}
