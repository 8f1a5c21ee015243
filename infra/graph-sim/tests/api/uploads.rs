//! Resumable upload sessions: fragments, Graph's rejections, resuming after
//! a cut, expiry, cancel, deferred commit and conflicts at commit time.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::{Sim, expect, fast_config, sha256_hex, start};

const UNIT: usize = 327_680;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn create(sim: &Sim, path: &str, body: Value) -> String {
    let r = sim.send_json(Method::POST, path, body).await;
    let v = expect(r, StatusCode::OK).await;
    assert_eq!(v["nextExpectedRanges"], json!(["0-"]));
    assert!(v["expirationDateTime"].is_string());
    v["uploadUrl"].as_str().expect("uploadUrl").to_string()
}

/// One fragment, without Authorization (the URL is pre-authenticated).
async fn put(sim: &Sim, url: &str, data: &[u8], start: usize, total: usize) -> Response {
    let end = start + data.len() - 1;
    sim.http
        .put(url)
        .header("Content-Range", format!("bytes {start}-{end}/{total}"))
        .body(data.to_vec())
        .send()
        .await
        .expect("fragment")
}

async fn next_expected(sim: &Sim, url: &str) -> Value {
    expect(sim.http.get(url).send().await.expect("status"), StatusCode::OK).await["nextExpectedRanges"].clone()
}

#[tokio::test]
async fn fragments_of_320k_build_the_file_byte_for_byte() {
    // Given a 1.5 MiB + 1000 byte file and a session for it
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let data = payload(5 * UNIT + 1000);
    let body = json!({"item": {"name": "video.bin", "fileSize": data.len()}});
    let url = create(&sim, &format!("/drives/{drive}/root:/video.bin:/createUploadSession"), body).await;
    assert!(url.starts_with(&format!("{}/upload/", sim.base)));

    // When it is sent in 320 KiB fragments
    let mut last = None;
    for (i, chunk) in data.chunks(UNIT).enumerate() {
        let r = put(&sim, &url, chunk, i * UNIT, data.len()).await;
        if (i + 1) * UNIT < data.len() {
            let v = expect(r, StatusCode::ACCEPTED).await;
            assert_eq!(v["nextExpectedRanges"], json!([format!("{}-", (i + 1) * UNIT)]));
        } else {
            last = Some(expect(r, StatusCode::CREATED).await);
        }
    }

    // Then the item exists with exactly those bytes, and the session is gone
    let item = last.expect("final response");
    assert_eq!((item["name"].as_str(), item["size"].as_u64()), (Some("video.bin"), Some(data.len() as u64)));
    let truth = sim.ground_truth(&drive).await;
    let stored = truth.iter().find(|i| i["id"] == item["id"]).expect("in ground truth");
    assert_eq!(stored["sha256"], sha256_hex(&data));
    let id = item["id"].as_str().unwrap_or("");
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{id}/content")).await, data);
    assert_eq!(sim.http.get(&url).send().await.expect("status").status(), StatusCode::NOT_FOUND);
    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["by_route"]["create_upload_session"], 1, "{stats}");
    assert_eq!(stats["by_route"]["upload_session"], 7, "{stats}");
}

#[tokio::test]
async fn graph_rejections_on_the_upload_url() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let total = 2 * UNIT + 10;
    let data = payload(total);
    let url = create(&sim, &format!("/drives/{drive}/root:/f.bin:/createUploadSession"), json!({})).await;

    // A bearer token on the pre-authenticated URL: 401
    let authed =
        sim.http.put(&url).bearer_auth(&sim.token).header("Content-Range", format!("bytes 0-{}/{total}", UNIT - 1));
    assert_eq!(authed.body(data[..UNIT].to_vec()).send().await.expect("put").status(), StatusCode::UNAUTHORIZED);
    // A fragment that is not a multiple of 320 KiB (and not the last): 400
    assert_eq!(put(&sim, &url, &data[..UNIT - 1], 0, total).await.status(), StatusCode::BAD_REQUEST);
    // A gap: 416
    assert_eq!(put(&sim, &url, &data[UNIT..2 * UNIT], UNIT, total).await.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    expect(put(&sim, &url, &data[..UNIT], 0, total).await, StatusCode::ACCEPTED).await;
    // The same range again: 416
    let again = expect(put(&sim, &url, &data[..UNIT], 0, total).await, StatusCode::RANGE_NOT_SATISFIABLE).await;
    assert_eq!(again["error"]["code"], "invalidRange");
    // A different total: 400; a missing Content-Range: 400
    assert_eq!(put(&sim, &url, &data[UNIT..2 * UNIT], UNIT, total + 1).await.status(), StatusCode::BAD_REQUEST);
    let bare = sim.http.put(&url).body(data[UNIT..2 * UNIT].to_vec()).send().await.expect("put");
    assert_eq!(bare.status(), StatusCode::BAD_REQUEST);
    // None of that moved the session
    assert_eq!(next_expected(&sim, &url).await, json!([format!("{UNIT}-")]));

    // Session creation rules: body name must match, fail on an existing name, If-Match
    let mismatch = sim
        .send_json(
            Method::POST,
            &format!("/drives/{drive}/root:/g.bin:/createUploadSession"),
            json!({"item": {"name": "h.bin"}}),
        )
        .await;
    assert_eq!(mismatch.status(), StatusCode::BAD_REQUEST);
    let existing =
        expect(sim.put_bytes(&format!("/drives/{drive}/root:/e.txt:/content"), b"e").await, StatusCode::CREATED).await;
    let taken =
        sim.send_json(Method::POST, &format!("/drives/{drive}/root:/E.TXT:/createUploadSession"), json!({})).await;
    assert_eq!(expect(taken, StatusCode::CONFLICT).await["error"]["code"], "nameAlreadyExists");
    let by_id = format!("/drives/{drive}/items/{}/createUploadSession", existing["id"].as_str().unwrap_or(""));
    let stale = sim
        .send(
            Method::POST,
            &by_id,
            crate::common::Body::Json(json!({})),
            &[("If-Match", "\"{00000000-0000-0000-0000-000000000000},1\"")],
        )
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let fresh = sim
        .send(
            Method::POST,
            &by_id,
            crate::common::Body::Json(json!({})),
            &[("If-Match", existing["eTag"].as_str().unwrap_or(""))],
        )
        .await;
    assert_eq!(fresh.status(), StatusCode::OK);
    let too_big = sim
        .send_json(
            Method::POST,
            &format!("/drives/{drive}/root:/huge.bin:/createUploadSession"),
            json!({"item": {"fileSize": 1u64 << 41}}),
        )
        .await;
    assert_eq!(too_big.status(), StatusCode::INSUFFICIENT_STORAGE);
}

#[tokio::test]
async fn resume_after_a_cut_request_and_after_a_lost_response() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let total = 3 * UNIT + 77;
    let data = payload(total);
    let url = create(&sim, &format!("/drives/{drive}/root:/resume.bin:/createUploadSession"), json!({})).await;
    expect(put(&sim, &url, &data[..UNIT], 0, total).await, StatusCode::ACCEPTED).await;

    // The connection drops half-way through the second fragment: its bytes are thrown away
    let half = data[UNIT..UNIT + UNIT / 2].to_vec();
    let cut = futures::stream::iter(vec![Ok(half), Err(std::io::Error::other("cable pulled"))]);
    let sent = sim
        .http
        .put(&url)
        .header("Content-Range", format!("bytes {UNIT}-{}/{total}", 2 * UNIT - 1))
        .header("Content-Length", UNIT.to_string())
        .body(reqwest::Body::wrap_stream(cut))
        .send()
        .await;
    assert!(sent.is_err(), "the cut request must fail");
    assert_eq!(next_expected(&sim, &url).await, json!([format!("{UNIT}-")]));

    // The server takes the next fragment but the response is lost
    sim.post_admin("/faults", json!({"kind": "reset", "count": 1, "path_contains": "/upload/"})).await;
    let lost = match sim
        .http
        .put(&url)
        .header("Content-Range", format!("bytes {UNIT}-{}/{total}", 2 * UNIT - 1))
        .body(data[UNIT..2 * UNIT].to_vec())
        .send()
        .await
    {
        Ok(r) => r.bytes().await.is_err(),
        Err(_) => true,
    };
    assert!(lost, "the response must be lost");

    // Resume from what GET reports, not from what the client believes
    let next = next_expected(&sim, &url).await;
    assert_eq!(next, json!([format!("{}-", 2 * UNIT)]));
    let from: usize = next[0].as_str().and_then(|r| r.trim_end_matches('-').parse().ok()).expect("range");
    expect(put(&sim, &url, &data[from..from + UNIT], from, total).await, StatusCode::ACCEPTED).await;
    let done = expect(put(&sim, &url, &data[from + UNIT..], from + UNIT, total).await, StatusCode::CREATED).await;
    let truth = sim.ground_truth(&drive).await;
    let stored = truth.iter().find(|i| i["id"] == done["id"]).expect("stored");
    assert_eq!(stored["sha256"], sha256_hex(&data));
}

#[tokio::test]
async fn expired_and_cancelled_sessions_are_404() {
    let sim =
        start(graph_sim::SimConfig { upload_session_lifetime: Duration::from_millis(3000), ..fast_config() }).await;
    let drive = sim.seed_one(0, 0).await;
    let new_url = |name: &'static str| {
        let sim = &sim;
        let drive = drive.clone();
        async move { create(sim, &format!("/drives/{drive}/root:/{name}:/createUploadSession"), json!({})).await }
    };
    let data = payload(2 * UNIT);

    // Admin expiry
    let url = new_url("a.bin").await;
    sim.post_admin("/faults", json!({"kind": "expire_upload_sessions"})).await;
    assert_eq!(put(&sim, &url, &data[..UNIT], 0, data.len()).await.status(), StatusCode::NOT_FOUND);

    // Idle past the lifetime; each fragment extends it
    let url = new_url("b.bin").await;
    // Margins of 1.5 s either side of each deadline: a loaded CI machine must not flip it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect(put(&sim, &url, &data[..UNIT], 0, data.len()).await, StatusCode::ACCEPTED).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(next_expected(&sim, &url).await, json!([format!("{UNIT}-")]));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let gone = expect(sim.http.get(&url).send().await.expect("get"), StatusCode::NOT_FOUND).await;
    assert_eq!(gone["error"]["code"], "itemNotFound");

    // Expiry midway (fault): the fragment is accepted, then the session is gone
    let url = new_url("m.bin").await;
    sim.post_admin("/faults", json!({"kind": "expire_upload_sessions_midway", "count": 1})).await;
    expect(put(&sim, &url, &data[..UNIT], 0, data.len()).await, StatusCode::ACCEPTED).await;
    assert_eq!(put(&sim, &url, &data[UNIT..], UNIT, data.len()).await.status(), StatusCode::NOT_FOUND);

    // Cancel
    let url = new_url("c.bin").await;
    assert_eq!(sim.http.delete(&url).send().await.expect("delete").status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.http.get(&url).send().await.expect("get").status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deferred_commit_and_conflict_at_commit_time() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let data = payload(UNIT + 5);

    // deferCommit: all bytes in, nothing written until POST with an empty body
    let body = json!({"deferCommit": true, "item": {"@microsoft.graph.conflictBehavior": "rename"}});
    let url = create(&sim, &format!("/drives/{drive}/root:/late.bin:/createUploadSession"), body).await;
    expect(put(&sim, &url, &data[..UNIT], 0, data.len()).await, StatusCode::ACCEPTED).await;
    let tail = expect(put(&sim, &url, &data[UNIT..], UNIT, data.len()).await, StatusCode::ACCEPTED).await;
    assert_eq!(tail["nextExpectedRanges"], json!([]));
    assert_eq!(sim.get(&format!("/drives/{drive}/root:/late.bin")).await.status(), StatusCode::NOT_FOUND);
    let committed =
        expect(sim.http.post(&url).body(Vec::new()).send().await.expect("commit"), StatusCode::CREATED).await;
    assert_eq!(committed["name"], "late.bin");

    // fail (the session default): a name taken after the session began is 409 at commit
    let url = create(&sim, &format!("/drives/{drive}/root:/race.bin:/createUploadSession"), json!({})).await;
    sim.post_admin(&format!("/drives/{drive}/items"), json!({"name": "RACE.bin", "kind": "file", "size": 3})).await;
    expect(put(&sim, &url, &data[..UNIT], 0, data.len()).await, StatusCode::ACCEPTED).await;
    let clash = expect(put(&sim, &url, &data[UNIT..], UNIT, data.len()).await, StatusCode::CONFLICT).await;
    assert_eq!(clash["error"]["code"], "nameAlreadyExists");
}

/// Sends `data` whole in one fragment and commits the deferred session; the committed item.
async fn send_and_commit(sim: &Sim, url: &str, data: &[u8]) -> Value {
    let last = expect(put(sim, url, data, 0, data.len()).await, StatusCode::ACCEPTED).await;
    assert_eq!(last["nextExpectedRanges"], json!([]));
    let r = sim.http.post(url).header("Content-Length", "0").send().await.expect("commit");
    let status = r.status();
    assert!(status == StatusCode::CREATED || status == StatusCode::OK, "commit answered {status}");
    r.json().await.expect("item")
}

#[tokio::test]
async fn file_system_dates_are_kept_by_a_new_file_and_by_a_new_version() {
    // Given a session for a new file that carries the file's own dates
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let dates = json!({"createdDateTime": "2019-05-06T07:08:09Z", "lastModifiedDateTime": "2020-01-02T03:04:05Z"});
    let body = json!({"deferCommit": true, "item": {"fileSystemInfo": dates}});
    let url = create(&sim, &format!("/drives/{drive}/root:/old.docx:/createUploadSession"), body).await;

    // When its bytes are sent and committed
    let item = send_and_commit(&sim, &url, b"old bytes").await;

    // Then the file reports those dates, at the top level and in fileSystemInfo
    let id = item["id"].as_str().expect("id").to_string();
    let got = expect(sim.get(&format!("/drives/{drive}/items/{id}")).await, StatusCode::OK).await;
    assert_eq!(got["fileSystemInfo"], dates);
    assert_eq!(got["createdDateTime"], dates["createdDateTime"]);
    assert_eq!(got["lastModifiedDateTime"], dates["lastModifiedDateTime"]);

    // When a new version of it is uploaded with an older modification time
    let older = json!({"lastModifiedDateTime": "2018-11-12T13:14:15Z"});
    let body = json!({"deferCommit": true, "item": {"fileSystemInfo": older}});
    let url = create(&sim, &format!("/drives/{drive}/items/{id}/createUploadSession"), body).await;
    let item = send_and_commit(&sim, &url, b"older bytes").await;

    // Then the same item has the new bytes, that time, and still its creation time
    assert_eq!(item["id"], id.as_str());
    let got = expect(sim.get(&format!("/drives/{drive}/items/{id}")).await, StatusCode::OK).await;
    assert_eq!(got["lastModifiedDateTime"], "2018-11-12T13:14:15Z");
    assert_eq!(got["createdDateTime"], dates["createdDateTime"]);
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{id}/content")).await, b"older bytes");

    // And a date Graph cannot read is refused when the session is asked for
    let bad = json!({"item": {"fileSystemInfo": {"lastModifiedDateTime": "yesterday"}}});
    let r = sim.send_json(Method::POST, &format!("/drives/{drive}/root:/bad.docx:/createUploadSession"), bad).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_file_larger_than_the_drive_has_room_for_is_507() {
    // Given a drive of 1,000 bytes holding 600
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    sim.post_admin("/faults", json!({"kind": "drive_quota", "drive_id": drive, "bytes": 1_000})).await;
    expect(sim.put_bytes(&format!("/drives/{drive}/root:/a.bin:/content"), &[7; 600]).await, StatusCode::CREATED).await;

    // When a session for 401 bytes is asked for, then one for 400
    let path = format!("/drives/{drive}/root:/b.bin:/createUploadSession");
    let over = sim.send_json(Method::POST, &path, json!({"item": {"fileSize": 401}})).await;
    let fits = sim.send_json(Method::POST, &path, json!({"item": {"fileSize": 400}})).await;

    // Then the first is refused as Graph refuses it, the second opened; the drive says so
    assert_eq!(expect(over, StatusCode::INSUFFICIENT_STORAGE).await["error"]["code"], "quotaLimitReached");
    assert_eq!(fits.status(), StatusCode::OK);
    let d = expect(sim.get(&format!("/drives/{drive}")).await, StatusCode::OK).await;
    assert_eq!((d["quota"]["total"].as_u64(), d["quota"]["remaining"].as_u64()), (Some(1_000), Some(400)));
}

#[tokio::test]
async fn a_deferred_session_that_expires_before_its_commit_writes_nothing() {
    // Given a deferred session that expires right after its (only) fragment
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    sim.post_admin("/faults", json!({"kind": "expire_upload_sessions_midway", "count": 1})).await;
    let body = json!({"deferCommit": true, "item": {}});
    let url = create(&sim, &format!("/drives/{drive}/root:/late.bin:/createUploadSession"), body).await;
    expect(put(&sim, &url, &payload(100), 0, 100).await, StatusCode::ACCEPTED).await;

    // When it is committed
    let commit = sim.http.post(&url).header("Content-Length", "0").send().await.expect("commit");

    // Then the session is gone (start over) and no file appeared
    assert_eq!(commit.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.http.get(&url).send().await.expect("status").status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.get(&format!("/drives/{drive}/root:/late.bin")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_latency_slows_every_upload_request_and_nothing_else() {
    // Given drive uploads that take 400 ms
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(1, 0).await;
    sim.post_admin("/faults", json!({"kind": "upload_latency", "ms": 400})).await;
    let timed = |started: std::time::Instant| started.elapsed() >= Duration::from_millis(400);

    // When a file is uploaded in one PUT, then through a session of two fragments
    let t = std::time::Instant::now();
    let put_simple = sim.put_bytes(&format!("/drives/{drive}/root:/simple.bin:/content"), &payload(10)).await;
    assert_eq!(put_simple.status(), StatusCode::CREATED);
    let simple = timed(t);
    let t = std::time::Instant::now();
    let url = create(&sim, &format!("/drives/{drive}/root:/big.bin:/createUploadSession"), json!({})).await;
    let session = timed(t);
    let data = payload(UNIT + 10);
    let t = std::time::Instant::now();
    assert_eq!(put(&sim, &url, &data[..UNIT], 0, data.len()).await.status(), StatusCode::ACCEPTED);
    let fragment = timed(t);
    assert_eq!(put(&sim, &url, &data[UNIT..], UNIT, data.len()).await.status(), StatusCode::CREATED);

    // Then each of those requests took the latency, while a read did not
    assert!(simple && session && fragment, "simple {simple}, session {session}, fragment {fragment}");
    let t = std::time::Instant::now();
    assert_eq!(sim.get(&format!("/drives/{drive}/root/children")).await.status(), StatusCode::OK);
    assert!(t.elapsed() < Duration::from_millis(400));
}
