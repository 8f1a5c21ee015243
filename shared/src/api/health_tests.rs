//! `GET /v1/health` against the in-memory catalog: Given the vault keeper's runs as the
//! catalog keeps them, When a person asks for the vault's health, Then each last run is shown
//! and `vault_ok` says whether a recent, clean verification vouches for the vault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::test_support::*;
use crate::model::{ContainerId, ExtendReport, KeeperCursor, KeeperRun, SCHEMA_VERSION, VaultProblem, VerifyReport};
use crate::pipeline::keeper::{self, KeeperDeps};
use crate::pipeline::retention::Policy;
use crate::store::memory::MemoryVault;
use crate::store::{LockMode, VaultKeeping};

fn run<R>(started_at: DateTime<Utc>, finished_at: Option<DateTime<Utc>>, report: R) -> KeeperRun<R> {
    KeeperRun {
        v: SCHEMA_VERSION,
        started_at,
        finished_at,
        cursor: None,
        full: false,
        invocations: 1,
        report,
        last_finished: None,
    }
}

async fn save<R: Serialize>(f: &Fixture, tenant: &str, task: &str, run: &KeeperRun<R>) {
    let doc = serde_json::to_string(run).expect("json");
    let revision = f.catalog.keeper_run(tenant, task).await.expect("read").map(|(_, r)| r);
    assert!(f.catalog.put_keeper_run(tenant, task, &doc, revision).await.expect("save"));
}

fn clean(objects: u64) -> VerifyReport {
    VerifyReport { containers: 1, versions: objects / 2, objects, ..VerifyReport::default() }
}

#[tokio::test]
async fn before_any_keeper_run_health_shows_none_and_the_vault_is_not_vouched_for() {
    let f = fixture().await;
    // Another tenant's runs are not this deployment's
    save(&f, "tenant-2", keeper::VERIFY, &run(Utc::now(), Some(Utc::now()), clean(4))).await;

    let reply = f.get("/v1/health").await;

    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json, serde_json::json!({"retention": null, "verify": null, "vault_ok": false}));
}

#[tokio::test]
async fn a_clean_verification_finished_today_vouches_for_the_vault() {
    // Given a verification that finished an hour ago with no problem, and a lock extension
    // under way in its second invocation
    let f = fixture().await;
    let (started, finished) = (Utc::now() - TimeDelta::hours(2), Utc::now() - TimeDelta::hours(1));
    let verified = run(started, Some(finished), clean(8));
    save(&f, TENANT, keeper::VERIFY, &verified).await;
    let mut extending = run(started, None, ExtendReport { containers: 1, heads: 3, extended: 2, ..Default::default() });
    extending.cursor =
        Some(KeeperCursor { container: ContainerId::new(TENANT, DRIVE), after_item: Some("file-plan".into()) });
    extending.invocations = 2;
    save(&f, TENANT, keeper::EXTEND, &extending).await;

    // When the health is asked for
    let reply = f.get("/v1/health").await;

    // Then both runs are shown as kept, and the vault is vouched for
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["vault_ok"], true);
    assert_eq!(reply.json["verify"], serde_json::to_value(&verified).expect("json"));
    assert_eq!(reply.json["retention"], serde_json::to_value(&extending).expect("json"));
    assert_eq!(reply.json["retention"]["report"]["extended"], 2);
    assert_eq!(reply.json["retention"]["cursor"]["after_item"], "file-plan");
    assert_eq!(reply.json["verify"]["report"]["lock_short"], 0);
}

#[tokio::test]
async fn a_verification_with_problems_stale_or_under_way_does_not_vouch_for_the_vault() {
    let f = fixture().await;
    let now = Utc::now();

    // A recent run that found a lock short: listed with its problem
    let problem = VaultProblem {
        container: ContainerId::new(TENANT, DRIVE),
        item_id: "file-plan".into(),
        key: "blobs/abc".into(),
        version_id: "s3v-p1".into(),
        problem: "lock short: mode Some(Governance) until None".into(),
    };
    let short = VerifyReport { lock_short: 1, problems: vec![problem], ..clean(8) };
    save(&f, TENANT, keeper::VERIFY, &run(now - TimeDelta::hours(2), Some(now - TimeDelta::hours(1)), short)).await;
    let reply = f.get("/v1/health").await;
    assert_eq!((reply.status.as_u16(), &reply.json["vault_ok"]), (200, &serde_json::json!(false)));
    assert_eq!(reply.json["verify"]["report"]["problems"][0]["item_id"], "file-plan");

    // A clean run that finished three days ago
    let stale = run(now - TimeDelta::hours(73), Some(now - TimeDelta::hours(72)), clean(8));
    save(&f, TENANT, keeper::VERIFY, &stale).await;
    assert_eq!(f.get("/v1/health").await.json["vault_ok"], false);

    // A run under way, clean so far, after the stale one: nothing recent vouches
    let mut under_way = run(now - TimeDelta::minutes(5), None, clean(2));
    under_way.last_finished = stale.finished();
    save(&f, TENANT, keeper::VERIFY, &under_way).await;
    let reply = f.get("/v1/health").await;
    assert_eq!(reply.json["vault_ok"], false);
    assert!(reply.json["verify"]["finished_at"].is_null());

    // A run under way after a clean one that finished yesterday: that one still vouches
    let yesterday = run(now - TimeDelta::hours(25), Some(now - TimeDelta::hours(24)), clean(8));
    under_way.last_finished = yesterday.finished();
    save(&f, TENANT, keeper::VERIFY, &under_way).await;
    let reply = f.get("/v1/health").await;
    assert_eq!(reply.json["vault_ok"], true);
    assert_eq!(reply.json["verify"]["last_finished"]["report"]["objects"], 8);
}

#[tokio::test]
async fn health_reads_the_runs_the_keeper_writes() {
    // Given the keeper's verify run over the fixture's drive, whose records the (empty) vault
    // never received
    let f = fixture().await;
    let deps = KeeperDeps {
        catalog: f.catalog.clone(),
        vault: Arc::new(MemoryVault::new()),
        clock: crate::clock::system(),
        policy: Policy::new(LockMode::Governance, 35),
        tenant_id: TENANT.into(),
        concurrency: 4,
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let verified = crate::pipeline::verify::verify(&deps, false, false, deadline).await.expect("verify");
    let extended = crate::pipeline::retention::extend(&deps, deadline).await.expect("extend");
    assert!(verified.report.missing > 0);

    // When the health is asked for
    let reply = f.get("/v1/health").await;

    // Then it shows both runs as the keeper kept them, and the vault is not vouched for
    assert_eq!(reply.status, 200, "{}", reply.json);
    assert_eq!(reply.json["verify"], serde_json::to_value(&verified).expect("json"));
    assert_eq!(reply.json["retention"], serde_json::to_value(&extended).expect("json"));
    assert_eq!(reply.json["vault_ok"], false);
}

#[tokio::test]
async fn health_takes_no_query_parameters() {
    let f = fixture().await;
    f.get("/v1/health?verbose=true").await.assert_problem(400, "invalid-parameter");
}
