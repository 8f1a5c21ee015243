//! SharePoint sites: discovery, subsites, groups, libraries, archive / deny / delete, the
//! sites delta feed, Sites.Selected, and libraries behaving as OneDrive drives.

use std::time::Duration;

use graph_sim::{SimApp, SimConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Sim, expect, fast_config, sha256_hex, start};
use crate::subscriptions::{expiry, receiver};

const SELECTED_ID: &str = "44444444-4444-4444-4444-444444444444";

/// The default apps plus `selected`, whose only site permission is `Sites.Selected`.
fn config() -> SimConfig {
    let mut cfg = fast_config();
    cfg.apps.push(SimApp::new("selected", SELECTED_ID, "sim-selected-secret", &["Sites.Selected"]));
    cfg
}

/// Given a tenant of three users (two with a OneDrive), Finance (a team site with a Microsoft
/// 365 group, a subsite EMEA which has its own subsite Paris, a preservation hold library,
/// a 3-file Documents library), Legal, and five generated sites.
async fn tenant(sim: &Sim) {
    sim.post_admin(
        "/seed",
        json!({"seed": 9, "users": [
            {"user_principal_name": "adele.vance@contoso.test", "display_name": "Adele Vance"},
            {"user_principal_name": "alex@contoso.test"},
            {"user_principal_name": "nodrive@contoso.test", "has_drive": false}],
          "sites": [
            {"name": "Finance", "group": true, "team": true, "preservation_hold": true,
             "libraries": [{"name": "Documents", "files": 3, "folders": 1}],
             "subsites": [{"name": "EMEA", "subsites": [{"name": "Paris"}]}]},
            {"name": "Legal", "template": "communication"}],
          "site_count": 5, "libraries_min": 1, "libraries_max": 3, "security_groups": 2}),
    )
    .await;
}

async fn truth(sim: &Sim) -> Vec<Value> {
    sim.admin_ok(Method::GET, "/sites", Value::Null).await.as_array().cloned().unwrap_or_default()
}

fn by_name<'a>(sites: &'a [Value], name: &str) -> &'a Value {
    sites.iter().find(|s| s["display_name"] == name).expect("site in the truth")
}

fn library(site: &Value, name: &str) -> String {
    let libs = site["libraries"].as_array().expect("libraries");
    let lib = libs.iter().find(|l| l["name"] == name).expect("library");
    lib["drive_id"].as_str().expect("drive id").to_string()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

/// Every page of a paged listing; returns (items, pages).
async fn all_pages(sim: &Sim, start: &str) -> (Vec<Value>, usize) {
    let (mut url, mut items, mut pages) = (start.to_string(), Vec::new(), 0);
    loop {
        let page = sim.get_json(&url).await;
        pages += 1;
        items.extend(page["value"].as_array().cloned().unwrap_or_default());
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn get_all_sites_pages_root_sites_and_personal_ones_but_no_subsites() {
    let sim = start(config()).await;
    tenant(&sim).await;

    let (sites, pages) = all_pages(&sim, "/sites/getAllSites?$top=3&$select=id,webUrl,isPersonalSite,root").await;

    // Finance, Legal, 5 generated, 2 personal sites: 9 roots, in pages of 3.
    assert_eq!(sites.len(), 9, "{sites:#?}");
    assert_eq!(pages, 3);
    assert!(sites.iter().all(|s| s["root"].is_object()), "only root sites");
    assert!(sites.iter().all(|s| s.get("displayName").is_none()), "$select kept across pages");
    let urls: Vec<&str> = sites.iter().filter_map(|s| s["webUrl"].as_str()).collect();
    assert!(!urls.iter().any(|u| u.contains("EMEA")), "no subsite listed: {urls:?}");
    let personal: Vec<&str> =
        sites.iter().filter(|s| s["isPersonalSite"] == true).filter_map(|s| s["webUrl"].as_str()).collect();
    assert_eq!(
        personal,
        [
            "https://contoso-my.sharepoint.com/personal/adele_vance_contoso_test",
            "https://contoso-my.sharepoint.com/personal/alex_contoso_test"
        ]
    );
    let finance = sim.get_json("/sites/contoso.sharepoint.com:/sites/Finance").await;
    let finance_id = id(&finance);
    assert!(finance_id.starts_with("contoso.sharepoint.com,"), "{finance_id}");
    assert_eq!(finance_id.split(',').count(), 3);
    assert_eq!(finance["siteCollection"]["hostname"], "contoso.sharepoint.com");
    assert!(sites.iter().any(|s| s["id"] == finance_id.as_str()));

    // A personal site's library is the user's OneDrive.
    let adele = sites.iter().find(|s| s["isPersonalSite"] == true).expect("personal site");
    let drives = sim.get_json(&format!("/sites/{}/drives", id(adele))).await;
    let users = sim.admin_ok(Method::GET, "/users", Value::Null).await;
    let adele_drive = users[0]["drive_id"].as_str().expect("drive");
    assert_eq!(drives["value"][0]["id"], adele_drive);
    assert_eq!(drives["value"][0]["driveType"], "business");
    let own = sim.get_json(&format!("/users/{}/drive", users[0]["id"].as_str().expect("id"))).await;
    assert_eq!(own["driveType"], "business");
}

#[tokio::test]
async fn subsites_are_listed_one_level_at_a_time() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let truth = truth(&sim).await;
    let (finance, emea, paris) = (by_name(&truth, "Finance"), by_name(&truth, "EMEA"), by_name(&truth, "Paris"));

    let kids = sim.get_json(&format!("/sites/{}/sites", id(finance))).await;
    let grandkids = sim.get_json(&format!("/sites/{}/sites", id(emea))).await;

    assert_eq!(kids["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(kids["value"][0]["id"], emea["id"]);
    assert!(kids["value"][0].get("root").is_none(), "a subsite is not a root web");
    assert_eq!(grandkids["value"][0]["id"], paris["id"]);
    let by_path = sim.get_json("/sites/contoso.sharepoint.com:/sites/Finance/EMEA/Paris").await;
    assert_eq!(by_path["id"], paris["id"]);
    // A subsite has libraries of its own.
    let drives = sim.get_json(&format!("/sites/{}/drives", id(paris))).await;
    assert_eq!(drives["value"][0]["name"], "Documents");
    assert_ne!(drives["value"][0]["id"].as_str(), Some(library(finance, "Documents").as_str()));
}

#[tokio::test]
async fn unified_groups_filter_and_their_team_sites() {
    let sim = start(config()).await;
    tenant(&sim).await;

    let everything = sim.get_json("/groups").await;
    let unified = sim.get_json("/groups?$filter=groupTypes/any(c:c eq 'Unified')").await;

    assert_eq!(everything["value"].as_array().map(Vec::len), Some(3), "one Unified + two security groups");
    let groups = unified["value"].as_array().expect("value");
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["groupTypes"], json!(["Unified"]));
    assert_eq!(groups[0]["resourceProvisioningOptions"], json!(["Team"]));
    let site = sim.get_json(&format!("/groups/{}/sites/root", id(&groups[0]))).await;
    assert_eq!(site["displayName"], "Finance");
    let (all, _) = all_pages(&sim, "/sites/getAllSites").await;
    assert!(all.iter().any(|s| s["id"] == site["id"]), "the team site is in getAllSites");

    let bad = sim.get("/groups?$filter=displayName eq 'Finance'").await;
    expect(bad, StatusCode::BAD_REQUEST).await;
    let restorer = sim.http.get(format!("{}/v1.0/groups", sim.base)).bearer_auth(&sim.restorer_token).send().await;
    let body = expect(restorer.expect("groups"), StatusCode::FORBIDDEN).await;
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
}

#[tokio::test]
async fn system_libraries_show_only_when_selected() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let finance = id(by_name(&truth(&sim).await, "Finance"));

    let plain = sim.get_json(&format!("/sites/{finance}/drives")).await;
    let selected = sim.get_json(&format!("/sites/{finance}/drives?$select=id,name,driveType,system")).await;

    let names = |v: &Value| -> Vec<String> {
        v["value"].as_array().into_iter().flatten().filter_map(|d| d["name"].as_str().map(str::to_string)).collect()
    };
    assert_eq!(names(&plain), ["Documents", "Preservation Hold Library"]);
    assert!(plain["value"].as_array().into_iter().flatten().all(|d| d["driveType"] == "documentLibrary"));
    assert!(
        plain["value"][0]["webUrl"].as_str().is_some_and(|u| u.ends_with("/sites/Finance/Shared%20Documents")),
        "{}",
        plain["value"][0]["webUrl"]
    );
    assert_eq!(names(&selected), ["Documents", "Site Pages", "Style Library", "Preservation Hold Library"]);
    let flagged: Vec<bool> =
        selected["value"].as_array().into_iter().flatten().map(|d| d["system"].is_object()).collect();
    assert_eq!(flagged, [false, true, true, false], "the hold library carries nothing identifying it");
}

#[tokio::test]
async fn archive_status_shows_only_with_select_and_locks_content() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let finance = by_name(&truth(&sim).await, "Finance").clone();
    let docs = library(&finance, "Documents");
    sim.admin_ok(Method::PATCH, &format!("/sites/{}", id(&finance)), json!({"archived": "fullyArchived"})).await;

    let plain = sim.get_json(&format!("/sites/{}", id(&finance))).await;
    let selected = sim.get_json(&format!("/sites/{}?$select=id,siteCollection", id(&finance))).await;
    let content = sim.get(&format!("/drives/{docs}/root/children")).await;

    assert!(plain["siteCollection"].get("archivalDetails").is_none(), "{plain}");
    assert_eq!(selected["siteCollection"]["archivalDetails"]["archiveStatus"], "fullyArchived");
    let body = expect(content, StatusCode::LOCKED).await;
    assert_eq!(body["error"]["code"], "resourceLocked");
    assert_eq!(body["error"]["message"], "The site is archived.");

    sim.admin_ok(Method::PATCH, &format!("/sites/{}", id(&finance)), json!({"archived": null})).await;
    let back = sim.get(&format!("/drives/{docs}/root/children")).await;
    assert_eq!(back.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_denied_site_answers_403() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let legal = by_name(&truth(&sim).await, "Legal").clone();
    sim.admin_ok(Method::PATCH, &format!("/sites/{}", id(&legal)), json!({"denied": true})).await;

    let site = sim.get(&format!("/sites/{}", id(&legal))).await;
    let lib = sim.get(&format!("/drives/{}/root/delta", library(&legal, "Documents"))).await;

    let body = expect(site, StatusCode::FORBIDDEN).await;
    assert_eq!(body["error"]["code"], "accessDenied");
    assert_eq!(body["error"]["message"], "The caller does not have permission to perform the action.");
    expect(lib, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn deleted_sites_vanish_and_the_delta_feed_reports_them() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let legal = by_name(&truth(&sim).await, "Legal").clone();
    let (first, link, _) = sim.delta_all("/sites/delta?$top=4").await;
    assert_eq!(first.len(), 9, "the first enumeration lists every root site");

    // When Legal is deleted and a site created...
    sim.admin_ok(Method::DELETE, &format!("/sites/{}", id(&legal)), Value::Null).await;
    let created = sim.post_admin("/sites", json!({"name": "Board"})).await;
    let (changes, link, _) = sim.delta_all(&link).await;

    // ...the feed reports both, the site and its library answer 404, getAllSites omits it.
    assert_eq!(changes.len(), 2, "{changes:#?}");
    let gone = changes.iter().find(|c| c["id"] == legal["id"]).expect("deleted entry");
    assert_eq!(gone["deleted"]["state"], "deleted");
    assert!(changes.iter().any(|c| c["id"] == created["id"] && c["displayName"] == "Board"));
    let site = expect(sim.get(&format!("/sites/{}", id(&legal))).await, StatusCode::NOT_FOUND).await;
    assert_eq!(site["error"]["code"], "itemNotFound");
    assert_eq!(site["error"]["message"], "Requested site could not be found");
    let lib = sim.get(&format!("/drives/{}/root", library(&legal, "Documents"))).await;
    assert_eq!(expect(lib, StatusCode::NOT_FOUND).await["error"]["code"], "itemNotFound");
    let (all, _) = all_pages(&sim, "/sites/getAllSites").await;
    assert!(!all.iter().any(|s| s["id"] == legal["id"]));

    // A stale token answers 410 with a Location that enumerates again.
    sim.post_admin("/faults", json!({"kind": "expire_sites_delta"})).await;
    let stale = sim.get(&link).await;
    let location = stale.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = expect(stale, StatusCode::GONE).await;
    assert_eq!(body["error"]["code"], "resyncChangesApplyDifferences");
    let (again, _, _) = sim.delta_all(&location.expect("Location")).await;
    assert_eq!(again.len(), 9, "8 survivors and Board");
    let latest = sim.get_json("/sites/delta?token=latest").await;
    assert_eq!(latest["value"].as_array().map(Vec::len), Some(0));
    assert!(latest["@odata.deltaLink"].is_string());
}

#[tokio::test]
async fn sites_selected_reaches_granted_sites_only() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let truth = truth(&sim).await;
    let (finance, legal, emea) = (by_name(&truth, "Finance"), by_name(&truth, "Legal"), by_name(&truth, "EMEA"));
    sim.post_admin(&format!("/sites/{}/grants", id(finance)), json!({"client_id": SELECTED_ID, "roles": ["read"]}))
        .await;
    let token = sim.token_of("selected").await;
    let get = |path: String| {
        let req = sim.http.get(format!("{}/v1.0{path}", sim.base)).bearer_auth(&token);
        async move { req.send().await.expect("request").status() }
    };

    assert_eq!(get(format!("/sites/{}", id(finance))).await, StatusCode::OK);
    assert_eq!(get(format!("/sites/{}/sites", id(finance))).await, StatusCode::OK);
    assert_eq!(get(format!("/sites/{}/drives", id(emea))).await, StatusCode::OK, "the grant covers the collection");
    assert_eq!(get(format!("/drives/{}/root/children", library(finance, "Documents"))).await, StatusCode::OK);
    assert_eq!(get(format!("/sites/{}", id(legal))).await, StatusCode::FORBIDDEN);
    assert_eq!(get(format!("/drives/{}/root/children", library(legal, "Documents"))).await, StatusCode::FORBIDDEN);
    assert_eq!(get("/sites/getAllSites".into()).await, StatusCode::FORBIDDEN);
    assert_eq!(get("/sites/delta".into()).await, StatusCode::FORBIDDEN);
    let write = sim
        .http
        .put(format!("{}/v1.0/drives/{}/root:/x.txt:/content", sim.base, library(finance, "Documents")))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .expect("write");
    assert_eq!(write.status(), StatusCode::FORBIDDEN, "a read grant does not write");

    // Subscribing to a library takes a write grant (in place of Files.ReadWrite.All).
    let (url, _rx, _) = receiver(true).await;
    let subscribe = || {
        sim.http
            .post(format!("{}/v1.0/subscriptions", sim.base))
            .bearer_auth(&token)
            .json(&json!({"changeType": "updated", "notificationUrl": url, "expirationDateTime": expiry(60),
                          "resource": format!("/drives/{}/root", library(finance, "Documents"))}))
            .send()
    };
    assert_eq!(subscribe().await.expect("subscribe").status(), StatusCode::FORBIDDEN);
    sim.post_admin(&format!("/sites/{}/grants", id(finance)), json!({"client_id": SELECTED_ID, "roles": ["write"]}))
        .await;
    assert_eq!(subscribe().await.expect("subscribe").status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_library_is_a_drive_like_a_onedrive() {
    let sim = start(SimConfig { notification_delay: Duration::from_millis(300), ..config() }).await;
    tenant(&sim).await;
    let docs = library(by_name(&truth(&sim).await, "Finance"), "Documents");
    let (url, mut rx, _) = receiver(true).await;
    let created = sim
        .http
        .post(format!("{}/v1.0/subscriptions", sim.base))
        .bearer_auth(&sim.subscriber_token)
        .json(&json!({"changeType": "updated", "notificationUrl": url, "resource": format!("/drives/{docs}/root"),
                      "expirationDateTime": expiry(60), "clientState": "lib"}))
        .send()
        .await
        .expect("subscribe");
    expect(created, StatusCode::CREATED).await;

    // Delta lists the seeded files, and each downloads as its ground truth.
    let (items, link, _) = sim.delta_all(&format!("/drives/{docs}/root/delta")).await;
    let truth = sim.ground_truth(&docs).await;
    let files: Vec<&Value> = truth.iter().filter(|i| i["kind"] == "file").collect();
    assert_eq!(files.len(), 3);
    for f in &files {
        assert!(items.iter().any(|i| i["id"] == f["id"]));
        let bytes = sim.download(&format!("/drives/{docs}/items/{}/content", f["id"].as_str().expect("id"))).await;
        assert_eq!(sha256_hex(&bytes), f["sha256"].as_str().expect("sha256"));
    }

    // A restore write there is reported by delta and notified.
    let put = sim.put_bytes(&format!("/drives/{docs}/root:/restored.txt:/content"), b"restored").await;
    expect(put, StatusCode::CREATED).await;
    let (changes, _, _) = sim.delta_all(&link).await;
    let restored = changes.iter().find(|c| c["name"] == "restored.txt").expect("restored.txt in delta");
    assert_eq!(restored["parentReference"]["driveType"], "documentLibrary");
    let note = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("notified").expect("body");
    assert_eq!(note["value"][0]["resource"], format!("drives/{docs}/root"));
    assert_eq!(note["value"][0]["clientState"], "lib");
    let drive = sim.get_json(&format!("/drives/{docs}")).await;
    assert_eq!(drive["driveType"], "documentLibrary");
}

#[tokio::test]
async fn libraries_added_and_deleted_by_admin() {
    let sim = start(config()).await;
    tenant(&sim).await;
    let legal = id(by_name(&truth(&sim).await, "Legal"));

    let added = sim.post_admin(&format!("/sites/{legal}/libraries"), json!({"name": "Contracts"})).await;
    let drive = added["drive_id"].as_str().expect("drive id").to_string();
    let listed = sim.get_json(&format!("/sites/{legal}/drives")).await;
    assert!(listed["value"].as_array().into_iter().flatten().any(|d| d["id"] == drive.as_str()));
    sim.admin_ok(Method::DELETE, &format!("/sites/{legal}/libraries/{drive}"), Value::Null).await;

    expect(sim.get(&format!("/drives/{drive}/root")).await, StatusCode::NOT_FOUND).await;
    let listed = sim.get_json(&format!("/sites/{legal}/drives")).await;
    assert!(!listed["value"].as_array().into_iter().flatten().any(|d| d["id"] == drive.as_str()));
}

#[tokio::test]
async fn library_paths_reach_the_400_character_limit() {
    let sim = start(config()).await;
    sim.post_admin(
        "/seed",
        json!({"seed": 5, "sites": [{"name": "Engineering", "libraries": [{"name": "Documents", "long_paths": true}]}]}),
    )
    .await;
    let docs = library(by_name(&truth(&sim).await, "Engineering"), "Documents");

    let items = sim.ground_truth(&docs).await;
    let deepest = items.iter().filter_map(|i| i["path"].as_str()).max_by_key(|p| p.chars().count()).expect("paths");
    let parent = deepest.rsplit_once('/').map_or("", |(p, _)| p);
    // A name that is legal on its own but takes the path past 400 characters.
    let name = format!("{}.txt", "x".repeat(400 - parent.chars().count()));
    let too_long = sim.put_bytes(&format!("/drives/{docs}/root:{parent}/{name}:/content"), b"x").await;

    let len = deepest.chars().count();
    assert!((390..=400).contains(&len), "deepest path has {len} characters");
    let body = expect(too_long, StatusCode::BAD_REQUEST).await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("400")), "{body}");
}

#[tokio::test]
async fn bulk_seed_of_200_sites_beside_1000_users_is_quick() {
    let sim = start(config()).await;
    let users: Vec<Value> =
        (0..1000).map(|i| json!({"user_principal_name": format!("u{i}@contoso.test"), "has_mailbox": false})).collect();
    let started = std::time::Instant::now();

    let seeded = sim
        .post_admin(
            "/seed",
            json!({"seed": 1, "users": users, "site_count": 200, "libraries_min": 1, "libraries_max": 5,
                   "subsite_every": 10, "group_every": 4}),
        )
        .await;

    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // 200 generated roots + 20 subsites + 1,000 personal sites.
    assert_eq!(seeded["sites"], 1220);
    let (groups, _) = all_pages(&sim, "/groups?$filter=groupTypes/any(c:c eq 'Unified')").await;
    assert_eq!(groups.len(), 50);
}
