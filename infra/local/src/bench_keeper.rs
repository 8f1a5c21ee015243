//! `make bench` (keeper part): what keeping a vault locked and proving it costs. A tenant of
//! `BENCH_KEEPER_VERSIONS` current versions (default 100,000; each a content blob and a record,
//! in drives of 10,000) is committed straight into the in-memory catalog and vault, then a
//! simulated year passes with the hourly-scheduled lock extension run once a day; then
//! `verify` runs sampled and in full. The vault and catalog fakes count requests as S3 and
//! DynamoDB would bill them (one `list_heads` is a paged query: about one page per 1,000
//! heads), so the counts carry over to AWS; the times are ours on in-memory fakes, without
//! S3's latency (about 20 ms a request, so `objects × requests ÷ concurrency` seconds more).

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{Duration, Utc};
use shared::clock::{Clock, ManualClock};
use shared::model::{ContainerId, ContainerRecord, ContentRef, ItemKind, ItemVersion, SCHEMA_VERSION, Verification};
use shared::pipeline::keeper::KeeperDeps;
use shared::pipeline::retention::{self, Policy};
use shared::pipeline::verify;
use shared::store::memory::{MemoryCatalog, MemoryVault};
use shared::store::{Containers, ItemHistory, LockMode, Vault};

const TENANT: &str = "bench-keeper";
const PER_DRIVE: usize = 10_000;
const RETENTION_DAYS: u32 = 35;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn per_million(count: u64, of: u64) -> f64 {
    count as f64 * 1_000_000.0 / of.max(1) as f64
}

pub async fn run() -> Result<()> {
    let versions = env("BENCH_KEEPER_VERSIONS", 100_000);
    println!("== Vault keeper: {versions} current versions, a simulated year (in-memory catalog and vault)");
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let catalog = Arc::new(MemoryCatalog::new());
    let vault = Arc::new(MemoryVault::new());
    let policy = Policy::new(LockMode::Governance, RETENTION_DAYS);
    let started = Instant::now();
    seed(&catalog, &vault, policy, clock.now(), versions).await?;
    let objects = vault.object_count() as u64;
    println!("seeded {versions} versions, {objects} objects in {:.1} s", started.elapsed().as_secs_f64());

    let deps = KeeperDeps {
        catalog: catalog.clone(),
        vault: vault.clone(),
        clock: clock.clone(),
        policy,
        tenant_id: TENANT.to_owned(),
        concurrency: 16,
    };
    let far = || Instant::now() + StdDuration::from_secs(3_600);
    let (puts0, heads0, writes0, reads0) =
        (vault.retention_put_count(), vault.head_count(), catalog.write_count(), catalog.read_count());
    let (mut extended, mut heads_read, mut busiest, mut busiest_s) = (0u64, 0u64, 0u64, 0.0f64);
    let year = Instant::now();
    for _day in 0..365 {
        clock.advance(Duration::days(1));
        let t = Instant::now();
        let run = retention::extend(&deps, far()).await.context("extend")?;
        anyhow::ensure!(run.finished_at.is_some() && run.report.failed == 0, "extension run failed: {:?}", run.report);
        extended += run.report.extended;
        heads_read += run.report.heads;
        if run.report.extended > busiest {
            (busiest, busiest_s) = (run.report.extended, t.elapsed().as_secs_f64());
        }
    }
    let puts = vault.retention_put_count() - puts0;
    let heads = vault.head_count() - heads0;
    let writes = catalog.write_count() - writes0;
    let reads = catalog.read_count() - reads0;
    println!(
        "lock extension over 365 days ({:.1} s): {extended} version extensions; per million objects per year: \
         {:.0} PutObjectRetention and {:.0} HeadObject (S3Vault reads each lock before and after extending it); \
         per million objects per day: {:.0} catalog writes, {:.0} heads read (about {:.0} query pages) and {:.0} \
         other catalog reads",
        year.elapsed().as_secs_f64(),
        per_million(puts, objects),
        per_million(heads + 2 * puts, objects),
        per_million(writes, objects) / 365.0,
        per_million(heads_read, objects) / 365.0,
        per_million(heads_read, objects) / 365.0 / 1_000.0,
        per_million(reads, objects) / 365.0,
    );
    println!(
        "busiest day: {busiest} versions extended in {busiest_s:.2} s; at $0.005 per 1,000 PUT requests the year's \
         extensions cost ${:.2} per million objects",
        per_million(puts, objects) * 0.005 / 1_000.0
    );

    for full in [false, true] {
        let (heads0, gets0, reads0) = (vault.head_count(), vault.get_count(), catalog.read_count());
        let t = Instant::now();
        let run = verify::verify(&deps, full, true, far()).await.context("verify")?;
        let r = &run.report;
        anyhow::ensure!(run.finished_at.is_some() && r.problem_count() == 0, "verify found problems: {:?}", r.problems);
        let per_100k = |n: u64| n as f64 * 100_000.0 / r.versions.max(1) as f64;
        println!(
            "verify ({}): {} versions, {} objects, {} hashed ({} bytes) in {:.2} s; per 100,000 versions: \
             {:.0} HeadObject, {:.0} GetObject, {:.0} catalog reads, {:.2} s; earliest lock end {}",
            if full { "full" } else { "1 % sample" },
            r.versions,
            r.objects,
            r.hashed,
            r.bytes_hashed,
            t.elapsed().as_secs_f64(),
            per_100k(vault.head_count() - heads0),
            per_100k(vault.get_count() - gets0),
            per_100k(catalog.read_count() - reads0),
            t.elapsed().as_secs_f64() * 100_000.0 / r.versions.max(1) as f64,
            r.earliest_lock_end.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default(),
        );
    }
    Ok(())
}

/// `versions` files, each with its own small blob and record, committed as the copier does.
async fn seed(
    catalog: &MemoryCatalog,
    vault: &MemoryVault,
    policy: Policy,
    now: chrono::DateTime<Utc>,
    versions: usize,
) -> Result<()> {
    let lock = policy.new_version(now);
    for d in 0..versions.div_ceil(PER_DRIVE) {
        let container = ContainerId::new(TENANT, format!("drive{d:04}"));
        catalog
            .put_container(&ContainerRecord {
                container: container.clone(),
                user_id: format!("user{d:04}"),
                user_principal_name: None,
                discovered_at: now,
                subscription_id: None,
                subscription_expires: None,
                problem: None,
                site: None,
            })
            .await?;
        for i in (d * PER_DRIVE)..((d + 1) * PER_DRIVE).min(versions) {
            let body = Bytes::from(format!("file {i} of the keeper bench"));
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body));
            let size = body.len() as u64;
            let stored = vault.put_if_absent(&shared::keys::blob_key(TENANT, &sha256), body, &lock).await?;
            let version = ItemVersion {
                created: None,
                v: SCHEMA_VERSION,
                key: container.item(format!("item{i:07}")),
                version: format!("e{i}"),
                kind: ItemKind::File,
                name: Some(format!("file{i}.txt")),
                parent_id: Some("root".to_owned()),
                ctag: None,
                modified: now,
                captured_at: now,
                deleted: false,
                content: Some(ContentRef { object: stored.object, size, sha256, quick_xor_hash: None }),
                verification: Verification::Sha256,
                mail: None,
                observed_at: Some(now),
                current_from: None,
                note: None,
            };
            let record_key = shared::keys::record_key(&version.key, &version.row_id());
            let body = Bytes::from(serde_json::to_vec(&version)?);
            let record = vault.put_if_absent(&record_key, body, &lock).await?.object;
            catalog.commit_version(&version, &record).await?;
        }
    }
    Ok(())
}
