#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;

fn parse(value: serde_json::Value) -> Result<DriveItem, GraphError> {
    serde_json::from_value::<RawItem>(value).unwrap().into_item(Some("drive-from-request"))
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
}

#[test]
fn a_file_keeps_its_versions_markers_hash_and_parent() {
    let item = parse(json!({
        "id": "01FILE", "name": "report.docx", "size": 2048,
        "eTag": "\"{E},3\"", "cTag": "\"c:{E},2\"",
        "createdDateTime": "2024-05-01T10:00:00Z",
        "lastModifiedDateTime": "2024-05-02T11:30:15.123Z",
        "parentReference": {"driveId": "b!drive", "driveType": "business", "id": "01PARENT"},
        "file": {"mimeType": "application/msword",
                 "hashes": {"quickXorHash": "O9tHLAghgSvYohKFyMMxnNCHaHg="}},
        "fileSystemInfo": {"createdDateTime": "2024-05-01T10:00:00Z"},
        "@microsoft.graph.downloadUrl": "https://x.example/download?tempauth=secret",
        "someFutureField": {"nested": [1, 2, 3]}
    }))
    .unwrap();
    assert_eq!(
        item,
        DriveItem {
            id: "01FILE".into(),
            drive_id: "b!drive".into(),
            name: Some("report.docx".into()),
            kind: ItemKind::File,
            size: Some(2048),
            etag: Some("\"{E},3\"".into()),
            ctag: Some("\"c:{E},2\"".into()),
            created: time("2024-05-01T10:00:00Z"),
            last_modified: time("2024-05-02T11:30:15.123Z"),
            parent_id: Some("01PARENT".into()),
            quick_xor_hash: Some("O9tHLAghgSvYohKFyMMxnNCHaHg=".into()),
            mime_type: Some("application/msword".into()),
            deleted: false,
        }
    );
}

#[test]
fn facets_decide_the_kind() {
    let kind = |v| parse(v).unwrap().kind;
    assert_eq!(kind(json!({"id": "f", "name": "docs", "folder": {"childCount": 3}})), ItemKind::Folder);
    assert_eq!(kind(json!({"id": "p", "name": "Notebook", "package": {"type": "oneNote"}})), ItemKind::Package);
    assert_eq!(kind(json!({"id": "r", "name": "root", "folder": {}, "root": {}})), ItemKind::Root);
    assert_eq!(kind(json!({"id": "x", "file": {}})), ItemKind::File);
}

#[test]
fn a_deleted_item_without_name_or_ctag_still_parses() {
    let item = parse(json!({
        "id": "01GONE", "deleted": {"state": "deleted"}, "file": {},
        "parentReference": {"id": "01PARENT"}
    }))
    .unwrap();
    assert!(item.deleted);
    assert_eq!((item.name, item.ctag), (None, None));
    assert_eq!(item.drive_id, "drive-from-request");
    assert_eq!(item.parent_id.as_deref(), Some("01PARENT"));
}

#[test]
fn missing_or_null_fields_are_tolerated_but_an_id_is_required() {
    let item = parse(json!({"id": "x", "name": null, "size": null, "folder": null,
                            "lastModifiedDateTime": "not a date"}))
    .unwrap();
    assert_eq!((item.kind, item.size, item.last_modified), (ItemKind::File, None, None));
    assert!(matches!(parse(json!({"name": "orphan"})), Err(GraphError::Protocol { .. })));
}

#[test]
fn a_delta_page_exposes_its_links_and_items_in_order() {
    let page: RawDeltaPage = serde_json::from_value(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)",
        "value": [{"id": "a", "file": {}}, {"id": "a", "deleted": {}}],
        "@odata.nextLink": "https://graph.microsoft.com/v1.0/drives/d/root/delta?token=n1"
    }))
    .unwrap();
    let page = page.into_page(Some("d")).unwrap();
    let ids: Vec<_> = page.items.iter().map(|i| (i.id.as_str(), i.deleted)).collect();
    assert_eq!(ids, [("a", false), ("a", true)]);
    assert!(page.next.unwrap().as_str().ends_with("token=n1"));
    assert_eq!(page.delta, None);
}

#[tokio::test]
async fn skipping_a_prefix_passes_the_rest_through_chunk_by_chunk() {
    let chunks = |skip| async move {
        let inner: ByteStream = Box::pin(futures::stream::iter(
            [&b"0123"[..], b"4567", b"89"].map(|c| Ok::<_, GraphError>(Bytes::from_static(c))),
        ));
        let out: Vec<Result<Bytes, GraphError>> = skip_prefix(inner, skip).collect().await;
        out.into_iter().map(|c| c.map(|b| String::from_utf8(b.to_vec()).unwrap())).collect::<Result<Vec<_>, _>>()
    };
    assert_eq!(chunks(0).await.unwrap(), ["0123", "4567", "89"]);
    assert_eq!(chunks(4).await.unwrap(), ["4567", "89"]);
    assert_eq!(chunks(5).await.unwrap(), ["567", "89"]);
    assert_eq!(chunks(9).await.unwrap(), ["9"]);
    assert_eq!(chunks(10).await.unwrap(), Vec::<String>::new());
    assert!(matches!(chunks(11).await, Err(GraphError::Transient { .. })));
}

#[test]
fn unusable_items_are_set_aside_with_a_reason_and_the_rest_of_the_page_is_kept() {
    // Given a page where some items have JSON that cannot be used
    let page: RawDeltaPage = serde_json::from_value(json!({
        "value": [
            {"id": "good1", "name": "a.txt", "file": {}},
            {"id": "bad-size", "name": "Salaries 2025.xlsx", "size": "not a number", "file": {}},
            {"name": "no id.txt", "file": {}},
            {"id": "bad-parent", "parentReference": "not an object"},
            {"id": "bad-hash", "file": {"hashes": {"quickXorHash": 42}}},
            {"id": "negative", "size": -1},
            {"id": 7, "name": "numeric id"},
            "not an item",
            {"id": "good2", "folder": {}}
        ],
        "@odata.deltaLink": "https://graph.microsoft.com/v1.0/drives/d/root/delta?token=n1"
    }))
    .unwrap();

    // When it is read
    let page = page.into_page(Some("d")).unwrap();

    // Then the usable items are there in order, and each other one says what was wrong
    let ids: Vec<_> = page.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["good1", "good2"]);
    let unusable = |id: Option<&str>, reason: &str| UnusableItem { id: id.map(str::to_owned), reason: reason.into() };
    assert_eq!(
        page.unusable,
        [
            unusable(Some("bad-size"), "`size` is a string, expected u64"),
            unusable(None, "drive item without id"),
            unusable(Some("bad-parent"), "`parentReference` is a string, expected an object"),
            unusable(Some("bad-hash"), "`file.hashes.quickXorHash` is a number, expected a string"),
            unusable(Some("negative"), "`size` is a negative number, expected u64"),
            unusable(None, "`id` is a number, expected a string"),
            unusable(None, "the item is a string, expected an object"),
        ]
    );
    // No reason repeats the JSON's values
    assert!(page.unusable.iter().all(|u| !u.reason.contains("Salaries") && !u.reason.contains("not a")));
    assert!(page.delta.is_some());
}

#[test]
fn delta_links_never_print_and_round_trip_as_plain_strings() {
    let link = DeltaLink::new("https://g.example/v1.0/drives/d/root/delta?token=secret");
    assert_eq!(format!("{link:?}"), "<delta link>");
    let json = serde_json::to_string(&link).unwrap();
    assert_eq!(json, "\"https://g.example/v1.0/drives/d/root/delta?token=secret\"");
    assert_eq!(serde_json::from_str::<DeltaLink>(&json).unwrap(), link);
    let cursor = DeltaCursor::Link(link);
    assert!(!format!("{cursor:?}").contains("secret"));
}

#[test]
fn content_ranges_and_drive_ids_in_links_parse() {
    assert_eq!(parse_content_range("bytes 100-199/2048"), Some((100, Some(2048))));
    assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, None)));
    assert_eq!(parse_content_range("items 0-1/2"), None);
    let url = Url::parse("https://g.example/v1.0/drives/b%21x/root/delta?token=1").unwrap();
    assert_eq!(drive_id_in_path(&url).as_deref(), Some("b!x"));
}
