//! Restore writes in-process: the restorer against the Graph simulator and the in-memory
//! catalog, vault and queue (no moto). What a user gets back: the backed-up bytes and dates,
//! never bytes that do not match the backup, and a clear per-item reason when the target
//! refuses; uploads larger than one invocation carry on in the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use local_stack::admin::Admin;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use shared::graph::{ClientSecret, ConflictBehavior, DriveItem, GraphClient, GraphConfig, UploadTarget};
use shared::model::{
    ContainerId, ContentRef, ItemKind, ItemVersion, RestoreJob, RestoreOutcome, RestorePlan, RestoreScope,
    RestoreStatus, RestoreStep, RestoreTarget, RestoreTask, SCHEMA_VERSION, SyncState, Verification,
};
use shared::pipeline::restorer::{DEADLINE_MARGIN, FRAGMENT, RestorerDeps, handle};
use shared::store::memory::{MemoryCatalog, MemoryExports, MemorySink, MemoryVault};
use shared::store::{ItemHistory, Lock, LockMode, QueueName, RestoreJobs, SyncStates, Vault};

/// The backed-up state's modification time: long before the restore.
/// When the backed-up files were created in Microsoft 365, as their versions record it.
fn created_at() -> DateTime<Utc> {
    backed_up_at() - TimeDelta::days(30)
}

fn backed_up_at() -> DateTime<Utc> {
    "2021-06-07T08:09:10Z".parse().expect("time")
}

struct World {
    admin: Admin,
    graph: GraphClient,
    catalog: Arc<MemoryCatalog>,
    vault: Arc<MemoryVault>,
    sink: Arc<MemorySink>,
    deps: RestorerDeps,
    /// The restorer's clock: a throttle it shares lasts until the test moves it on.
    clock: Arc<shared::clock::ManualClock>,
    container: ContainerId,
    drive: String,
    root: String,
}

impl World {
    async fn new() -> Result<Self> {
        let sim = graph_sim::GraphSim::new(graph_sim::SimConfig::default());
        let cfg = sim.config().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(sim.serve(listener));
        let admin = Admin::new(format!("{url}/admin"));
        let user = json!({"user_principal_name": "adele@contoso.test", "has_drive": true, "files": 0, "folders": 0});
        admin.seed(&json!({"seed": 1, "users": [user]})).await?;
        let drive = admin.users().await?.into_iter().find_map(|u| u.drive_id).context("no drive")?;
        let app = cfg.apps.iter().find(|a| a.name == "restorer").context("restorer app")?;
        let mut gc = GraphConfig::new(&cfg.tenant_id, &app.client_id, ClientSecret::new(app.client_secret.clone()));
        gc.base_url = url::Url::parse(&format!("{url}/v1.0"))?;
        gc.login_url = url::Url::parse(&url)?;
        let graph = GraphClient::new(gc)?;
        let root = graph.root(&drive).await?.id;
        let container = ContainerId::new(&cfg.tenant_id, &drive);
        let (catalog, vault, sink) =
            (Arc::new(MemoryCatalog::new()), Arc::new(MemoryVault::new()), Arc::new(MemorySink::new()));
        let state = SyncState { root_id: Some(root.clone()), ..SyncState::default() };
        catalog.put_sync_state(&container, &state).await?;
        let clock = Arc::new(shared::clock::ManualClock::new(Utc::now()));
        let deps = RestorerDeps {
            graph: graph.clone(),
            vault: vault.clone(),
            catalog: catalog.clone(),
            sink: sink.clone(),
            exports: Arc::new(MemoryExports::new()),
            clock: clock.clone(),
        };
        Ok(Self { admin, graph, catalog, vault, sink, deps, clock, container, drive, root })
    }

    /// Records a backed-up state of file `id` called `name` in the root: `data` in the vault,
    /// `recorded` as its SHA-256 (the bytes' own unless given).
    async fn backed_up(&self, id: &str, name: &str, data: &[u8], recorded: Option<String>) -> Result<()> {
        let sha256 = hex::encode(Sha256::digest(data));
        let lock = Lock { mode: LockMode::Governance, retain_until: Utc::now() + TimeDelta::days(1) };
        let object =
            self.vault.put_if_absent(&format!("blobs/{sha256}"), Bytes::copy_from_slice(data), &lock).await?.object;
        let version = ItemVersion {
            created: Some(created_at()),
            v: SCHEMA_VERSION,
            key: self.container.item(id),
            version: format!("\"{{{id}}},1\""),
            kind: ItemKind::File,
            name: Some(name.to_owned()),
            parent_id: Some(self.root.clone()),
            ctag: None,
            modified: backed_up_at(),
            captured_at: backed_up_at(),
            deleted: false,
            content: Some(ContentRef {
                object: object.clone(),
                size: data.len() as u64,
                sha256: recorded.unwrap_or(sha256),
                quick_xor_hash: None,
            }),
            verification: Verification::Sha256,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        };
        self.catalog.commit_version(&version, &object).await?;
        Ok(())
    }

    /// A running in-place restore job of `items` items, as of now.
    async fn job(&self, items: u64) -> Result<String> {
        let id = format!("job-{}", uuid::Uuid::new_v4());
        let job = RestoreJob::new(
            &id,
            self.container.clone(),
            RestoreScope::Container,
            Utc::now(),
            RestoreTarget::InPlace,
            Utc::now(),
        );
        self.catalog.create_restore_job(&job).await?;
        let plan = RestorePlan { items, bytes: 0, conflicts: 0 };
        self.catalog.set_restore_status(&id, RestoreStatus::Running, Some(plan)).await?;
        Ok(id)
    }

    /// Runs the chunk `item_ids`, then every chunk it sends again, each invocation given
    /// `budget` before its deadline; the invocations it took.
    async fn run_chunk(&self, job: &str, item_ids: &[&str], budget: Duration) -> Result<usize> {
        let step = RestoreStep::Items { item_ids: item_ids.iter().map(|s| s.to_string()).collect(), resume: None };
        let mut tasks = vec![RestoreTask::new(job.to_owned(), step)];
        let mut invocations = 0;
        while let Some(task) = tasks.pop() {
            invocations += 1;
            anyhow::ensure!(invocations < 50, "the chunk never finishes");
            handle(&self.deps, &task, Instant::now() + budget).await?;
            for m in self.sink.take(QueueName::Restores) {
                tasks.push(serde_json::from_str(&m.body)?);
            }
        }
        Ok(invocations)
    }

    async fn outcome(&self, job: &str, item: &str) -> Result<(RestoreOutcome, String)> {
        let report = self.catalog.restore_report(job, item).await?.context("no report")?;
        Ok((report.outcome, report.detail.unwrap_or_default()))
    }

    async fn status(&self, job: &str) -> Result<RestoreStatus> {
        Ok(self.catalog.restore_job(job).await?.context("job")?.status)
    }

    /// The root's file called `name`, as Graph reports it, and its bytes.
    async fn file_named(&self, name: &str) -> Result<Option<(DriveItem, Vec<u8>)>> {
        let children = self.graph.children(&self.drive, &self.root).await?;
        let Some(item) = children.into_iter().find(|c| c.name.as_deref() == Some(name)) else { return Ok(None) };
        let bytes = self.bytes(&item.id).await?;
        Ok(Some((item, bytes)))
    }

    async fn bytes(&self, item_id: &str) -> Result<Vec<u8>> {
        use futures::StreamExt;
        let mut stream = self.graph.download(&self.drive, item_id, 0).await?.stream;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    async fn stats(&self) -> Result<Value> {
        self.admin.stats().await
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn route(stats: &Value, name: &str) -> u64 {
    stats["by_route"][name].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_files_keep_their_backed_up_dates_new_and_in_place() -> Result<()> {
    // Given a file deleted since it was backed up, and one whose content changed since
    let w = World::new().await?;
    w.backed_up("gone-1", "gone.txt", b"the deleted file", None).await?;
    let changed = w
        .graph
        .upload_small(
            &w.drive,
            UploadTarget::New { parent_id: &w.root, name: "kept.txt" },
            Bytes::from_static(b"encrypted!"),
            ConflictBehavior::Fail,
        )
        .await?;
    w.backed_up(&changed.id, "kept.txt", b"the original text", None).await?;
    let job = w.job(2).await?;

    // When both are restored in place
    w.run_chunk(&job, &["gone-1", &changed.id], Duration::from_secs(900)).await?;

    // Then each has the backed-up bytes and lastModifiedDateTime as Graph reports them, the
    // recreated one its recorded creation time, the one restored in place its id and its own
    // creation time
    let (gone, bytes) = w.file_named("gone.txt").await?.context("gone.txt recreated")?;
    assert_eq!(bytes, b"the deleted file");
    assert_eq!((gone.created, gone.last_modified), (Some(created_at()), Some(backed_up_at())));
    let (kept, bytes) = w.file_named("kept.txt").await?.context("kept.txt")?;
    assert_eq!((kept.id.as_str(), bytes.as_slice()), (changed.id.as_str(), b"the original text".as_slice()));
    assert_eq!(kept.last_modified, Some(backed_up_at()));
    assert_eq!(kept.created, changed.created);
    assert_eq!(w.outcome(&job, &changed.id).await?.0, RestoreOutcome::Restored);
    assert_eq!(w.status(&job).await?, RestoreStatus::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_restored_in_place_takes_one_session_of_three_requests() -> Result<()> {
    // Given a small file whose content changed since it was backed up
    let w = World::new().await?;
    let target = UploadTarget::New { parent_id: &w.root, name: "note.txt" };
    let changed = w.graph.upload_small(&w.drive, target, Bytes::from_static(b"new"), ConflictBehavior::Fail).await?;
    w.backed_up(&changed.id, "note.txt", b"old", None).await?;
    let job = w.job(1).await?;
    w.admin.reset_stats().await?;

    // When it is restored in place
    w.run_chunk(&job, &[&changed.id], Duration::from_secs(900)).await?;

    // Then Graph saw: the item read, a session opened, one fragment, the commit, and the
    // read-back (the content request and the download it redirects to)
    let stats = w.stats().await?;
    let seen: Vec<(&str, u64)> = ["item", "create_upload_session", "upload_session", "upload", "content", "download"]
        .into_iter()
        .map(|r| (r, route(&stats, r)))
        .collect();
    assert_eq!(
        seen,
        [
            ("item", 1),
            ("create_upload_session", 1),
            ("upload_session", 2),
            ("upload", 0),
            ("content", 1),
            ("download", 1)
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_match_the_recorded_hash_are_never_committed() -> Result<()> {
    // Given a backed-up file whose vault bytes no longer hash to what the catalog recorded,
    // one of them deleted since, the other changed since
    let w = World::new().await?;
    let recorded = Some(hex::encode(Sha256::digest(b"what was backed up")));
    w.backed_up("gone-1", "gone.txt", b"bit rot", recorded.clone()).await?;
    let changed = w
        .graph
        .upload_small(
            &w.drive,
            UploadTarget::New { parent_id: &w.root, name: "kept.txt" },
            Bytes::from_static(b"current"),
            ConflictBehavior::Fail,
        )
        .await?;
    w.backed_up(&changed.id, "kept.txt", b"bit rot too", recorded).await?;
    let job = w.job(2).await?;

    // When they are restored
    w.run_chunk(&job, &["gone-1", &changed.id], Duration::from_secs(900)).await?;

    // Then both are failed with the reason, the deleted one is not in the drive and the other
    // still holds its current bytes as its only new state; the job finishes
    for id in ["gone-1", changed.id.as_str()] {
        let (outcome, detail) = w.outcome(&job, id).await?;
        assert_eq!(outcome, RestoreOutcome::Failed);
        assert!(detail.contains("do not match their recorded SHA-256: not committed"), "{detail}");
    }
    assert!(w.file_named("gone.txt").await?.is_none());
    let (kept, bytes) = w.file_named("kept.txt").await?.context("kept.txt")?;
    assert_eq!((bytes.as_slice(), kept.etag), (b"current".as_slice(), changed.etag));
    assert_eq!(w.graph.item_versions(&w.drive, &changed.id).await?.len(), 1);
    // Both sessions were opened and sent every byte, then cancelled (a PUT and a DELETE on
    // each upload URL), never committed
    let stats = w.stats().await?;
    assert_eq!(route(&stats, "create_upload_session"), 2);
    assert_eq!(route(&stats, "upload_session"), 4);
    assert_eq!(w.status(&job).await?, RestoreStatus::CompletedWithErrors);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_too_large_for_one_invocation_is_resumed_byte_for_byte_with_its_dates() -> Result<()> {
    // Given a backed-up file of three fragments and a bit, deleted since
    let w = World::new().await?;
    let big = data(3 * FRAGMENT + 1_000, 7);
    w.backed_up("big-1", "big.bin", &big, None).await?;
    let job = w.job(1).await?;

    // When each invocation only has time for one fragment
    let invocations = w.run_chunk(&job, &["big-1"], DEADLINE_MARGIN).await?;

    // Then it took one invocation per fragment, one session resumed each time, and the file
    // is the backed-up one, byte for byte, with its date
    assert_eq!(invocations, 4);
    let stats = w.stats().await?;
    assert_eq!(route(&stats, "create_upload_session"), 1, "the session was resumed, never started over");
    let (item, bytes) = w.file_named("big.bin").await?.context("big.bin")?;
    assert!(bytes == big, "restored bytes differ");
    assert_eq!(item.last_modified, Some(backed_up_at()));
    assert_eq!(w.outcome(&job, "big-1").await?.0, RestoreOutcome::Restored);
    assert_eq!(w.status(&job).await?, RestoreStatus::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_paused_for_time_carries_the_session_only_in_its_message() -> Result<()> {
    // Given a large backed-up file and an invocation with time for one fragment
    let w = World::new().await?;
    w.backed_up("big-1", "big.bin", &data(2 * FRAGMENT, 3), None).await?;
    let job = w.job(1).await?;
    let step = RestoreStep::Items { item_ids: vec!["big-1".into()], resume: None };
    let task = RestoreTask::new(job.clone(), step);

    // When the chunk runs
    handle(&w.deps, &task, Instant::now() + DEADLINE_MARGIN).await?;

    // Then it is sent again at once with the session and where it got; the item has no
    // outcome yet
    let [again] = w.sink.take(QueueName::Restores).try_into().map_err(|_| anyhow::anyhow!("one message"))?;
    assert_eq!(again.delay.unwrap_or_default(), Duration::ZERO);
    let again: RestoreTask = serde_json::from_str(&again.body)?;
    let RestoreStep::Items { item_ids, resume: Some(resume) } = again.step else { anyhow::bail!("no resume") };
    assert_eq!((item_ids, resume.item_id.as_str(), resume.next), (vec!["big-1".to_owned()], "big-1", FRAGMENT as u64));
    assert!(!format!("{resume:?}").contains(resume.upload_url.as_str()));
    assert!(w.catalog.restore_report(&job, "big-1").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_upload_is_sent_again_after_retry_after_with_its_session() -> Result<()> {
    // Given a backed-up file, and Graph throttling its session's fragment for longer than the
    // client waits inline (a small file: the simulator answers a throttled request before
    // reading its body, which a large body would see as a cut connection)
    let w = World::new().await?;
    let big = data(1_000, 5);
    w.backed_up("big-1", "big.bin", &big, None).await?;
    let job = w.job(1).await?;
    let step = RestoreStep::Items { item_ids: vec!["big-1".into()], resume: None };
    let task = RestoreTask::new(job.clone(), step);
    w.admin.fault(json!({"kind": "throttle", "retry_after": 600, "count": 1, "path_contains": "/upload/"})).await?;

    // When the chunk runs
    handle(&w.deps, &task, Instant::now() + Duration::from_secs(900)).await?;

    // Then it is sent again after the Retry-After, carrying the session
    let [again] = w.sink.take(QueueName::Restores).try_into().map_err(|_| anyhow::anyhow!("one message"))?;
    assert_eq!(again.delay, Some(Duration::from_secs(600)));
    let again: RestoreTask = serde_json::from_str(&again.body)?;
    assert!(matches!(&again.step, RestoreStep::Items { resume: Some(r), .. } if r.item_id == "big-1"));

    // And the pause is shared: a chunk arriving before it ends is put off without asking Graph
    let before = w.stats().await?;
    handle(&w.deps, &again, Instant::now() + Duration::from_secs(900)).await?;
    let [early] = w.sink.take(QueueName::Restores).try_into().map_err(|_| anyhow::anyhow!("one message"))?;
    assert!(early.delay.is_some_and(|d| d >= Duration::from_secs(590)), "{:?}", early.delay);
    assert_eq!(w.stats().await?["by_route"], before["by_route"]);

    // And when that message runs after the pause, the same session finishes the file
    w.clock.advance(TimeDelta::seconds(601));
    handle(&w.deps, &again, Instant::now() + Duration::from_secs(900)).await?;
    assert!(w.sink.take(QueueName::Restores).is_empty());
    assert_eq!(route(&w.stats().await?, "create_upload_session"), 1);
    assert!(w.file_named("big.bin").await?.context("big.bin")?.1 == big);
    assert_eq!(w.status(&job).await?, RestoreStatus::Succeeded);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_expiring_midway_is_started_over_and_the_file_restored() -> Result<()> {
    // Given a large backed-up file and a session that expires after its first fragment
    let w = World::new().await?;
    let big = data(2 * FRAGMENT + 10, 9);
    w.backed_up("big-1", "big.bin", &big, None).await?;
    let job = w.job(1).await?;
    w.admin.fault(json!({"kind": "expire_upload_sessions_midway", "count": 1})).await?;

    // When it is restored
    w.run_chunk(&job, &["big-1"], Duration::from_secs(900)).await?;

    // Then a second session started over and the file is whole
    assert_eq!(route(&w.stats().await?, "create_upload_session"), 2);
    assert!(w.file_named("big.bin").await?.context("big.bin")?.1 == big);
    assert_eq!(w.outcome(&job, "big-1").await?.0, RestoreOutcome::Restored);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_whose_answer_is_lost_is_not_sent_again() -> Result<()> {
    // Given a backed-up file of two fragments and a connection cut after Graph kept the
    // first fragment
    let w = World::new().await?;
    let big = data(FRAGMENT + 10, 4);
    w.backed_up("big-1", "big.bin", &big, None).await?;
    let job = w.job(1).await?;
    w.admin.fault(json!({"kind": "reset", "count": 1, "path_contains": "/upload/"})).await?;

    // When it is restored
    w.run_chunk(&job, &["big-1"], Duration::from_secs(900)).await?;

    // Then the session said where it stood and the upload carried on from there: two
    // fragments, one status request, one commit, in one session; the file is whole
    let stats = w.stats().await?;
    assert_eq!((route(&stats, "create_upload_session"), route(&stats, "upload_session")), (1, 4));
    assert!(w.file_named("big.bin").await?.context("big.bin")?.1 == big);
    assert_eq!(w.outcome(&job, "big-1").await?.0, RestoreOutcome::Restored);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_refuse_fail_their_item_with_a_clear_reason_and_the_job_finishes() -> Result<()> {
    // Given, in three drives, a file the restorer may not write, one the drive has no room
    // for, and one whose name the target refuses
    let forbidden = World::new().await?;
    forbidden.admin.fault(json!({"kind": "forbid_writes", "drive_id": forbidden.drive})).await?;
    let full = World::new().await?;
    full.admin.fault(json!({"kind": "drive_quota", "drive_id": full.drive, "bytes": 10})).await?;
    let named = World::new().await?;
    let cases = [
        (&forbidden, "a.txt", "access denied"),
        (&full, "b.txt", "target drive is full"),
        (&named, "CON.txt", "refused by the target: The name 'CON.txt' is reserved."),
    ];
    for (w, name, reason) in cases {
        w.backed_up("f-1", name, b"some backed-up bytes", None).await?;
        let job = w.job(1).await?;

        // When it is restored
        w.run_chunk(&job, &["f-1"], Duration::from_secs(900)).await?;

        // Then the item is failed with the reason, nothing was written, the job finished
        let (outcome, detail) = w.outcome(&job, "f-1").await?;
        assert_eq!(outcome, RestoreOutcome::Failed, "{name}");
        assert!(detail.starts_with(reason), "{name}: {detail}");
        assert!(w.graph.children(&w.drive, &w.root).await?.is_empty(), "{name}");
        assert_eq!(w.status(&job).await?, RestoreStatus::CompletedWithErrors, "{name}");
    }
    Ok(())
}
