//! The restore write side: simple uploads, conflict behaviour, rename/move,
//! folders, delete, versions, permissions and the forbid_writes fault.

use reqwest::Method;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Body, expect, fast_config, ids, sha256_hex, start};

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn simple_upload_new_then_replace_keeps_the_id_and_shows_in_delta() {
    // Given an empty drive and a deltaLink taken now
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let link = sim.latest_delta(&drive).await;

    // When a file is uploaded by path, then replaced by id
    let created = expect(
        sim.put_bytes(&format!("/drives/{drive}/root:/report.txt:/content"), b"first").await,
        StatusCode::CREATED,
    )
    .await;
    let id = s(&created["id"]);
    assert_eq!((created["name"].as_str(), created["size"].as_u64()), (Some("report.txt"), Some(5)));
    let replaced =
        expect(sim.put_bytes(&format!("/drives/{drive}/items/{id}/content"), b"second!").await, StatusCode::OK).await;

    // Then it is the same item with new eTag and cTag, serving the new bytes
    assert_eq!(s(&replaced["id"]), id);
    assert_ne!(replaced["eTag"], created["eTag"]);
    assert_ne!(replaced["cTag"], created["cTag"]);
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{id}/content")).await, b"second!");

    // And delta since the link reports it once with its final state
    let (items, _, _) = sim.delta_all(&link).await;
    let mine: Vec<&Value> = items.iter().filter(|i| i["id"] == id.as_str()).collect();
    assert_eq!(mine.len(), 1, "{items:?}");
    assert_eq!(mine[0]["size"], 7);

    // And the earlier content is kept as version 1.0
    let versions = sim.get_json(&format!("/drives/{drive}/items/{id}/versions")).await;
    assert_eq!(ids(versions["value"].as_array().expect("value")), ["2.0", "1.0"]);
    assert_eq!(versions["value"][1]["size"], 5);
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{id}/versions/1.0/content")).await, b"first");
    let current = sim.get(&format!("/drives/{drive}/items/{id}/versions/2.0/content")).await;
    assert_eq!(current.status(), StatusCode::BAD_REQUEST);
    let missing = sim.get(&format!("/drives/{drive}/items/{id}/versions/9.0/content")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let truth = sim.admin_ok(Method::GET, &format!("/drives/{drive}/items/{id}/versions"), Value::Null).await;
    assert_eq!(truth[0]["sha256"], sha256_hex(b"second!"));
    assert_eq!(truth[1]["sha256"], sha256_hex(b"first"));

    // And restoreVersion makes the old bytes current again, as version 3.0
    let r = sim
        .send(Method::POST, &format!("/drives/{drive}/items/{id}/versions/1.0/restoreVersion"), Body::None, &[])
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.download(&format!("/drives/{drive}/items/{id}/content")).await, b"first");
    let versions = sim.get_json(&format!("/drives/{drive}/items/{id}/versions")).await;
    assert_eq!(ids(versions["value"].as_array().expect("value")), ["3.0", "2.0", "1.0"]);

    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert_eq!(stats["by_route"]["upload"], 2, "{stats}");
    assert!(stats["by_route"]["versions"].as_u64().unwrap_or(0) >= 5, "{stats}");
}

#[tokio::test]
async fn conflict_behaviour_fail_rename_replace_and_name_rules() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let path = |q: &str| format!("/drives/{drive}/root:/Notes.txt:/content{q}");
    let first = expect(sim.put_bytes(&path(""), b"one").await, StatusCode::CREATED).await;

    // fail: a case-insensitive clash is 409 nameAlreadyExists
    let clash = sim
        .put_bytes(&format!("/drives/{drive}/root:/NOTES.TXT:/content?@microsoft.graph.conflictBehavior=fail"), b"x")
        .await;
    let err = expect(clash, StatusCode::CONFLICT).await;
    assert_eq!(err["error"]["code"], "nameAlreadyExists");

    // rename: "Notes 1.txt", a new item
    let renamed =
        expect(sim.put_bytes(&path("?@microsoft.graph.conflictBehavior=rename"), b"two").await, StatusCode::CREATED)
            .await;
    assert_eq!(renamed["name"], "Notes 1.txt");
    assert_ne!(renamed["id"], first["id"]);

    // replace (the PUT default): same item, 200
    let replaced = expect(sim.put_bytes(&path(""), b"three").await, StatusCode::OK).await;
    assert_eq!(replaced["id"], first["id"]);

    // Names Graph refuses are refused; unknown behaviours too
    let bad = sim.put_bytes(&format!("/drives/{drive}/root:/a*b.txt:/content"), b"x").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let odd = sim.put_bytes(&path("?@microsoft.graph.conflictBehavior=overwrite"), b"x").await;
    assert_eq!(odd.status(), StatusCode::BAD_REQUEST);
    let no_parent = sim.put_bytes(&format!("/drives/{drive}/root:/nope/x.txt:/content"), b"x").await;
    assert_eq!(no_parent.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn simple_upload_over_the_limit_is_413() {
    let sim = start(graph_sim::SimConfig { simple_upload_max: 1000, ..fast_config() }).await;
    let drive = sim.seed_one(0, 0).await;
    let r = sim.put_bytes(&format!("/drives/{drive}/root:/big.bin:/content"), &[7u8; 2000]).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let ok = sim.put_bytes(&format!("/drives/{drive}/root:/small.bin:/content"), &[7u8; 1000]).await;
    assert_eq!(ok.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn folders_rename_move_and_delete() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let children = format!("/drives/{drive}/root/children");

    // Folders: 201, clash 409 by default, rename on request
    let docs = expect(
        sim.send_json(Method::POST, &children, json!({"name": "Docs", "folder": {}})).await,
        StatusCode::CREATED,
    )
    .await;
    assert!(docs["folder"].is_object());
    let again = sim.send_json(Method::POST, &children, json!({"name": "docs", "folder": {}})).await;
    assert_eq!(expect(again, StatusCode::CONFLICT).await["error"]["code"], "nameAlreadyExists");
    let body = json!({"name": "Docs", "folder": {}, "@microsoft.graph.conflictBehavior": "rename"});
    let docs1 = expect(sim.send_json(Method::POST, &children, body).await, StatusCode::CREATED).await;
    assert_eq!(docs1["name"], "Docs 1");
    let file_facet = sim.send_json(Method::POST, &children, json!({"name": "f.txt", "file": {}})).await;
    assert_eq!(file_facet.status(), StatusCode::BAD_REQUEST);

    let x =
        expect(sim.put_bytes(&format!("/drives/{drive}/root:/x.txt:/content"), b"x").await, StatusCode::CREATED).await;
    sim.put_bytes(&format!("/drives/{drive}/root:/y.txt:/content"), b"y").await;
    let x_id = s(&x["id"]);
    let item = format!("/drives/{drive}/items/{x_id}");
    let link = sim.latest_delta(&drive).await;

    // Rename onto a sibling's name: 409, unless rename is asked for
    let clash = sim.send_json(Method::PATCH, &item, json!({"name": "Y.txt"})).await;
    assert_eq!(expect(clash, StatusCode::CONFLICT).await["error"]["code"], "nameAlreadyExists");
    let body = json!({"name": "y.txt", "@microsoft.graph.conflictBehavior": "rename"});
    let renamed = expect(sim.send_json(Method::PATCH, &item, body).await, StatusCode::OK).await;
    assert_eq!(renamed["name"], "y 1.txt");
    assert_eq!(renamed["cTag"], x["cTag"], "content untouched");
    assert_ne!(renamed["eTag"], x["eTag"]);

    // Move into Docs: same id, new parent; a stale If-Match is 412
    let stale = sim
        .send(
            Method::PATCH,
            &item,
            Body::Json(json!({"name": "z.txt"})),
            &[("If-Match", x["eTag"].as_str().unwrap_or(""))],
        )
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let body = json!({"parentReference": {"id": docs["id"]}, "name": "moved.txt"});
    let moved = expect(sim.send_json(Method::PATCH, &item, body).await, StatusCode::OK).await;
    assert_eq!(
        (moved["id"].as_str(), moved["parentReference"]["id"].clone()),
        (Some(x_id.as_str()), docs["id"].clone())
    );
    assert_eq!(moved["parentReference"]["path"], "/drive/root:/Docs");
    let into_self = sim
        .send_json(
            Method::PATCH,
            &format!("/drives/{drive}/items/{}", s(&docs["id"])),
            json!({"parentReference": {"id": docs["id"]}}),
        )
        .await;
    assert_eq!(into_self.status(), StatusCode::BAD_REQUEST);

    // Delta sees the move; path addressing finds the file at its new place
    let (items, link2, _) = sim.delta_all(&link).await;
    let seen = items.iter().find(|i| i["id"] == x_id.as_str()).expect("moved item in delta");
    assert_eq!((seen["name"].as_str(), seen["parentReference"]["id"].clone()), (Some("moved.txt"), docs["id"].clone()));
    assert_eq!(sim.get_json(&format!("/drives/{drive}/root:/Docs/moved.txt")).await["id"], x_id.as_str());

    // Delete the folder: 204, gone, and delta reports both as deleted
    let r = sim.send(Method::DELETE, &format!("/drives/{drive}/items/{}", s(&docs["id"])), Body::None, &[]).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(sim.get(&item).await.status(), StatusCode::NOT_FOUND);
    let (items, _, _) = sim.delta_all(&link2).await;
    let deleted: Vec<String> =
        items.iter().filter(|i| i["deleted"].is_object()).filter_map(|i| i["id"].as_str().map(String::from)).collect();
    assert!(deleted.contains(&x_id) && deleted.contains(&s(&docs["id"])), "{items:?}");

    let stats = sim.admin_ok(Method::GET, "/stats", Value::Null).await;
    assert_eq!(
        (stats["by_route"]["create_folder"].as_u64(), stats["by_route"]["patch"].as_u64()),
        (Some(4), Some(5)),
        "{stats}"
    );
}

#[tokio::test]
async fn sharing_survives_replacement_and_move_but_not_recreation() {
    // Given a shared file in a shared folder
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let folder = expect(
        sim.send_json(Method::POST, &format!("/drives/{drive}/root/children"), json!({"name": "Team", "folder": {}}))
            .await,
        StatusCode::CREATED,
    )
    .await;
    let file = expect(
        sim.put_bytes(&format!("/drives/{drive}/root:/Team/plan.docx:/content"), b"v1").await,
        StatusCode::CREATED,
    )
    .await;
    let id = s(&file["id"]);
    sim.post_admin(
        &format!("/drives/{drive}/items/{id}/share"),
        json!({"email": "bob@contoso.test", "roles": ["write"]}),
    )
    .await;
    sim.post_admin(
        &format!("/drives/{drive}/items/{}/share", s(&folder["id"])),
        json!({"email": "team@contoso.test", "roles": ["read"]}),
    )
    .await;
    let perms = format!("/drives/{drive}/items/{id}/permissions");
    let before = sim.get_json(&perms).await;
    assert_eq!(before["value"][0]["grantedToV2"]["user"]["email"], "bob@contoso.test");
    assert_eq!(before["value"][1]["inheritedFrom"]["id"], folder["id"]);

    // When its content is replaced (simple upload and upload session)
    expect(sim.put_bytes(&format!("/drives/{drive}/items/{id}/content"), b"v2").await, StatusCode::OK).await;
    let session = expect(
        sim.send_json(Method::POST, &format!("/drives/{drive}/items/{id}/createUploadSession"), json!({})).await,
        StatusCode::OK,
    )
    .await;
    let r = sim
        .http
        .put(s(&session["uploadUrl"]))
        .header("Content-Range", "bytes 0-1/2")
        .body(b"v3".to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);

    // Then sharing is unchanged
    assert_eq!(sim.get_json(&perms).await, before);

    // A rename keeps the explicit grant; moving out of the folder drops the inherited one
    let body = json!({"name": "plan v2.docx", "parentReference": {"id": "root"}});
    expect(sim.send_json(Method::PATCH, &format!("/drives/{drive}/items/{id}"), body).await, StatusCode::OK).await;
    let after_move = sim.get_json(&perms).await;
    assert_eq!(after_move["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(after_move["value"][0], before["value"][0]);

    // Delete and recreate: a new item without the grant
    sim.send(Method::DELETE, &format!("/drives/{drive}/items/{id}"), Body::None, &[]).await;
    let again = expect(
        sim.put_bytes(&format!("/drives/{drive}/root:/plan v2.docx:/content"), b"v3").await,
        StatusCode::CREATED,
    )
    .await;
    assert_ne!(s(&again["id"]), id);
    let fresh = sim.get_json(&format!("/drives/{drive}/items/{}/permissions", s(&again["id"]))).await;
    assert_eq!(fresh["value"], json!([]));
}

#[tokio::test]
async fn forbid_writes_refuses_every_write_on_that_drive() {
    let sim = start(fast_config()).await;
    let drive = sim.seed_one(0, 0).await;
    let file =
        expect(sim.put_bytes(&format!("/drives/{drive}/root:/a.txt:/content"), b"a").await, StatusCode::CREATED).await;
    let item = format!("/drives/{drive}/items/{}", s(&file["id"]));
    sim.post_admin("/faults", json!({"kind": "forbid_writes", "drive_id": drive})).await;

    let writes = [
        sim.put_bytes(&format!("/drives/{drive}/root:/b.txt:/content"), b"b").await,
        sim.put_bytes(&format!("{item}/content"), b"b").await,
        sim.send_json(Method::POST, &format!("/drives/{drive}/root/children"), json!({"name": "F", "folder": {}}))
            .await,
        sim.send_json(Method::PATCH, &item, json!({"name": "c.txt"})).await,
        sim.send(Method::DELETE, &item, Body::None, &[]).await,
        sim.send_json(Method::POST, &format!("/drives/{drive}/root:/d.bin:/createUploadSession"), json!({})).await,
    ];
    for r in writes {
        assert_eq!(expect(r, StatusCode::FORBIDDEN).await["error"]["code"], "accessDenied");
    }
    // Reads still work, and clearing faults restores writes
    assert_eq!(sim.get(&item).await.status(), StatusCode::OK);
    sim.admin_ok(Method::DELETE, "/faults", Value::Null).await;
    assert_eq!(sim.put_bytes(&format!("{item}/content"), b"b").await.status(), StatusCode::OK);
}
