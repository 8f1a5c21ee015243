//! `make bench` (discovery part): discovery of a large tenant in which some users fail, run by
//! the scheduler against the simulator and the in-memory catalog and queue (no moto: the
//! figure is ours and the simulator's). The queue's consumers are played here, five at a
//! time as the template's `MaximumConcurrency`; a share sent back with a delay (throttled
//! users) runs when the others are done, without waiting out its delay (reported).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use shared::clientstate::ClientStateKey;
use shared::graph::{ClientSecret, GraphClient, GraphConfig};
use shared::pipeline::scheduler::{self, Report, SchedulerDeps, Task};
use shared::pipeline::webhook::{self, WebhookDeps};
use shared::store::memory::{MemoryCatalog, MemorySink};
use shared::store::{Containers, QueueName};

/// Share consumers at a time (the scheduler's `MaximumConcurrency` in the template).
const CONSUMERS: usize = 5;
const KEY: &str = "bench-discovery-key-bench-discovery-key-01";

pub(crate) fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub(crate) async fn serve(router: axum::Router) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(url)
}

pub(crate) fn client(sim_url: &str, tenant: &str, app: &graph_sim::SimApp) -> Result<GraphClient> {
    let mut cfg = GraphConfig::new(tenant, &app.client_id, ClientSecret::new(app.client_secret.clone()));
    cfg.base_url = url::Url::parse(&format!("{sim_url}/v1.0"))?;
    cfg.login_url = url::Url::parse(sim_url)?;
    Ok(GraphClient::new(cfg)?)
}

/// A bench's scheduler: the simulator's reader and subscriber apps, the in-memory catalog and
/// queue it returns beside, and a webhook that answers Graph's validation (its jobs are
/// dropped: discovery's own work is what is measured).
pub(crate) async fn scheduler_deps(
    cfg: &graph_sim::SimConfig,
    sim_url: &str,
    key: &str,
) -> Result<(Arc<SchedulerDeps>, Arc<MemoryCatalog>, Arc<MemorySink>)> {
    let hook = webhook::router(Arc::new(WebhookDeps {
        tenant_id: cfg.tenant_id.clone(),
        key: ClientStateKey::new(key)?,
        sink: Arc::new(MemorySink::new()),
        clock: shared::clock::system(),
    }));
    let webhook_url = format!("{}/graph/notifications", serve(hook).await?);
    let app = |name: &str| cfg.apps.iter().find(|a| a.name == name).cloned().context("sim app");
    let (catalog, sink) = (Arc::new(MemoryCatalog::new()), Arc::new(MemorySink::new()));
    let deps = Arc::new(SchedulerDeps {
        tenant_id: cfg.tenant_id.clone(),
        reader: client(sim_url, &cfg.tenant_id, &app("reader")?)?,
        subscriber: client(sim_url, &cfg.tenant_id, &app("subscriber")?)?,
        catalog: catalog.clone(),
        sink: sink.clone(),
        key: ClientStateKey::new(key)?,
        webhook_url,
        subscription_minutes: 42_000,
        renew_within_minutes: 3 * 24 * 60,
        sites: Default::default(),
        clock: shared::clock::system(),
    });
    Ok((deps, catalog, sink))
}

pub async fn run() -> Result<()> {
    let users = env("BENCH_DISCOVERY_USERS", 3_000);
    let failing = users / 50; // 2 %
    println!("== Discovery of {users} users, {failing} of them failing (in-memory catalog and queue)");

    let sim = graph_sim::GraphSim::new(graph_sim::SimConfig::default());
    let cfg = sim.config().clone();
    let sim_url = serve(sim.router()).await?;
    let http = reqwest::Client::new();
    let admin = |path: &str| format!("{sim_url}/admin{path}");
    let seeded: Vec<Value> = (0..users)
        .map(|i| json!({"user_principal_name": format!("user{i:05}@bench.test"), "files": 0, "folders": 0}))
        .collect();
    http.post(admin("/seed")).json(&json!({"seed": 11, "users": seeded})).send().await?.error_for_status()?;
    let ids: Vec<String> = http
        .get(admin("/users"))
        .send()
        .await?
        .error_for_status()?
        .json::<Vec<Value>>()
        .await?
        .iter()
        .filter_map(|u| u["id"].as_str().map(str::to_owned))
        .collect();
    // 2 % failing, spread over the listing: half refused outright (an application access
    // policy), a third throttled for ever, the rest deleted between the listing and their share.
    let spread: Vec<&String> = ids.iter().step_by(ids.len() / failing.max(1)).take(failing).collect();
    let (refused, rest) = spread.split_at(failing / 2);
    let (throttled, deleted) = rest.split_at(failing / 3);
    for (who, status, retry_after) in [(refused, 403, None), (throttled, 429, Some(120))] {
        let fault = json!({"kind": "user_errors", "users": who, "status": status, "retry_after": retry_after});
        http.post(admin("/faults")).json(&fault).send().await?.error_for_status()?;
    }

    let (deps, catalog, sink) = scheduler_deps(&cfg, &sim_url, KEY).await?;
    http.post(admin("/stats/reset")).send().await?.error_for_status()?;

    let started = Instant::now();
    let fanned = scheduler::run(&deps, Task::Discover).await?;
    let listed_in = started.elapsed();
    for id in deleted {
        http.delete(admin(&format!("/users/{id}"))).send().await?.error_for_status()?;
    }
    let (reports, delayed) = drain_shares(&deps, &sink).await?;
    let elapsed = started.elapsed();
    let total = scheduler::total(reports);
    let stats: Value = http.get(admin("/stats")).send().await?.error_for_status()?.json().await?;
    let graph = stats["requests_total"].as_f64().unwrap_or(f64::NAN);
    let containers = catalog.list_containers(&cfg.tenant_id).await?;
    let unresolved = catalog.list_unresolved(&cfg.tenant_id).await?;
    let subscribed = containers.iter().filter(|c| c.subscription_id.is_some()).count();
    let per = |x: f64| x / users as f64;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| users listed | {} ({} shares, listing took {:.1} s) |",
        fanned.users,
        fanned.shares,
        listed_in.as_secs_f64()
    );
    println!(
        "| failing users | {failing}: {} refused (403), {} throttled for ever (429), {} deleted midway |",
        refused.len(),
        throttled.len(),
        deleted.len()
    );
    println!(
        "| time to discover and subscribe everything | {:.1} s ({CONSUMERS} share consumers) |",
        elapsed.as_secs_f64()
    );
    println!(
        "| drives and mailboxes protected | {} ({} subscribed, {} crawls queued) |",
        containers.len(),
        subscribed,
        total.enqueued
    );
    println!(
        "| reported unresolved | {} rows ({} drive, {} mailbox) |",
        unresolved.len(),
        unresolved.iter().filter(|u| u.service == shared::model::Service::Drive).count(),
        unresolved.iter().filter(|u| u.service == shared::model::Service::Mailbox).count()
    );
    println!(
        "| without drive / without mailbox (nothing to protect) | {} / {} |",
        total.without_drive, total.without_mailbox
    );
    println!("| throttled shares sent again with a delay | {} (delays not waited here) |", delayed);
    println!("| Graph requests | {graph:.0} ({:.2} per user) |", per(graph));
    println!(
        "| catalog requests | {} reads, {} writes ({:.2} writes per user) |",
        catalog.read_count(),
        catalog.write_count(),
        per(catalog.write_count() as f64)
    );
    let expected = (users - failing) * 2;
    println!(
        "| every healthy user's drive and mailbox protected | {} |",
        if containers.len() == expected { "yes" } else { "NO" }
    );
    Ok(())
}

/// Plays the scheduler's work queue: the shares in `sink` and those they send, handled by
/// [`CONSUMERS`] consumers until none is left; a share sent back with a delay runs when the
/// others are done, without waiting out its delay. The reports, and how many were delayed.
pub(crate) async fn drain_shares(deps: &Arc<SchedulerDeps>, sink: &Arc<MemorySink>) -> Result<(Vec<Report>, usize)> {
    let queue: Arc<Mutex<VecDeque<String>>> =
        Arc::new(Mutex::new(sink.take(QueueName::Lifecycle).into_iter().map(|m| m.body).collect()));
    let delayed = Arc::new(Mutex::new(0usize));
    let reports = Arc::new(Mutex::new(Vec::<Report>::new()));
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let (deps, sink, queue, delayed, reports) =
            (deps.clone(), sink.clone(), queue.clone(), delayed.clone(), reports.clone());
        consumers.push(tokio::spawn(async move {
            loop {
                let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
                let Some(body) = next else { return Ok::<_, anyhow::Error>(()) };
                let report = scheduler::handle_message(&deps, &body).await?;
                reports.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(report);
                let sent = sink.take(QueueName::Lifecycle);
                *delayed.lock().map_err(|_| anyhow::anyhow!("poisoned"))? +=
                    sent.iter().filter(|m| m.delay.is_some()).count();
                queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.extend(sent.into_iter().map(|m| m.body));
            }
        }));
    }
    for c in consumers {
        c.await??;
    }
    let reports = std::mem::take(&mut *reports.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let delayed = *delayed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok((reports, delayed))
}
