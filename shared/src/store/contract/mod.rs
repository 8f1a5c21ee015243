//! The catalog's contract: one suite per capability trait, each test a generic async fn that
//! any implementation must pass. `contract_tests!` runs each against `MemoryCatalog` (the fast
//! tier) and against `DynamoCatalog` on a fresh moto server (ignored in the fast tier; `make
//! test` runs it), so the fake and the adapter answer alike.
//!
//! On moto, a test writes one item at a time: moto does not make a conditional write atomic
//! against a concurrent one on the same item (DynamoDB does), so a race would test moto.

use chrono::{DateTime, Utc};

use super::{ItemHistory, StoreError};
use crate::aws::DynamoCatalog;
use crate::aws::test_moto::{Moto, TABLE, catalog_table};
use crate::model::{
    ContainerId, ItemKind, ItemVersion, ObjectRef, RestoreItemReport, RestoreJob, RestoreOutcome, RestoreScope,
    RestoreTarget, SCHEMA_VERSION, Verification,
};

/// For each contract `name(&catalog)` of the calling module, `memory::name` runs it on a new
/// `MemoryCatalog` and `moto::name` on a `DynamoCatalog` of a fresh moto server.
macro_rules! contract_tests {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&$crate::store::memory::MemoryCatalog::new()).await;
                }
            )+
        }

        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread")]
                #[ignore = "needs moto: make test"]
                async fn $name() {
                    let moto = $crate::aws::test_moto::Moto::start();
                    super::$name(&$crate::store::contract::dynamo(&moto).await).await;
                }
            )+
        }
    };
}

mod as_of;
mod containers;
mod coordination;
mod export_parts;
mod failures;
mod history;
mod keeping;
mod restore;
mod sync;

/// The catalog on a fresh table of `moto`.
pub(crate) async fn dynamo(moto: &Moto) -> DynamoCatalog {
    let config = moto.config().await;
    catalog_table(&config).await;
    DynamoCatalog::new(&config, TABLE)
}

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
}

pub(super) fn container() -> ContainerId {
    ContainerId::new("tenant-1", "b!drive")
}

/// A file `{item}.txt` in `parent`, as it was at `modified`.
pub(super) fn state(item: &str, etag: &str, parent: &str, modified: &str) -> ItemVersion {
    ItemVersion {
        created: None,
        v: SCHEMA_VERSION,
        key: container().item(item),
        version: etag.to_owned(),
        kind: ItemKind::File,
        name: Some(format!("{item}.txt")),
        parent_id: Some(parent.to_owned()),
        ctag: None,
        modified: at(modified),
        captured_at: at("2030-01-01T00:00:00Z"),
        deleted: false,
        content: None,
        verification: Verification::Unverified,
        mail: None,
        observed_at: None,
        current_from: None,
        note: None,
    }
}

fn tombstone(item: &str, parent: Option<&str>, observed: &str) -> ItemVersion {
    ItemVersion {
        version: ItemVersion::tombstone_version(at(observed)),
        parent_id: parent.map(str::to_owned),
        name: None,
        deleted: true,
        verification: Verification::NoContent,
        ..state(item, "", "", observed)
    }
}

fn record(name: &str) -> ObjectRef {
    ObjectRef { key: format!("records/{name}.json"), version_id: format!("s3-{name}") }
}

/// Commits each version in turn, with a record named after its item and version.
async fn commit_all(catalog: &impl ItemHistory, versions: &[ItemVersion]) {
    for v in versions {
        catalog.commit_version(v, &record(&format!("{}/{}", v.key.item_id, v.version))).await.expect("commit");
    }
}

/// (item, version) of each.
fn ids(versions: Vec<ItemVersion>) -> Vec<(String, String)> {
    versions.into_iter().map(|v| (v.key.item_id, v.version)).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(i, v)| ((*i).to_owned(), (*v).to_owned())).collect()
}

/// An in-place restore of the whole container as of 11:45, created at `created`.
fn job(id: &str, created: &str) -> RestoreJob {
    let as_of = at("2024-05-01T11:45:00Z");
    RestoreJob::new(id, container(), RestoreScope::Container, as_of, RestoreTarget::InPlace, at(created))
}

fn report(job_id: &str, item: &str, outcome: RestoreOutcome) -> RestoreItemReport {
    RestoreItemReport {
        job_id: job_id.to_owned(),
        item_id: item.to_owned(),
        path: format!("/A/{item}"),
        outcome,
        detail: (outcome == RestoreOutcome::Failed).then(|| "503 from Graph".to_owned()),
        target_item_id: Some(item.to_owned()),
        at: at("2024-05-02T09:00:00Z"),
    }
}

fn is_invalid_cursor<T: std::fmt::Debug>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::InvalidCursor))
}
