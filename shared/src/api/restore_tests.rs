//! Restore job routes: Given the fixture drive, When a person starts, lists and follows restore
//! jobs, Then jobs are validated, recorded and queued, and their progress and reports show.

use chrono::{TimeDelta, Utc};
use serde_json::json;

use super::test_support::*;
use crate::model::{ContainerId, RestoreItemReport, RestoreOutcome, RestorePlan, RestoreStatus};
use crate::model::{RestoreStep, RestoreTask};
use crate::store::{Containers, ExportParts, QueueName, RestoreJobs};

fn queued(f: &Fixture) -> Vec<RestoreTask> {
    f.sink.messages(QueueName::Restores).iter().map(|m| serde_json::from_str(&m.body).expect("task")).collect()
}

#[tokio::test]
async fn a_dry_run_records_a_queued_job_and_queues_a_dry_plan_step() {
    let f = fixture().await;
    let as_of = at(t(60, f.discovered));

    let reply = f
        .post_json(
            "/v1/restores",
            &json!({"drive_id": DRIVE, "scope": {"kind": "container"}, "as_of": as_of, "dry_run": true}),
        )
        .await;

    assert_eq!(reply.status, 202, "{}", reply.json);
    let id = reply.json["id"].as_str().expect("id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 4));
    assert_eq!(reply.headers["location"], format!("/v1/restores/{id}"));
    assert_eq!(reply.json["status"], "queued", "planning is the restorer's job");
    assert_eq!(reply.json["target"], json!({"kind": "in_place"}), "in-place rollback is the default");
    assert_eq!(reply.json["conflict"], "rename");
    assert_eq!(reply.json["percent"], 0);
    let job = f.catalog.restore_job(&id).await.expect("read").expect("job recorded");
    assert_eq!((job.status, job.planned_items, job.restored), (RestoreStatus::Queued, 0, 0));
    assert_eq!(job.container, ContainerId::new(TENANT, DRIVE));
    assert_eq!(queued(&f), [RestoreTask::plan(id, true)]);
}

#[tokio::test]
async fn an_item_restore_to_another_folder_queues_a_real_plan() {
    let f = fixture().await;
    protect(&f.catalog, "drive-b", "bob", f.discovered, "root-b").await;
    let body = json!({
        "drive_id": DRIVE,
        "scope": {"kind": "item", "item_id": "file-report"},
        "as_of": at(t(5, f.discovered)),
        "target": {"kind": "alternate", "drive_id": "drive-b", "folder_id": "root"},
        "conflict": "skip",
        "quarantine_new_items": false
    });

    let reply = f.post_json("/v1/restores", &body).await;

    assert_eq!(reply.status, 202, "{}", reply.json);
    assert_eq!(reply.json["scope"], json!({"kind": "item", "item_id": "file-report"}));
    assert_eq!(reply.json["target"]["drive_id"], "drive-b");
    assert_eq!(reply.json["conflict"], "skip");
    assert_eq!(queued(&f)[0].step, RestoreStep::Plan { dry_run: false });
}

#[tokio::test]
async fn invalid_restore_requests_are_refused_before_anything_is_recorded() {
    let f = fixture().await;
    protect(&f.catalog, "drive-b", "bob", f.discovered, "root-b").await;
    let as_of = at(t(60, f.discovered));
    let future = at(Utc::now() + TimeDelta::hours(1));
    let before_backup = at(f.discovered - TimeDelta::seconds(1));
    let container = json!({"kind": "container"});
    let cases = [
        (json!({"drive_id": "drive-zz", "scope": container, "as_of": as_of}), 404, "not-found"),
        (json!({"drive_id": DRIVE, "scope": {"kind": "item", "item_id": "nope"}, "as_of": as_of}), 404, "not-found"),
        // plan.xlsx was created at minute 4.
        (
            json!({"drive_id": DRIVE, "scope": {"kind": "item", "item_id": "file-plan"}, "as_of": at(t(3, f.discovered))}),
            404,
            "not-found",
        ),
        (
            json!({"drive_id": DRIVE, "scope": container, "as_of": as_of,
                   "target": {"kind": "alternate", "drive_id": "drive-zz", "folder_id": "root"}}),
            404,
            "not-found",
        ),
        (
            json!({"drive_id": DRIVE, "scope": container, "as_of": as_of,
                   "target": {"kind": "alternate", "drive_id": "drive-b", "folder_id": "no-folder"}}),
            404,
            "not-found",
        ),
        (json!({"drive_id": DRIVE, "scope": container, "as_of": future}), 400, "time-out-of-range"),
        (json!({"drive_id": DRIVE, "scope": container, "as_of": before_backup}), 400, "time-out-of-range"),
        (json!({"drive_id": DRIVE, "scope": container, "as_of": "last tuesday"}), 400, "invalid-body"),
        (json!({"drive_id": DRIVE, "scope": container}), 400, "invalid-body"),
        (json!({"drive_id": DRIVE, "scope": container, "as_of": as_of, "conflict": "merge"}), 400, "invalid-body"),
        (json!({"drive_id": DRIVE, "scope": container, "as_of": as_of, "dryrun": true}), 400, "invalid-body"),
    ];
    for (body, status, slug) in cases {
        let reply = f.post_json("/v1/restores", &body).await;
        reply.assert_problem(status, slug);
    }
    let not_json = axum::http::Request::post("/v1/restores")
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .expect("request");
    f.call(not_json).await.assert_problem(415, "unsupported-media-type");
    let huge = json!({"drive_id": "x".repeat(100_000)});
    f.post_json("/v1/restores", &huge).await.assert_problem(413, "body-too-large");

    assert!(f.catalog.list_restore_jobs(TENANT, 10).await.expect("list").is_empty());
    assert!(queued(&f).is_empty());
}

#[tokio::test]
async fn jobs_show_progress_and_per_item_reports() {
    let f = fixture().await;
    let body = json!({"drive_id": DRIVE, "scope": {"kind": "container"}, "as_of": at(t(60, f.discovered))});
    let first = f.post_json("/v1/restores", &body).await.json["id"].as_str().expect("id").to_owned();
    let second = f.post_json("/v1/restores", &body).await.json["id"].as_str().expect("id").to_owned();
    f.catalog
        .set_restore_status(&first, RestoreStatus::Running, Some(RestorePlan { items: 4, bytes: 4000, conflicts: 0 }))
        .await
        .expect("status");
    for (item, outcome) in [("file-a", RestoreOutcome::Restored), ("file-b", RestoreOutcome::Unchanged)] {
        let report = RestoreItemReport {
            job_id: first.clone(),
            item_id: item.into(),
            path: format!("/Docs/{item}"),
            outcome,
            detail: None,
            target_item_id: Some(item.into()),
            at: Utc::now(),
        };
        f.catalog.record_restore_outcome(&report, 1000).await.expect("report");
    }

    let job = f.get(&format!("/v1/restores/{first}")).await;
    let list = f.get("/v1/restores").await;
    let page1 = f.get(&format!("/v1/restores/{first}/items?limit=1")).await;
    let cursor = page1.json["next"].as_str().expect("next").to_owned();
    let page2 = f.get(&format!("/v1/restores/{first}/items?limit=1&cursor={cursor}")).await;

    assert_eq!(job.status, 200, "{}", job.json);
    assert_eq!(job.json["status"], "running");
    assert_eq!((job.json["planned_items"].clone(), job.json["planned_bytes"].clone()), (4.into(), 4000.into()));
    assert_eq!((job.json["restored"].clone(), job.json["unchanged"].clone()), (1.into(), 1.into()));
    assert_eq!(job.json["bytes_restored"], 1000);
    assert_eq!(job.json["percent"], 50);
    let ids: Vec<_> = list.json["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.clone().into()) && ids.contains(&second.clone().into()));
    assert_eq!(page1.json["items"][0]["item_id"], "file-a");
    assert_eq!(page1.json["items"][0]["outcome"], "restored");
    assert_eq!(page2.json["items"][0]["item_id"], "file-b");
    assert!(page2.json["next"].is_null());

    f.get("/v1/restores/no-such-job").await.assert_problem(404, "not-found");
    f.get("/v1/restores/no-such-job/items").await.assert_problem(404, "not-found");
    f.get(&format!("/v1/restores/{second}/items?cursor={cursor}")).await.assert_problem(400, "invalid-cursor");
    f.get("/v1/restores?limit=0").await.assert_problem(400, "invalid-parameter");
}

#[tokio::test]
async fn another_tenants_job_is_not_found() {
    let f = fixture().await;
    let body = json!({"drive_id": DRIVE, "scope": {"kind": "container"}, "as_of": at(t(60, f.discovered))});
    let id = f.post_json("/v1/restores", &body).await.json["id"].as_str().expect("id").to_owned();
    let mut foreign = f.catalog.restore_job(&id).await.expect("read").expect("job");
    foreign.id = "foreign-job".into();
    foreign.container = ContainerId::new("tenant-2", DRIVE);
    f.catalog.create_restore_job(&foreign).await.expect("create");

    f.get("/v1/restores/foreign-job").await.assert_problem(404, "not-found");
    let list = f.get("/v1/restores").await;
    assert_eq!(list.json["jobs"].as_array().map(Vec::len), Some(1));
}

#[test]
fn the_restore_api_config_needs_its_five_settings() {
    use crate::config::{ConfigError, RestoreApiConfig};
    let all: std::collections::BTreeMap<String, String> = [
        ("TENANT_ID", "tid"),
        ("CATALOG_TABLE", "catalog"),
        ("VAULT_BUCKET", "vault"),
        ("EXPORTS_BUCKET", "exports"),
        ("RESTORES_QUEUE_URL", "https://sqs.test/restores"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = RestoreApiConfig::load(&all).expect("valid");
    assert_eq!(config.queues.get(&QueueName::Restores).map(String::as_str), Some("https://sqs.test/restores"));
    assert_eq!(config.exports_bucket, "exports");
    for name in ["TENANT_ID", "CATALOG_TABLE", "VAULT_BUCKET", "EXPORTS_BUCKET", "RESTORES_QUEUE_URL"] {
        let mut missing = all.clone();
        missing.remove(name);
        assert_eq!(RestoreApiConfig::load(&missing).err(), Some(ConfigError::Missing(name)));
    }
}

#[tokio::test]
async fn a_mailbox_restore_names_the_mailbox_and_its_target_folder_must_be_a_mail_folder() {
    // Given ada's protected mailbox with an Inbox, beside her drive
    let f = fixture().await;
    let mailbox = protect_mailbox(&f.catalog, "ada", f.discovered, "root-mail").await;
    commit(&f.catalog, &mail_folder(&mailbox, "inbox-id", "Inbox", "root-mail", f.discovered)).await;
    let as_of = at(t(60, f.discovered));
    let container = json!({"kind": "container"});

    // When a whole-mailbox restore into her Inbox is asked for
    let body = json!({"mailbox_id": "ada", "scope": container, "as_of": as_of,
                      "target": {"kind": "alternate", "mailbox_id": "ada", "folder_id": "inbox-id"}});
    let reply = f.post_json("/v1/restores", &body).await;

    // Then the job is the mailbox's, and the job view says so
    assert_eq!(reply.status, 202, "{}", reply.json);
    assert_eq!((reply.json["mailbox_id"].as_str(), reply.json.get("drive_id")), (Some("ada"), None));
    let id = reply.json["id"].as_str().expect("id");
    assert_eq!(f.catalog.restore_job(id).await.expect("read").expect("job").container, mailbox);

    // And requests naming both or neither, an unknown mailbox, or a drive folder as a mail
    // target are refused
    let cases = [
        json!({"mailbox_id": "ada", "drive_id": DRIVE, "scope": container, "as_of": as_of}),
        json!({"scope": container, "as_of": as_of}),
        json!({"mailbox_id": "nobody", "scope": container, "as_of": as_of}),
        json!({"mailbox_id": "ada", "scope": container, "as_of": as_of,
               "target": {"kind": "alternate", "mailbox_id": "ada", "folder_id": "folder-docs"}}),
    ];
    for (body, status) in cases.iter().zip([400, 400, 404, 404]) {
        let reply = f.post_json("/v1/restores", body).await;
        assert_eq!(reply.status, status, "{body}: {}", reply.json);
    }
    assert_eq!(queued(&f).len(), 1);
}

#[tokio::test]
async fn an_export_is_a_mailbox_job_whose_finished_view_links_each_zip_and_drives_are_refused() {
    // Given ada's protected mailbox beside her drive
    let f = fixture().await;
    let mailbox = ContainerId::mailbox(TENANT, "ada");
    f.catalog
        .put_container(&crate::model::ContainerRecord {
            container: mailbox.clone(),
            user_id: "ada".into(),
            user_principal_name: None,
            discovered_at: f.discovered,
            subscription_id: None,
            subscription_expires: None,
            problem: None,
            site: None,
        })
        .await
        .expect("container");
    let as_of = at(t(60, f.discovered));
    let body =
        json!({"mailbox_id": "ada", "scope": {"kind": "container"}, "as_of": as_of, "target": {"kind": "export"}});

    // When an export of the mailbox is asked for
    let reply = f.post_json("/v1/restores", &body).await;

    // Then it is a queued job with the export target and a plan step, and no links yet
    assert_eq!(reply.status, 202, "{}", reply.json);
    assert_eq!(reply.json["target"], json!({"kind": "export"}));
    let id = reply.json["id"].as_str().expect("id").to_owned();
    assert_eq!(queued(&f)[0].step, RestoreStep::Plan { dry_run: false });
    assert!(f.get(&format!("/v1/restores/{id}")).await.json.get("export").is_none());

    // And once its two parts are written and it has finished, each GET signs fresh links
    for part in [1, 2] {
        let p = crate::model::ExportPart {
            part,
            of: 2,
            key: format!("exports/{id}/part-{part}.zip"),
            bytes: 1000 * u64::from(part),
            sha256: format!("{part:0>64}"),
            messages: 10,
            failed: u64::from(part - 1),
            completed_at: Utc::now(),
        };
        f.catalog.record_export_part(&id, &p).await.expect("part");
    }
    f.catalog.set_restore_status(&id, RestoreStatus::CompletedWithErrors, None).await.expect("status");
    let view = f.get(&format!("/v1/restores/{id}")).await.json;
    let export = &view["export"];
    assert_eq!((export["messages"].as_u64(), export["bytes"].as_u64()), (Some(20), Some(3000)), "{view}");
    assert_eq!(export["parts"][1]["failed"], 1);
    let url = export["parts"][0]["url"].as_str().expect("url");
    assert!(url.contains(&format!("exports/{id}/part-1.zip")), "{url}");
    let expires: chrono::DateTime<Utc> = serde_json::from_value(export["expires_at"].clone()).expect("time");
    assert!(expires > Utc::now() + TimeDelta::minutes(14) && expires <= Utc::now() + TimeDelta::minutes(15));
    let signed = f.presigner.signed();
    assert_eq!(signed.last().map(|o| o.version_id.as_str()), Some(""), "the exports bucket is not versioned");

    // And an export of a drive, or one asking to quarantine, is refused with a problem
    let drive =
        json!({"drive_id": DRIVE, "scope": {"kind": "container"}, "as_of": as_of, "target": {"kind": "export"}});
    let reply = f.post_json("/v1/restores", &drive).await;
    reply.assert_problem(400, "invalid-body");
    assert!(reply.json["detail"].as_str().is_some_and(|d| d.contains("mailboxes")), "{}", reply.json);
    let mut quarantine = body.clone();
    quarantine["quarantine_new_items"] = json!(true);
    f.post_json("/v1/restores", &quarantine).await.assert_problem(400, "invalid-body");
    assert_eq!(queued(&f).len(), 1);
}
