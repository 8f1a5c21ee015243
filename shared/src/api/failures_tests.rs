//! Failure routes against the in-memory catalog: Given items the backup could not take as Graph
//! describes them, When a person asks a drive or mailbox for its open failures, Then each is
//! listed with its reason and, when one is backed up, the item's name and folder.

use chrono::{TimeDelta, Utc};

use super::test_support::*;
use crate::model::{ContainerId, ItemKey};
use crate::store::Failures;

fn drive_item(item_id: &str) -> ItemKey {
    ContainerId::new(TENANT, DRIVE).item(item_id)
}

fn item_ids(reply: &Reply) -> Vec<String> {
    let items = reply.json["items"].as_array().unwrap_or_else(|| panic!("no items in {}", reply.json));
    items.iter().map(|i| i["item_id"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn a_drives_open_failures_are_listed_with_their_reasons_and_the_items_names() {
    // Given report.docx refused twice, a new file refused before anything of it was backed up,
    // and plan.xlsx whose failure was resolved
    let f = fixture().await;
    let (first, last) = (Utc::now() - TimeDelta::hours(2), Utc::now() - TimeDelta::hours(1));
    let refused = "Graph refused access to the content (accessDenied)";
    f.catalog.record_failure(&drive_item("file-report"), refused, first).await.expect("failure");
    f.catalog.record_failure(&drive_item("file-report"), refused, last).await.expect("failure");
    let unusable = "Graph sent this item unusable: missing field `name`";
    f.catalog.record_failure(&drive_item("file-new"), unusable, last).await.expect("failure");
    f.catalog.record_failure(&drive_item("file-plan"), "recorded as served: ...", first).await.expect("failure");
    f.catalog.clear_failure(&drive_item("file-plan")).await.expect("clear");

    // When the drive's failures are asked for
    let reply = f.get("/v1/drives/drive-a/failures").await;

    // Then the two open ones are listed in item id order, the resolved one is not
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["drive_id"], DRIVE);
    assert_eq!(item_ids(&reply), ["file-new", "file-report"]);
    let report = &reply.json["items"][1];
    assert_eq!(report["reason"], refused, "the reason as recorded");
    assert_eq!(report["attempts"], 2);
    assert_eq!(report["last_attempt"], serde_json::to_value(last).expect("time"));
    assert_eq!((report["name"].as_str(), report["parent_id"].as_str()), (Some("report.docx"), Some(DOCS)));
    // And an item of which nothing is backed up has a reason but no name
    let new = &reply.json["items"][0];
    assert_eq!(new["reason"], unusable);
    assert!(new.get("name").is_none() && new.get("parent_id").is_none(), "{new}");
    assert!(reply.json["next"].is_null());
    // And /v1/resources counts the same open failures
    let resources = f.get("/v1/resources").await;
    assert_eq!(resources.json["users"][0]["drives"][0]["open_failures"], 2);
}

#[tokio::test]
async fn failures_page_in_item_id_order_and_cursors_stay_with_their_listing() {
    // Given five open failures
    let f = fixture().await;
    for n in [4, 1, 5, 3, 2] {
        let item = drive_item(&format!("file-{n}"));
        f.catalog
            .record_failure(&item, "Graph refused access to the content (accessDenied)", Utc::now())
            .await
            .expect("failure");
    }

    // When they are read two at a time
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let page = f.get(&format!("/v1/drives/drive-a/failures?limit=2{query}")).await;
        assert_eq!(page.status, 200, "{}", page.json);
        seen.extend(item_ids(&page));
        pages += 1;
        cursor = page.json["next"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }

    // Then every failure comes once, in order, over three pages
    assert_eq!(seen, ["file-1", "file-2", "file-3", "file-4", "file-5"]);
    assert_eq!(pages, 3);
    // And a cursor is refused by another container's listing, and a made-up one by any
    let first = f.get("/v1/drives/drive-a/failures?limit=2").await;
    let cursor = first.json["next"].as_str().expect("a next page").to_owned();
    protect(&f.catalog, "drive-b", "bob", f.discovered, "root-b").await;
    f.get(&format!("/v1/drives/drive-b/failures?cursor={cursor}")).await.assert_problem(400, "invalid-cursor");
    f.get("/v1/drives/drive-a/failures?cursor=not-a-cursor").await.assert_problem(400, "invalid-cursor");
    f.get("/v1/drives/drive-a/failures?limit=0").await.assert_problem(400, "invalid-parameter");
    f.get("/v1/drives/drive-a/failures?limit=1001").await.assert_problem(400, "invalid-parameter");
    f.get("/v1/drives/drive-a/failures?since=yesterday").await.assert_problem(400, "invalid-parameter");
}

#[tokio::test]
async fn failures_of_an_unknown_drive_or_mailbox_are_not_found() {
    let f = fixture().await;
    f.get("/v1/drives/drive-zz/failures").await.assert_problem(404, "not-found");
    f.get("/v1/mailboxes/nobody/failures").await.assert_problem(404, "not-found");
    f.get("/v1/mailboxes/drive-a/failures").await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn a_mailboxs_refused_message_is_its_open_failure() {
    // Given a message Exchange refused in ada's mailbox, and a failure of her drive
    let f = fixture().await;
    let mailbox = protect_mailbox(&f.catalog, "ada", f.discovered, "top").await;
    commit(&f.catalog, &mail_folder(&mailbox, "inbox", "Inbox", "top", t(1, f.discovered))).await;
    commit(&f.catalog, &message(&mailbox, "m-big", "Quarterly", "inbox", t(2, f.discovered), "ck1")).await;
    let reason = "Graph refused the message (HTTP 400, ErrorInvalidRequest)";
    f.catalog.record_failure(&mailbox.item("m-big"), reason, Utc::now()).await.expect("failure");
    f.catalog.record_failure(&drive_item("file-report"), "drive only", Utc::now()).await.expect("failure");

    // When the mailbox's failures are asked for
    let reply = f.get("/v1/mailboxes/ada/failures").await;

    // Then only the message is listed, under its subject and folder
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!((reply.json["mailbox_id"].as_str(), reply.json.get("drive_id")), (Some("ada"), None));
    assert_eq!(item_ids(&reply), ["m-big"]);
    let failure = &reply.json["items"][0];
    assert_eq!(failure["reason"], reason);
    assert_eq!((failure["name"].as_str(), failure["parent_id"].as_str()), (Some("Quarterly"), Some("inbox")));
}
