//! Content download: 302 to a pre-authenticated URL, Range, hashes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{fast_config, start};

#[tokio::test]
async fn content_redirects_and_download_serves_whole_and_ranges() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let file = sim
        .post_admin(
            &format!("/drives/{drive}/items"),
            json!({"name": "data.bin", "kind": "file", "size": 300_000, "seed": 5}),
        )
        .await;
    let id = file["id"].as_str().unwrap_or("");

    let r = sim.get(&format!("/drives/{drive}/items/{id}/content")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let url = r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();

    // Pre-authenticated: no bearer token.
    let whole = sim.http.get(&url).send().await.expect("download");
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.content_length(), Some(300_000));
    let bytes = whole.bytes().await.expect("body");
    assert_eq!(hex::encode(Sha256::digest(&bytes)), file["sha256"].as_str().unwrap_or(""));
    assert_eq!(graph_sim::quickxor::quick_xor_base64(&bytes), file["quick_xor_hash"].as_str().unwrap_or(""));

    let part = sim.http.get(&url).header("Range", "bytes=100-199").send().await.expect("range");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers().get("content-range").and_then(|v| v.to_str().ok()), Some("bytes 100-199/300000"));
    assert_eq!(&part.bytes().await.expect("body")[..], &bytes[100..200]);

    let tail = sim.http.get(&url).header("Range", "bytes=299990-").send().await.expect("tail");
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&tail.bytes().await.expect("body")[..], &bytes[299_990..]);

    let beyond = sim.http.get(&url).header("Range", "bytes=400000-").send().await.expect("416");
    assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let forged = sim.http.get(format!("{url}x")).send().await.expect("forged");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // The Graph item advertises the same hash and a working downloadUrl.
    let item = sim.get_json(&format!("/drives/{drive}/items/{id}")).await;
    assert_eq!(item["file"]["hashes"]["quickXorHash"], file["quick_xor_hash"]);
    assert!(item["@microsoft.graph.downloadUrl"].is_string());

    let etag = item["cTag"].as_str().unwrap_or("").to_string();
    let not_modified = sim.get_with(&format!("/drives/{drive}/items/{id}/content"), &[("If-None-Match", &etag)]).await;
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn folders_and_packages_have_no_content_and_forbid_gives_403() {
    let sim = start(fast_config()).await;
    let seeded = sim
        .post_admin(
            "/seed",
            json!({"seed": 3, "users": [{"user_principal_name": "p@contoso.test",
                "files": 2, "folders": 1, "onenote_packages": 1}]}),
        )
        .await;
    let drive = seeded["users"][0]["drive_id"].as_str().unwrap_or("").to_string();
    let truth = sim.ground_truth(&drive).await;
    for kind in ["folder", "package"] {
        let item = truth.iter().find(|i| i["kind"] == kind).expect(kind);
        let r = sim.get(&format!("/drives/{drive}/items/{}/content", item["id"].as_str().unwrap_or(""))).await;
        assert!(r.status().is_client_error(), "{kind}: {}", r.status());
        let err: Value = r.json().await.expect("json");
        assert!(err["error"]["code"].is_string());
    }
    let pkg = truth.iter().find(|i| i["kind"] == "package").expect("package");
    let pkg_json = sim.get_json(&format!("/drives/{drive}/items/{}", pkg["id"].as_str().unwrap_or(""))).await;
    assert_eq!(pkg_json["package"]["type"], "oneNote");

    let file = truth.iter().find(|i| i["kind"] == "file").expect("file");
    let fid = file["id"].as_str().unwrap_or("");
    sim.post_admin("/faults", json!({"kind": "forbid_content", "item_id": fid})).await;
    let r = sim.get(&format!("/drives/{drive}/items/{fid}/content")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    let r = sim.get(&format!("/drives/{drive}/items/{fid}/content")).await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn hidden_hashes_appear_after_fill() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    sim.post_admin("/faults", json!({"kind": "hide_hashes", "enabled": true})).await;
    let file = sim
        .post_admin(
            &format!("/drives/{drive}/items"),
            json!({"name": "fresh.txt", "kind": "file", "content_b64": "aGVsbG8="}),
        )
        .await;
    let path = format!("/drives/{drive}/items/{}", file["id"].as_str().unwrap_or(""));
    assert!(sim.get_json(&path).await["file"].get("hashes").is_none());
    sim.post_admin("/fill_hashes", json!({})).await;
    let item = sim.get_json(&path).await;
    assert_eq!(item["file"]["hashes"]["quickXorHash"], graph_sim::quickxor::quick_xor_base64(b"hello"));
}

#[tokio::test]
async fn download_urls_refuse_a_bearer_token_and_may_ignore_range() {
    // Given a file and its pre-authenticated download URL
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let file = sim
        .post_admin(
            &format!("/drives/{drive}/items"),
            json!({"name": "data.bin", "kind": "file", "size": 10_000, "seed": 8}),
        )
        .await;
    let id = file["id"].as_str().unwrap_or("");
    let r = sim.get(&format!("/drives/{drive}/items/{id}/content")).await;
    let url = r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();

    // When it is fetched with our token, it is refused (graph-facts §13.6)
    let with_token = sim.http.get(&url).bearer_auth(&sim.token).send().await.expect("download");
    assert_eq!(with_token.status(), StatusCode::UNAUTHORIZED);
    let err: Value = with_token.json().await.expect("json");
    assert!(err["error"]["code"].is_string());

    // When the URL ignores Range once, a ranged request gets 200 and every byte
    sim.post_admin("/faults", json!({"kind": "ignore_range", "count": 1, "item_id": id})).await;
    let ignored = sim.http.get(&url).header("Range", "bytes=4000-").send().await.expect("range");
    assert_eq!(ignored.status(), StatusCode::OK);
    assert!(ignored.headers().get("content-range").is_none());
    let whole = ignored.bytes().await.expect("body");
    assert_eq!(hex::encode(Sha256::digest(&whole)), file["sha256"].as_str().unwrap_or(""));

    // Then the next ranged request is honoured again
    let honoured = sim.http.get(&url).header("Range", "bytes=4000-").send().await.expect("range");
    assert_eq!(honoured.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&honoured.bytes().await.expect("body")[..], &whole[4000..]);

    // And without a count every ranged request is answered whole until the faults are cleared
    sim.post_admin("/faults", json!({"kind": "ignore_range"})).await;
    for _ in 0..2 {
        let r = sim.http.get(&url).header("Range", "bytes=1-").send().await.expect("range");
        assert_eq!((r.status(), r.content_length()), (StatusCode::OK, Some(10_000)));
    }
    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    let r = sim.http.get(&url).header("Range", "bytes=1-").send().await.expect("range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
}

#[tokio::test]
async fn a_labelled_file_downloads_as_other_bytes_than_its_size_and_hash_describe() {
    // Given a file whose downloads serve other bytes (graph-facts §13.2)
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let file = sim
        .post_admin(
            &format!("/drives/{drive}/items"),
            json!({"name": "secret.docx", "kind": "file", "size": 5_000, "seed": 2}),
        )
        .await;
    let id = file["id"].as_str().unwrap_or("");
    let content = format!("/drives/{drive}/items/{id}/content");
    sim.post_admin("/faults", json!({"kind": "serve_different_bytes", "item_id": id})).await;

    // When it is downloaded twice
    let (first, second) = (sim.download(&content).await, sim.download(&content).await);

    // Then both downloads agree with each other but not with the metadata, which is unchanged
    assert_eq!(first, second, "the same other bytes every time");
    assert_ne!(first.len(), 5_000);
    assert_ne!(crate::common::sha256_hex(&first), file["sha256"].as_str().unwrap_or(""));
    let item = sim.get_json(&format!("/drives/{drive}/items/{id}")).await;
    assert_eq!(item["size"], 5_000);
    assert_eq!(item["file"]["hashes"]["quickXorHash"], file["quick_xor_hash"]);

    // When the bytes vary, two downloads disagree
    sim.post_admin("/faults", json!({"kind": "serve_different_bytes", "item_id": id, "varying": true})).await;
    let (third, fourth) = (sim.download(&content).await, sim.download(&content).await);
    assert_ne!(third, fourth);
    assert_ne!(third.len(), 5_000);

    // And once the faults are cleared the real bytes come back
    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    let real = sim.download(&content).await;
    assert_eq!(crate::common::sha256_hex(&real), file["sha256"].as_str().unwrap_or(""));
}
