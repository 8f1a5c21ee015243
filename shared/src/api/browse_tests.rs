//! Browse routes against the in-memory catalog: Given a drive with a little history, When a
//! person browses it, Then they see what it looked like at that moment, or a problem saying why.

use chrono::{TimeDelta, Utc};

use super::test_support::*;
use crate::model::{
    ContainerId, ContainerRecord, ItemVersion, LibraryRef, Problem, SCHEMA_VERSION, Service, SiteLink, SiteRecord,
    SyncState, Unresolved, Verification,
};
use crate::store::{Containers, Coordination, Failures, SyncStates};

fn names(reply: &Reply) -> Vec<String> {
    let items = reply.json["items"].as_array().unwrap_or_else(|| panic!("no items in {}", reply.json));
    items.iter().map(|i| i["name"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn resources_list_users_drives_and_their_health() {
    let f = fixture().await;
    let item = ContainerId::new(TENANT, DRIVE).item("file-locked");
    f.catalog.record_failure(&item, "403 accessDenied", Utc::now()).await.expect("failure");

    let reply = f.get("/v1/resources").await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    let user = &reply.json["users"][0];
    assert_eq!(user["user_id"], "ada");
    assert_eq!(user["user_principal_name"], "ada@contoso.test");
    let drive = &user["drives"][0];
    assert_eq!(drive["drive_id"], DRIVE);
    assert_eq!(drive["health"], "in sync");
    assert_eq!(drive["open_failures"], 1);
    assert_eq!(drive["status"]["state"], "degraded");
    assert_eq!(drive["status"]["reason"], "1 item could not be backed up");

    // Once a later attempt backs the item up, the failure no longer counts
    commit(&f.catalog, &file("file-locked", "locked.docx", ROOT, Utc::now(), "l1")).await;
    let after = f.get("/v1/resources").await;
    assert_eq!(after.json["users"][0]["drives"][0]["open_failures"], 0, "{}", after.json);
    assert_eq!(drive["last_synced_at"], serde_json::to_value(f.discovered + TimeDelta::hours(1)).expect("time"));
    assert!(drive["subscription_expires"].is_string() && drive["discovered_at"].is_string());
    assert!(!reply.json.to_string().contains("token=secret"), "delta links never leave the catalog");
}

#[tokio::test]
async fn resources_say_how_well_each_container_is_protected_and_list_what_discovery_could_not_resolve() {
    let f = fixture().await;
    // ada's drive synced a minute ago; bob's drive is mid first crawl and Graph refused its
    // subscription; carol's mailbox could not be resolved at all.
    let ada = ContainerId::new(TENANT, DRIVE);
    let fresh = SyncState { last_synced_at: Some(Utc::now() - TimeDelta::minutes(1)), ..SyncState::default() };
    f.catalog.put_sync_state(&ada, &fresh).await.expect("sync");
    let refused = Problem { reason: "subscription refused: forbidden (ExtensionError)".into(), since: f.discovered };
    let bob = ContainerRecord {
        container: ContainerId::new(TENANT, "drive-bob"),
        user_id: "bob".into(),
        user_principal_name: None,
        discovered_at: f.discovered,
        subscription_id: None,
        subscription_expires: None,
        problem: Some(refused),
        site: None,
    };
    f.catalog.put_container(&bob).await.expect("bob");
    let lookup = Problem { reason: "forbidden (ErrorAccessDenied)".into(), since: f.discovered };
    let carol = Unresolved {
        tenant_id: TENANT.into(),
        user_id: "carol".into(),
        user_principal_name: Some("carol@contoso.test".into()),
        service: Service::Mailbox,
        problem: lookup,
    };
    f.catalog.put_unresolved(&carol).await.expect("carol");

    let reply = f.get("/v1/resources").await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    let users = reply.json["users"].as_array().expect("users");
    let user = |id: &str| users.iter().find(|u| u["user_id"] == id).unwrap_or_else(|| panic!("{id} in {users:?}"));
    assert_eq!(user("ada")["drives"][0]["status"], serde_json::json!({"state": "protected"}));
    let bob = &user("bob")["drives"][0]["status"];
    assert_eq!(bob["state"], "unprotected", "{bob}");
    assert!(bob["reason"].as_str().is_some_and(|r| r.contains("ExtensionError")), "{bob}");
    let carol = &user("carol");
    assert_eq!(carol["user_principal_name"], "carol@contoso.test");
    assert_eq!(carol["unresolved"][0]["service"], "mailbox");
    assert_eq!(carol["unresolved"][0]["status"]["state"], "unprotected");
    assert_eq!(carol["unresolved"][0]["status"]["reason"], "forbidden (ErrorAccessDenied)");
    assert_eq!(carol["unresolved"][0]["status"]["since"], serde_json::to_value(f.discovered).expect("time"));
    assert_eq!(reply.json["summary"], serde_json::json!({"protected": 1, "unprotected": 2}));
}

/// Sites are listed with their libraries (each a drive, browsed by the drive routes), the
/// libraries left out with why, and the sites Graph refuses or deleted with their reason.
#[tokio::test]
async fn resources_list_sites_with_their_libraries_and_what_keeps_a_site_from_being_backed_up() {
    let f = fixture().await;
    let site = |id: &str, name: &str| SiteRecord {
        v: SCHEMA_VERSION,
        tenant_id: TENANT.into(),
        site_id: id.into(),
        name: name.into(),
        web_url: Some(format!("https://contoso.sharepoint.com/sites/{name}")),
        parent_id: None,
        discovered_at: f.discovered,
        libraries: Vec::new(),
        archive_status: None,
        deleted_at: None,
        problem: None,
    };
    let library = |drive: &str, site_id: &str| ContainerRecord {
        container: ContainerId::new(TENANT, drive),
        user_id: String::new(),
        user_principal_name: None,
        discovered_at: f.discovered,
        subscription_id: Some(format!("sub-{drive}")),
        subscription_expires: Some(Utc::now() + TimeDelta::days(20)),
        problem: None,
        site: Some(SiteLink { site_id: site_id.into(), library: "Documents".into() }),
    };
    let mut finance = site("h,f,1", "Finance");
    finance.libraries = vec![LibraryRef {
        drive_id: "b!style".into(),
        name: "Style Library".into(),
        system: true,
        excluded: Some("hidden system library".into()),
    }];
    let mut board = site("h,b,1", "Board");
    board.problem = Some(Problem { reason: "access denied: forbidden (accessDenied)".into(), since: f.discovered });
    let old = SiteRecord { deleted_at: Some(f.discovered + TimeDelta::hours(5)), ..site("h,o,1", "Old") };
    for s in [&finance, &board, &old] {
        f.catalog.put_site(s).await.expect("site");
    }
    for (drive, site_id) in [("b!finance", "h,f,1"), ("b!old", "h,o,1")] {
        f.catalog.put_container(&library(drive, site_id)).await.expect("library");
        let synced =
            SyncState { last_synced_at: Some(Utc::now()), root_id: Some("root".into()), ..SyncState::default() };
        f.catalog.put_sync_state(&ContainerId::new(TENANT, drive), &synced).await.expect("sync");
    }

    let reply = f.get("/v1/resources").await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    let sites = reply.json["sites"].as_array().expect("sites");
    assert_eq!(
        sites.iter().map(|s| s["name"].as_str().expect("name")).collect::<Vec<_>>(),
        ["Board", "Finance", "Old"]
    );
    let (board, finance, old) = (&sites[0], &sites[1], &sites[2]);
    assert_eq!(finance["status"], serde_json::json!({"state": "protected"}));
    assert_eq!(finance["libraries"][0]["drive_id"], "b!finance");
    assert_eq!(finance["libraries"][0]["name"], "Documents");
    assert_eq!(finance["excluded_libraries"][0]["name"], "Style Library");
    assert_eq!(board["status"]["state"], "unprotected", "nothing of it could be backed up");
    assert!(board["status"]["reason"].as_str().expect("reason").contains("accessDenied"));
    assert_eq!(old["status"]["state"], "unavailable");
    assert_eq!(old["libraries"][0]["status"]["reason"], "site deleted in SharePoint");
    assert!(old["deleted_at"].is_string());
    assert!(
        reply.json["users"].as_array().expect("users").iter().all(|u| u["user_id"] != ""),
        "libraries have no user"
    );
    // ada's drive (last synced days ago), Finance's library, Old's library, Board.
    assert_eq!(
        reply.json["summary"],
        serde_json::json!({"degraded": 1, "protected": 1, "unavailable": 1, "unprotected": 1})
    );
    assert!(reply.json.get("drives_paused_until").is_none(), "nothing waits");
    // A library browses like any drive.
    let children = f.get("/v1/drives/b!finance/children").await;
    assert_eq!(children.status, 200, "{}", children.json);

    // A throttled or blocked app: every drive and library waits, and the operator sees until when.
    let until = Utc::now() + TimeDelta::hours(1);
    f.catalog.throttle(TENANT, "drive", until).await.expect("throttle");
    let paused = f.get("/v1/resources").await;
    assert_eq!(paused.json["drives_paused_until"], serde_json::to_value(until).expect("time"));
}

#[tokio::test]
async fn children_show_the_folder_as_it_was_at_the_moment_asked() {
    let f = fixture().await;

    let now = f.get("/v1/drives/drive-a/children?parent=root").await;
    let before_delete = f.get(&format!("/v1/drives/drive-a/children?at={}", at(t(60, f.discovered)))).await;
    let docs_early = f.get(&format!("/v1/drives/drive-a/children?parent={DOCS}&at={}", at(t(3, f.discovered)))).await;

    assert_eq!(now.status, 200, "{}", now.json);
    assert_eq!(now.json["parent_id"], ROOT);
    assert_eq!(names(&now), ["Docs"], "the deleted notes.txt is gone now");
    assert_eq!(names(&before_delete), ["notes.txt", "Docs"], "parent defaults to the root");
    assert_eq!(docs_early.status, 200, "{}", docs_early.json);
    assert_eq!(names(&docs_early), ["report.docx"], "plan.xlsx did not exist yet");
    let report = &docs_early.json["items"][0];
    assert_eq!(report["id"], "file-report");
    assert_eq!(report["version"], "e1", "the edit came a day later");
    assert_eq!(report["kind"], "file");
    assert_eq!(report["deleted"], false);
    assert_eq!(report["size"], 1002);
    assert!(report["sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert!(docs_early.json["next"].is_null());
}

#[tokio::test]
async fn children_pages_keep_the_moment_of_the_first_page() {
    let f = fixture().await;

    let first = f.get(&format!("/v1/drives/drive-a/children?parent={DOCS}&limit=1")).await;
    let cursor = first.json["next"].as_str().expect("a next page").to_owned();
    // A version committed after the first page must not shift the listing's moment (which
    // has millisecond precision).
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    commit(&f.catalog, &file("file-zz", "late.txt", DOCS, Utc::now(), "z1")).await;
    let second = f.get(&format!("/v1/drives/drive-a/children?parent={DOCS}&limit=1&cursor={cursor}")).await;
    let third_cursor = second.json["next"].as_str().map(str::to_owned);

    assert_eq!(names(&first), ["plan.xlsx"], "item id order");
    assert_eq!(second.status, 200, "{}", second.json);
    assert_eq!(names(&second), ["report.docx"]);
    assert_eq!(second.json["at"], first.json["at"]);
    assert_eq!(third_cursor, None, "late.txt came after the listing's moment");
}

#[tokio::test]
async fn children_refuse_bad_cursors_times_and_limits() {
    let f = fixture().await;
    let first = f.get(&format!("/v1/drives/drive-a/children?parent={DOCS}&limit=1")).await;
    let cursor = first.json["next"].as_str().expect("next").to_owned();
    let other_moment = at(t(10, f.discovered));
    let future = at(Utc::now() + TimeDelta::days(1));
    let before_backup = at(f.discovered - TimeDelta::days(1));

    let cases = [
        (format!("?parent={DOCS}&cursor=not-a-cursor"), 400, "invalid-cursor"),
        (format!("?parent={DOCS}&cursor={cursor}&at={other_moment}"), 400, "invalid-cursor"),
        (format!("?parent=root&cursor={cursor}"), 400, "invalid-cursor"),
        (format!("?at={future}"), 400, "time-out-of-range"),
        (format!("?at={before_backup}"), 400, "time-out-of-range"),
        ("?at=yesterday".to_owned(), 400, "invalid-parameter"),
        ("?limit=0".to_owned(), 400, "invalid-parameter"),
        ("?limit=1001".to_owned(), 400, "invalid-parameter"),
        ("?limit=ten".to_owned(), 400, "invalid-parameter"),
        ("?parnet=root".to_owned(), 400, "invalid-parameter"),
        ("?parent=file-report".to_owned(), 400, "invalid-parameter"),
        ("?parent=no-such-folder".to_owned(), 404, "not-found"),
        (format!("?parent=file-notes&at={}", at(t(60 * 24 * 3, f.discovered))), 404, "not-found"),
    ];
    for (query, status, slug) in cases {
        let reply = f.get(&format!("/v1/drives/drive-a/children{query}")).await;
        reply.assert_problem(status, slug);
    }
    f.get("/v1/drives/drive-zz/children").await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn a_drive_whose_root_is_not_known_yet_has_no_root_listing() {
    let f = fixture().await;
    protect(&f.catalog, "drive-new", "bob", f.discovered, ROOT).await;
    let container = ContainerId::new(TENANT, "drive-new");
    f.catalog.put_sync_state(&container, &Default::default()).await.expect("sync");

    f.get("/v1/drives/drive-new/children?parent=root").await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn versions_list_an_items_history_newest_first() {
    let f = fixture().await;

    let reply = f.get("/v1/drives/drive-a/items/file-notes/versions").await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    let versions = reply.json["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["deleted"], true);
    assert_eq!(versions[1]["version"], "n1");
    assert_eq!(versions[1]["name"], "notes.txt");
    assert_eq!(versions[1]["parent_id"], ROOT);
    assert_eq!(versions[1]["verification"], "quick_xor");
    assert!(versions[1]["captured_at"].is_string() && versions[1]["sha256"].is_string());
    f.get("/v1/drives/drive-a/items/nope/versions").await.assert_problem(404, "not-found");
    f.get("/v1/drives/drive-zz/items/file-notes/versions").await.assert_problem(404, "not-found");
    f.get("/v1/drives/drive-a/items/file-notes/versions?limit=0").await.assert_problem(400, "invalid-parameter");
}

#[tokio::test]
async fn versions_say_from_when_a_state_is_current_again_and_why_bytes_are_as_served() {
    // Given report.docx back at its first state three days after discovery (a recycle-bin
    // restore keeps the old eTag and time), and a labelled file Graph serves other bytes for
    let f = fixture().await;
    let back = t(3 * 24 * 60, f.discovered);
    let current_again = "current again: Graph reported this state after the one held";
    let again = ItemVersion {
        current_from: Some(back),
        observed_at: Some(back),
        note: Some(current_again.to_owned()),
        ..file("file-report", "report.docx", DOCS, t(2, f.discovered), "e1")
    };
    commit(&f.catalog, &again).await;
    let as_served = "Graph reports 10 bytes with quickXorHash AAA=; it serves 12 bytes on every download";
    let label = ItemVersion {
        verification: Verification::AsServed,
        note: Some(as_served.to_owned()),
        ..file("file-label", "salaries.xlsx", DOCS, t(5, f.discovered), "l1")
    };
    commit(&f.catalog, &label).await;

    // When their histories are read
    let report = f.get("/v1/drives/drive-a/items/file-report/versions").await;
    let labelled = f.get("/v1/drives/drive-a/items/file-label/versions").await;

    // Then the newest row is the first state again, from when it became current, with why
    assert_eq!(report.status, 200, "{}", report.json);
    let newest = &report.json["versions"][0];
    assert_eq!(newest["version"], "e1");
    assert_eq!(newest["modified"], serde_json::to_value(t(2, f.discovered)).expect("time"));
    assert_eq!(newest["current_from"], serde_json::to_value(back).expect("time"));
    assert_eq!(newest["note"], current_again);
    let edit = &report.json["versions"][1];
    assert_eq!(edit["version"], "e2");
    assert!(edit.get("current_from").is_none() && edit.get("note").is_none(), "{edit}");
    // And the labelled file's bytes say they are as served, and why
    assert_eq!(labelled.json["versions"][0]["verification"], "as_served");
    assert_eq!(labelled.json["versions"][0]["note"], as_served);
}

#[tokio::test]
async fn download_links_name_the_recorded_s3_version_and_never_stream() {
    let f = fixture().await;

    let current = f.get("/v1/drives/drive-a/items/file-report/download").await;
    let older = f.get("/v1/drives/drive-a/items/file-report/download?version=e1").await;
    let deleted_item = f.get("/v1/drives/drive-a/items/file-notes/download").await;

    assert_eq!(current.status, 200, "{}", current.json);
    assert_eq!(current.json["version"], "e2");
    assert!(current.json["url"].as_str().is_some_and(|u| u.contains("versionId=s3v-e2")), "{}", current.json);
    assert_eq!(current.json["size"], 1002);
    assert!(current.json["sha256"].as_str().is_some_and(|s| s.len() == 64));
    let expires: chrono::DateTime<Utc> = serde_json::from_value(current.json["expires_at"].clone()).expect("time");
    assert!(expires > Utc::now() + TimeDelta::minutes(14) && expires <= Utc::now() + TimeDelta::minutes(15));
    assert!(older.json["url"].as_str().is_some_and(|u| u.contains("versionId=s3v-e1")), "{}", older.json);
    assert_eq!(deleted_item.json["version"], "n1", "a deleted file downloads as its last state");
    let signed: Vec<_> = f.presigner.signed().into_iter().map(|o| o.version_id).collect();
    assert_eq!(signed, ["s3v-e2", "s3v-e1", "s3v-n1"]);

    f.get("/v1/drives/drive-a/items/file-report/download?version=e9").await.assert_problem(404, "not-found");
    f.get(&format!("/v1/drives/drive-a/items/{DOCS}/download")).await.assert_problem(409, "no-content");
    let tombstone = notes_tombstone(&f).await;
    f.get(&format!("/v1/drives/drive-a/items/file-notes/download?version={tombstone}"))
        .await
        .assert_problem(409, "no-content");
}

/// The tombstone version of `file-notes`, ready for a query string.
async fn notes_tombstone(f: &Fixture) -> String {
    let reply = f.get("/v1/drives/drive-a/items/file-notes/versions").await;
    let version = reply.json["versions"][0]["version"].as_str().expect("version");
    percent_encoding::utf8_percent_encode(version, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn changes_show_when_a_mass_encryption_started() {
    let f = fixture().await;
    let attack = t(3 * 24 * 60, f.discovered);
    commit(&f.catalog, &file("file-report", "report.docx.locked", DOCS, attack + TimeDelta::seconds(5), "x1")).await;
    commit(&f.catalog, &file("file-plan", "plan.xlsx.locked", DOCS, attack + TimeDelta::seconds(20), "x2")).await;
    commit(&f.catalog, &file("file-readme", "README.locked", DOCS, attack + TimeDelta::seconds(70), "x3")).await;
    commit(&f.catalog, &file("file-plan", "plan.xlsx.locked", DOCS, attack + TimeDelta::seconds(80), "x4")).await;

    let from = at(attack - TimeDelta::hours(1));
    let reply = f.get(&format!("/v1/drives/drive-a/changes?from={from}")).await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    let versions: Vec<_> =
        reply.json["versions"].as_array().expect("versions").iter().map(|v| v["version"].clone()).collect();
    assert_eq!(versions, ["x1", "x2", "x3", "x4"], "oldest first");
    assert_eq!(reply.json["versions"][0]["previous_name"], "report.docx");
    assert_eq!(reply.json["truncated"], false);
    let histogram = reply.json["histogram"].as_array().expect("histogram");
    assert_eq!(histogram.len(), 2);
    assert_eq!(histogram[0]["minute"], serde_json::to_value(attack).expect("time"));
    assert_eq!((histogram[0]["versions"].clone(), histogram[0]["renamed_extensions"].clone()), (2.into(), 2.into()));
    // A new file and an edit that keeps the extension are changes, not renames.
    assert_eq!((histogram[1]["versions"].clone(), histogram[1]["renamed_extensions"].clone()), (2.into(), 0.into()));

    let truncated = f.get(&format!("/v1/drives/drive-a/changes?from={from}&limit=3")).await;
    assert_eq!(truncated.json["truncated"], true);
    assert_eq!(truncated.json["versions"].as_array().map(Vec::len), Some(3));
    let (later, earlier) = (at(attack), at(attack - TimeDelta::hours(1)));
    f.get(&format!("/v1/drives/drive-a/changes?from={later}&to={earlier}"))
        .await
        .assert_problem(400, "invalid-parameter");
    f.get("/v1/drives/drive-zz/changes").await.assert_problem(404, "not-found");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems_too() {
    let f = fixture().await;
    f.get("/v1/nothing-here").await.assert_problem(404, "not-found");
    let delete = axum::http::Request::delete("/v1/resources").body(axum::body::Body::empty()).expect("request");
    f.call(delete).await.assert_problem(405, "method-not-allowed");
    f.get("/v1/resources?verbose=1").await.assert_problem(400, "invalid-parameter");
}

#[tokio::test]
async fn a_mailbox_browses_like_a_drive_folders_messages_history_and_eml_links() {
    // Given ada's mailbox: an Inbox with two messages; one was read, then moved to Archive,
    // and the other deleted
    let f = fixture().await;
    let d = f.discovered;
    let mailbox = protect_mailbox(&f.catalog, "ada", d, "top").await;
    commit(&f.catalog, &mail_folder(&mailbox, "inbox", "Inbox", "top", t(1, d))).await;
    commit(&f.catalog, &mail_folder(&mailbox, "archive", "Archive", "top", t(1, d))).await;
    let offer = message(&mailbox, "m-offer", "Offer", "inbox", t(2, d), "ck1");
    commit(&f.catalog, &offer).await;
    let spam = message(&mailbox, "m-spam", "Win big", "inbox", t(3, d), "ck1");
    commit(&f.catalog, &spam).await;
    let mut read = message(&mailbox, "m-offer", "Offer", "inbox", t(60, d), "ck2");
    read.mail.as_mut().expect("mail").is_read = true;
    commit(&f.catalog, &read).await;
    commit(&f.catalog, &message(&mailbox, "m-offer", "Offer", "archive", t(120, d), "ck3")).await;
    commit(&f.catalog, &tombstone(&spam, t(120, d))).await;

    // When the top of the mailbox and the Inbox are listed as of before the move
    let top = f.get("/v1/mailboxes/ada/children").await;
    let before = f.get(&format!("/v1/mailboxes/ada/children?parent=inbox&at={}", at(t(90, d)))).await;

    // Then the folders are at the top and the Inbox held both messages, the offer read
    assert_eq!(top.status, 200, "{}", top.json);
    assert_eq!((top.json["mailbox_id"].as_str(), top.json.get("drive_id")), (Some("ada"), None));
    assert_eq!(names(&top), ["Archive", "Inbox"]);
    assert_eq!(top.json["items"][0]["kind"], "mail_folder");
    assert_eq!(before.status, 200, "{}", before.json);
    assert_eq!(names(&before), ["Offer", "Win big"]);
    let offer_then = &before.json["items"][0];
    assert_eq!((offer_then["kind"].as_str(), offer_then["mail"]["is_read"].as_bool()), (Some("message"), Some(true)));
    assert_eq!(offer_then["mail"]["internet_message_id"], "<m-offer@contoso.test>");

    // And now the Inbox is empty and the offer is in Archive
    assert_eq!(names(&f.get("/v1/mailboxes/ada/children?parent=inbox").await), Vec::<String>::new());
    assert_eq!(names(&f.get("/v1/mailboxes/ada/children?parent=archive").await), ["Offer"]);

    // And the offer's history shows arrival, read and move, newest first
    let history = f.get("/v1/mailboxes/ada/items/m-offer/versions").await;
    assert_eq!(history.status, 200, "{}", history.json);
    let versions: Vec<(&str, &str)> = history.json["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["version"].as_str().unwrap_or(""), v["parent_id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(versions, [("ck3", "archive"), ("ck2", "inbox"), ("ck1", "inbox")]);

    // And the deleted message's MIME is still a link away, the version named
    let link = f.get("/v1/mailboxes/ada/items/m-spam/download").await;
    assert_eq!(link.status, 200, "{}", link.json);
    assert_eq!(link.json["version"], "ck1");
    assert_eq!(link.json["sha256"], spam.content.as_ref().expect("content").sha256.as_str());

    // And the window of the move shows the move and the deletion
    let window = format!("/v1/mailboxes/ada/changes?from={}&to={}", at(t(100, d)), at(t(130, d)));
    let changes = f.get(&window).await;
    assert_eq!(changes.status, 200, "{}", changes.json);
    assert_eq!(changes.json["versions"].as_array().map(Vec::len), Some(2), "{}", changes.json);

    // And a drive id is not a mailbox, a message is not a folder, an unknown item is a 404
    f.get("/v1/mailboxes/drive-a/children").await.assert_problem(404, "not-found");
    let not_folder = f.get(&format!("/v1/mailboxes/ada/children?parent=m-offer&at={}", at(t(90, d)))).await;
    not_folder.assert_problem(400, "invalid-parameter");
    assert!(not_folder.json["detail"].as_str().unwrap_or("").contains("is a message"), "{}", not_folder.json);
    f.get("/v1/mailboxes/ada/items/nope/versions").await.assert_problem(404, "not-found");
}
