//! `verify`: the vault proves its state. A run walks every head of the tenant (see
//! `keeper.rs`) and checks that each object its version needs (the record, the content)
//! exists as the recorded S3 version and is locked in the configured mode at least until the
//! rule's date: for a current version, `RetentionDays` from now (what it needs were it
//! superseded now); for a deletion, the tombstone's record until `93 + RetentionDays` after
//! the deletion was captured. For a sample of versions (each with a chance of one in
//! [`SAMPLE_ONE_IN`], or all when asked) it also reads the bytes back: the content must hash
//! to the recorded SHA-256 and size, the record must read back as the catalog's version.
//! The report (counts, first problems) is kept with the run; the count of problems feeds an
//! alarm.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::PipelineError;
use super::keeper::{self, Batch, KeeperDeps};
use crate::model::{ItemHead, ItemVersion, KeeperRun, ObjectRef, VaultProblem, VerifyReport};
use crate::store::{Lock, StoreError};

/// A sampled run reads back the bytes of one version in this many.
pub const SAMPLE_ONE_IN: u64 = 100;
/// Runs (or resumes) the day's verification until it has walked every head of the tenant or
/// `deadline` comes. `fresh` starts a new run now; `full` reads back every version's bytes.
pub async fn verify(
    deps: &KeeperDeps,
    full: bool,
    fresh: bool,
    deadline: Instant,
) -> Result<KeeperRun<VerifyReport>, PipelineError> {
    keeper::carry(deps, &Verification, full, fresh, deadline).await
}

/// The verify task.
struct Verification;

#[async_trait]
impl keeper::Task for Verification {
    type Report = VerifyReport;
    const NAME: &'static str = keeper::VERIFY;

    async fn batch(
        &self,
        deps: &KeeperDeps,
        run: &mut KeeperRun<VerifyReport>,
        batch: Batch,
    ) -> Result<(), PipelineError> {
        let (seed, full) = (run.started_at.timestamp_millis().to_string(), run.full);
        let checks: Vec<_> = futures::stream::iter(batch.heads.into_iter().map(|head| {
            let read_back = full || sampled(&seed, &head.current.key.item_id);
            async move { check(deps, &head, read_back).await }
        }))
        .buffer_unordered(deps.concurrency.max(1))
        .collect()
        .await;
        let report = &mut run.report;
        report.containers += u64::from(batch.first);
        for checked in checks {
            merge(report, checked?);
        }
        Ok(())
    }

    fn finished(&self, report: &VerifyReport) {
        info!(versions = report.versions, objects = report.objects, problems = report.problem_count(), "verify done");
        crate::metrics::count(crate::metrics::VAULT_PROBLEMS, report.problem_count());
    }
}

/// Whether the run seeded `seed` reads back `item_id`'s bytes: stable within a run, a
/// different sample each run.
fn sampled(seed: &str, item_id: &str) -> bool {
    let digest = Sha256::digest(format!("{seed}#{item_id}").as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    n % SAMPLE_ONE_IN == 0
}

fn merge(report: &mut VerifyReport, checked: VerifyReport) {
    report.versions += checked.versions;
    report.objects += checked.objects;
    report.hashed += checked.hashed;
    report.bytes_hashed += checked.bytes_hashed;
    report.missing += checked.missing;
    report.lock_short += checked.lock_short;
    report.altered += checked.altered;
    report.earliest_lock_end = earliest(report.earliest_lock_end, checked.earliest_lock_end);
    keeper::keep_problems(&mut report.problems, checked.problems);
}

/// The earlier of two lock ends, either of which may be unknown.
fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The checks of one head, as a report of its own.
async fn check(deps: &KeeperDeps, head: &ItemHead, read_back: bool) -> Result<VerifyReport, PipelineError> {
    let now = deps.clock.now();
    let version = &head.current;
    let mut report = VerifyReport { versions: 1, ..VerifyReport::default() };
    let (objects, required) = if version.deleted {
        (vec![&head.record], deps.policy.deletion(version.captured_at).retain_until)
    } else {
        (head.objects(), deps.policy.current_floor(now))
    };
    let required = Lock { mode: deps.policy.mode, retain_until: required };
    for object in objects {
        report.objects += 1;
        let Some(info) = deps.vault.head(object).await? else {
            report.missing += 1;
            problem(&mut report, head, object, "missing: no such object version".to_owned());
            continue;
        };
        // A deletion's lock is only required until its date has passed.
        if required.retain_until <= now {
            continue;
        }
        report.earliest_lock_end = earliest(report.earliest_lock_end, info.retain_until);
        if !info.satisfies(&required) {
            report.lock_short += 1;
            let detail = format!(
                "lock short: mode {:?} until {:?}, the rule needs {} until {}",
                info.lock_mode,
                info.retain_until,
                required.mode.as_str(),
                required.retain_until
            );
            problem(&mut report, head, object, detail);
        }
    }
    if read_back {
        read_back_bytes(deps, head, &mut report).await?;
    }
    Ok(report)
}

/// Reads the version's content and record back: the content must hash to what was recorded,
/// the record must be the catalog's version.
async fn read_back_bytes(deps: &KeeperDeps, head: &ItemHead, report: &mut VerifyReport) -> Result<(), PipelineError> {
    let version = &head.current;
    if let Some(content) = &version.content {
        match hash(deps, &content.object).await? {
            None => {} // counted missing above
            Some((size, sha256)) => {
                report.hashed += 1;
                report.bytes_hashed += size;
                if size != content.size || sha256 != content.sha256 {
                    report.altered += 1;
                    let detail = format!("altered: {size} bytes hashing to {sha256}, recorded {} bytes", content.size);
                    problem(report, head, &content.object, detail);
                }
            }
        }
    }
    match deps.vault.get(&head.record).await {
        Ok(bytes) => {
            report.hashed += 1;
            report.bytes_hashed += bytes.len() as u64;
            let same = serde_json::from_slice::<ItemVersion>(&bytes).is_ok_and(|record| record == *version);
            if !same {
                report.altered += 1;
                problem(
                    report,
                    head,
                    &head.record,
                    "altered: the record does not read back as the catalog's version".to_owned(),
                );
            }
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Size and SHA-256 of an object version, streamed; `None` if it is gone.
async fn hash(deps: &KeeperDeps, object: &ObjectRef) -> Result<Option<(u64, String)>, PipelineError> {
    let mut stream = match deps.vault.get_stream(object).await {
        Ok(stream) => stream,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(Some((size, hex::encode(hasher.finalize()))))
}

fn problem(report: &mut VerifyReport, head: &ItemHead, object: &ObjectRef, problem: String) {
    warn!(item = %head.current.key.item_id, key = %object.key, %problem, "verify found a problem");
    let found = VaultProblem {
        container: head.current.key.container.clone(),
        item_id: head.current.key.item_id.clone(),
        key: object.key.clone(),
        version_id: object.version_id.clone(),
        problem,
    };
    keeper::keep_problems(&mut report.problems, [found]);
}
