//! SharePoint/OneDrive resource-unit throttling per app: costs, RateLimit headers from 80 %,
//! 429 with Retry-After and recovery when the window ends, the daily window, blocked apps,
//! and pre-authenticated URLs charged to the app that obtained them.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Sim, expect, fast_config, start};

const READER: &str = "11111111-1111-1111-1111-111111111111";
const RESTORER: &str = "33333333-3333-3333-3333-333333333333";

/// Given one user with a 2-file OneDrive and one site; returns (drive id, site id).
async fn tenant(sim: &Sim) -> (String, String) {
    let seeded = sim
        .post_admin(
            "/seed",
            json!({"seed": 3, "users": [{"user_principal_name": "adele@contoso.test", "files": 2,
                   "min_size": 10, "max_size": 100}], "sites": [{"name": "Finance"}]}),
        )
        .await;
    let drive = seeded["users"][0]["drive_id"].as_str().expect("drive").to_string();
    let sites = sim.admin_ok(Method::GET, "/sites", Value::Null).await;
    let finance = sites.as_array().into_iter().flatten().find(|s| s["display_name"] == "Finance").expect("Finance");
    (drive, finance["id"].as_str().expect("id").to_string())
}

async fn usage(sim: &Sim, client: &str) -> Value {
    let t = sim.admin_ok(Method::GET, "/throttling", Value::Null).await;
    t["apps"][client].clone()
}

async fn limits(sim: &Sim, body: Value) {
    sim.admin_ok(Method::PATCH, "/throttling", body).await;
    sim.post_admin("/throttling/reset", json!({})).await;
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[tokio::test]
async fn each_route_costs_what_sharepoint_charges() {
    let sim = start(fast_config()).await;
    let (drive, site) = tenant(&sim).await;
    let file = sim.ground_truth(&drive).await.into_iter().find(|i| i["kind"] == "file").expect("a file");
    let file = file["id"].as_str().expect("id").to_string();
    sim.post_admin("/throttling/reset", json!({})).await;

    sim.get_json("/sites/getAllSites").await; // 2
    sim.get_json(&format!("/sites/{site}")).await; // 1
    sim.get_json(&format!("/sites/{site}/drives")).await; // 2
    let (_, link, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await; // 2 (one page)
    sim.get_json(&link).await; // 1
    sim.get_json(&format!("/drives/{drive}/items/{file}/permissions")).await; // 5
    sim.get_json(&format!("/drives/{drive}/root/children")).await; // 2
    sim.get_json("/users").await; // free
    sim.get_json("/users/adele@contoso.test/mailFolders").await; // free

    let reader = usage(&sim, READER).await;
    assert_eq!(reader["total_ru"], 15);
    assert_eq!(reader["requests"], 7);
    assert_eq!(reader["used_minute"], 15);
    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert!(stats["resource_units"].as_u64().is_some_and(|n| n >= 15), "{stats}");
    assert_eq!(stats["by_route"]["sites"], 3, "{stats}");
}

#[tokio::test]
async fn headers_from_80_percent_then_429_until_the_window_ends() {
    let sim = start(fast_config()).await;
    let (_, site) = tenant(&sim).await;
    limits(&sim, json!({"ru_per_minute": 10, "minute_window_ms": 2000})).await;
    let path = format!("/sites/{site}");

    // Seven single-site GETs (7 RU): under 80 %, no RateLimit headers.
    for _ in 0..7 {
        let r = sim.get(&path).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "ratelimit-limit"), None);
    }
    // The 8th reaches 80 %: headers on every response from now.
    let r = sim.get(&path).await;
    assert_eq!(header(&r, "ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(header(&r, "ratelimit-remaining").as_deref(), Some("2"));
    assert!(header(&r, "ratelimit-reset").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| (1..=2).contains(&s)));
    sim.get(&path).await;
    sim.get(&path).await;

    // The 11th would pass the budget: 429 with Retry-After, charging nothing.
    let refused = sim.get(&path).await;
    let retry = header(&refused, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert_eq!(header(&refused, "ratelimit-remaining").as_deref(), Some("0"));
    let body = expect(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert!(retry.is_some_and(|s| (1..=2).contains(&s)), "{retry:?}");
    let reader = usage(&sim, READER).await;
    assert_eq!((reader["used_minute"].clone(), reader["throttled"].clone()), (json!(10), json!(1)));
    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["throttled"], 1, "RU refusals count as throttled");

    // After the window, a fresh budget.
    tokio::time::sleep(Duration::from_secs(retry.unwrap_or(2))).await;
    let again = sim.get(&path).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(header(&again, "ratelimit-limit"), None);
    assert_eq!(usage(&sim, READER).await["used_minute"], 1);
}

#[tokio::test]
async fn the_daily_window_binds_when_the_minute_one_does_not() {
    let sim = start(fast_config()).await;
    let (_, site) = tenant(&sim).await;
    limits(&sim, json!({"ru_per_minute": 1000, "ru_per_day": 5, "minute_window_ms": 1000, "day_window_ms": 600_000}))
        .await;

    for _ in 0..5 {
        assert_eq!(sim.get(&format!("/sites/{site}")).await.status(), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // a new minute window
    let refused = sim.get(&format!("/sites/{site}")).await;

    let retry = header(&refused, "retry-after").and_then(|v| v.parse::<u64>().ok());
    assert_eq!(header(&refused, "ratelimit-limit").as_deref(), Some("5"), "the day window is the fuller one");
    expect(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(retry.is_some_and(|s| s > 500), "until the day window ends: {retry:?}");
    // Another app has its own budget.
    let restorer = sim
        .http
        .get(format!("{}/v1.0/sites/{site}", sim.base))
        .bearer_auth(&sim.restorer_token)
        .send()
        .await
        .expect("restorer");
    assert_ne!(restorer.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_blocked_app_gets_503_on_counted_routes_only() {
    let sim = start(fast_config()).await;
    let (drive, _) = tenant(&sim).await;
    sim.admin_ok(Method::PATCH, "/throttling", json!({"blocked_apps": [READER]})).await;

    let blocked = sim.get(&format!("/drives/{drive}/root/children")).await;
    let users = sim.get("/users").await;

    assert_eq!(header(&blocked, "retry-after").as_deref(), Some("3600"));
    let body = expect(blocked, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    assert_eq!(users.status(), StatusCode::OK);
    assert_eq!(usage(&sim, READER).await["blocked"], 1);

    sim.admin_ok(Method::PATCH, "/throttling", json!({"blocked_apps": []})).await;
    assert_eq!(sim.get(&format!("/drives/{drive}/root/children")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn downloads_and_upload_fragments_are_charged_to_the_app_that_got_the_url() {
    let sim = start(fast_config()).await;
    let (drive, _) = tenant(&sim).await;
    let file = sim.ground_truth(&drive).await.into_iter().find(|i| i["kind"] == "file").expect("a file");
    let r = sim.get(&format!("/drives/{drive}/items/{}/content", file["id"].as_str().expect("id"))).await;
    let url = header(&r, "location").expect("download URL");
    sim.post_admin("/throttling/reset", json!({})).await;

    let body = sim.http.get(&url).send().await.expect("download");
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(usage(&sim, READER).await["total_ru"], 1, "the reader obtained the URL");

    let session =
        sim.send_json(Method::POST, &format!("/drives/{drive}/root:/up.bin:/createUploadSession"), json!({})).await;
    let upload = expect(session, StatusCode::OK).await["uploadUrl"].as_str().expect("uploadUrl").to_string();
    let put = sim.http.put(&upload).header("content-range", "bytes 0-3/4").body("abcd").send().await.expect("put");
    assert_eq!(put.status(), StatusCode::CREATED);
    let restorer = usage(&sim, RESTORER).await;
    assert_eq!(restorer["total_ru"], 4, "session creation 2 + fragment 2");
    assert_eq!(usage(&sim, READER).await["total_ru"], 1);
}
