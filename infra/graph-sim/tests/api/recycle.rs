//! The recycle bin: deleted items come back with their ids, content, times and tags.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Body, Sim, expect, fast_config, ids, start};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or("").to_string()
}

/// `Projects/plan.txt`, `Projects/Old/notes.txt`: returns (folder, subfolder, plan, notes).
async fn tree(sim: &Sim, drive: &str) -> (Value, Value, Value, Value) {
    let items = format!("/drives/{drive}/items");
    let folder = sim.post_admin(&items, json!({"name": "Projects", "kind": "folder"})).await;
    let sub = sim.post_admin(&items, json!({"name": "Old", "kind": "folder", "parent_id": id(&folder)})).await;
    let plan = sim
        .post_admin(
            &items,
            json!({"name": "plan.txt", "kind": "file", "content_b64": "cGxhbg==", "parent_id": id(&folder)}),
        )
        .await;
    let notes =
        sim.post_admin(&items, json!({"name": "notes.txt", "kind": "file", "size": 3000, "parent_id": id(&sub)})).await;
    (folder, sub, plan, notes)
}

async fn graph_item(sim: &Sim, drive: &str, item: &str) -> Value {
    sim.get_json(&format!("/drives/{drive}/items/{item}")).await
}

#[tokio::test]
async fn a_restored_folder_comes_back_whole_with_its_old_identity_and_delta_reports_it() {
    // Given a folder tree, as Graph shows it before the delete
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (folder, sub, plan, notes) = tree(&sim, &drive).await;
    let before = graph_item(&sim, &drive, &id(&plan)).await;
    let plan_bytes = sim.download(&format!("/drives/{drive}/items/{}/content", id(&plan))).await;

    // When the folder is deleted through Graph, then restored from the recycle bin
    let gone = sim.send(Method::DELETE, &format!("/drives/{drive}/items/{}", id(&folder)), Body::None, &[]).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let bin = sim.admin_ok(Method::GET, &format!("/drives/{drive}/recycle_bin"), Value::Null).await;
    assert_eq!((bin[0]["id"].as_str(), bin[0]["items"].as_u64()), (Some(id(&folder).as_str()), Some(4)));
    let after_delete = sim.latest_delta(&drive).await;
    let restored = sim.post_admin(&format!("/drives/{drive}/items/{}/restore", id(&folder)), json!({})).await;

    // Then every item is back under its old parent, with the same id, name, times and tags
    assert_eq!(restored["id"], folder["id"]);
    let after = graph_item(&sim, &drive, &id(&plan)).await;
    for field in ["id", "name", "eTag", "cTag", "size", "lastModifiedDateTime", "createdDateTime"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    assert_eq!(after["parentReference"]["id"], folder["id"]);
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{}/content", id(&plan))).await, plan_bytes);
    let truth: HashMap<String, Value> = sim.ground_truth(&drive).await.into_iter().map(|v| (id(&v), v)).collect();
    assert_eq!(truth[&id(&notes)]["path"], "/Projects/Old/notes.txt");
    assert_eq!(truth[&id(&notes)]["etag"], notes["etag"]);
    assert!(sim.admin_ok(Method::GET, &format!("/drives/{drive}/recycle_bin"), Value::Null).await[0].is_null());

    // And the delta feed reports all four alive again
    let (changes, _, _) = sim.delta_all(&after_delete).await;
    let alive: Vec<String> = ids(&changes.iter().filter(|c| c.get("deleted").is_none()).cloned().collect::<Vec<_>>());
    for item in [&folder, &sub, &plan, &notes] {
        assert!(alive.contains(&id(item)), "{} reported alive", item["name"]);
    }
    assert!(changes.iter().all(|c| c.get("deleted").is_none()));
}

#[tokio::test]
async fn new_etag_gives_a_fresh_etag_and_a_gone_parent_sends_the_item_to_the_root() {
    // Given a file deleted on its own (admin), then its folder deleted too
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (folder, _, plan, _) = tree(&sim, &drive).await;
    let before = graph_item(&sim, &drive, &id(&plan)).await;
    let items = format!("/drives/{drive}/items");
    sim.admin_ok(Method::DELETE, &format!("{items}/{}", id(&plan)), Value::Null).await;
    sim.admin_ok(Method::DELETE, &format!("{items}/{}", id(&folder)), Value::Null).await;

    // When the file is restored with a fresh eTag
    sim.post_admin(&format!("{items}/{}/restore", id(&plan)), json!({"new_etag": true})).await;

    // Then it lands in the root, with a new eTag but its old cTag and modification time
    let after = graph_item(&sim, &drive, &id(&plan)).await;
    let root = sim.get_json(&format!("/drives/{drive}/root")).await;
    assert_eq!(after["parentReference"]["id"], root["id"]);
    assert_ne!(after["eTag"], before["eTag"]);
    assert_eq!(after["cTag"], before["cTag"]);
    assert_eq!(after["lastModifiedDateTime"], before["lastModifiedDateTime"]);
    // The folder is still in the bin
    let gone = sim.get(&format!("/drives/{drive}/items/{}", id(&folder))).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn what_cannot_be_restored_is_refused() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let (folder, _, plan, notes) = tree(&sim, &drive).await;
    let items = format!("/drives/{drive}/items");
    let restore = |item: &Value| format!("{items}/{}/restore", id(item));

    // A live item is not in the bin
    expect(sim.admin(Method::POST, &restore(&plan), json!({})).await, StatusCode::BAD_REQUEST).await;

    // An item deleted with its folder comes back only with the folder
    sim.admin_ok(Method::DELETE, &format!("{items}/{}", id(&folder)), Value::Null).await;
    expect(sim.admin(Method::POST, &restore(&notes), json!({})).await, StatusCode::NOT_FOUND).await;

    // A name taken meanwhile blocks the restore
    sim.post_admin(&items, json!({"name": "projects", "kind": "folder"})).await;
    let err = expect(sim.admin(Method::POST, &restore(&folder), json!({})).await, StatusCode::CONFLICT).await;
    assert_eq!(err["error"]["code"], "nameAlreadyExists");
    let unknown = sim.admin(Method::POST, &format!("{items}/01NOSUCHITEM/restore"), json!({})).await;
    expect(unknown, StatusCode::NOT_FOUND).await;
}
