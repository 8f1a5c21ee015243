//! `make bench` (restore part): an in-place restore of a ransomware-encrypted drive of 1,000
//! files, its plan time, Graph requests per restored file, and browse latency of a folder as
//! of a moment. Figures are printed, not asserted.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;

use crate::ransomware::{start_restore, wait_job};
use crate::stack::{Stack, StackOptions};

fn p(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((pct / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

pub async fn run(repo_root: std::path::PathBuf) -> Result<()> {
    let files: usize = std::env::var("BENCH_RESTORE_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let mut opts = StackOptions::new(repo_root);
    // Every file in the root folder: the browse figure lists one folder of `files` children.
    opts.seed = Some(
        json!({"seed": 3, "users": [{"user_principal_name": "restore@bench.test", "display_name": "Restore",
        "has_drive": true, "has_mailbox": false, "files": files, "folders": 0, "max_depth": 0, "min_size": 1_000, "max_size": 200_000,
        "hostile_names": false, "onenote_packages": 0, "large_files": []}]}),
    );
    opts.sweep_every = None;
    opts.item_pollers = 4;
    opts.copy_concurrency = 8;
    opts.restore_pollers = 4;
    println!("== Restore benchmark: {files} files");
    let stack = Stack::start(opts).await?;
    stack.idle(Duration::from_secs(1800)).await?;
    let drive = stack.admin.users().await?.into_iter().find_map(|u| u.drive_id).context("no drive")?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Browse: the root folder as of T, page after page, and the first page repeatedly.
    let http = reqwest::Client::new();
    let mut firsts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let url = format!(
            "{}/v1/drives/{drive}/children?parent=root&at={}&limit=200",
            stack.info.api_url,
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        );
        http.get(&url).send().await?.error_for_status()?;
        firsts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    firsts.sort_by(|a, b| a.total_cmp(b));

    stack.admin.ransomware(&drive, ".enc", 13).await?;
    stack.idle(Duration::from_secs(1800)).await?;
    let body = |dry_run: bool| {
        json!({"drive_id": drive, "scope": {"kind": "container"}, "as_of": as_of.to_rfc3339(),
               "target": {"kind": "in_place"}, "dry_run": dry_run})
    };
    let t = Instant::now();
    let plan = start_restore(&stack, body(true)).await?;
    let plan = wait_job(&stack, &plan, &["planned"], Duration::from_secs(600)).await?;
    let plan_secs = t.elapsed().as_secs_f64();

    // Only the restorer talks to Graph while it runs: notifications of its writes are held back
    // so the backup of the restored versions does not mix into the per-file count.
    stack.admin.fault(json!({"kind": "drop_notifications", "count": 1_000_000_000u64})).await?;
    stack.admin.reset_stats().await?;
    let t = Instant::now();
    let id = start_restore(&stack, body(false)).await?;
    let job = wait_job(&stack, &id, &["succeeded", "completed_with_errors"], Duration::from_secs(3600)).await?;
    let secs = t.elapsed().as_secs_f64();
    let stats = stack.admin.stats().await?;
    let restored = job["restored"].as_f64().unwrap_or(0.0);
    let bytes = job["bytes_restored"].as_f64().unwrap_or(0.0);
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| folder of {files} children as of T, first page of 200: p50 / p95 | {:.0} ms / {:.0} ms |",
        p(&firsts, 50.0),
        p(&firsts, 95.0)
    );
    println!("| dry-run plan of {} items (queue to planned) | {plan_secs:.2} s |", plan["planned_items"]);
    println!("| in-place restore: files restored / failed | {} / {} |", job["restored"], job["failed"]);
    println!("| restore time | {secs:.1} s |");
    println!("| files/min | {:.0} |", restored * 60.0 / secs);
    println!("| MB/s | {:.2} |", bytes / 1e6 / secs);
    println!(
        "| Graph requests per restored file | {:.2} |",
        stats["requests_total"].as_f64().unwrap_or(f64::NAN) / restored.max(1.0)
    );
    println!("Graph routes during the restore: {}", stats["by_route"]);
    stack.stop().await;
    Ok(())
}
