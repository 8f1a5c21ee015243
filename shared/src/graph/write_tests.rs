//! Simple uploads, folders, moves and the restorer's listings against a scripted server.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use serde_json::{Value, json};

use super::super::test_server::{Seen, TestServer, graph_error, json, params};
use super::super::{ConflictBehavior, GraphError, ItemKind, UploadTarget};

fn item(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name, "file": {}, "size": 5, "parentReference": {"driveId": "d1", "id": "p1"}})
}

fn body_json(seen: &Seen) -> Value {
    serde_json::from_str(&seen.body).unwrap()
}

#[tokio::test]
async fn a_new_file_goes_under_its_parent_by_encoded_name_with_the_conflict_behaviour() {
    // Given a name with a space, '#', '%', ':' and non-ASCII letters
    let server = TestServer::start(3599, |_, _| json(201, &item("new-1", "Q1 #2 100%: ü.txt"))).await;
    let graph = server.client();
    let target = UploadTarget::New { parent_id: "p1", name: "Q1 #2 100%: ü.txt" };

    // When it is uploaded with `rename`
    let uploaded =
        graph.upload_small("d1", target, Bytes::from_static(b"hello"), ConflictBehavior::Rename).await.unwrap();

    // Then one authenticated PUT carried the bytes to the parent-and-name path
    assert_eq!((uploaded.id.as_str(), uploaded.drive_id.as_str()), ("new-1", "d1"));
    let [put] = server.graph_requests().try_into().unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.path, "/v1.0/drives/d1/items/p1:/Q1%20%232%20100%25%3A%20%C3%BC.txt:/content");
    assert_eq!(put.query.as_deref(), Some("@microsoft.graph.conflictBehavior=rename"));
    assert_eq!(put.body, "hello");
    assert_eq!(put.auth.as_deref(), Some("Bearer tok-1"));
}

#[tokio::test]
async fn a_new_version_of_an_existing_file_goes_to_its_id_and_survives_a_server_error() {
    // Given Graph fails the first PUT with a 502
    let server = TestServer::start(3599, |seen, _| match seen.nth {
        1 => graph_error(502, "badGateway"),
        _ => json(200, &item("i1", "a.txt")),
    })
    .await;
    let graph = server.client();

    // When the existing item gets new content
    let target = UploadTarget::Existing { item_id: "i1" };
    let item = graph.upload_small("d1", target, Bytes::from_static(b"v2"), ConflictBehavior::Fail).await.unwrap();

    // Then the PUT to the item id was resent (same item either way), with no conflict query
    assert_eq!(item.id, "i1");
    let puts = server.graph_requests();
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|p| p.path == "/v1.0/drives/d1/items/i1/content" && p.query.is_none()));
}

#[tokio::test]
async fn a_create_by_name_is_resent_after_a_server_error_only_with_replace() {
    // Given Graph answers every first PUT to a path with a 500
    let server = TestServer::start(3599, |seen, _| match seen.nth {
        1 => graph_error(500, "generalException"),
        _ => json(201, &item("new-1", "a.txt")),
    })
    .await;
    let graph = server.client();
    let upload = |name: &'static str, conflict| {
        let graph = graph.clone();
        async move {
            let target = UploadTarget::New { parent_id: "p1", name };
            graph.upload_small("d1", target, Bytes::from_static(b"x"), conflict).await
        }
    };

    // When the same failure meets `replace`, `rename` and `fail`
    let replaced = upload("r.txt", ConflictBehavior::Replace).await;
    let renamed = upload("n.txt", ConflictBehavior::Rename).await;
    let failed = upload("f.txt", ConflictBehavior::Fail).await;

    // Then only `replace` was resent; the others may have created the file: the caller decides
    assert!(replaced.is_ok());
    assert!(matches!(renamed, Err(GraphError::Transient { .. })), "{renamed:?}");
    assert!(matches!(failed, Err(GraphError::Transient { .. })), "{failed:?}");
    let sent = |name: &str| server.graph_requests().iter().filter(|s| s.path.contains(name)).count();
    assert_eq!((sent("r.txt"), sent("n.txt"), sent("f.txt")), (2, 1, 1));
}

#[tokio::test]
async fn a_simple_upload_over_the_limit_or_the_quota_is_not_retried() {
    let server = TestServer::start(3599, |seen, _| match seen.path.as_str() {
        p if p.contains("big") => graph_error(413, "requestTooLarge"),
        _ => graph_error(507, "quotaLimitReached"),
    })
    .await;
    let graph = server.client();
    let put =
        |item_id| graph.upload_small("d1", UploadTarget::Existing { item_id }, Bytes::new(), ConflictBehavior::Replace);

    assert_eq!(put("big").await.unwrap_err(), GraphError::PayloadTooLarge);
    assert_eq!(put("full").await.unwrap_err(), GraphError::InsufficientStorage);
    assert_eq!(server.graph_requests().len(), 2);
}

#[tokio::test]
async fn a_patch_sends_only_the_name_and_parent_asked_for() {
    let server = TestServer::start(3599, |_, _| json(200, &item("i1", "b.txt"))).await;
    let graph = server.client();

    graph.patch_item("d1", "i1", Some("b.txt"), Some("p2")).await.unwrap();
    graph.patch_item("d1", "i1", Some("c.txt"), None).await.unwrap();
    graph.patch_item("d1", "i1", None, Some("p3")).await.unwrap();

    let patches = server.graph_requests();
    assert!(patches.iter().all(|p| p.method == "PATCH" && p.path == "/v1.0/drives/d1/items/i1"));
    let bodies: Vec<Value> = patches.iter().map(body_json).collect();
    assert_eq!(
        bodies,
        [
            json!({"name": "b.txt", "parentReference": {"id": "p2"}}),
            json!({"name": "c.txt"}),
            json!({"parentReference": {"id": "p3"}}),
        ]
    );
}

#[tokio::test]
async fn a_folder_whose_name_is_taken_is_a_conflict() {
    // Given the parent already holds "Reports"
    let server = TestServer::start(3599, |_, _| graph_error(409, "nameAlreadyExists")).await;
    let graph = server.client();

    // When the folder is created with `fail`
    let err = graph.create_folder("d1", "p1", "Reports", ConflictBehavior::Fail).await.unwrap_err();

    // Then the caller gets a typed, non-retryable conflict, from one request
    assert_eq!(err, GraphError::Conflict { code: "nameAlreadyExists".into() });
    assert!(err.is_conflict() && !err.is_retryable());
    let [post] = server.graph_requests().try_into().unwrap();
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", "/v1.0/drives/d1/items/p1/children"));
    assert_eq!(body_json(&post), json!({"name": "Reports", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}));
}

#[tokio::test]
async fn a_created_folder_comes_back_as_a_folder() {
    let server = TestServer::start(3599, |_, _| {
        json(
            201,
            &json!({"id": "f1", "name": "Reports", "folder": {"childCount": 0},
                          "parentReference": {"driveId": "d1", "id": "p1"}}),
        )
    })
    .await;

    let folder = server.client().create_folder("d1", "p1", "Reports", ConflictBehavior::Rename).await.unwrap();

    assert_eq!((folder.id.as_str(), folder.kind), ("f1", ItemKind::Folder));
    assert_eq!(folder.parent_id.as_deref(), Some("p1"));
}

#[tokio::test]
async fn children_are_listed_across_pages() {
    let server = TestServer::start(3599, |seen, origin| match params(seen).get("$skiptoken") {
        None => json(
            200,
            &json!({"value": [item("c1", "a.txt")],
                    "@odata.nextLink": format!("{origin}/v1.0/drives/d1/items/f1/children?$skiptoken=2")}),
        ),
        Some(_) => json(200, &json!({"value": [{"id": "c2", "name": "sub", "folder": {}}]})),
    })
    .await;

    let children = server.client().children("d1", "f1").await.unwrap();

    let listed: Vec<_> = children.iter().map(|c| (c.id.as_str(), c.kind, c.drive_id.as_str())).collect();
    assert_eq!(listed, [("c1", ItemKind::File, "d1"), ("c2", ItemKind::Folder, "d1")]);
    assert_eq!(server.graph_requests()[0].path, "/v1.0/drives/d1/items/f1/children");
}

#[tokio::test]
async fn versions_are_parsed_newest_first() {
    let server = TestServer::start(3599, |_, _| {
        json(
            200,
            &json!({"value": [
                {"id": "3.0", "lastModifiedDateTime": "2026-03-01T10:00:00Z", "size": 30,
                 "lastModifiedBy": {"user": {"displayName": "A"}}},
                {"id": "2.0", "lastModifiedDateTime": "not a date", "size": 20},
                {"id": "1.0"},
            ]}),
        )
    })
    .await;

    let versions = server.client().item_versions("d1", "i1").await.unwrap();

    let ids: Vec<_> = versions.iter().map(|v| (v.id.as_str(), v.size)).collect();
    assert_eq!(ids, [("3.0", Some(30)), ("2.0", Some(20)), ("1.0", None)]);
    assert_eq!(versions[0].last_modified.unwrap().to_rfc3339(), "2026-03-01T10:00:00+00:00");
    assert_eq!(versions[1].last_modified, None);
    assert_eq!(server.graph_requests()[0].path, "/v1.0/drives/d1/items/i1/versions");
}

#[tokio::test]
async fn the_root_is_a_root() {
    let server =
        TestServer::start(3599, |_, _| json(200, &json!({"id": "r", "name": "root", "root": {}, "folder": {}}))).await;

    let root = server.client().root("d1").await.unwrap();

    assert_eq!((root.id.as_str(), root.kind, root.drive_id.as_str()), ("r", ItemKind::Root, "d1"));
    assert_eq!(server.graph_requests()[0].path, "/v1.0/drives/d1/root");
}
