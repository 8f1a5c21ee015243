//! Delta: enumeration, incremental changes, token=latest, 410 resync.

use std::collections::{HashMap, HashSet};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{fast_config, ids, start};

#[tokio::test]
async fn full_enumeration_pages_parents_first_and_matches_ground_truth() {
    let mut cfg = fast_config();
    cfg.delta_page_size = 10;
    let sim = start(cfg).await;
    let drive = sim.seed_one(40, 6).await;

    let (items, delta_link, pages) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;
    assert!(pages >= 5, "expected several pages, got {pages}");
    assert!(items[0].get("root").is_some(), "root comes first");
    let mut seen = HashSet::new();
    for item in &items {
        if let Some(parent) = item["parentReference"]["id"].as_str() {
            assert!(seen.contains(parent), "parent before child");
            assert!(item["parentReference"].get("path").is_none(), "no path in delta");
        }
        seen.insert(item["id"].as_str().unwrap_or("").to_string());
    }
    let truth: HashSet<String> = ids(&sim.ground_truth(&drive).await).into_iter().collect();
    let listed: HashSet<String> = ids(&items[1..]).into_iter().collect();
    assert_eq!(listed, truth);
    assert!(delta_link.contains("token="));

    // The other URL forms enumerate the same drive.
    let alt = sim.get_json(&format!("/drives/{drive}/items/root/delta()")).await;
    assert_eq!(alt["value"][0]["id"], items[0]["id"]);
    let owner = sim.get_json("/users").await["value"][0]["id"].as_str().unwrap_or("").to_string();
    let by_user = sim.get_json(&format!("/users/{owner}/drive/root/delta")).await;
    assert_eq!(by_user["value"][0]["id"], items[0]["id"]);

    // A GET of one item does carry the parent path.
    let file = items.iter().find(|i| i.get("file").is_some()).expect("a file");
    let got = sim.get_json(&format!("/drives/{drive}/items/{}", file["id"].as_str().unwrap_or(""))).await;
    assert!(got["parentReference"]["path"].as_str().unwrap_or("").starts_with("/drive/root:"));
    assert!(got["cTag"].is_string());
}

#[tokio::test]
async fn incremental_delta_reports_latest_state_of_changed_items() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(10, 3).await;
    let (_, link, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;
    let latest = sim.get_json(&format!("/drives/{drive}/root/delta?token=latest")).await;
    assert_eq!(latest["value"].as_array().map(Vec::len), Some(0));
    assert!(latest["@odata.deltaLink"].is_string());

    let truth = sim.ground_truth(&drive).await;
    let files: Vec<&Value> = truth.iter().filter(|i| i["kind"] == "file").collect();
    let folder = truth.iter().find(|i| i["kind"] == "folder").expect("a folder");
    let (edited, renamed, moved, deleted) = (&files[0], &files[1], &files[2], &files[3]);
    let items = format!("/drives/{drive}/items");
    let id = |v: &Value| v["id"].as_str().unwrap_or("").to_string();
    sim.post_admin(&format!("{items}/{}/content", id(edited)), json!({"size": 77})).await;
    for name in ["first.txt", "second name.txt"] {
        sim.admin_ok(Method::PATCH, &format!("{items}/{}", id(renamed)), json!({"name": name})).await;
    }
    sim.admin_ok(Method::PATCH, &format!("{items}/{}", id(moved)), json!({"parent_id": folder["id"]})).await;
    sim.admin_ok(Method::DELETE, &format!("{items}/{}", id(deleted)), Value::Null).await;
    let created = sim.post_admin(&items, json!({"name": "new.bin", "kind": "file", "size": 5})).await;
    let gone = sim.post_admin(&items, json!({"name": "short-lived.bin", "kind": "file", "size": 5})).await;
    sim.admin_ok(Method::DELETE, &format!("{items}/{}", id(&gone)), Value::Null).await;

    let (changes, next_link, _) = sim.delta_all(&link).await;
    let by_id: HashMap<String, &Value> = changes.iter().map(|c| (id(c), c)).collect();
    assert_eq!(by_id[&id(edited)]["size"], 77);
    assert_eq!(by_id[&id(renamed)]["name"], "second name.txt");
    assert_eq!(by_id[&id(moved)]["parentReference"]["id"], folder["id"]);
    assert!(by_id[&id(deleted)].get("deleted").is_some());
    assert!(by_id[&id(deleted)].get("name").is_none());
    assert!(by_id.contains_key(&id(&created)));
    assert!(!by_id.contains_key(&id(&gone)), "never seen, never reported");
    assert!(changes.iter().all(|c| c.get("cTag").is_none()), "ODfB delta omits cTag");

    // Parents are included by default and left out with deltaExcludeParent.
    sim.post_admin(&format!("{items}/{}/content", id(edited)), json!({"size": 3})).await;
    let with_parents = sim.get_json(&next_link).await;
    assert!(with_parents["value"].as_array().map_or(0, Vec::len) >= 2);
    let only = sim.get_with(&next_link, &[("deltaExcludeParent", "true")]).await.json::<Value>().await.expect("json");
    assert_eq!(ids(only["value"].as_array().map_or(&[][..], |v| v)), vec![id(edited)]);
}

#[tokio::test]
async fn expired_tokens_answer_410_with_a_restart_location() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(5, 1).await;
    let (first, link, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;
    sim.post_admin("/faults", json!({"kind": "expire_delta_tokens", "drive_id": drive})).await;

    let r = sim.get(&link).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let location = r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
    let err: Value = r.json().await.expect("json");
    assert_eq!(err["error"]["code"], "resyncRequired");
    let (again, _, _) = sim.delta_all(&location).await;
    assert_eq!(again.len(), first.len());

    let bogus = sim.get(&format!("/drives/{drive}/root/delta?token=garbage")).await;
    assert_eq!(bogus.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn duplicate_knob_and_changes_during_paging_repeat_items() {
    let mut cfg = fast_config();
    cfg.delta_page_size = 4;
    let sim = start(cfg).await;
    let drive = sim.seed_one(12, 0).await;
    sim.post_admin("/faults", json!({"kind": "duplicate_items_in_delta", "enabled": true})).await;
    let (items, _, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;
    let unique: HashSet<String> = ids(&items).into_iter().collect();
    assert!(items.len() > unique.len(), "some items repeat across pages");
    sim.post_admin("/faults", json!({"kind": "duplicate_items_in_delta", "enabled": false})).await;

    // An item emitted on page one and edited before page two shows up again.
    let page1 = sim.get_json(&format!("/drives/{drive}/root/delta")).await;
    let first_file = page1["value"]
        .as_array()
        .and_then(|v| v.iter().find(|i| i.get("file").is_some()))
        .expect("file on page one")
        .clone();
    let fid = first_file["id"].as_str().unwrap_or("");
    sim.post_admin(&format!("/drives/{drive}/items/{fid}/content"), json!({"size": 9})).await;
    let (rest, _, _) = sim.delta_all(page1["@odata.nextLink"].as_str().expect("next")).await;
    let last = rest.iter().rev().find(|i| i["id"] == fid).expect("re-emitted");
    assert_eq!(last["size"], 9);
}

#[tokio::test]
async fn expired_tokens_answer_with_the_chosen_resync_code_with_or_without_location() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(5, 1).await;
    let (first, _, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;
    for (code, location) in [
        ("resyncChangesApplyDifferences", true),
        ("resyncChangesApplyDifferences", false),
        ("resyncChangesUploadDifferences", true),
        ("resyncChangesUploadDifferences", false),
    ] {
        // Given a delta link the drive can no longer serve
        let link = sim.latest_delta(&drive).await;
        let fault = json!({"kind": "expire_delta_tokens", "drive_id": drive, "code": code, "location": location});
        sim.post_admin("/faults", fault).await;

        // When it is followed
        let r = sim.get(&link).await;

        // Then the 410 carries that code, and a Location that restarts the enumeration only if asked
        assert_eq!(r.status(), StatusCode::GONE);
        let restart = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        let err: Value = r.json().await.expect("json");
        assert_eq!(err["error"]["code"], code);
        assert_eq!(restart.is_some(), location, "{code}");
        if let Some(restart) = restart {
            let (again, _, _) = sim.delta_all(&restart).await;
            assert_eq!(again.len(), first.len());
        }
    }

    let bad = json!({"kind": "expire_delta_tokens", "drive_id": drive, "code": "somethingElse"});
    assert_eq!(sim.admin(Method::POST, "/faults", bad).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn under_the_knob_a_deleted_folder_is_reported_without_its_descendants() {
    // Given two folders, each with a file and a subfolder holding a file
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let items = format!("/drives/{drive}/items");
    let id = |v: &Value| v["id"].as_str().unwrap_or("").to_string();
    let mut trees = Vec::new();
    for name in ["Quiet", "Loud"] {
        let folder = sim.post_admin(&items, json!({"name": name, "kind": "folder"})).await;
        let file = sim.post_admin(&items, json!({"name": "a.txt", "kind": "file", "parent_id": id(&folder)})).await;
        let sub = sim.post_admin(&items, json!({"name": "sub", "kind": "folder", "parent_id": id(&folder)})).await;
        let deep = sim.post_admin(&items, json!({"name": "b.txt", "kind": "file", "parent_id": id(&sub)})).await;
        trees.push([id(&folder), id(&file), id(&sub), id(&deep)]);
    }
    let link = sim.latest_delta(&drive).await;

    // When the first is deleted under the knob, and the second after the faults are cleared
    sim.post_admin("/faults", json!({"kind": "omit_descendant_deletions", "drive_id": drive, "enabled": true})).await;
    let delete = |item: &str| format!("{items}/{item}");
    let gone = sim.send(Method::DELETE, &delete(&trees[0][0]), crate::common::Body::None, &[]).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    sim.admin_ok(Method::DELETE, &delete(&trees[1][0]), Value::Null).await;

    // Then delta reports the first folder's deletion alone, and the second's whole subtree
    let (changes, _, _) = sim.delta_all(&link).await;
    let deleted: HashSet<String> = changes
        .iter()
        .filter(|c| c.get("deleted").is_some())
        .filter_map(|c| c["id"].as_str())
        .map(String::from)
        .collect();
    let expected: HashSet<String> = std::iter::once(trees[0][0].clone()).chain(trees[1].iter().cloned()).collect();
    assert_eq!(deleted, expected);
    // The unreported descendants are gone all the same
    let r = sim.get(&format!("/drives/{drive}/items/{}", trees[0][3])).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_items_break_only_their_own_json_in_delta_pages() {
    // Given three files, each with a different kind of unusable JSON in delta
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(6, 0).await;
    let truth = sim.ground_truth(&drive).await;
    let files: Vec<String> =
        truth.iter().filter(|i| i["kind"] == "file").filter_map(|i| i["id"].as_str()).map(String::from).collect();
    let variants = ["size_not_a_number", "no_id", "parent_not_an_object"];
    for (file, variant) in files.iter().zip(variants) {
        sim.post_admin("/faults", json!({"kind": "malformed_in_delta", "item_id": file, "variant": variant})).await;
    }

    // When the drive is enumerated
    let (items, _, _) = sim.delta_all(&format!("/drives/{drive}/root/delta")).await;

    // Then each of them is broken its own way, and every other item is whole
    let by_id: HashMap<String, &Value> =
        items.iter().filter_map(|i| Some((i["id"].as_str()?.to_string(), i))).collect();
    assert_eq!(by_id[&files[0]]["size"], "not a number");
    assert!(!by_id.contains_key(&files[1]), "no id");
    assert_eq!(items.iter().filter(|i| i.get("id").is_none()).count(), 1);
    assert_eq!(by_id[&files[2]]["parentReference"], "not an object");
    for other in &files[3..] {
        assert!(by_id[other]["size"].is_u64() && by_id[other]["parentReference"].is_object());
    }
    // A GET of the item is unaffected
    let one = sim.get_json(&format!("/drives/{drive}/items/{}", files[0])).await;
    assert!(one["size"].is_u64());

    let bad = json!({"kind": "malformed_in_delta", "item_id": files[0], "variant": "on_fire"});
    assert_eq!(sim.admin(Method::POST, "/faults", bad).await.status(), StatusCode::BAD_REQUEST);
}
