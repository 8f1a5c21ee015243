//! `make bench` (restore plan part): the plan step of a whole-drive in-place restore and of a
//! dry run over a drive of 1,000,000 items in 20,000 folders, on the in-memory catalog and
//! queue (`BENCH_PLAN_ITEMS` scales it down: folders are one item in fifty).
//!
//! The drive's history is committed straight into a `MemoryCatalog` (not through the copier);
//! a tenth of the files got a second version after the restore time (what a restore rolls
//! back). The plan is the restorer's own plan step, in process; it calls Graph for nothing (in
//! place), so its Graph client points at a port nobody answers.
//!
//! Memory: this process's peak resident set (VmHWM) is reset just before each plan and read
//! after it; the resident set just before (the fake catalog, the process) is subtracted, so
//! the figure is what the plan itself added at its peak (the outline, one page of versions,
//! the chunk messages, which the in-memory queue then keeps). Figures are printed, not
//! asserted.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use shared::graph::{ClientSecret, GraphClient, GraphConfig};
use shared::model::{
    ContainerId, ContentRef, ItemKind, ItemVersion, ObjectRef, RestoreJob, RestoreScope, RestoreStatus, RestoreTarget,
    RestoreTask, SCHEMA_VERSION, SyncState, Verification,
};
use shared::pipeline::restorer::{self, RestorerDeps};
use shared::store::memory::{MemoryCatalog, MemoryExports, MemorySink, MemoryVault};
use shared::store::{ItemHistory, QueueName, RestoreJobs, SyncStates};

use crate::bench::{peak_rss_mb, reset_peak_rss};

const TENANT_ID: &str = "6b1f0c3e-bench-4c4a-9d2e-restoreplan1";
const DRIVE_ID: &str = "b!bench-restore-plan";
const ROOT_ID: &str = "01BENCHROOT0000000000000000000000";
/// Items per folder: 20,000 folders in a million items.
const ITEMS_PER_FOLDER: usize = 50;
/// Children folders per folder: a tree four or five levels deep.
const FOLDER_FANOUT: usize = 10;

fn t(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, hour, 0, 0).single().unwrap_or_default()
}

/// A Graph-like id (34 characters).
fn id(kind: char, n: usize) -> String {
    format!("01BENCH{kind}{n:026}")
}

fn version(item: String, kind: ItemKind, name: String, parent: String, at: DateTime<Utc>, sha: usize) -> ItemVersion {
    let content = (kind == ItemKind::File).then(|| ContentRef {
        object: ObjectRef { key: format!("content/{sha:016x}"), version_id: "v1".to_owned() },
        size: 40_000 + (sha % 1000) as u64,
        sha256: format!("{sha:016x}{sha:048x}"),
        quick_xor_hash: None,
    });
    ItemVersion {
        created: None,
        v: SCHEMA_VERSION,
        key: ContainerId::new(TENANT_ID, DRIVE_ID).item(item.clone()),
        version: format!("\"{{{item}}},{}\"", at.timestamp()),
        kind,
        name: Some(name),
        parent_id: Some(parent),
        ctag: None,
        modified: at,
        captured_at: at,
        deleted: false,
        content,
        verification: Verification::QuickXor,
        mail: None,
        observed_at: None,
        current_from: None,
        note: None,
    }
}

/// The drive: `folders` folders in a tree under the root, the files spread over them, every
/// item created at 10:00 and one file in ten changed at 14:00.
async fn seed(catalog: &MemoryCatalog, items: usize) -> Result<(usize, usize)> {
    let folders = (items / ITEMS_PER_FOLDER).max(1);
    let files = items - folders;
    let record = ObjectRef { key: "records/bench".to_owned(), version_id: "r1".to_owned() };
    for f in 0..folders {
        let parent = if f < FOLDER_FANOUT { ROOT_ID.to_owned() } else { id('F', f / FOLDER_FANOUT - 1) };
        let v = version(id('F', f), ItemKind::Folder, format!("Folder {f}"), parent, t(10), 0);
        catalog.commit_version(&v, &record).await?;
    }
    for n in 0..files {
        let parent = id('F', n % folders);
        let v = version(id('D', n), ItemKind::File, format!("document {n}.docx"), parent.clone(), t(10), n);
        catalog.commit_version(&v, &record).await?;
        if n % 10 == 0 {
            let later = version(id('D', n), ItemKind::File, format!("document {n}.docx"), parent, t(14), n + items);
            catalog.commit_version(&later, &record).await?;
        }
    }
    let drive = ContainerId::new(TENANT_ID, DRIVE_ID);
    catalog.put_sync_state(&drive, &SyncState { root_id: Some(ROOT_ID.to_owned()), ..SyncState::default() }).await?;
    Ok((folders, files))
}

fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// What one plan step took.
struct Planned {
    secs: f64,
    peak_mb: f64,
    pages: u64,
    messages: usize,
    job: RestoreJob,
}

async fn plan(
    deps: &RestorerDeps,
    catalog: &MemoryCatalog,
    sink: &MemorySink,
    id: &str,
    dry_run: bool,
) -> Result<Planned> {
    let job = RestoreJob::new(
        id,
        ContainerId::new(TENANT_ID, DRIVE_ID),
        RestoreScope::Container,
        t(12),
        RestoreTarget::InPlace,
        Utc::now(),
    );
    catalog.create_restore_job(&job).await?;
    let reads = catalog.read_count();
    reset_peak_rss();
    let before = rss_mb().unwrap_or(f64::NAN);
    let started = Instant::now();
    restorer::handle(
        deps,
        &RestoreTask::plan(id, dry_run),
        std::time::Instant::now() + std::time::Duration::from_secs(900),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let peak_mb = peak_rss_mb().unwrap_or(f64::NAN) - before;
    // Besides the pages: the job, the sync state, the status write's read-back.
    let pages = catalog.read_count() - reads;
    let messages = sink.take(QueueName::Restores).len();
    let job = catalog.restore_job(id).await?.unwrap_or(job);
    Ok(Planned { secs, peak_mb, pages, messages, job })
}

/// Which plan a child process measures, and the line its figures come back on.
const ONLY: &str = "BENCH_PLAN_ONLY";
const FIGURES: &str = "plan figures: ";

/// Each plan runs in a process of its own (this binary again, `BENCH_PLAN_ONLY` set): freed
/// memory the allocator keeps from one plan would otherwise hide the next one's peak.
pub async fn run() -> Result<()> {
    let items: usize = std::env::var("BENCH_PLAN_ITEMS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    if let Ok(which) = std::env::var(ONLY) {
        return measure(items, which == "dry").await;
    }
    println!("== Restore plan of a drive of {items} items (in-memory catalog and queue, a process per plan)");
    let mut figures = Vec::new();
    for which in ["dry", "run"] {
        let out = std::process::Command::new(std::env::current_exe()?)
            .arg("bench-restore-plan")
            .env(ONLY, which)
            .stderr(std::process::Stdio::inherit())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{}", text.lines().filter(|l| !l.starts_with(FIGURES)).map(|l| format!("{l}\n")).collect::<String>());
        let line = text.lines().find_map(|l| l.strip_prefix(FIGURES)).context("a plan process gave no figures")?;
        figures.push(serde_json::from_str::<serde_json::Value>(line)?);
    }
    let cell = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let row = |label: &str, key: &str| {
        println!("| {label} | {} | {} |", cell(&figures[0][key]), cell(&figures[1][key]));
    };
    println!("| figure | dry run | in-place restore |");
    println!("|---|---|---|");
    row("plan step time (s)", "secs");
    row("plan peak memory above the resident set before (MB)", "peak_mb");
    row(&format!("catalog reads (pages of {}, and a few single reads)", restorer::PLAN_PAGE), "pages");
    row(&format!("messages sent (chunks of {})", restorer::CHUNK), "messages");
    row("SendMessageBatch requests on SQS (ten a batch)", "batches");
    row("planned items", "items");
    row("planned bytes", "bytes");
    row("conflicts", "conflicts");
    row("job status after the plan", "status");
    Ok(())
}

/// Seeds the drive, runs one plan, prints its figures as one JSON line.
async fn measure(items: usize, dry_run: bool) -> Result<()> {
    let catalog = Arc::new(MemoryCatalog::new());
    let started = Instant::now();
    let (folders, files) = seed(&catalog, items).await?;
    println!(
        "seeded {folders} folders and {files} files in {:.1} s; resident set {:.0} MB",
        started.elapsed().as_secs_f64(),
        rss_mb().unwrap_or(f64::NAN)
    );
    let sink = Arc::new(MemorySink::new());
    let mut graph = GraphConfig::new(TENANT_ID, "bench", ClientSecret::new("unused".to_owned()));
    graph.base_url = url::Url::parse("http://127.0.0.1:9/v1.0")?;
    graph.login_url = url::Url::parse("http://127.0.0.1:9")?;
    let deps = RestorerDeps {
        graph: GraphClient::new(graph)?,
        vault: Arc::new(MemoryVault::new()),
        catalog: catalog.clone(),
        sink: sink.clone(),
        exports: Arc::new(MemoryExports::new()),
        clock: shared::clock::system(),
    };
    let id = if dry_run { "bench-plan-dry" } else { "bench-plan-run" };
    let p = plan(&deps, &catalog, &sink, id, dry_run).await?;
    let expected = if dry_run { RestoreStatus::Planned } else { RestoreStatus::Running };
    if p.job.status != expected {
        println!("(unexpected status {:?}: see the restorer's logs)", p.job.status);
    }
    let figures = serde_json::json!({
        "secs": (p.secs * 10.0).round() / 10.0,
        "peak_mb": p.peak_mb.round(),
        "pages": p.pages,
        "messages": p.messages,
        "batches": p.messages.div_ceil(10),
        "items": p.job.planned_items,
        "bytes": p.job.planned_bytes,
        "conflicts": p.job.conflicts,
        "status": format!("{:?}", p.job.status),
    });
    println!("{FIGURES}{figures}");
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A plan and its chunks end to end in process: the in-memory catalog (its index lagging)
    //! and queue, the restorer's real chunks against the Graph simulator.

    use std::collections::HashMap;

    use futures::StreamExt;
    use sha2::{Digest, Sha256};
    use shared::store::memory::MemoryVault;
    use shared::store::{Lock, LockMode, Vault};

    use super::*;
    use crate::admin::Admin;
    use crate::bench_discovery::{client, serve};

    const FOLDERS: usize = 300;
    const FILES: usize = 3_000;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_plan_of_thousands_of_items_restores_every_one_through_its_chunks_even_delivered_backwards() {
        // Given a drive in the simulator that lost everything, and a backup of 300 folders
        // nested five deep and 3,000 files in them, in a catalog whose index lags its writes
        // (SharePoint's resource-unit budget lifted: throttling is not what this test is about)
        let budget = graph_sim::SimConfig { ru_per_minute: 10_000_000, ru_per_day: 100_000_000, ..Default::default() };
        let sim = graph_sim::GraphSim::new(budget);
        let cfg = sim.config().clone();
        let url = serve(sim.router()).await.expect("sim");
        let admin = Admin::new(format!("{url}/admin"));
        let user = json_user();
        admin.seed(&user).await.expect("seed");
        let drive = admin.users().await.expect("users")[0].drive_id.clone().expect("a drive");
        let restorer_app = cfg.apps.iter().find(|a| a.name == "restorer").expect("restorer app");
        let graph = client(&url, &cfg.tenant_id, restorer_app).expect("client");
        let root = graph.root(&drive).await.expect("root").id;

        let container = ContainerId::new(cfg.tenant_id.clone(), drive.clone());
        let catalog = Arc::new(MemoryCatalog::with_index_lag(3));
        let vault = Arc::new(MemoryVault::new());
        let lock = Lock { mode: LockMode::Compliance, retain_until: t(23) + chrono::Duration::days(30) };
        let record = ObjectRef { key: "records/r".to_owned(), version_id: "r1".to_owned() };
        let mut expected: HashMap<String, Option<String>> = HashMap::new();
        let mut path_of: HashMap<String, String> = HashMap::new();
        for f in 0..FOLDERS {
            let parent = if f < 6 { root.clone() } else { id('F', f / 6 - 1) };
            let name = format!("Folder {f}");
            let path = format!("{}/{name}", path_of.get(&parent).cloned().unwrap_or_default());
            let mut v = version(id('F', f), ItemKind::Folder, name, parent, t(10), 0);
            v.key = container.item(id('F', f));
            catalog.commit_version(&v, &record).await.expect("commit");
            path_of.insert(id('F', f), path.clone());
            expected.insert(path, None);
        }
        for n in 0..FILES {
            let parent = id('F', (n * 7) % FOLDERS);
            let body = format!("file {n} of the plan test").into_bytes();
            let stored = vault.put_if_absent(&format!("content/{n}"), body.clone().into(), &lock).await.expect("put");
            let sha = hex::encode(Sha256::digest(&body));
            let name = format!("document {n}.txt");
            let mut v = version(id('D', n), ItemKind::File, name.clone(), parent.clone(), t(10), n);
            v.key = container.item(id('D', n));
            v.content = Some(ContentRef {
                object: stored.object,
                size: body.len() as u64,
                sha256: sha.clone(),
                quick_xor_hash: None,
            });
            catalog.commit_version(&v, &record).await.expect("commit");
            expected.insert(format!("{}/{name}", path_of[&parent]), Some(sha));
        }
        let state = SyncState { root_id: Some(root.clone()), ..SyncState::default() };
        catalog.put_sync_state(&container, &state).await.expect("sync state");
        catalog.flush_index();
        let job = RestoreJob::new("plan-e2e", container, RestoreScope::Container, t(12), RestoreTarget::InPlace, t(13));
        catalog.create_restore_job(&job).await.expect("job");
        let sink = Arc::new(MemorySink::new());
        let deps = RestorerDeps {
            graph,
            vault,
            catalog: catalog.clone(),
            sink: sink.clone(),
            exports: Arc::new(MemoryExports::new()),
            clock: shared::clock::system(),
        };

        // When the plan runs and its chunks are delivered newest first, eight at a time (the
        // worst order: files before their folders, children before their parents)
        restorer::handle(&deps, &RestoreTask::plan("plan-e2e", false), far()).await.expect("plan");
        let (mut rounds, mut deliveries) = (0, 0);
        loop {
            let mut messages = sink.take(QueueName::Restores);
            if messages.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds < 40, "the chunks never finish");
            messages.reverse();
            deliveries += messages.len();
            let deps = &deps;
            let results: Vec<_> = futures::stream::iter(messages)
                .map(|m| async move {
                    let task: RestoreTask = serde_json::from_str(&m.body).expect("a task");
                    restorer::handle(deps, &task, far()).await
                })
                .buffer_unordered(8)
                .collect()
                .await;
            for r in results {
                r.expect("a chunk");
            }
        }

        // Then the job succeeded with every item restored, some chunks having waited
        let done = catalog.restore_job("plan-e2e").await.expect("read").expect("job");
        assert_eq!(done.status, RestoreStatus::Succeeded, "{done:?}");
        assert_eq!((done.planned_items, done.restored), ((FOLDERS + FILES) as u64, (FOLDERS + FILES) as u64));
        assert!(deliveries > (FOLDERS + FILES) / restorer::CHUNK, "no chunk waited: {deliveries} deliveries");

        // And the drive holds every folder and file on its path, with the backed-up bytes
        let items = admin.items(&drive).await.expect("items");
        let by_id: HashMap<&str, _> = items.iter().map(|i| (i.id.as_str(), i)).collect();
        let full_path = |start: &str| {
            let (mut parts, mut id) = (Vec::new(), start.to_owned());
            while let Some(item) = by_id.get(id.as_str()) {
                parts.push(item.name.clone());
                id = item.parent_id.clone().unwrap_or_default();
            }
            parts.reverse();
            format!("/{}", parts.join("/"))
        };
        let got: HashMap<String, Option<String>> =
            items.iter().map(|i| (full_path(&i.id), i.sha256.clone().filter(|_| i.kind == "file"))).collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got, expected);
    }

    fn json_user() -> serde_json::Value {
        serde_json::json!({"seed": 5, "users": [{"user_principal_name": "plan@bench.test", "display_name": "Plan",
            "has_drive": true, "has_mailbox": false, "files": 0, "folders": 0, "max_depth": 0, "min_size": 1,
            "max_size": 2, "hostile_names": false, "onenote_packages": 0, "large_files": []}]})
    }

    /// A deadline no test reaches.
    fn far() -> std::time::Instant {
        std::time::Instant::now() + std::time::Duration::from_secs(3600)
    }
}
