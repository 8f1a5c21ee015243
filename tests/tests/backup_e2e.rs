//! End-to-end: the real handlers against moto and the Graph simulator, through real queues.
//! Each test reads as Given / When / Then and checks what a backup's user cares about: the
//! bytes in the vault equal Microsoft 365's, nothing is lost, nothing is written twice.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use local_stack::stack::{Stack, StackOptions};
use local_stack::verify;
use serde_json::json;
use shared::pipeline::scheduler::Task;
use shared::store::{Failures, ItemHistory};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tenant(files: usize, hostile: bool) -> serde_json::Value {
    json!({"seed": 11, "users": [
        {"user_principal_name": "adele@contoso.test", "display_name": "Adele", "has_drive": true,
         "files": files, "folders": 6, "max_depth": 3, "min_size": 0, "max_size": 120_000,
         "hostile_names": hostile, "onenote_packages": 1, "large_files": []},
        {"user_principal_name": "bob@contoso.test", "display_name": "Bob", "has_drive": true,
         "files": files / 2, "folders": 3, "max_depth": 2, "min_size": 1, "max_size": 50_000,
         "hostile_names": false, "onenote_packages": 0, "large_files": [{"name": "big.bin", "size": 20_000_000}]},
        {"user_principal_name": "nodrive@contoso.test", "display_name": "No drive", "has_drive": false,
         "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0, "hostile_names": false, "onenote_packages": 0, "large_files": []}
    ]})
}

async fn start(seed: serde_json::Value, faults: Vec<serde_json::Value>) -> Result<Stack> {
    // `RUST_LOG=warn cargo test ... -- --nocapture` shows what the handlers log.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    }
    let mut opts = StackOptions::new(repo_root());
    opts.seed = Some(seed);
    opts.faults = faults;
    opts.sweep_every = None;
    // Big enough to exercise the large-item queue and multipart path with a 20 MB file.
    opts.large_item_bytes = 10_000_000;
    opts.stack_name = format!("e2e-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    Stack::start(opts).await
}

async fn drives(stack: &Stack) -> Result<Vec<String>> {
    Ok(stack.admin.users().await?.into_iter().filter_map(|u| u.drive_id).collect())
}

/// Every drive verifies byte for byte and every vault object is locked.
async fn assert_verified(stack: &Stack) -> Result<verify::Check> {
    let mut check = verify::Check::default();
    for d in drives(stack).await? {
        check.merge(verify::drive(stack, &d).await?);
    }
    let (objects, lock_problems) = verify::locks(stack).await?;
    assert!(
        check.problems.is_empty(),
        "backup does not verify: {:#?}",
        &check.problems[..check.problems.len().min(20)]
    );
    assert!(lock_problems.is_empty(), "unlocked vault objects: {lock_problems:?}");
    assert!(objects > 0 && check.files > 0);
    Ok(check)
}

async fn version_count(stack: &Stack) -> Result<usize> {
    let mut n = 0;
    for d in drives(stack).await? {
        for head in stack.catalog.list_heads(&stack.container(&d)).await? {
            n += stack.catalog.versions(&head.current.key, 1000).await?.len();
        }
    }
    Ok(n)
}

const IDLE: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn live_changes_are_backed_up_and_redelivery_changes_nothing() -> Result<()> {
    // Given a tenant with hostile names, a OneNote package and a large file, fully backed up
    let stack = start(tenant(40, true), vec![]).await?;
    stack.idle(IDLE).await?;
    let initial = assert_verified(&stack).await?;
    assert!(initial.files >= 60, "{initial:?}");

    // When files are created, edited, renamed, moved and deleted in Microsoft 365
    let drive = drives(&stack).await?[0].clone();
    let items = stack.admin.items(&drive).await?;
    let folder = items.iter().find(|i| i.kind == "folder").expect("a folder").clone();
    let files: Vec<_> = items.iter().filter(|i| i.kind == "file" && i.size < 1_000_000).cloned().collect();
    stack.admin.create_file(&drive, &folder.id, "quarterly ü report.xlsx", 33_000).await?;
    stack.admin.edit(&drive, &files[0].id, 4_321, 77).await?;
    stack.admin.rename_or_move(&drive, &files[1].id, Some("renamed.txt"), None).await?;
    stack.admin.rename_or_move(&drive, &files[2].id, None, Some(&folder.id)).await?;
    stack.admin.delete(&drive, &files[3].id).await?;
    stack.idle(IDLE).await?;

    // Then the notifications alone bring the backup up to date
    let after = assert_verified(&stack).await?;
    assert!(after.tombstones >= 1);
    let history = stack.catalog.versions(&stack.container(&drive).item(files[0].id.clone()), 10).await?;
    assert!(history.len() >= 2, "an edit keeps the old version: {history:?}");

    // When every notification is delivered twice and a sweep re-reads the same state
    let versions = version_count(&stack).await?;
    stack.admin.fault(json!({"kind": "duplicate_notifications", "count": 10})).await?;
    stack.admin.edit(&drive, &files[4].id, 999, 78).await?;
    stack.idle(IDLE).await?;
    let with_edit = version_count(&stack).await?;
    stack.run_task(Task::Sweep).await?;
    stack.run_task(Task::Reconcile).await?;
    stack.idle(IDLE).await?;

    // Then exactly one new version exists and the backup still verifies
    assert_eq!(with_edit, versions + 1);
    assert_eq!(version_count(&stack).await?, with_edit, "a sweep and a reconcile of an unchanged tenant write nothing");
    assert_verified(&stack).await?;
    assert_eq!(stack.dead_letters().await?, 0);
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn throttling_resets_and_truncation_delay_but_lose_nothing() -> Result<()> {
    // Given Graph answers a storm of 429/503 with Retry-After, resets connections and
    // truncates bodies, and refuses one item's content
    let faults = vec![
        json!({"kind": "throttle", "status": 429, "retry_after": 1, "count": 40}),
        json!({"kind": "throttle", "status": 503, "retry_after": 1, "count": 10, "path_contains": "/download/"}),
        json!({"kind": "reset", "count": 4, "path_contains": "/download/"}),
        json!({"kind": "truncate", "count": 4, "path_contains": "/download/"}),
    ];
    let stack = start(tenant(30, false), faults).await?;
    let drive = drives(&stack).await?[1].clone();
    let victim =
        stack.admin.items(&drive).await?.into_iter().find(|i| i.kind == "file" && i.size < 1_000_000).expect("file");
    stack.admin.fault(json!({"kind": "forbid_content", "item_id": victim.id})).await?;

    // When the initial backup runs through it
    stack.idle(IDLE).await?;

    // Then nothing reached a dead-letter queue, the refused item is reported with a reason,
    let failures = stack.catalog.failures(&stack.container(&drive)).await?;
    assert!(failures.iter().any(|f| f.key.item_id == victim.id && f.reason.contains("access")), "{failures:?}");
    assert_eq!(stack.dead_letters().await?, 0);
    let stats = stack.admin.stats().await?;
    assert!(stats["throttled"].as_u64().unwrap_or(0) >= 40, "the storm happened: {stats}");

    // and once access is restored, a reconcile completes the backup byte for byte
    stack.admin.clear_faults().await?;
    stack.run_task(Task::Reconcile).await?;
    stack.idle(IDLE).await?;
    assert_verified(&stack).await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn dropped_notifications_are_caught_by_the_sweep_and_forgeries_enqueue_nothing() -> Result<()> {
    let stack = start(tenant(20, false), vec![]).await?;
    stack.idle(IDLE).await?;
    let drive = drives(&stack).await?[0].clone();
    let file = stack.admin.items(&drive).await?.into_iter().find(|i| i.kind == "file").expect("file");

    // Given a notification that never arrives
    stack.admin.fault(json!({"kind": "drop_notifications", "count": 100})).await?;
    let edited = stack.admin.edit(&drive, &file.id, 5_000, 5).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.idle(IDLE).await?;
    let key = stack.container(&drive).item(file.id.clone());
    let head = stack.catalog.head(&key).await?.expect("head");
    assert_ne!(head.current.version, edited.etag, "without a notification nothing has run yet");

    // When a forged notification arrives, it is accepted (202) but enqueues nothing
    let forged = json!({"value": [{"subscriptionId": "x", "clientState": "v1.AAAAAAAAAAAAAAAA.00000000000000000000000000000000.forged",
        "tenantId": stack.info.graph.tenant_id, "resource": format!("drives/{drive}/root"), "changeType": "updated"}]});
    let response = reqwest::Client::new().post(&stack.info.webhook_url).json(&forged).send().await?;
    assert_eq!(response.status().as_u16(), 202);
    let oversized = reqwest::Client::new()
        .post(&stack.info.webhook_url)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(oversized.status().as_u16(), 413);
    let malformed = reqwest::Client::new()
        .post(&stack.info.webhook_url)
        .header("content-type", "application/json")
        .body("{\"value\": [")
        .send()
        .await?;
    assert_eq!(malformed.status().as_u16(), 400);
    stack.idle(IDLE).await?;
    assert_ne!(
        stack.catalog.head(&key).await?.expect("head").current.version,
        edited.etag,
        "forged notifications trigger nothing"
    );

    // Then the safety-net sweep catches the change
    stack.run_task(Task::Sweep).await?;
    stack.idle(IDLE).await?;
    assert_eq!(stack.catalog.head(&key).await?.expect("head").current.version, edited.etag);
    assert_verified(&stack).await?;
    stack.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs moto and the local stack: make test"]
async fn an_expired_delta_link_resyncs_and_records_deletions() -> Result<()> {
    let stack = start(tenant(20, false), vec![]).await?;
    stack.idle(IDLE).await?;
    let drive = drives(&stack).await?[0].clone();
    let files: Vec<_> = stack.admin.items(&drive).await?.into_iter().filter(|i| i.kind == "file").take(3).collect();

    // Given deletions whose notifications are lost and a delta token Graph no longer honours
    stack.admin.fault(json!({"kind": "drop_notifications", "count": 100})).await?;
    for f in &files {
        stack.admin.delete(&drive, &f.id).await?;
    }
    stack.admin.fault(json!({"kind": "expire_delta_tokens", "drive_id": drive})).await?;

    // When the sweep runs
    stack.run_task(Task::Sweep).await?;
    stack.idle(IDLE).await?;

    // Then the full resync records every deletion as a tombstone and keeps older versions
    for f in &files {
        let key = stack.container(&drive).item(f.id.clone());
        let history = stack.catalog.versions(&key, 10).await?;
        assert!(history[0].deleted, "{} should be tombstoned", f.name);
        assert!(history.iter().any(|v| !v.deleted && v.content.is_some()), "the backed-up content stays");
    }
    assert_verified(&stack).await?;
    stack.stop().await;
    Ok(())
}
