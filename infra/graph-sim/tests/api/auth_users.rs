//! Tokens, users and drives.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{fast_config, start};

#[tokio::test]
async fn wrong_secret_is_rejected_and_missing_token_is_401() {
    let sim = start(fast_config()).await;

    let r = sim.token_request("not-the-secret").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    assert!(body["error_description"].as_str().unwrap_or("").starts_with("AADSTS"));

    let bad_grant = sim
        .http
        .post(sim.token_url())
        .form(&[("client_id", "x"), ("grant_type", "password")])
        .send()
        .await
        .expect("send");
    assert_eq!(bad_grant.status(), StatusCode::BAD_REQUEST);

    let anonymous = sim.http.get(format!("{}/v1.0/users", sim.base)).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let err: Value = anonymous.json().await.expect("json");
    assert_eq!(err["error"]["code"], "InvalidAuthenticationToken");
    assert!(err["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn tokens_expire_by_lifetime_and_by_admin() {
    let mut cfg = fast_config();
    cfg.token_lifetime = std::time::Duration::from_secs(1);
    let sim = start(cfg).await;
    assert_eq!(sim.get("/users").await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(sim.get("/users").await.status(), StatusCode::UNAUTHORIZED);

    let mut sim = start(fast_config()).await;
    sim.post_admin("/faults", json!({"kind": "expire_tokens"})).await;
    assert_eq!(sim.get("/users").await.status(), StatusCode::UNAUTHORIZED);
    sim.token = sim.fetch_token().await;
    assert_eq!(sim.get("/users").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn users_page_and_driveless_users_get_mysite_404() {
    let sim = start(fast_config()).await;
    let seeded = sim
        .post_admin(
            "/seed",
            json!({"seed": 1, "users": [
                {"user_principal_name": "a@contoso.test", "files": 0},
                {"user_principal_name": "b@contoso.test", "files": 2},
                {"user_principal_name": "c@contoso.test", "has_drive": false}]}),
        )
        .await;
    let first = sim.get_json("/users?$top=2").await;
    assert_eq!(first["value"].as_array().map(Vec::len), Some(2));
    let next = first["@odata.nextLink"].as_str().expect("nextLink");
    let second = sim.get_json(next).await;
    assert_eq!(second["value"].as_array().map(Vec::len), Some(1));
    assert!(second.get("@odata.nextLink").is_none());
    assert_eq!(sim.get("/users?$top=1000").await.status(), StatusCode::BAD_REQUEST);

    let b = &seeded["users"][1];
    let drive = sim.get_json(&format!("/users/{}/drive", b["id"].as_str().unwrap_or(""))).await;
    assert_eq!(drive["id"], b["drive_id"]);
    assert_eq!(drive["driveType"], "business");

    let c_id = seeded["users"][2]["id"].as_str().unwrap_or("");
    let r = sim.get(&format!("/users/{c_id}/drive")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["code"], "ResourceNotFound");
    assert_eq!(err["error"]["message"], "User's mysite not found.");
}

#[tokio::test]
async fn seeding_is_deterministic_and_hostile_names_survive() {
    let body = json!({"seed": 7, "users": [{"user_principal_name": "h@contoso.test",
        "files": 20, "folders": 4, "hostile_names": true, "onenote_packages": 1,
        "large_files": [{"name": "video.mp4", "size": 3000000}]}]});
    let a = start(fast_config()).await;
    let b = start(fast_config()).await;
    let ua = a.post_admin("/seed", body.clone()).await;
    let ub = b.post_admin("/seed", body).await;
    assert_eq!(ua, ub);
    let drive = ua["users"][0]["drive_id"].as_str().unwrap_or("").to_string();
    let (ta, tb) = (a.ground_truth(&drive).await, b.ground_truth(&drive).await);
    assert_eq!(ta, tb);
    let names: Vec<&str> = ta.iter().filter_map(|i| i["name"].as_str()).collect();
    for expected in ["caf\u{e9}.txt", "cafe\u{301}.txt", "a..b", "~$lock.docx", "100%2F.txt", "empty.bin"] {
        assert!(names.contains(&expected), "missing {expected}");
    }
    assert!(ta.iter().any(|i| i["kind"] == "package"));
    let longest_path = ta.iter().filter_map(|i| i["path"].as_str()).map(|p| p.chars().count()).max().unwrap_or(0);
    assert!((380..=400).contains(&longest_path), "deep path {longest_path}");
}

#[tokio::test]
async fn names_graph_rejects_are_rejected_by_admin_too() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let path = format!("/drives/{drive}/items");
    let ok = sim.admin(Method::POST, &path, json!({"name": "Report.docx", "kind": "file", "size": 10})).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
    let clash = sim.admin(Method::POST, &path, json!({"name": "REPORT.DOCX", "kind": "file", "size": 1})).await;
    assert_eq!(clash.status(), StatusCode::CONFLICT);
    let err: Value = clash.json().await.expect("json");
    assert_eq!(err["error"]["code"], "nameAlreadyExists");
    for bad in ["a:b.txt", "CON", " lead.txt", "desktop.ini", "x_vti_y"] {
        let r = sim.admin(Method::POST, &path, json!({"name": bad, "kind": "file", "size": 1})).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        let err: Value = r.json().await.expect("json");
        assert_eq!(err["error"]["code"], "invalidRequest");
    }
}
