//! Older modification times, as migration tools and "copy over with an older file" set them.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{expect, fast_config, start};

#[tokio::test]
async fn content_and_times_can_be_set_to_an_older_time_and_delta_reports_them() {
    // Given a file, as Graph shows it, and a delta link from now
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let items = format!("/drives/{drive}/items");
    let file = sim.post_admin(&items, json!({"name": "budget.xlsx", "kind": "file", "size": 100})).await;
    let path = format!("{items}/{}", file["id"].as_str().unwrap_or(""));
    let before = sim.get_json(&path).await;
    let link = sim.latest_delta(&drive).await;

    // When an older file is copied over it
    let older = "2020-01-02T03:04:05Z";
    let body = json!({"content_b64": "b2xkZXIgYnl0ZXM=", "last_modified": older});
    sim.post_admin(&format!("{path}/content"), body).await;

    // Then it has the older time, a new eTag and a new cTag, and delta reports it so
    let copied = sim.get_json(&path).await;
    assert_eq!(copied["lastModifiedDateTime"], older);
    assert_eq!(copied["fileSystemInfo"]["lastModifiedDateTime"], older);
    assert_ne!(copied["eTag"], before["eTag"]);
    assert_ne!(copied["cTag"], before["cTag"]);
    assert_eq!(copied["size"], 11);
    let (changes, link, _) = sim.delta_all(&link).await;
    let reported = changes.iter().find(|c| c["id"] == file["id"]).expect("reported");
    assert_eq!(reported["lastModifiedDateTime"], older);

    // When only its time is set, older still
    let oldest = "2019-06-01T00:00:00Z";
    sim.admin_ok(Method::PATCH, &path, json!({"last_modified": "2019-06-01T02:00:00+02:00"})).await;

    // Then its eTag changes, its cTag does not, and delta reports it again
    let dated = sim.get_json(&path).await;
    assert_eq!(dated["lastModifiedDateTime"], oldest);
    assert_ne!(dated["eTag"], copied["eTag"]);
    assert_eq!(dated["cTag"], copied["cTag"]);
    assert_eq!(dated["name"], "budget.xlsx");
    let (changes, _, _) = sim.delta_all(&link).await;
    let reported = changes.iter().find(|c| c["id"] == file["id"]).expect("reported");
    assert_eq!(reported["lastModifiedDateTime"], oldest);
    assert_eq!(reported["eTag"], dated["eTag"]);

    // A time that is not RFC 3339 is refused
    let bad = sim.admin(Method::PATCH, &path, json!({"last_modified": "yesterday"})).await;
    expect(bad, StatusCode::BAD_REQUEST).await;
    assert_eq!(sim.get_json(&path).await["eTag"], dated["eTag"], "nothing changed");
}
