//! `make bench` (SharePoint part): the initial backup of `BENCH_SITES_LIBRARIES` libraries of
//! `BENCH_SITES_FILES` files by the real enumerator and copier, against the simulator over HTTP
//! with its resource-unit throttling on, twice: once bound by the per-minute budget, once by
//! the daily one; then edit-to-locked-copy latency of library files. The catalog, vault and
//! queues are the in-memory fakes (moto would bind the figure, not SharePoint's budget).
//!
//! The budgets' windows are scaled so that each run takes about a minute: a "minute" of
//! `BENCH_SITES_WINDOW_MS` (4 s) keeps 1,250 units, and a "day" of N such windows keeps
//! 1,200,000 ÷ 1,440 = 2/3 of N minute budgets, production's ratio (1.8 M a day at the minute
//! rate against 1.2 M allowed). Graph's `RateLimit-Reset` and `Retry-After` are whole seconds,
//! which a scaled window does not scale: the printed table says what that costs.

pub(crate) mod lab;
pub(crate) mod queues;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde_json::{Value, json};
use shared::model::ContainerId;
use shared::store::{Coordination, ItemHistory};

use crate::bench::p;
use crate::bench_discovery::env;
use lab::Lab;

/// Copier instances and concurrent copies in each, enumerator instances (the template runs
/// up to 20 × 4 copies and 10 enumerators; fewer here keep the bench's two cores for the
/// simulator too, and still outrun the budget).
const COPIER_INSTANCES: usize = 4;
const COPIES_PER_INSTANCE: usize = 4;
const ENUMERATORS: usize = 2;
const PER_MINUTE: u64 = 1_250;
/// Production's daily budget in minute budgets (1,200,000 ÷ 1,250), of 1,440 minutes a day.
const DAY_IN_MINUTE_BUDGETS: u64 = 960;

struct Scenario {
    name: &'static str,
    window_ms: u64,
    /// Minute windows in a day window.
    day_windows: u64,
    per_day: u64,
}

pub async fn run() -> Result<()> {
    let libraries = env("BENCH_SITES_LIBRARIES", 20);
    let files = env("BENCH_SITES_FILES", 500);
    let window_ms = env("BENCH_SITES_WINDOW_MS", 4_000) as u64;
    let day_windows = env("BENCH_SITES_DAY_WINDOWS", 15) as u64;
    let seed = json!({"seed": 21, "users": [], "site_count": libraries, "libraries_min": 1, "libraries_max": 1,
        "files_per_library": files, "folders_per_library": 10});
    let minute = Scenario { name: "per-minute budget binds", window_ms, day_windows: 1_440, per_day: 1_200_000 };
    let day = Scenario {
        name: "daily budget binds",
        window_ms,
        day_windows,
        per_day: PER_MINUTE * day_windows * DAY_IN_MINUTE_BUDGETS / 1_440,
    };
    for (n, scenario) in [minute, day].into_iter().enumerate() {
        println!(
            "== SharePoint initial backup, {}: {libraries} libraries x {files} files (in-memory catalog, vault, queues)",
            scenario.name
        );
        let mut lab = Lab::start(&seed).await?;
        let discovered = lab.discover_sites().await?;
        backup(&mut lab, &scenario, discovered.libraries).await?;
        if n == 0 {
            latency(&lab, env("BENCH_SITES_EDITS", 20)).await?;
        }
        lab.stop().await;
    }
    Ok(())
}

/// One budget window as the simulator counted it.
struct WindowUse {
    used: u64,
    closed: Instant,
}

#[derive(Default)]
struct Sampled {
    minutes: Vec<WindowUse>,
    days: Vec<WindowUse>,
    pauses: u64,
}

/// Watches the reader app's usage every 50 ms: each window's units when it closes (exact, from
/// the running total), and each move of the shared drive `THROTTLE#` row (a pause shared).
async fn sample(lab: &Lab, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Result<Sampled>> {
    let (http, url) = (lab.http.clone(), format!("{}/admin/throttling", lab.sim_url));
    let (catalog, tenant, reader) = (lab.catalog.clone(), lab.tenant_id.clone(), lab.reader_id.clone());
    tokio::spawn(async move {
        let mut out = Sampled::default();
        let (mut last, mut starts, mut row) = ([0u64; 2], [0u64; 2], None);
        while !stop.load(Ordering::Relaxed) {
            let report: Value = http.get(&url).send().await?.error_for_status()?.json().await?;
            let app = &report["apps"][&reader];
            let total = app["total_ru"].as_u64().unwrap_or(0);
            for (k, field) in ["used_minute", "used_day"].into_iter().enumerate() {
                let used = app[field].as_u64().unwrap_or(0);
                if used < last[k] {
                    let start = total - used;
                    let closed = WindowUse { used: start - starts[k], closed: Instant::now() };
                    if k == 0 { &mut out.minutes } else { &mut out.days }.push(closed);
                    starts[k] = start;
                }
                last[k] = used;
            }
            let until = catalog.throttled_until(&tenant, shared::pipeline::DRIVE_RESOURCE).await?;
            if until.is_some() && until != row {
                out.pauses += 1;
                row = until;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(out)
    })
}

async fn backup(lab: &mut Lab, s: &Scenario, libraries: usize) -> Result<()> {
    let window = Duration::from_millis(s.window_ms);
    let day_ms = s.window_ms * s.day_windows;
    lab.throttle(json!({"ru_per_minute": PER_MINUTE, "ru_per_day": s.per_day, "minute_window_ms": s.window_ms,
        "day_window_ms": day_ms}))
        .await?;
    lab.http.post(format!("{}/admin/stats/reset", lab.sim_url)).send().await?.error_for_status()?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(lab, stop.clone()).await;
    let started = Instant::now();
    lab.start_workers(COPIER_INSTANCES, COPIES_PER_INSTANCE, ENUMERATORS)?;
    lab.idle(Duration::from_secs(1_800), false).await?;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let sampled = sampler.await??;
    let throttling = lab.get("/throttling").await?;
    let app = &throttling["apps"][&lab.reader_id];
    let stats = lab.get("/stats").await?;
    let (files, folders, problems) = check(lab).await?;
    let c = &lab.counters;
    let ru = app["total_ru"].as_u64().unwrap_or(0);
    let items = (files + folders).max(1) as f64;

    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| scaling | minute window {:.1} s with {PER_MINUTE} RU (production: 60 s, 12 times the rate here at 4 s); \
         day window {} minute windows ({:.0} s) with {} RU, 2/3 of {} minute budgets as production's 1.2 M of 1,440 x 1,250 |",
        window.as_secs_f64(),
        s.day_windows,
        day_ms as f64 / 1000.0,
        s.per_day,
        s.day_windows
    );
    println!(
        "| libraries registered by discover_sites | {libraries} (each site's Documents and its Site Pages, empty) |"
    );
    println!(
        "| files / folders backed up | {files} / {folders} ({problems} files not held with the simulator's SHA-256) |"
    );
    println!("| total time | {:.1} s |", elapsed.as_secs_f64());
    println!("| items/s | {:.1} |", items / elapsed.as_secs_f64());
    println!("| resource units | {ru} ({:.2} per item; {} requests) |", ru as f64 / items, app["requests"]);
    let (label, windows, limit, len) = if s.day_windows >= 1_440 {
        ("minute", &sampled.minutes, PER_MINUTE, window)
    } else {
        ("day", &sampled.days, s.per_day, Duration::from_millis(day_ms))
    };
    // The sampler stops when the work is done: every window it saw close had work left.
    let full = &windows[..];
    let used: u64 = full.iter().map(|w| w.used).sum();
    let per_window: Vec<String> =
        windows.iter().map(|w| format!("{:.1}", 100.0 * w.used as f64 / limit as f64)).collect();
    println!(
        "| {label} budget used per window (binding) | {:.1} % on average over {} windows with work to do; every window: [{}] % |",
        100.0 * used as f64 / (limit * full.len().max(1) as u64) as f64,
        full.len(),
        per_window.join(", ")
    );
    if let Some(last) = full.last() {
        let span = last.closed.duration_since(started).as_secs_f64();
        let allowed = span / len.as_secs_f64() * limit as f64;
        println!(
            "| {label} budget used over time | {:.1} % ({used} RU in {span:.1} s, where back-to-back windows allow {allowed:.0}: \
             a window starts at the first call after the last one ended) |",
            100.0 * used as f64 / allowed
        );
    }
    println!("| 429s (goal 0) | {} |", app["throttled"]);
    println!(
        "| budget pauses shared (drive THROTTLE# row moved) | {} ; copy jobs deferred {} ({:.2} per file) |",
        sampled.pauses,
        c.deferred.load(Ordering::Relaxed),
        c.deferred.load(Ordering::Relaxed) as f64 / files.max(1) as f64
    );
    println!(
        "| handler errors (redelivered) | {} ; delta pages {} |",
        c.errors.load(Ordering::Relaxed),
        c.pages.load(Ordering::Relaxed)
    );
    println!("Graph routes: {}", stats["by_route"]);
    anyhow::ensure!(problems == 0, "{problems} files not backed up as the simulator holds them");
    Ok(())
}

/// Every library's files held with the simulator's SHA-256: (files, folders, problems).
async fn check(lab: &Lab) -> Result<(usize, usize, usize)> {
    let (mut files, mut folders, mut problems) = (0, 0, 0);
    for drive in library_drives(lab).await? {
        let container = ContainerId::new(lab.tenant_id.clone(), drive.clone());
        for item in lab.admin.items(&drive).await? {
            if item.kind != "file" {
                folders += 1;
                continue;
            }
            files += 1;
            let head = lab.catalog.head(&container.item(item.id.clone())).await?;
            let held = head.and_then(|h| h.current.content).map(|c| c.sha256);
            if item.sha256.is_none() || held != item.sha256 {
                problems += 1;
            }
        }
    }
    Ok((files, folders, problems))
}

/// The drive ids of every live non-personal site's libraries that are not hidden.
async fn library_drives(lab: &Lab) -> Result<Vec<String>> {
    let sites = lab.get("/sites").await?;
    Ok(sites
        .as_array()
        .context("sites")?
        .iter()
        .filter(|s| s["is_personal"] != true && s["deleted"] != true)
        .flat_map(|s| s["libraries"].as_array().cloned().unwrap_or_default())
        .filter(|l| l["system"] != true && l["deleted"] != true)
        .filter_map(|l| l["drive_id"].as_str().map(str::to_owned))
        .collect())
}

/// Edits `edits` files one at a time through the simulator's admin API and waits for each new
/// version to be committed, with production's budget back in place.
async fn latency(lab: &Lab, edits: usize) -> Result<()> {
    println!("== SharePoint: edit-to-locked-copy latency, {edits} library files edited one at a time");
    lab.throttle(json!({"ru_per_minute": PER_MINUTE, "ru_per_day": 1_200_000, "minute_window_ms": 60_000,
        "day_window_ms": 86_400_000}))
        .await?;
    let drives = library_drives(lab).await?;
    let mut targets = Vec::new();
    for drive in &drives {
        let files = lab.admin.items(drive).await?.into_iter().filter(|i| i.kind == "file");
        targets.extend(files.take(edits.div_ceil(drives.len().max(1))).map(|f| (drive.clone(), f)));
    }
    targets.truncate(edits);
    let (mut committed, mut seen) = (Vec::new(), Vec::new());
    for (n, (drive, file)) in targets.iter().enumerate() {
        let key = ContainerId::new(lab.tenant_id.clone(), drive.clone()).item(file.id.clone());
        let (at, t) = (Utc::now(), Instant::now());
        let edited = lab.admin.edit(drive, &file.id, file.size + 1, 70_000 + n as u64).await?;
        loop {
            lab.idle(Duration::from_secs(60), false).await.ok();
            let head = lab.catalog.head(&key).await?;
            if let Some(h) = head.filter(|h| h.current.content.as_ref().map(|c| &c.sha256) == edited.sha256.as_ref()) {
                committed.push((h.current.captured_at - at).num_milliseconds() as f64 / 1000.0);
                seen.push(t.elapsed().as_secs_f64());
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "edit {n} not backed up within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    committed.sort_by(|a, b| a.total_cmp(b));
    seen.sort_by(|a, b| a.total_cmp(b));
    println!("| figure | value |");
    println!("|---|---|");
    println!("| edits backed up | {} of {} |", committed.len(), targets.len());
    println!(
        "| edit to committed head (captured_at), p50 / p95 | {:.2} s / {:.2} s |",
        p(&committed, 50.0),
        p(&committed, 95.0)
    );
    println!(
        "| edit to head seen by polling the catalog, p50 / p95 | {:.2} s / {:.2} s |",
        p(&seen, 50.0),
        p(&seen, 95.0)
    );
    Ok(())
}
