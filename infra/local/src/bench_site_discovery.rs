//! `make bench` (SharePoint discovery part): `discover` and `discover_sites` of a tenant of
//! users and sites (some subsites and group team sites, one to five libraries each), with
//! their shares, run by the scheduler against the simulator and the in-memory catalog and
//! queue as `bench_discovery` does. The simulator's resource-unit budgets are lifted so that
//! the figure is discovery's own; the units it spends are reported against production's
//! budget. Every library of the simulator's ground truth must be registered, or the bench
//! fails.

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use shared::pipeline::scheduler::{self, Task};
use shared::store::{Containers, QueueName};

use crate::bench_discovery::{drain_shares, env, scheduler_deps, serve};

const KEY: &str = "bench-site-discovery-key-bench-site-disc-1";

pub async fn run() -> Result<()> {
    let users = env("BENCH_SITE_DISCOVERY_USERS", 1_000);
    let sites = env("BENCH_SITE_DISCOVERY_SITES", 200);
    println!(
        "== Discovery of {users} users and {sites} SharePoint sites of 1 to 5 libraries (in-memory catalog and queue)"
    );
    let sim = graph_sim::GraphSim::new(graph_sim::SimConfig::default());
    let cfg = sim.config().clone();
    let sim_url = serve(sim.router()).await?;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{sim_url}/admin{path}");
    let seeded: Vec<Value> = (0..users)
        .map(|i| json!({"user_principal_name": format!("user{i:05}@bench.test"), "files": 0, "folders": 0}))
        .collect();
    let seed = json!({"seed": 12, "users": seeded, "site_count": sites, "libraries_min": 1, "libraries_max": 5,
        "subsite_every": 10, "group_every": 4});
    http.post(admin("/seed")).json(&seed).send().await?.error_for_status()?;
    let lifted = json!({"ru_per_minute": 1_000_000_000u64, "ru_per_day": 1_000_000_000u64});
    http.patch(admin("/throttling")).json(&lifted).send().await?.error_for_status()?;

    let (deps, catalog, sink) = scheduler_deps(&cfg, &sim_url, KEY).await?;
    http.post(admin("/stats/reset")).send().await?.error_for_status()?;
    http.post(admin("/throttling/reset")).send().await?.error_for_status()?;

    let started = Instant::now();
    let fanned_users = scheduler::run(&deps, Task::Discover).await?;
    let fanned_sites = scheduler::run(&deps, Task::DiscoverSites).await?;
    let listed_in = started.elapsed();
    let (reports, delayed) = drain_shares(&deps, &sink).await?;
    let elapsed = started.elapsed();
    let total = scheduler::total(reports);
    let crawls = sink.take(QueueName::Changes).len();

    let stats: Value = http.get(admin("/stats")).send().await?.error_for_status()?.json().await?;
    let throttling: Value = http.get(admin("/throttling")).send().await?.error_for_status()?.json().await?;
    let truth: Value = http.get(admin("/sites")).send().await?.error_for_status()?.json().await?;
    let containers = catalog.list_containers(&cfg.tenant_id).await?;
    let site_rows = catalog.list_sites(&cfg.tenant_id).await?;
    let registered: HashSet<&str> =
        containers.iter().filter(|c| c.site.is_some()).map(|c| c.container.graph_id.as_str()).collect();
    let live_sites: Vec<&Value> = truth
        .as_array()
        .context("sites")?
        .iter()
        .filter(|s| s["is_personal"] != true && s["deleted"] != true)
        .collect();
    // Every library users see, and Site Pages (hidden, but it holds the site's pages); the
    // other hidden ones (Style Library) are left out by policy.
    let expected: Vec<&str> = live_sites
        .iter()
        .flat_map(|s| s["libraries"].as_array().into_iter().flatten())
        .filter(|l| l["deleted"] != true && (l["system"] != true || l["name"] == "Site Pages"))
        .filter_map(|l| l["drive_id"].as_str())
        .collect();
    let missing: Vec<&&str> = expected.iter().filter(|d| !registered.contains(**d)).collect();
    let subsites = live_sites.iter().filter(|s| !s["parent_id"].is_null()).count();
    let group_sites = live_sites.iter().filter(|s| !s["group_id"].is_null()).count();
    let graph = stats["requests_total"].as_f64().unwrap_or(f64::NAN);
    let by_route: BTreeMap<String, Value> = serde_json::from_value(stats["by_route"].clone()).unwrap_or_default();
    let ru = throttling["total_ru"].as_u64().unwrap_or(0);

    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| listed | {} users, {} root sites and groups' sites ({} shares; listings took {:.1} s) |",
        fanned_users.users,
        fanned_sites.sites,
        fanned_users.shares + fanned_sites.shares,
        listed_in.as_secs_f64()
    );
    println!(
        "| ground truth | {} sites ({subsites} subsites, {group_sites} group team sites), {} libraries to protect |",
        live_sites.len(),
        expected.len()
    );
    println!("| time to discover and subscribe everything | {:.1} s (5 share consumers) |", elapsed.as_secs_f64());
    println!(
        "| sites resolved / libraries registered | {} / {} ({} site rows; {} refused) |",
        total.sites,
        registered.len(),
        site_rows.len(),
        total.sites_refused
    );
    println!(
        "| containers | {} ({} subscribed, {crawls} crawls queued, {delayed} shares delayed) |",
        containers.len(),
        containers.iter().filter(|c| c.subscription_id.is_some()).count()
    );
    println!("| Graph requests | {graph:.0} |");
    println!("| Graph requests by route | {} |", serde_json::to_string(&by_route)?);
    println!(
        "| resource units | {ru} ({:.2} per site; {:.1} minutes of a small tenant's 1,250 RU a minute) |",
        ru as f64 / live_sites.len().max(1) as f64,
        ru as f64 / 1_250.0
    );
    println!("| catalog requests | {} reads, {} writes |", catalog.read_count(), catalog.write_count());
    println!(
        "| every library of the ground truth registered | {} |",
        if missing.is_empty() { "yes".to_owned() } else { format!("NO: {} missing", missing.len()) }
    );
    anyhow::ensure!(missing.is_empty(), "libraries not registered: {missing:?}");
    Ok(())
}
