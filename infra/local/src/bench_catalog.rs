//! `make bench` (catalog part): the restore plan of a 100,000-file drive and the browse of a
//! folder of 10,000 children, both as of a moment T, on a catalog of the real shape.
//!
//! Backing up that many files through the pipeline takes hours locally (moto holds the copier
//! to a few items per second), so the history is committed straight into the catalog (see
//! [`seed`]). The plan is the restorer's own plan step, run in process: an in-place dry run
//! reads only the catalog, so its Graph client points at a port nobody answers. Browsing goes
//! through the restore API's router over HTTP. DynamoDB requests are counted by the proxy in
//! front of moto; the counts carry over to AWS, moto's times do not (it answers every Query by
//! walking the whole table and copies the table for every TransactWriteItems, so its times grow
//! with the table). Figures are printed, not asserted.

mod seed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use shared::aws::catalog::DynamoCatalog;
use shared::config::{RestoreApiConfig, RestorerConfig};
use shared::model::{RestoreStatus, RestoreTask};
use shared::pipeline::restorer::{self, RestorerDeps};
use shared::store::{ItemHistory, PointInTime, RestoreJobs};

use crate::bench::{p, peak_rss_mb, reset_peak_rss};
use crate::counter::AwsCounts;
use crate::moto::MotoServer;
use crate::provision::{Provisioned, provision};
use crate::stack::REGION;
use seed::{DriveShape, Seeded, Timeline};

/// Files per folder of the big drive.
const FILES_PER_FOLDER: usize = 1_000;
/// The page size a person browsing gets.
const PAGE: usize = 200;
/// Repeated requests for the first page.
const FIRST_PAGE_RUNS: usize = 20;
const TENANT_ID: &str = "6b1f0c3e-bench-4c4a-9d2e-catalogscale";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// moto behind the counting proxy, the catalog, the restorer and the restore API on loopback.
struct Bench {
    catalog: Arc<DynamoCatalog>,
    restorer: RestorerDeps,
    api_url: String,
    http: reqwest::Client,
    counts: Arc<AwsCounts>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _moto: MotoServer,
}

/// The settings the restorer and the restore API read, as their Lambdas would.
fn settings(resources: &Provisioned) -> BTreeMap<String, String> {
    let queue = resources.queues.get("RestoresQueue").cloned().unwrap_or_default();
    let secret = resources.secrets.get("GraphRestorerSecret").cloned().unwrap_or_default();
    [
        ("TENANT_ID", TENANT_ID.to_owned()),
        ("CATALOG_TABLE", resources.catalog_table.clone()),
        ("VAULT_BUCKET", resources.vault_bucket.clone()),
        ("EXPORTS_BUCKET", resources.exports_bucket.clone()),
        ("RESTORES_QUEUE_URL", queue),
        // Port 9 (discard) answers nothing: a Graph call would fail the plan, not slip through.
        ("GRAPH_BASE_URL", "http://127.0.0.1:9/v1.0".to_owned()),
        ("GRAPH_LOGIN_URL", "http://127.0.0.1:9".to_owned()),
        ("GRAPH_RESTORER_CLIENT_ID", "bench".to_owned()),
        ("GRAPH_RESTORER_SECRET_ARN", secret),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Bench {
    async fn start(repo_root: &Path) -> Result<Bench> {
        let moto = MotoServer::start(repo_root).await?;
        let (endpoint, counts, proxy) = crate::counter::start(&moto.endpoint).await?;
        let aws = crate::moto::aws_config(&endpoint, REGION).await;
        let secrets: BTreeMap<String, String> = ["GraphReaderSecret", "GraphSubscriberSecret", "GraphRestorerSecret"]
            .map(|id| (id.to_owned(), "unused".to_owned()))
            .into();
        let resources = provision(&aws, &repo_root.join("template.yaml"), "m365-backup-bench", &secrets).await?;
        let settings = settings(&resources);
        let restorer = shared::wiring::restorer(&RestorerConfig::load(&settings)?, &aws).await?;
        let api = shared::wiring::restore_api(&RestoreApiConfig::load(&settings)?, &aws).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
        let api_url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, shared::api::router(Arc::new(api))).await;
        });
        Ok(Bench {
            catalog: Arc::new(DynamoCatalog::new(&aws, resources.catalog_table)),
            restorer,
            api_url,
            http: reqwest::Client::new(),
            counts,
            tasks: vec![proxy, server],
            _moto: moto,
        })
    }

    /// DynamoDB requests since the last reset, by operation.
    fn dynamodb(&self) -> BTreeMap<String, u64> {
        self.counts.snapshot().into_iter().filter(|(k, _)| k.starts_with("dynamodb:")).collect()
    }

    async fn api(&self, request: reqwest::RequestBuilder) -> Result<Value> {
        let answer = request.send().await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("restore API answered {status}: {body}");
        }
        Ok(body)
    }

    async fn children(&self, drive_id: &str, parent: &str, at: DateTime<Utc>, cursor: Option<&str>) -> Result<Value> {
        let mut query = vec![("parent", parent.to_owned()), ("at", rfc3339(at)), ("limit", PAGE.to_string())];
        query.extend(cursor.map(|c| ("cursor", c.to_owned())));
        let url = format!("{}/v1/drives/{drive_id}/children", self.api_url);
        self.api(self.http.get(url).query(&query)).await
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

fn total(ops: &BTreeMap<String, u64>) -> u64 {
    ops.values().sum()
}

fn merge(into: &mut BTreeMap<String, u64>, ops: BTreeMap<String, u64>) {
    for (k, v) in ops {
        *into.entry(k).or_default() += v;
    }
}

struct PlanFigures {
    job: shared::model::RestoreJob,
    secs: f64,
    ops: BTreeMap<String, u64>,
    rss_before: Option<f64>,
    rss_peak: Option<f64>,
    /// (seconds, DynamoDB requests, rows) of `container_as_of` and `list_heads` run alone.
    as_of: (f64, u64, usize),
    heads: (f64, u64, usize),
}

async fn plan(bench: &Bench, shape: &DriveShape, tl: Timeline) -> Result<PlanFigures> {
    let container = shape.container();
    let body = json!({"drive_id": container.graph_id, "scope": {"kind": "container"}, "as_of": rfc3339(tl.t),
                      "target": {"kind": "in_place"}, "dry_run": true});
    let created = bench.api(bench.http.post(format!("{}/v1/restores", bench.api_url)).json(&body)).await?;
    let id = created["id"].as_str().context("restore job without id")?.to_owned();

    // The step the restorer runs when the API's message arrives, without the queue's wait.
    bench.counts.reset();
    reset_peak_rss();
    let rss_before = peak_rss_mb();
    let started = Instant::now();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    restorer::handle(&bench.restorer, &RestoreTask::plan(id.clone(), true), deadline).await?;
    let secs = started.elapsed().as_secs_f64();
    let rss_peak = peak_rss_mb();
    let ops = bench.dynamodb();
    let job = bench.catalog.restore_job(&id).await?.context("restore job vanished")?;
    if job.status != RestoreStatus::Planned {
        bail!("dry run ended as {:?}", job.status);
    }

    // The plan's two listings of the drive, timed alone.
    bench.counts.reset();
    let started = Instant::now();
    let rows = bench.catalog.container_as_of(&container, tl.t).await?.len();
    let as_of = (started.elapsed().as_secs_f64(), total(&bench.dynamodb()), rows);
    bench.counts.reset();
    let started = Instant::now();
    let rows = bench.catalog.list_heads(&container).await?.len();
    let heads = (started.elapsed().as_secs_f64(), total(&bench.dynamodb()), rows);
    Ok(PlanFigures { job, secs, ops, rss_before, rss_peak, as_of, heads })
}

struct BrowseFigures {
    /// Milliseconds and DynamoDB requests of each page, in order.
    pages: Vec<(f64, u64)>,
    listed: usize,
    whole_secs: f64,
    ops: BTreeMap<String, u64>,
    firsts: Vec<(f64, u64)>,
}

async fn browse(bench: &Bench, shape: &DriveShape, tl: Timeline) -> Result<BrowseFigures> {
    let drive_id = shape.container().graph_id;
    let parent = shape.folder_id(0);
    let (mut pages, mut listed, mut ops, mut cursor) = (Vec::new(), 0, BTreeMap::new(), None::<String>);
    let whole = Instant::now();
    loop {
        bench.counts.reset();
        let started = Instant::now();
        let page = bench.children(&drive_id, &parent, tl.t, cursor.as_deref()).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let page_ops = bench.dynamodb();
        pages.push((ms, total(&page_ops)));
        merge(&mut ops, page_ops);
        listed += page["items"].as_array().map_or(0, Vec::len);
        cursor = page["next"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    let whole_secs = whole.elapsed().as_secs_f64();
    let mut firsts = Vec::new();
    for _ in 0..FIRST_PAGE_RUNS {
        bench.counts.reset();
        let started = Instant::now();
        bench.children(&drive_id, &parent, tl.t, None).await?;
        firsts.push((started.elapsed().as_secs_f64() * 1000.0, total(&bench.dynamodb())));
    }
    Ok(BrowseFigures { pages, listed, whole_secs, ops, firsts })
}

/// p50 and p95 of one column.
fn percentiles(rows: &[(f64, u64)], column: impl Fn(&(f64, u64)) -> f64) -> (f64, f64) {
    let mut values: Vec<f64> = rows.iter().map(column).collect();
    values.sort_by(f64::total_cmp);
    (p(&values, 50.0), p(&values, 95.0))
}

async fn seed_drive(bench: &Bench, shape: &DriveShape, tl: Timeline) -> Result<(Seeded, u64)> {
    println!("== Seeding drive {}: {} files in folders of {}", shape.label, shape.files, shape.files_per_folder);
    bench.counts.reset();
    let seeded = seed::seed(bench.catalog.clone(), shape, tl).await?;
    Ok((seeded, total(&bench.dynamodb())))
}

fn print_seeded(shape: &DriveShape, (seeded, requests): (Seeded, u64)) {
    println!(
        "| seed drive {}: items / versions committed | {} / {} in {:.0} s ({:.0} versions/s, {:.2} DynamoDB requests per version) |",
        shape.label,
        seeded.items,
        seeded.versions,
        seeded.secs,
        seeded.versions as f64 / seeded.secs,
        requests as f64 / seeded.versions.max(1) as f64
    );
}

fn print_plan(shape: &DriveShape, plan: &PlanFigures) {
    println!(
        "| dry-run plan of drive {} as of T: planned items / conflicts | {} / {} ({} files at T, {} created after) |",
        shape.label,
        plan.job.planned_items,
        plan.job.conflicts,
        shape.files_at_t(),
        shape.created_after()
    );
    println!("| plan time (restorer's plan step, in process) | {:.1} s |", plan.secs);
    println!("| plan DynamoDB requests | {} |", total(&plan.ops));
    println!(
        "| of which the drive as of T (`container_as_of`, alone) | {:.1} s, {} requests, {} versions |",
        plan.as_of.0, plan.as_of.1, plan.as_of.2
    );
    println!(
        "| of which the heads now (`list_heads`, alone) | {:.1} s, {} requests, {} heads |",
        plan.heads.0, plan.heads.1, plan.heads.2
    );
    println!(
        "| the rest: job reads, {} conflict reports written one after another, status (plan minus the two above) | {:.1} s |",
        plan.job.conflicts.min(restorer::CONFLICTS_LISTED as u64),
        plan.secs - plan.as_of.0 - plan.heads.0
    );
    println!(
        "| peak RSS during the plan (whole process) | {:.0} MB (from {:.0} MB) |",
        plan.rss_peak.unwrap_or(f64::NAN),
        plan.rss_before.unwrap_or(f64::NAN)
    );
}

fn print_browse(shape: &DriveShape, browse: &BrowseFigures) {
    let (ms50, ms95) = percentiles(&browse.pages, |r| r.0);
    let (rq50, rq95) = percentiles(&browse.pages, |r| r.1 as f64);
    println!(
        "| browse {} children of drive {} as of T: pages / children listed | {} / {} (expected {}) |",
        shape.files,
        shape.label,
        browse.pages.len(),
        browse.listed,
        shape.files_at_t()
    );
    println!("| page of {PAGE}: p50 / p95 | {ms50:.0} ms / {ms95:.0} ms |");
    println!("| whole folder | {:.1} s |", browse.whole_secs);
    println!(
        "| DynamoDB requests per page: p50 / p95 / max | {rq50:.0} / {rq95:.0} / {} |",
        browse.pages.iter().map(|r| r.1).max().unwrap_or(0)
    );
    let (f50, f95) = percentiles(&browse.firsts, |r| r.0);
    println!("| first page, {FIRST_PAGE_RUNS} times: p50 / p95 | {f50:.0} ms / {f95:.0} ms |");
    println!("| first page DynamoDB requests | {} |", browse.firsts.first().map_or(0, |r| r.1));
}

/// Each drive gets a moto of its own: moto walks the whole table for every Query, so one
/// table holding both drives would slow each measurement by the other's rows (DynamoDB does
/// not). A size of 0 skips that part.
pub async fn run(repo_root: PathBuf) -> Result<()> {
    let files = env_usize("BENCH_CATALOG_ITEMS", 100_000);
    let children = env_usize("BENCH_CATALOG_CHILDREN", 10_000);
    println!("== Catalog at scale: plan of a {files}-file drive and browse of a {children}-child folder, as of T");
    let tl = Timeline::before(Utc::now());
    let big = DriveShape { tenant_id: TENANT_ID.into(), label: "A", files, files_per_folder: FILES_PER_FOLDER };
    let wide = DriveShape { tenant_id: TENANT_ID.into(), label: "B", files: children, files_per_folder: children };

    let planned = if files > 0 {
        let bench = Bench::start(&repo_root).await?;
        let seeded = seed_drive(&bench, &big, tl).await?;
        println!("== Dry-run plan of drive A as of T");
        let plan = plan(&bench, &big, tl).await?;
        bench.stop();
        Some((seeded, plan))
    } else {
        None
    };
    let browsed = if children > 0 {
        let bench = Bench::start(&repo_root).await?;
        let seeded = seed_drive(&bench, &wide, tl).await?;
        println!("== Browsing the folder of {children} children of drive B as of T, {PAGE} a page");
        let browse = browse(&bench, &wide, tl).await?;
        bench.stop();
        Some((seeded, browse))
    } else {
        None
    };

    println!("| figure | value |");
    println!("|---|---|");
    if let Some((seeded, plan)) = &planned {
        print_seeded(&big, *seeded);
        print_plan(&big, plan);
    }
    if let Some((seeded, browse)) = &browsed {
        print_seeded(&wide, *seeded);
        print_browse(&wide, browse);
    }
    if let Some((_, plan)) = &planned {
        println!("DynamoDB operations, plan: {}", serde_json::to_string(&plan.ops)?);
    }
    if let Some((_, browse)) = &browsed {
        println!("DynamoDB operations, browsing the whole folder: {}", serde_json::to_string(&browse.ops)?);
    }
    println!(
        "(moto walks the whole table for every Query and copies it for every TransactWriteItems: local times grow with the table, request counts do not)"
    );
    Ok(())
}
