//! `make bench` (restore, Graph-bound part): in-place restores by the real restorer against
//! the simulator over HTTP, on the in-memory catalog, vault and queues (moto would bind the
//! figure, not Graph), so the figures are ours and Graph's. One user is backed up by the real
//! enumerator and copier: a mailbox of `BENCH_RESTORE_MESSAGES` (1,000) small messages, a
//! third with attachments, and a drive of `BENCH_RESTORE_FILES` (400) small files, eight of
//! 2 to 9 MiB and three of `BENCH_RESTORE_LARGE_MIB` (24) MiB (several upload fragments).
//! Then, without and with Graph's latency (`BENCH_RESTORE_CREATE_MS`, 200 ms more per
//! Exchange write; `BENCH_RESTORE_UPLOAD_MS`, 300 ms per drive upload request), the messages
//! are deleted and restored, the files encrypted by ransomware and restored, each by
//! `BENCH_RESTORE_CONSUMERS` (10, the template's `MaximumConcurrency`) restorer instances;
//! last, the drive once more under SharePoint's per-app budget of 1,250 resource units per
//! real minute. Exchange's limits are the simulator's (per app and mailbox: 4 concurrent,
//! 10,000 requests per 10 minutes, 150 MB per 5 minutes); each table says what bounds it.

mod restores;

use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::model::ContainerId;
use shared::pipeline::scheduler::Task;

use crate::bench_discovery::env;
use crate::bench_sites::lab::Lab;
use restores::Restored;

/// SharePoint's per-app budget (0–1,000 licences) and ingress limit (graph-facts-sharepoint §2.4).
const RU_PER_MINUTE: f64 = 1_250.0;
const INGRESS_GB_PER_HOUR: f64 = 400.0;
/// Exchange's per app and mailbox limits (graph-facts §9).
const MAIL_REQUESTS_PER_10_MIN: f64 = 10_000.0;
const MAIL_MB_PER_5_MIN: f64 = 150.0;
const MAIL_CONCURRENCY: u64 = 4;
const TIMEOUT: Duration = Duration::from_secs(1_800);

struct Knobs {
    consumers: usize,
    create_ms: u64,
    upload_ms: u64,
}

pub async fn run() -> Result<()> {
    let messages = env("BENCH_RESTORE_MESSAGES", 1_000);
    let files = env("BENCH_RESTORE_FILES", 400);
    let large = env("BENCH_RESTORE_LARGE_MIB", 24) as u64 * 1024 * 1024;
    let consumers = env("BENCH_RESTORE_CONSUMERS", 10);
    let (create_ms, upload_ms) =
        (env("BENCH_RESTORE_CREATE_MS", 200) as u64, env("BENCH_RESTORE_UPLOAD_MS", 300) as u64);
    let mut large_files: Vec<Value> = (0..8u64)
        .map(|k| json!({"name": format!("report-{k}.pdf"), "size": (2 + k) * 1024 * 1024 + 12_345 * k}))
        .collect();
    large_files.extend((0..3u64).map(|k| json!({"name": format!("archive-{k}.zip"), "size": large + 777 * k})));
    let seed = json!({"seed": 11, "users": [{"user_principal_name": "restore@bench.test", "display_name": "Restore",
        "has_drive": true, "files": files, "folders": 20, "max_depth": 3, "min_size": 2_000, "max_size": 300_000,
        "hostile_names": false, "onenote_packages": 0, "large_files": large_files,
        "mail": {"messages": messages, "folders": 6, "seed": 4, "large_attachments": []}}]});
    println!(
        "== Restore lab: {messages} messages and {files} + 11 files backed up by the real enumerator and copier \
         (in-memory catalog, vault, queues; the simulator over HTTP)"
    );
    let mut lab = Lab::start(&seed).await?;
    lab.discover(Task::Discover).await?;
    lab.start_workers(2, 4, 2)?;
    lab.idle(TIMEOUT, false).await?;
    let user = lab.admin.users().await?.into_iter().next().context("no user")?;
    let drive = user.drive_id.clone().context("no drive")?;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let as_of = Utc::now();
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let mut attack = 100;
    for (create_ms, upload_ms) in [(0, 0), (create_ms, upload_ms)] {
        let knobs = Knobs { consumers, create_ms, upload_ms };
        mail(&lab, &user.id, as_of, &knobs).await?;
        attack += 1;
        drive_restore(&lab, &drive, as_of, &knobs, attack, false).await?;
    }
    attack += 1;
    let knobs = Knobs { consumers, create_ms, upload_ms };
    drive_restore(&lab, &drive, as_of, &knobs, attack, true).await?;
    lab.stop().await;
    Ok(())
}

/// Lets the backup see what changed: notifications, then a sweep of every container.
async fn catch_up(lab: &Lab) -> Result<()> {
    lab.idle(TIMEOUT, true).await?;
    lab.sweep().await?;
    lab.idle(TIMEOUT, true).await
}

/// Only the restorer talks to Graph from here: notifications of its writes are held back so
/// the backup of the restored versions does not mix into the counts; counters start afresh.
async fn quiet(lab: &Lab, latency: Value) -> Result<()> {
    lab.admin.fault(json!({"kind": "drop_notifications", "count": 1_000_000_000u64})).await?;
    lab.admin.fault(latency).await?;
    lab.http.post(format!("{}/admin/stats/reset", lab.sim_url)).send().await?.error_for_status()?;
    lab.http.post(format!("{}/admin/mail_limits/reset", lab.sim_url)).send().await?.error_for_status()?;
    Ok(())
}

fn per_min(n: f64, r: &Restored) -> f64 {
    n * 60.0 / r.elapsed.as_secs_f64().max(0.001)
}

async fn mail(lab: &Lab, user: &str, as_of: DateTime<Utc>, k: &Knobs) -> Result<()> {
    println!(
        "== Mail: every message deleted, restored in place ({} restorer instances, {} ms more per Exchange write)",
        k.consumers, k.create_ms
    );
    lab.admin.clear_faults().await?;
    let truth = lab.admin.mailbox(user).await?;
    let mut deleted = 0;
    for folder in &truth.folders {
        deleted += lab.admin.empty_folder(user, &folder.id).await?;
    }
    let bytes: u64 = truth.messages.iter().map(|m| m.size).sum();
    catch_up(lab).await?;
    quiet(lab, json!({"kind": "mail_write_latency", "ms": k.create_ms})).await?;
    let r = restores::run(lab, ContainerId::mailbox(lab.tenant_id.clone(), user), as_of, k.consumers, TIMEOUT).await?;
    let limits = lab.get("/mail_limits").await?;
    let stats = lab.get("/stats").await?;
    let usage = limits["usage"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["app"] == lab.restorer.client_id.as_str() && u["mailbox"] == user))
        .cloned()
        .unwrap_or_default();
    let n = |v: &Value| v.as_u64().unwrap_or(0) as f64;
    let restored = r.job.restored as f64;
    let requests = n(&usage["requests"]);
    let per_message = requests / restored.max(1.0);
    let rate = per_min(restored, &r);
    let mb = n(&usage["uploaded_bytes"]) / 1e6;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| messages deleted / restored / failed | {deleted} / {} / {} ({:?}, {:.1} MB of MIME) |",
        r.job.restored,
        r.job.failed,
        r.job.status,
        bytes as f64 / 1e6
    );
    println!("| restore time (plan to finished) | {:.1} s |", r.elapsed.as_secs_f64());
    println!("| messages/min (goal 600; Microsoft's own backup quotes 200-300) | {rate:.0} |");
    println!("| Graph requests per message (restorer app, this mailbox) | {per_message:.2} |");
    println!(
        "| requests per 10 min at this pace (Exchange: 10,000) | {:.0} ; the window alone allows {:.0} messages/min at this mix |",
        per_min(requests, &r) * 10.0,
        MAIL_REQUESTS_PER_10_MIN / 10.0 / per_message.max(0.001)
    );
    println!(
        "| MB uploaded per 5 min at this pace (Exchange: 150 MB) | {:.1} ; the window alone allows {:.0} messages/min |",
        per_min(mb, &r) * 5.0,
        MAIL_MB_PER_5_MIN / 5.0 / (mb / restored.max(1.0)).max(1e-9)
    );
    println!(
        "| most concurrent requests on the mailbox (Exchange: {MAIL_CONCURRENCY}) | {} |",
        usage["peak_in_flight"]
    );
    println!(
        "| 429s (restorer on this mailbox / all) | {} / {} ; queue messages handled {}, handlers failed {} |",
        usage["throttled"], stats["throttled"], r.handled, r.failed_handlers
    );
    let bound = if n(&usage["peak_in_flight"]) >= MAIL_CONCURRENCY as f64 && k.create_ms > 0 {
        "Exchange's 4 concurrent requests times its write latency"
    } else if k.create_ms > 0 {
        "fewer than 4 requests in flight: the restorer's slots and queue delays"
    } else {
        "the simulator and the restorer's own work (no Graph latency)"
    };
    println!("| bound by | {bound} |");
    println!("Graph routes during the restore: {}", stats["by_route"]);
    Ok(())
}

async fn drive_restore(
    lab: &Lab,
    drive: &str,
    as_of: DateTime<Utc>,
    k: &Knobs,
    attack: u64,
    budget: bool,
) -> Result<()> {
    let upload_ms = k.upload_ms;
    println!(
        "== Drive: ransomware, restored in place ({} restorer instances, {upload_ms} ms per upload request, {})",
        k.consumers,
        if budget { "SharePoint's budget of 1,250 RU per 60 s window" } else { "no resource-unit budget" }
    );
    lab.admin.clear_faults().await?;
    lab.throttle(json!({"ru_per_minute": 1_000_000_000u64, "ru_per_day": 1_000_000_000u64})).await?;
    lab.admin.ransomware(drive, ".enc", attack).await?;
    catch_up(lab).await?;
    if budget {
        lab.throttle(
            json!({"ru_per_minute": RU_PER_MINUTE as u64, "ru_per_day": 1_200_000, "minute_window_ms": 60_000,
            "day_window_ms": 86_400_000}),
        )
        .await?;
    }
    quiet(lab, json!({"kind": "upload_latency", "ms": upload_ms})).await?;
    let r = restores::run(lab, ContainerId::new(lab.tenant_id.clone(), drive.to_owned()), as_of, k.consumers, TIMEOUT)
        .await?;
    let stats = lab.get("/stats").await?;
    let throttling = lab.get("/throttling").await?;
    let app = &throttling["apps"][&lab.restorer.client_id];
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (restored, bytes, secs) = (r.job.restored as f64, r.job.bytes_restored as f64, r.elapsed.as_secs_f64());
    let ru = n(&app["total_ru"]);
    let gb_h = bytes / 1e9 * 3600.0 / secs.max(0.001);
    // What Graph's per-app limits allow this mix: the RU budget at this many units per byte,
    // or the ingress limit, whichever is lower.
    let ru_bound = bytes / ru.max(1.0) * RU_PER_MINUTE * 60.0 / 1e9;
    let allowed = ru_bound.min(INGRESS_GB_PER_HOUR);
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| items restored / unchanged / failed | {} / {} / {} ({:?}) |",
        r.job.restored, r.job.unchanged, r.job.failed, r.job.status
    );
    println!("| restore time (plan to finished) | {secs:.1} s |");
    println!("| GB/h | {gb_h:.2} ({:.1} MB) |", bytes / 1e6);
    println!("| files/s | {:.1} |", restored / secs.max(0.001));
    println!(
        "| Graph requests / resource units per restored item | {:.2} / {:.2} |",
        n(&stats["requests_total"]) / restored.max(1.0),
        ru / restored.max(1.0)
    );
    println!(
        "| RU/min (budget {RU_PER_MINUTE:.0}) | {:.0} ({:.0} % of the budget) |",
        per_min(ru, &r),
        100.0 * per_min(ru, &r) / RU_PER_MINUTE
    );
    println!(
        "| what the per-app limits allow this mix | {allowed:.1} GB/h (RU budget: {ru_bound:.1} GB/h at {:.2} MB per unit; ingress {INGRESS_GB_PER_HOUR:.0} GB/h) ; measured {:.0} % of it |",
        bytes / ru.max(1.0) / 1e6,
        100.0 * gb_h / allowed.max(1e-9)
    );
    println!(
        "| 429s (restorer) | {} ; queue messages handled {}, handlers failed {} |",
        app["throttled"], r.handled, r.failed_handlers
    );
    let over = per_min(ru, &r) / RU_PER_MINUTE;
    let bound = if budget {
        "SharePoint's resource-unit budget (429s and Retry-After pace the restorer)".to_owned()
    } else if over >= 1.0 {
        format!("in production SharePoint's resource-unit budget: this pace spends {over:.1} times it")
    } else if upload_ms > 0 {
        "Graph's upload latency times the restorer's concurrency (the budget would allow more)".to_owned()
    } else {
        "the simulator and the restorer's own work (no Graph latency)".to_owned()
    };
    println!("| bound by | {bound} |");
    println!("Graph routes during the restore: {}", stats["by_route"]);
    Ok(())
}
