//! End-to-end restores through the restore API, the restorer and the Graph simulator's
//! write side: the bytes and places a user gets back, and that re-running changes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use chrono::Utc;
use local_stack::admin::SimItem;
use local_stack::ransomware::{api, start_restore, wait_job};
use local_stack::stack::{Stack, StackOptions};
use serde_json::json;

const IDLE: Duration = Duration::from_secs(240);
const DONE: &[&str] = &["succeeded", "completed_with_errors"];

async fn start() -> Result<Stack> {
    let mut opts = StackOptions::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    opts.seed = Some(json!({"seed": 5, "users": [
        {"user_principal_name": "adele@contoso.test", "display_name": "Adele", "has_drive": true,
         "files": 30, "folders": 5, "max_depth": 3, "min_size": 0, "max_size": 200_000,
         "hostile_names": false, "onenote_packages": 0, "large_files": [{"name": "deck.pptx", "size": 12_000_000}]},
        {"user_principal_name": "bob@contoso.test", "display_name": "Bob", "has_drive": true,
         "files": 5, "folders": 1, "max_depth": 1, "min_size": 1, "max_size": 1_000,
         "hostile_names": false, "onenote_packages": 0, "large_files": []}
    ]}));
    opts.sweep_every = None;
    opts.stack_name = format!("restore-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let stack = Stack::start(opts).await?;
    stack.idle(IDLE).await?;
    Ok(stack)
}

async fn files(stack: &Stack, drive: &str) -> Result<HashMap<String, SimItem>> {
    Ok(stack.admin.items(drive).await?.into_iter().filter(|i| i.kind == "file").map(|i| (i.id.clone(), i)).collect())
}

/// A folder's files as the backup lists them (now, or as of `at`): name and SHA-256 by id.
async fn backed_up(
    stack: &Stack,
    drive: &str,
    parent: &str,
    at: Option<chrono::DateTime<Utc>>,
) -> Result<HashMap<String, (String, Option<String>)>> {
    let at = at.map(|t| format!("&at={}", t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))).unwrap_or_default();
    let (mut listed, mut cursor) = (HashMap::new(), None::<String>);
    loop {
        let page_at = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let path = format!("/v1/drives/{drive}/children?parent={parent}&limit=1000{at}{page_at}");
        let page = api(stack, reqwest::Method::GET, &path, None).await?;
        for child in page["items"].as_array().into_iter().flatten().filter(|c| c["kind"] == "file") {
            let name = child["name"].as_str().unwrap_or_default().to_owned();
            listed.insert(
                child["id"].as_str().unwrap_or_default().to_owned(),
                (name, child["sha256"].as_str().map(str::to_owned)),
            );
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(listed),
        }
    }
}

fn writes(stats: &serde_json::Value) -> u64 {
    ["upload", "create_upload_session", "upload_session", "patch", "create_folder"]
        .iter()
        .map(|k| stats["by_route"][k].as_u64().unwrap_or(0))
        .sum()
}

fn restore(drive: &str, as_of: chrono::DateTime<Utc>, target: serde_json::Value, conflict: &str) -> serde_json::Value {
    json!({"drive_id": drive, "scope": {"kind": "container"}, "as_of": as_of.to_rfc3339(), "target": target,
           "conflict": conflict, "quarantine_new_items": true, "dry_run": false})
}

/// Runs `body` as a dry run; the planned job and its report (the conflicts).
async fn dry_run(stack: &Stack, mut body: serde_json::Value) -> Result<(serde_json::Value, Vec<serde_json::Value>)> {
    body["dry_run"] = json!(true);
    let id = start_restore(stack, body).await?;
    let job = wait_job(stack, &id, &["planned"], Duration::from_secs(120)).await?;
    let report = api(stack, reqwest::Method::GET, &format!("/v1/restores/{id}/items?limit=1000"), None).await?;
    Ok((job, report["items"].as_array().cloned().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn in_place_rollback_keeps_item_ids_and_a_rerun_changes_nothing() -> Result<()> {
    // Given a backed-up drive, then a ransomware encryption and a file it dropped
    let stack = start().await?;
    let drive = stack.admin.users().await?[0].drive_id.clone().expect("drive");
    let before = files(&stack, &drive).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.admin.ransomware(&drive, ".crypt", 9).await?;
    let folder = stack.admin.items(&drive).await?.into_iter().find(|i| i.kind == "folder").expect("folder");
    let note = stack.admin.create_file(&drive, &folder.id, "HOW TO DECRYPT.txt", 500).await?;
    stack.idle(IDLE).await?;
    let attacked = files(&stack, &drive).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let attacked_at = Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // When a dry run plans the restore, the ransom note is the one conflict, to be quarantined
    let (plan, conflicts) = dry_run(&stack, restore(&drive, as_of, json!({"kind": "in_place"}), "rename")).await?;
    assert_eq!(plan["conflicts"], 1, "{plan}");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!((&conflicts[0]["item_id"], &conflicts[0]["outcome"]), (&json!(note.id), &json!("conflict")));
    assert!(conflicts[0]["detail"].as_str().unwrap_or_default().contains("quarantine"), "{conflicts:?}");

    // When the drive is restored in place as of before the attack, and the upload session of
    // the large file expires midway (it must be restarted)
    stack.admin.fault(json!({"kind": "expire_upload_sessions_midway", "count": 1})).await?;
    let id = start_restore(&stack, restore(&drive, as_of, json!({"kind": "in_place"}), "rename")).await?;
    let job = wait_job(&stack, &id, DONE, Duration::from_secs(300)).await?;

    // Then every file has its old bytes, name and place under the same item id
    assert_eq!(job["status"], "succeeded", "{job}");
    let after = files(&stack, &drive).await?;
    for (id, old) in &before {
        let now = after.get(id).unwrap_or_else(|| panic!("{} lost its item id", old.path));
        assert_eq!((&now.sha256, &now.name, &now.path), (&old.sha256, &old.name, &old.path));
    }
    // and the ransom note, created after T, was quarantined, not deleted
    let note_now = after.get(&note.id).expect("the note still exists");
    assert!(note_now.path.contains("Restore quarantine"), "{}", note_now.path);

    // And once the backup has seen the rollback (restored files keep their old modification
    // times), the backup's current state is the rolled-back one, while a read as of a moment
    // between the attack and the rollback still shows the attack
    stack.idle(IDLE).await?;
    let parents: std::collections::BTreeSet<String> = before.values().filter_map(|f| f.parent_id.clone()).collect();
    for parent in &parents {
        let current = backed_up(&stack, &drive, parent, None).await?;
        let then = backed_up(&stack, &drive, parent, Some(attacked_at)).await?;
        for (id, old) in before.iter().filter(|(_, f)| f.parent_id.as_ref() == Some(parent)) {
            assert_eq!(current.get(id), Some(&(old.name.clone(), old.sha256.clone())), "current state of {}", old.path);
        }
        for (id, hit) in attacked.iter().filter(|(_, f)| f.parent_id.as_ref() == Some(parent)) {
            assert_eq!(then.get(id), Some(&(hit.name.clone(), hit.sha256.clone())), "{} as of the attack", hit.path);
        }
    }
    let encrypted = before.iter().filter(|(id, old)| attacked[*id].sha256 != old.sha256).count();
    assert!(encrypted > 0, "the attack encrypted nothing: the as-of check proves nothing");

    // When the same restore runs again, nothing is written to Microsoft 365
    let writes_before = writes(&stack.admin.stats().await?);
    let again = start_restore(&stack, restore(&drive, as_of, json!({"kind": "in_place"}), "rename")).await?;
    let job = wait_job(&stack, &again, DONE, Duration::from_secs(300)).await?;
    assert_eq!(job["restored"], 0, "{job}");
    assert_eq!(writes(&stack.admin.stats().await?), writes_before);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn alternate_targets_follow_the_conflict_policy_and_interrupted_restores_resume() -> Result<()> {
    let stack = start().await?;
    let users = stack.admin.users().await?;
    let (source, target) = (users[0].drive_id.clone().expect("drive"), users[1].drive_id.clone().expect("drive"));
    let target_root = stack.admin.items(&target).await?.into_iter().find(|i| i.kind == "folder").expect("folder");
    let as_of = Utc::now();

    // Given uploads that fail midway (connection resets) while restoring to another drive
    stack.admin.fault(json!({"kind": "reset", "count": 6, "path_contains": "/content"})).await?;
    let alternate = json!({"kind": "alternate", "drive_id": target, "folder_id": target_root.id});
    let id = start_restore(&stack, restore(&source, as_of, alternate.clone(), "skip")).await?;
    let first = wait_job(&stack, &id, DONE, Duration::from_secs(400)).await?;

    // Then the restore resumed and every source file is in the target folder, once
    assert_eq!(first["status"], "succeeded", "{first}");
    let source_files = files(&stack, &source).await?;
    let target_files = files(&stack, &target).await?;
    for f in source_files.values() {
        let copies = target_files.values().filter(|t| t.sha256 == f.sha256 && t.name == f.name).count();
        assert!(copies >= 1, "{} missing from the target", f.path);
    }

    // When it runs again with `skip`, nothing is written; with `rename`, identical files are left alone
    let writes_before = writes(&stack.admin.stats().await?);
    // and a dry run lists every file as a conflict, with what `rename` would do, writing nothing
    let (plan, conflicts) = dry_run(&stack, restore(&source, as_of, alternate.clone(), "rename")).await?;
    assert_eq!(plan["conflicts"], json!(conflicts.len()), "{plan}");
    let listed: std::collections::HashSet<&str> = conflicts.iter().filter_map(|c| c["item_id"].as_str()).collect();
    for f in source_files.values() {
        assert!(listed.contains(f.id.as_str()), "{} not listed as a conflict: {conflicts:?}", f.path);
    }
    assert!(conflicts.iter().all(|c| c["detail"].as_str().unwrap_or_default().contains("new name")), "{conflicts:?}");
    for policy in ["skip", "rename"] {
        let again = start_restore(&stack, restore(&source, as_of, alternate.clone(), policy)).await?;
        let job = wait_job(&stack, &again, DONE, Duration::from_secs(300)).await?;
        assert_eq!(job["restored"], 0, "{policy}: {job}");
    }
    assert_eq!(writes(&stack.admin.stats().await?), writes_before);

    // When a target file differs, `skip` keeps it, `rename` adds a copy, `replace` overwrites it
    // A restored copy (same name and bytes as a source file), not one of Bob's own files.
    let restored_copy = |t: &&SimItem| {
        t.size > 0
            && t.path.starts_with(&format!("{}/", target_root.path))
            && source_files.values().any(|f| f.name == t.name && f.sha256 == t.sha256)
    };
    let victim = target_files.values().find(restored_copy).expect("restored file").clone();
    stack.admin.edit(&target, &victim.id, 10, 4242).await?;
    let job = wait_job(
        &stack,
        &start_restore(&stack, restore(&source, as_of, alternate.clone(), "skip")).await?,
        DONE,
        Duration::from_secs(300),
    )
    .await?;
    assert!(job["skipped"].as_u64().unwrap_or(0) >= 1, "{job}");
    let job = wait_job(
        &stack,
        &start_restore(&stack, restore(&source, as_of, alternate.clone(), "replace")).await?,
        DONE,
        Duration::from_secs(300),
    )
    .await?;
    assert!(job["restored"].as_u64().unwrap_or(0) >= 1, "{job}");
    let replaced = files(&stack, &target).await?.remove(&victim.id).expect("same item");
    assert_eq!(replaced.sha256, victim.sha256, "replace writes the backed-up bytes into the existing file");
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn bad_restore_requests_get_clear_errors() -> Result<()> {
    let stack = start().await?;
    let drive = stack.admin.users().await?[0].drive_id.clone().expect("drive");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| http.post(format!("{}/v1/restores", stack.info.api_url)).json(&body).send();
    let future = restore(&drive, Utc::now() + chrono::Duration::days(1), json!({"kind": "in_place"}), "rename");
    let past = restore(&drive, Utc::now() - chrono::Duration::days(365), json!({"kind": "in_place"}), "rename");
    let unknown = restore("no-such-drive", Utc::now(), json!({"kind": "in_place"}), "rename");
    for (body, status) in [(future, 400), (past, 400), (unknown, 404)] {
        let response = post(body).await?;
        assert_eq!(response.status().as_u16(), status);
        assert!(response.headers()["content-type"].to_str()?.starts_with("application/problem+json"));
    }
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn a_file_larger_than_one_invocation_is_restored_across_invocations() -> Result<()> {
    // Given a backed-up 11 MB file (three fragments), deleted since, and restorer invocations
    // with time for one fragment each
    let mut opts = StackOptions::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    opts.seed = Some(json!({"seed": 8, "users": [
        {"user_principal_name": "carl@contoso.test", "display_name": "Carl", "has_drive": true,
         "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0,
         "hostile_names": false, "onenote_packages": 0, "large_files": [{"name": "film.mp4", "size": 25_000_000}]}
    ]}));
    opts.sweep_every = None;
    opts.restore_timeout = shared::pipeline::restorer::DEADLINE_MARGIN;
    opts.stack_name = format!("restore-big-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let stack = Stack::start(opts).await?;
    stack.idle(IDLE).await?;
    let drive = stack.admin.users().await?[0].drive_id.clone().expect("drive");
    let before = files(&stack, &drive).await?;
    let (_, film) = before.iter().next().expect("the film");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.admin.delete(&drive, &film.id).await?;
    stack.idle(IDLE).await?;
    stack.admin.reset_stats().await?;

    // When the drive is restored in place as of before the deletion
    let id = start_restore(&stack, restore(&drive, as_of, json!({"kind": "in_place"}), "rename")).await?;
    let job = wait_job(&stack, &id, DONE, Duration::from_secs(300)).await?;

    // Then the film is back on its path byte for byte, through one session resumed by each
    // later invocation (three fragments, two status requests, one commit)
    assert_eq!(job["status"], "succeeded", "{job}");
    let after = files(&stack, &drive).await?;
    let back = after.values().find(|f| f.path == film.path).expect("the film restored");
    assert_eq!(back.sha256, film.sha256);
    let stats = stack.admin.stats().await?;
    assert_eq!(stats["by_route"]["create_upload_session"], 1, "{stats}");
    assert_eq!(stats["by_route"]["upload_session"], 6, "{stats}");
    stack.stop().await;
    Ok(())
}
