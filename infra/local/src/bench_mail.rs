//! `make bench` (mail part): the initial backup of one mailbox, notification-to-locked-copy
//! latency of new messages, and an in-place restore of an emptied Inbox with its fidelity.
//! Figures are printed, not asserted; portable counts (Graph, S3, DynamoDB requests per
//! message) beside local timings, which moto bounds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::json;
use shared::store::ItemHistory;

use crate::mail_story::{self, count, view};
use crate::stack::{Stack, StackOptions};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn p(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((pct / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

pub async fn run(repo_root: std::path::PathBuf) -> Result<()> {
    // 1,000 by default: about 600 land in the Inbox that the restore part empties, and moto's
    // memory grows to about 10 GB over that run (ARCHITECTURE: the local stack). 10,000 is the
    // issue's backup size; its restore part needs more memory than a 24 GiB machine has.
    let messages = env("BENCH_MAIL_MESSAGES", 1_000);
    let mut opts = StackOptions::new(repo_root);
    opts.seed = Some(json!({"seed": 9, "users": [{"user_principal_name": "mail@bench.test", "display_name": "Mail",
        "has_drive": false, "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0,
        "hostile_names": false, "onenote_packages": 0, "large_files": [],
        "mail": {"messages": messages, "folders": 12, "seed": 3, "large_attachments": [8_000_000]}}]}));
    opts.sweep_every = None;
    opts.count_aws = true;
    opts.item_pollers = 4;
    opts.copy_concurrency = 8;
    opts.restore_pollers = 4;
    println!("== Mail: initial backup of one mailbox of {messages} messages");
    let started = Instant::now();
    let stack = Stack::start(opts).await?;
    stack.idle(Duration::from_secs(7200)).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let user = stack.admin.users().await?.into_iter().next().context("no user")?.id;
    let (held, problems) = mail_story::verify(&stack, &user).await?;
    let counts = stack.aws_counts.clone().unwrap_or_default();
    let ops = counts.snapshot();
    let stats = stack.admin.stats().await?;
    let graph = stats["requests_total"].as_f64().unwrap_or(f64::NAN);
    let ddb_writes: u64 = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem"]
        .iter()
        .map(|k| ops.get(*k).copied().unwrap_or(0))
        .sum();
    let per = |x: f64| x / held.max(1) as f64;
    println!("| figure | value |");
    println!("|---|---|");
    println!("| messages backed up | {held} ({} problems) |", problems.len());
    println!("| wall time (includes stack start) | {elapsed:.1} s |");
    println!("| messages/s (local, moto-bound) | {:.1} |", held as f64 / elapsed);
    println!("| Graph requests per message | {:.3} |", per(graph));
    println!("| S3 requests per message | {:.3} |", per(counts.service_total("s3") as f64));
    println!("| DynamoDB writes per message | {:.3} |", per(ddb_writes as f64));
    println!("| DynamoDB requests per message (all) | {:.3} |", per(counts.service_total("dynamodb") as f64));
    println!("| SQS requests per message | {:.3} |", per(counts.service_total("sqs") as f64));
    println!("| throttled Graph requests | {} |", stats["throttled"]);
    println!("AWS operations: {}", serde_json::to_string(&ops)?);
    println!("Graph routes: {}", stats["by_route"]);

    println!("== Mail: notification-to-locked-copy latency, 30 new messages");
    let mailbox = mail_story::mailbox(&stack, &user);
    let mut sent = Vec::new();
    for n in 0..30 {
        let at = Utc::now();
        let id = stack.admin.deliver(&user, json!({"subject": format!("Latency {n}"), "text": "ping"})).await?;
        sent.push((id, at));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stack.idle(Duration::from_secs(600)).await?;
    let mut lat = Vec::new();
    for (id, at) in &sent {
        if let Some(h) = stack.catalog.head(&mailbox.item(id.clone())).await? {
            lat.push((h.current.captured_at - *at).num_milliseconds() as f64 / 1000.0);
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!("| new messages backed up | {} of {} |", lat.len(), sent.len());
    println!("| latency p50 | {:.2} s |", p(&lat, 50.0));
    println!("| latency p95 | {:.2} s |", p(&lat, 95.0));

    println!("== Mail: restore of an emptied Inbox, in place");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let as_of = Utc::now();
    let before = view(&stack.admin.mailbox(&user).await?);
    let truth = stack.admin.mailbox(&user).await?;
    let inbox = truth.folder("inbox").context("no inbox")?.id.clone();
    let lost_bytes: u64 = truth.messages.iter().filter(|m| m.folder_id == inbox).map(|m| m.size).sum();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let emptied = stack.admin.empty_folder(&user, &inbox).await?;
    stack.idle(Duration::from_secs(1800)).await?;
    stack.admin.reset_stats().await?;
    let t = Instant::now();
    let job = mail_story::restore_mailbox(&stack, &user, as_of).await?;
    let secs = t.elapsed().as_secs_f64();
    let stats = stack.admin.stats().await?;
    let after = view(&stack.admin.mailbox(&user).await?);
    // Fidelity: of the messages at T, the share found again with the same internet message
    // id, read state, draft flag and attachments (names, sizes, SHA-256).
    let same: usize =
        before.iter().map(|(folder, msgs)| after.get(folder).map_or(0, |a| msgs.intersection(a).count())).sum();
    let restored = job["restored"].as_u64().unwrap_or_default();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| messages lost / restored | {emptied} / {restored} ({}) |", job["status"]);
    println!("| restore time | {secs:.1} s |");
    println!("| messages/min | {:.0} |", restored as f64 * 60.0 / secs.max(0.001));
    println!("| MB/min (MIME) | {:.1} |", lost_bytes as f64 / 1e6 * 60.0 / secs.max(0.001));
    println!(
        "| Graph requests per restored message | {:.2} |",
        stats["requests_total"].as_f64().unwrap_or(f64::NAN) / restored.max(1) as f64
    );
    println!("| throttled Graph requests during the restore | {} |", stats["throttled"]);
    println!(
        "| fidelity: messages equal to T (id, read, not draft, attachment bytes) | {same} of {} |",
        count(&before)
    );
    println!("Graph routes during the restore: {}", stats["by_route"]);
    stack.stop().await;
    Ok(())
}
