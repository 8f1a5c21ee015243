//! `GET /v1/health`: the vault keeper's last runs as the catalog keeps them (lock extension,
//! verification), and `vault_ok`: whether the last verification finished, found nothing
//! wrong, and is recent enough to vouch for the vault.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ApiDeps, ApiError, ApiQuery, Deps, NoQuery};
use crate::model::{ExtendReport, KeeperRun, VerifyReport};
use crate::pipeline::keeper::{EXTEND, VERIFY};
use crate::store::StoreError;

/// A verification older than this no longer vouches for the vault: runs are daily, so two
/// days leave room for one missed run.
pub const VERIFIED_WITHIN: TimeDelta = TimeDelta::hours(48);

#[derive(Serialize, Debug)]
pub struct Health {
    /// The last lock extension run (finished or under way), `null` before the first.
    pub retention: Option<KeeperRun<ExtendReport>>,
    /// The last verification run (finished or under way), `null` before the first.
    pub verify: Option<KeeperRun<VerifyReport>>,
    pub vault_ok: bool,
}

/// True when the last verification that finished (`run` itself, or while it is under way the
/// one before it) finished within [`VERIFIED_WITHIN`] of `now` and found no problem.
pub fn vault_ok(run: Option<&KeeperRun<VerifyReport>>, now: DateTime<Utc>) -> bool {
    run.and_then(KeeperRun::finished)
        .is_some_and(|done| now - done.finished_at <= VERIFIED_WITHIN && done.report.problem_count() == 0)
}

async fn last_run<R: DeserializeOwned>(deps: &ApiDeps, task: &str) -> Result<Option<KeeperRun<R>>, ApiError> {
    let Some((doc, _revision)) = deps.catalog.keeper_run(&deps.tenant_id, task).await? else {
        return Ok(None);
    };
    let run = serde_json::from_str(&doc).map_err(|e| StoreError::Malformed(format!("keeper run {task}: {e}")))?;
    Ok(Some(run))
}

pub(crate) async fn health(
    State(deps): Deps,
    ApiQuery(NoQuery {}): ApiQuery<NoQuery>,
) -> Result<Json<Health>, ApiError> {
    let retention = last_run::<ExtendReport>(&deps, EXTEND).await?;
    let verify = last_run::<VerifyReport>(&deps, VERIFY).await?;
    let vault_ok = vault_ok(verify.as_ref(), deps.clock.now());
    Ok(Json(Health { retention, verify, vault_ok }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SCHEMA_VERSION;

    fn run(finished_at: Option<DateTime<Utc>>, lock_short: u64) -> KeeperRun<VerifyReport> {
        KeeperRun {
            v: SCHEMA_VERSION,
            started_at: DateTime::UNIX_EPOCH,
            finished_at,
            cursor: None,
            full: false,
            invocations: 1,
            report: VerifyReport { lock_short, ..VerifyReport::default() },
            last_finished: None,
        }
    }

    #[test]
    fn the_vault_is_ok_only_after_a_clean_verification_finished_within_two_days() {
        let now = DateTime::UNIX_EPOCH + TimeDelta::days(10);
        assert!(vault_ok(Some(&run(Some(now - TimeDelta::hours(1)), 0)), now));
        assert!(vault_ok(Some(&run(Some(now - VERIFIED_WITHIN), 0)), now));
        assert!(!vault_ok(Some(&run(Some(now - VERIFIED_WITHIN - TimeDelta::seconds(1)), 0)), now));
        assert!(!vault_ok(Some(&run(Some(now - TimeDelta::hours(1)), 1)), now));
        assert!(!vault_ok(Some(&run(None, 0)), now));
        assert!(!vault_ok(None, now));
    }
}
