//! `make demo`: the backup story on the embedded stack. A seeded tenant (drives, SharePoint
//! sites and mailboxes) is backed up in full; live edits, renames, moves and deletions arrive
//! by notification and are backed up; every current file and message is compared with
//! Microsoft 365; a ransomware attack is rolled back in place; a library folder deleted by
//! accident, an emptied mail folder and a purged mailbox are restored as of the moment before. After the initial backup the vault keeper extends
//! the current versions' locks and verifies the whole vault (a problem fails the demo).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::model::VerifyReport;
use shared::pipeline::keeper::KeeperTask;
use shared::store::ItemHistory;

use crate::admin::SimItem;
use crate::stack::{Stack, StackOptions};
use crate::verify;

pub fn demo_seed() -> serde_json::Value {
    json!({"seed": 2026, "sites": crate::sharepoint_story::demo_sites(), "users": [
        {"user_principal_name": "adele@contoso.test", "display_name": "Adele Vance", "has_drive": true,
         "files": 160, "folders": 20, "max_depth": 4, "min_size": 0, "max_size": 300_000,
         "hostile_names": true, "onenote_packages": 1, "large_files": [],
         "mail": {"messages": 150, "folders": 6, "seed": 7, "large_attachments": [6_000_000]}},
        {"user_principal_name": "bob@contoso.test", "display_name": "Bob Kelly", "has_drive": true,
         "files": 120, "folders": 12, "max_depth": 3, "min_size": 1, "max_size": 2_000_000,
         "hostile_names": false, "onenote_packages": 0,
         "large_files": [{"name": "site-walkthrough.mp4", "size": 120_000_000}]},
        {"user_principal_name": "carol@contoso.test", "display_name": "Carol Smith", "has_drive": true,
         "files": 100, "folders": 10, "max_depth": 3, "min_size": 0, "max_size": 500_000,
         "hostile_names": false, "onenote_packages": 0, "large_files": []},
        {"user_principal_name": "shared-mailbox@contoso.test", "display_name": "No OneDrive", "has_drive": false,
         "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0, "hostile_names": false, "onenote_packages": 0, "large_files": [],
         "mail": {"messages": 80, "folders": 4, "seed": 8}}
    ]})
}

/// A change made in Microsoft 365 and when.
#[derive(Clone)]
struct Change {
    drive: String,
    item: String,
    at: DateTime<Utc>,
}

fn pick<'a>(items: &'a [SimItem], kind: &str, skip: usize, n: usize) -> Vec<&'a SimItem> {
    items.iter().filter(|i| i.kind == kind && i.parent_id.is_some()).skip(skip).take(n).collect()
}

/// Applies a round of live changes to one drive; returns them with their times.
async fn live_changes(stack: &Stack, drive: &str, round: u64) -> Result<Vec<Change>> {
    let admin = &stack.admin;
    let items = admin.items(drive).await?;
    let folders = pick(&items, "folder", 0, 3);
    let files: Vec<&SimItem> = items.iter().filter(|i| i.kind == "file" && i.size < 5_000_000).collect();
    let mut changes = Vec::new();
    let note = |changes: &mut Vec<Change>, item: &str| {
        changes.push(Change { drive: drive.to_owned(), item: item.to_owned(), at: Utc::now() })
    };
    let Some(target) = folders.first() else { bail!("seeded drive has no folder") };
    for n in 0..4 {
        let at = Utc::now();
        let created =
            admin.create_file(drive, &target.id, &format!("new report {round}-{n}.docx"), 20_000 + n * 1000).await?;
        changes.push(Change { drive: drive.to_owned(), item: created.id, at });
    }
    for (n, f) in files.iter().take(4).enumerate() {
        note(&mut changes, &f.id);
        admin.edit(drive, &f.id, f.size + 100, 1000 * round + n as u64).await?;
    }
    for f in files.iter().skip(4).take(3) {
        note(&mut changes, &f.id);
        admin.rename_or_move(drive, &f.id, Some(&format!("renamed {round} {}", f.name)), None).await?;
    }
    for f in files.iter().skip(7).take(3) {
        if f.parent_id.as_deref() != Some(target.id.as_str()) {
            note(&mut changes, &f.id);
            admin.rename_or_move(drive, &f.id, None, Some(&target.id)).await?;
        }
    }
    for f in files.iter().skip(10).take(3) {
        note(&mut changes, &f.id);
        admin.delete(drive, &f.id).await?;
    }
    Ok(changes)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Change-to-committed-copy latencies in seconds, sorted.
async fn latencies(stack: &Stack, changes: &[Change]) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    for c in changes {
        let key = stack.container(&c.drive).item(c.item.clone());
        if let Some(head) = stack.catalog.head(&key).await? {
            out.push((head.current.captured_at - c.at).num_milliseconds().max(0) as f64 / 1000.0);
        }
    }
    out.sort_by(|a, b| a.total_cmp(b));
    Ok(out)
}

/// The vault keeper after the initial backup, through the control API's code: lock extension,
/// then a full verify; prints one line and answers the problems verify found.
async fn retention(stack: &Stack) -> Result<Vec<String>> {
    stack.run_keeper(KeeperTask::Extend).await?;
    let (run, seconds) = stack.run_keeper(KeeperTask::Verify { full: true, fresh: true }).await?;
    let report: VerifyReport = serde_json::from_value(run["report"].clone())?;
    let earliest = report.earliest_lock_end.map_or_else(|| "none".to_owned(), |t| t.format("%Y-%m-%d").to_string());
    println!(
        "   retention: {} objects locked ({} versions), earliest lock end {earliest}, {} problems (verify {seconds:.1} s)",
        report.objects,
        report.versions,
        report.problem_count()
    );
    let mut problems: Vec<String> =
        report.problems.iter().map(|p| format!("verify: {} {}: {}", p.item_id, p.key, p.problem)).collect();
    if report.problem_count() > problems.len() as u64 {
        problems.push(format!("verify: {} problems in all", report.problem_count()));
    }
    Ok(problems)
}

pub async fn run(repo_root: std::path::PathBuf) -> Result<()> {
    let mut opts = StackOptions::new(&repo_root);
    opts.seed = Some(demo_seed());
    opts.stack_json = Some(crate::stack::default_stack_json(&repo_root));
    println!("== Starting the local stack (moto, Graph simulator, webhook, pipeline) and seeding a tenant");
    let started = Instant::now();
    let stack = Stack::start(opts).await?;
    let users = stack.admin.users().await?;
    let drives: Vec<String> = users.iter().filter_map(|u| u.drive_id.clone()).collect();
    println!(
        "   {} users, {} with a OneDrive, each with a mailbox; initial full backup running",
        users.len(),
        drives.len()
    );
    stack.idle(Duration::from_secs(900)).await?;
    let initial = started.elapsed();

    let mut first = verify::Check::default();
    for d in &drives {
        first.merge(verify::drive(&stack, d).await?);
    }
    let sites = verify::libraries(&stack).await?;
    println!(
        "   SharePoint: {} sites, {} libraries backed up ({} files), {} hidden system libraries left out",
        sites.sites, sites.libraries, sites.items.files, sites.excluded
    );
    first.merge(sites.items.clone());
    let mut messages = 0;
    for u in &users {
        let (n, problems) = crate::mail_story::verify(&stack, &u.id).await?;
        messages += n;
        first.problems.extend(problems);
    }
    println!(
        "== Initial backup: {} files, {} folders, {:.1} MB, {} messages in {:.1} s",
        first.files,
        first.folders,
        first.bytes as f64 / 1e6,
        messages,
        initial.as_secs_f64()
    );
    first.problems.extend(retention(&stack).await?);

    println!("== Live changes: creates, edits, renames, moves, deletions (notifications drive the backup)");
    let mut changes = Vec::new();
    for (round, d) in drives.iter().enumerate() {
        changes.extend(live_changes(&stack, d, round as u64 + 1).await?);
    }
    // A SharePoint library changes like a OneDrive, and is backed up the same way.
    let library = crate::sharepoint_story::library_drive(&stack, "Communications", "Documents").await?;
    let library_changes = live_changes(&stack, &library, drives.len() as u64 + 1).await?;
    let library_changed = library_changes.len();
    changes.extend(library_changes);
    // A folder that holds none of the round's changes: its whole subtree is deleted.
    let carol = stack.admin.items(&drives[2]).await?;
    let touched: Vec<&str> = changes.iter().filter(|c| c.drive == drives[2]).map(|c| c.item.as_str()).collect();
    let folder = carol.iter().filter(|i| i.kind == "folder").find(|f| {
        let prefix = format!("{}/", f.path);
        !carol.iter().any(|i| touched.contains(&i.id.as_str()) && (i.id == f.id || i.path.starts_with(&prefix)))
    });
    if let Some(folder) = folder {
        changes.push(Change { drive: drives[2].clone(), item: folder.id.clone(), at: Utc::now() });
        stack.admin.delete(&drives[2], &folder.id).await?;
    }
    stack.idle(Duration::from_secs(300)).await?;
    let quiet_since = Utc::now();
    let lat = latencies(&stack, &changes).await?;
    let library_lat =
        latencies(&stack, &changes.iter().filter(|c| c.drive == library).cloned().collect::<Vec<_>>()).await?;

    println!("== Verifying: every current file read back from the vault by its recorded version id");
    let mut check = verify::Check::default();
    for d in &drives {
        check.merge(verify::drive(&stack, d).await?);
    }
    let library_check = verify::libraries(&stack).await?;
    check.merge(library_check.items.clone());
    println!(
        "== Ransomware: mass encryption of {}'s drive, detection, dry run, in-place restore",
        users[0].user_principal_name
    );
    let rw = crate::ransomware::run(&stack, &drives[0], quiet_since).await?;
    stack.idle(Duration::from_secs(600)).await?;
    println!("== Verifying again: the restored state is itself backed up");
    let mut after_restore = verify::Check::default();
    for d in &drives {
        after_restore.merge(verify::drive(&stack, d).await?);
    }
    check.problems.extend(after_restore.problems);
    check.problems.extend(rw.problems.iter().cloned());
    check.problems.extend(first.problems);

    println!(
        "== SharePoint: a folder of Finance's Documents library deleted by accident, browsed and restored as of before"
    );
    let finance = crate::sharepoint_story::library_drive(&stack, "Finance", "Documents").await?;
    let lost = crate::sharepoint_story::lose_and_restore_folder(&stack, &finance).await?;
    let lost_files = crate::sharepoint_story::FolderRestore::files(&lost.before);
    println!(
        "   {:?} ({lost_files} files) deleted; {} deletions backed up as tombstones",
        lost.folder, lost.tombstones
    );
    println!("   browsed as of {}: {}", lost.as_of.format("%H:%M:%S%.3f"), lost.browsed.join(", "));
    println!(
        "   restored in place in {:.1} s: {} items; every file compared with its bytes before the deletion",
        lost.seconds, lost.job["restored"]
    );
    let sp_problems = lost.problems();
    check.problems.extend(sp_problems.iter().cloned());
    stack.idle(Duration::from_secs(300)).await?;
    let sites_after = verify::libraries(&stack).await?;
    check.problems.extend(sites_after.items.problems.iter().cloned());
    let restored_equal = lost.equal_files();

    println!("== Mail: a message arrives and is backed up by notification (sweeps run every minute beside it)");
    let (mail_latency, mail_jobs) = crate::mail_story::arrives_by_notification(&stack, &users[0].id).await?;
    println!("   backed up in {mail_latency:.2} s; the mailbox's enumerations in that time, by reason: {mail_jobs:?}");
    println!("== Mail: an emptied Inbox and a purged mailbox, restored in place as of the moment before");
    let mail = crate::mail_story::chapter(&stack, &users[0].id, &users[3].id).await?;
    check.problems.extend(mail.problems.iter().cloned());
    let mut mail_verified = 0;
    for u in &users {
        let (n, problems) = crate::mail_story::verify(&stack, &u.id).await?;
        mail_verified += n;
        check.problems.extend(problems);
    }

    let (objects, lock_problems) = verify::locks(&stack).await?;
    let dead = stack.dead_letters().await?;
    let stats = stack.admin.stats().await.unwrap_or_default();

    println!();
    println!("| measure                               | value |");
    println!("|---------------------------------------|-------|");
    println!("| protected drives                      | {} |", drives.len());
    println!("| SharePoint sites / libraries protected | {} / {} |", library_check.sites, library_check.libraries);
    println!("| library files backed up, verified     | {} |", library_check.items.files);
    println!("| current files verified byte for byte  | {} |", check.files);
    println!("| folders and packages verified         | {} |", check.folders);
    println!("| bytes verified                        | {:.1} MB |", check.bytes as f64 / 1e6);
    println!("| deletions recorded as tombstones      | {} |", check.tombstones);
    println!("| vault objects, all under Object Lock  | {} |", objects - lock_problems.len());
    println!("| initial backup                        | {:.1} s |", initial.as_secs_f64());
    println!("| live changes                          | {} |", changes.len());
    println!("| change-to-locked-copy latency p50     | {:.2} s |", percentile(&lat, 50.0));
    println!("| change-to-locked-copy latency p95     | {:.2} s |", percentile(&lat, 95.0));
    println!("| Graph requests                        | {} |", stats["requests_total"]);
    println!("| Graph resource units / refused (429)  | {} / {} |", stats["resource_units"], stats["throttled"]);
    println!("| ransomware: files encrypted           | {} |", rw.encrypted);
    println!("| ransomware: attack start (catalog)    | {} |", rw.attack_started.format("%H:%M:%S%.3f"));
    println!("| restore as of (one minute before)     | {} |", rw.as_of.format("%H:%M:%S%.3f"));
    println!("| restore: items planned / restored     | {} / {} |", rw.planned_items, rw.restored);
    println!("| restore: time                         | {:.1} s |", rw.seconds);
    println!(
        "| restore: throughput                   | {:.0} files/min, {:.1} MB/s |",
        rw.restored as f64 * 60.0 / rw.seconds.max(0.001),
        rw.bytes as f64 / 1e6 / rw.seconds.max(0.001)
    );
    println!("| restore: files equal to pre-attack    | {} |", rw.verified_files);
    println!("| library folder deleted: files restored, equal | {restored_equal} of {lost_files} |");
    println!(
        "| library edit-to-locked-copy latency p50 / max | {:.2} s / {:.2} s ({} changes) |",
        percentile(&library_lat, 50.0),
        percentile(&library_lat, 100.0),
        library_changed
    );
    println!("| mail: live message backed up, by      | notification, {mail_latency:.2} s |");
    println!("| mail: messages lost (emptied, purged) | {} / {} |", mail.emptied, mail.purged);
    println!("| mail: messages / folders restored     | {} / {} |", mail.messages_restored, mail.folders_restored);
    println!(
        "| mail: restore time                    | {:.1} s ({:.0} messages/min) |",
        mail.seconds,
        mail.messages_restored as f64 * 60.0 / mail.seconds.max(0.001)
    );
    println!("| mail: re-run restore created          | {} |", mail.rerun_restored);
    println!("| mail: messages verified in the vault  | {mail_verified} |");
    println!("| messages in dead-letter queues        | {dead} |");
    println!();

    let mut problems = check.problems;
    problems.extend(lock_problems);
    if dead > 0 {
        problems.push(format!("{dead} messages in dead-letter queues"));
    }
    if library_check.libraries == 0 || lost_files == 0 {
        problems.push("no SharePoint library was backed up and restored".into());
    }
    if lat.len() < changes.len() {
        problems.push(format!("only {} of {} changes reached the catalog", lat.len(), changes.len()));
    }
    stack.stop().await;
    if !problems.is_empty() {
        for p in problems.iter().take(50) {
            eprintln!("FAILED: {p}");
        }
        bail!("{} problems: the backup does not verify", problems.len());
    }
    println!(
        "Backup verified: every current file's bytes (OneDrives and SharePoint libraries) and every message's MIME in the vault equal Microsoft 365's, \
         every object is locked; the restored library folder and mailboxes equal their earlier state."
    );
    Ok(())
}
