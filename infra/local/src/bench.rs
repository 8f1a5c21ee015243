//! `make bench`: figures, printed, not asserted. Portable counts (Graph, S3, DynamoDB
//! requests per item) beside local timings, which moto and the simulator bound.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;
use shared::store::ItemHistory;

use crate::stack::{Stack, StackOptions};
use crate::verify;

fn users(n: usize, files: usize) -> serde_json::Value {
    let users: Vec<_> = (0..n)
        .map(|i| json!({"user_principal_name": format!("user{i}@bench.test"), "display_name": format!("User {i}"), "has_drive": true,
            "has_mailbox": false, "files": files, "folders": 40, "max_depth": 4, "min_size": 1_000, "max_size": 64_000,
            "hostile_names": false, "onenote_packages": 0, "large_files": []}))
        .collect();
    json!({"seed": 7, "users": users})
}

/// Peak resident set of this process since the last reset, in MB (Linux).
pub(crate) fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub(crate) fn p(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((pct / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

pub async fn run(repo_root: std::path::PathBuf) -> Result<()> {
    // 3,000 files by default: moto's SQS receive slows with the backlog (it recomputes queue
    // attributes per message), so 10,000 files take most of an hour locally. The per-item
    // counts do not depend on the size.
    let files_per_user = std::env::var("BENCH_FILES_PER_USER").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let user_count = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let mut opts = StackOptions::new(repo_root);
    opts.seed = Some(users(user_count, files_per_user));
    opts.sweep_every = None;
    // BENCH_COUNT_AWS=0 leaves the counting proxy out (to measure the copier without it).
    opts.count_aws = std::env::var("BENCH_COUNT_AWS").map_or(true, |v| v != "0");
    opts.item_pollers = 4;
    opts.copy_concurrency = 8;
    println!("== Initial backup of {} users x {} files", user_count, files_per_user);
    let started = Instant::now();
    let stack = Stack::start(opts).await?;
    stack.idle(Duration::from_secs(3600)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let drives: Vec<String> = stack.admin.users().await?.into_iter().filter_map(|u| u.drive_id).collect();
    let mut check = verify::Check::default();
    let mut items = 0usize;
    for d in &drives {
        items += stack.admin.items(d).await?.len();
        check.merge(verify::drive(&stack, d).await?);
    }
    let counts = stack.aws_counts.clone().unwrap_or_default();
    let ops = counts.snapshot();
    let stats = stack.admin.stats().await?;
    let graph = stats["requests_total"].as_f64().unwrap_or(f64::NAN);
    let s3 = counts.service_total("s3") as f64;
    let ddb_writes: u64 = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"]
        .iter()
        .map(|k| ops.get(*k).copied().unwrap_or(0))
        .sum();
    let per = |x: f64| x / items.max(1) as f64;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| items backed up (files + folders) | {items} ({} files verified, {} problems) |",
        check.files,
        check.problems.len()
    );
    println!("| wall time | {elapsed:.1} s |");
    println!("| items/s (local, moto-bound) | {:.1} |", items as f64 / elapsed);
    println!("| MB/s (local) | {:.2} |", check.bytes as f64 / 1e6 / elapsed);
    println!("| Graph requests per item | {:.3} |", per(graph));
    println!("| S3 requests per item | {:.3} |", per(s3));
    println!("| DynamoDB writes per item | {:.3} |", per(ddb_writes as f64));
    println!("| DynamoDB requests per item (all) | {:.3} |", per(counts.service_total("dynamodb") as f64));
    println!("| SQS requests per item | {:.3} |", per(counts.service_total("sqs") as f64));
    println!("AWS operations: {}", serde_json::to_string(&ops)?);
    println!("Graph routes: {}", stats["by_route"]);

    println!("== Notification-to-locked-copy latency, 40 single edits");
    let drive = drives.first().context("no drive")?.clone();
    let targets: Vec<_> = stack.admin.items(&drive).await?.into_iter().filter(|i| i.kind == "file").take(40).collect();
    let mut edits = Vec::new();
    for (n, f) in targets.iter().enumerate() {
        let at = Utc::now();
        stack.admin.edit(&drive, &f.id, f.size + 1, 90_000 + n as u64).await?;
        edits.push((f.id.clone(), at));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stack.idle(Duration::from_secs(600)).await?;
    let mut lat = Vec::new();
    for (id, at) in &edits {
        if let Some(h) = stack.catalog.head(&stack.container(&drive).item(id.clone())).await? {
            lat.push((h.current.captured_at - *at).num_milliseconds() as f64 / 1000.0);
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!("| latency p50 | {:.2} s |", p(&lat, 50.0));
    println!("| latency p95 | {:.2} s |", p(&lat, 95.0));

    let big: u64 = std::env::var("BENCH_BIG_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(2 * 1024 * 1024 * 1024);
    println!(
        "== Copying one {} MiB file (peak RSS of this process: copier and simulator together)",
        big / (1024 * 1024)
    );
    let root_folder = stack.admin.items(&drive).await?.into_iter().find(|i| i.kind == "folder").context("no folder")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    reset_peak_rss();
    let before = peak_rss_mb();
    let t = Instant::now();
    stack.admin.create_file(&drive, &root_folder.id, "big-bench.bin", big).await?;
    stack.idle(Duration::from_secs(3600)).await?;
    println!("| {} MiB copy time | {:.1} s |", big / (1024 * 1024), t.elapsed().as_secs_f64());
    println!(
        "| peak RSS before / during | {:.0} MB / {:.0} MB |",
        before.unwrap_or(f64::NAN),
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    stack.stop().await;
    Ok(())
}
