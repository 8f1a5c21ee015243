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

#[tokio::test]
async fn a_slow_exchange_write_holds_one_of_the_apps_four_requests_on_the_mailbox() {
    // Given Exchange writes that take 600 ms, reads that take nothing extra
    let sim = start(fast_config()).await;
    let user = sim.seed_mail(json!({"messages": 1})).await;
    sim.post_admin("/faults", json!({"kind": "mail_write_latency", "ms": 600})).await;
    let create = format!("/users/{user}/mailFolders/inbox/messages");
    let message = |n: usize| json!({"subject": format!("m{n}"), "body": {"contentType": "text", "content": "x"}});

    // When the restorer creates four messages at once and, meanwhile, reads the mailbox
    let started = std::time::Instant::now();
    let creates = futures::future::join_all((0..4).map(|n| sim.send_json(Method::POST, &create, message(n))));
    let reads = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let as_restorer = sim
            .http
            .get(format!("{}/v1.0/users/{user}/mailFolders", sim.base))
            .bearer_auth(&sim.restorer_token)
            .send()
            .await
            .expect("read");
        let as_reader = sim.get(&format!("/users/{user}/mailFolders")).await;
        (as_restorer.status(), as_reader.status(), started.elapsed())
    };
    let (created, (restorer_read, reader_read, read_at)) = tokio::join!(creates, reads);

    // Then the creates took the write latency, and the restorer's fifth request was refused
    // while the reader (another app, its own limits) was served at once
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    assert!(created.iter().all(|r| r.status() == StatusCode::CREATED));
    assert_eq!(restorer_read, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reader_read, StatusCode::OK);
    assert!(read_at < std::time::Duration::from_millis(600), "the reader waited {read_at:?}");

    // And the admin report shows each app's use of the mailbox
    let report = sim.admin_ok(Method::GET, "/mail_limits", Value::Null).await;
    let of = |name: &str| {
        let app = sim.app(name).client_id.clone();
        report["usage"].as_array().expect("usage").iter().find(|u| u["app"] == app.as_str()).cloned().expect("app")
    };
    let restorer = of("restorer");
    assert_eq!(restorer["peak_in_flight"], 4);
    assert_eq!(restorer["requests"], 5);
    assert_eq!(restorer["throttled"], 1);
    assert!(restorer["uploaded_bytes_in_window"].as_u64().unwrap_or(0) > 0);
    assert_eq!(of("reader")["peak_in_flight"], 1);
    assert_eq!(report["requests_per_window"], 10_000);

    // And a reset forgets it
    sim.post_admin("/mail_limits/reset", json!({})).await;
    let report = sim.admin_ok(Method::GET, "/mail_limits", Value::Null).await;
    assert_eq!(report["usage"], json!([]));
}
