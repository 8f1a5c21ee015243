//! A drive's backup history, made up and committed straight into the catalog through
//! `ItemHistory::commit_version`, the one catalog call with which the copier commits a version:
//! the version row (with its `VC#`/`VP#` index attributes) and the head. The rows have the
//! real shape; the vault objects they point at are never written (nothing here reads them).
//!
//! The history is laid around one moment T, so that "as of T" has to choose: most files have
//! one version from before T; some were edited before T, after T, or both; some were deleted
//! or moved to the next folder after T; and a few files were created after T.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use shared::keys;
use shared::model::{
    ContainerId, ContainerRecord, ContentRef, ItemKind, ItemVersion, ObjectRef, SCHEMA_VERSION, SyncState, Verification,
};
use shared::store::{Containers, ItemHistory, SyncStates};

/// Items whose versions are being committed at once (each item's versions go in order).
pub const IN_FLIGHT: usize = 32;
/// One file created after T per this many files of a folder.
const CREATED_AFTER_EVERY: usize = 1_000;

/// The moments the history is laid around.
#[derive(Clone, Copy, Debug)]
pub struct Timeline {
    /// When the drive was first backed up; every version is later.
    pub discovered: DateTime<Utc>,
    /// The "as of" moment of the figures: versions before it span 15 days, after it 5 days.
    pub t: DateTime<Utc>,
}

impl Timeline {
    pub fn before(now: DateTime<Utc>) -> Self {
        let now = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
        Self { discovered: now - Duration::days(30), t: now - Duration::days(10) }
    }
}

/// A drive of `files` files, `files_per_folder` to a folder under the root, and one more
/// folder (empty at T) that the last folder's moved files go to.
#[derive(Clone, Debug)]
pub struct DriveShape {
    pub tenant_id: String,
    /// Short label: item ids and names derive from it.
    pub label: &'static str,
    pub files: usize,
    pub files_per_folder: usize,
}

impl DriveShape {
    pub fn container(&self) -> ContainerId {
        ContainerId::new(self.tenant_id.clone(), format!("b!{}", hex_of(&format!("drive/{}", self.label))))
    }

    pub fn root_id(&self) -> String {
        format!("01BENCH{}ROOT", self.label)
    }

    pub fn folders(&self) -> usize {
        self.files.div_ceil(self.files_per_folder.max(1)) + 1
    }

    pub fn folder_id(&self, k: usize) -> String {
        format!("01BENCH{}F{k:026}", self.label)
    }

    fn file_id(&self, i: usize) -> String {
        format!("01BENCH{}{i:027}", self.label)
    }

    fn new_file_id(&self, i: usize) -> String {
        format!("01BENCH{}N{i:026}", self.label)
    }

    /// Files alive at T (every file the shape lays out: deletions come after T).
    pub fn files_at_t(&self) -> usize {
        self.files
    }

    /// Files created after T.
    pub fn created_after(&self) -> usize {
        (0..self.folders() - 1).map(|k| self.files_in(k).div_ceil(CREATED_AFTER_EVERY)).sum()
    }

    fn files_in(&self, folder: usize) -> usize {
        let start = folder * self.files_per_folder;
        self.files.saturating_sub(start).min(self.files_per_folder)
    }
}

/// What a seeding committed, and how fast.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seeded {
    pub items: u64,
    pub versions: u64,
    pub secs: f64,
}

fn hex_of(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An S3 version id: opaque, 32 characters.
fn version_id(of: &str) -> String {
    hex_of(of)[..32].to_owned()
}

fn record_of(v: &ItemVersion) -> ObjectRef {
    let key = keys::record_key(&v.key, &v.version);
    ObjectRef { version_id: version_id(&key), key }
}

/// Builds one item's versions, oldest first, the way the copier would have committed them.
struct History<'a> {
    shape: &'a DriveShape,
    id: String,
    versions: Vec<ItemVersion>,
}

impl<'a> History<'a> {
    fn new(shape: &'a DriveShape, id: String) -> Self {
        Self { shape, id, versions: Vec::new() }
    }

    fn etag(&self) -> String {
        format!("\"{{{}}},{}\"", &hex_of(&self.id)[..32].to_uppercase(), self.versions.len() + 1)
    }

    fn push(&mut self, kind: ItemKind, name: &str, parent: Option<String>, modified: DateTime<Utc>, edited: bool) {
        let etag = self.etag();
        let content = if kind != ItemKind::File {
            None
        } else if !edited && let Some(last) = self.versions.last() {
            last.content.clone() // a move or rename: the copier reuses the bytes it holds
        } else {
            let sha256 = hex_of(&format!("{}/{}", self.id, self.versions.len()));
            let object_key = keys::blob_key(&self.shape.tenant_id, &sha256);
            let size = 1_000 + u64::from_str_radix(&sha256[..8], 16).unwrap_or(0) % 500_000;
            Some(ContentRef {
                object: ObjectRef { version_id: version_id(&object_key), key: object_key },
                size,
                quick_xor_hash: Some(sha256[..28].to_owned()),
                sha256,
            })
        };
        let version = ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: self.shape.container().item(self.id.clone()),
            version: etag.clone(),
            kind,
            name: Some(name.to_owned()),
            parent_id: parent,
            ctag: content.as_ref().map(|_| etag.replace("\"{", "\"c:{")),
            modified,
            captured_at: modified + Duration::seconds(30),
            deleted: false,
            verification: if content.is_some() { Verification::QuickXor } else { Verification::NoContent },
            content,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        };
        self.versions.push(version);
    }

    /// A tombstone as the copier writes one: last name and parent kept.
    fn delete(&mut self, observed: DateTime<Utc>) {
        let Some(last) = self.versions.last().cloned() else { return };
        self.versions.push(ItemVersion {
            version: ItemVersion::tombstone_version(observed),
            ctag: None,
            modified: observed,
            captured_at: observed + Duration::seconds(30),
            deleted: true,
            content: None,
            verification: Verification::NoContent,
            ..last
        });
    }
}

impl DriveShape {
    fn folder(&self, tl: Timeline, k: usize) -> Vec<ItemVersion> {
        let mut h = History::new(self, self.folder_id(k));
        let name = if k + 1 == self.folders() { "Archive".to_owned() } else { format!("Folder {k:03}") };
        h.push(ItemKind::Folder, &name, Some(self.root_id()), tl.discovered + Duration::seconds(2), false);
        h.versions
    }

    /// File `i`: per hundred files, 10 edited after T, 10 edited before and after T, 10
    /// edited before T, 2 deleted after T and 1 moved to the next folder after T.
    fn file(&self, tl: Timeline, i: usize) -> Vec<ItemVersion> {
        let folder = i / self.files_per_folder.max(1);
        let (parent, name) = (Some(self.folder_id(folder)), format!("Report {i:06}.docx"));
        let spread = |modulo: i64| Duration::seconds(i as i64 % modulo);
        let t = tl.t;
        let mut h = History::new(self, self.file_id(i));
        let first = tl.discovered + Duration::seconds(10) + Duration::seconds((i as i64 * 7) % (15 * 86_400));
        h.push(ItemKind::File, &name, parent.clone(), first, true);
        match i % 100 {
            r if r % 10 == 0 => h.push(ItemKind::File, &name, parent, t + Duration::days(1) + spread(86_400), true),
            r if r % 10 == 5 => {
                h.push(ItemKind::File, &name, parent.clone(), t - Duration::days(2) + spread(3_600), true);
                h.push(ItemKind::File, &name, parent, t + Duration::days(1) + spread(86_400), true);
            }
            r if r % 10 == 7 => h.push(ItemKind::File, &name, parent, t - Duration::days(2) + spread(3_600), true),
            3 | 53 => h.delete(t + Duration::days(2) + spread(3_600)),
            11 => {
                let moved_to = Some(self.folder_id(folder + 1));
                h.push(ItemKind::File, &name, moved_to, t + Duration::days(3) + spread(3_600), false);
            }
            _ => {}
        }
        h.versions
    }

    fn created_after_t(&self, tl: Timeline, folder: usize, n: usize) -> Vec<ItemVersion> {
        let mut h = History::new(self, self.new_file_id(folder * self.files_per_folder + n));
        let name = format!("New {folder:03}-{n:03}.docx");
        let modified = tl.t + Duration::days(4) + Duration::seconds(n as i64);
        h.push(ItemKind::File, &name, Some(self.folder_id(folder)), modified, true);
        h.versions
    }

    /// Every item's history: folders, files, then the files created after T. The root has
    /// none: the enumerator only records its id.
    fn histories(&self, tl: Timeline) -> impl Iterator<Item = Vec<ItemVersion>> + '_ {
        let real_folders = self.folders() - 1;
        let created = (0..real_folders).flat_map(move |k| {
            (0..self.files_in(k).div_ceil(CREATED_AFTER_EVERY)).map(move |n| self.created_after_t(tl, k, n))
        });
        (0..self.folders())
            .map(move |k| self.folder(tl, k))
            .chain((0..self.files).map(move |i| self.file(tl, i)))
            .chain(created)
    }
}

/// Registers the drive as the scheduler and enumerator would (container row, root id), then
/// commits every item's versions, [`IN_FLIGHT`] items at a time, printing progress.
pub async fn seed<C: Containers + ItemHistory + SyncStates + 'static>(
    catalog: Arc<C>,
    shape: &DriveShape,
    tl: Timeline,
) -> Result<Seeded> {
    let container = shape.container();
    catalog
        .put_container(&ContainerRecord {
            container: container.clone(),
            user_id: hex_of(&format!("user/{}", shape.label))[..36].to_owned(),
            user_principal_name: Some(format!("bench-{}@bench.test", shape.label.to_lowercase())),
            discovered_at: tl.discovered,
            subscription_id: None,
            subscription_expires: None,
            problem: None,
            site: None,
        })
        .await?;
    let sync = SyncState { root_id: Some(shape.root_id()), last_synced_at: Some(Utc::now()), ..SyncState::default() };
    catalog.put_sync_state(&container, &sync).await?;

    let started = Instant::now();
    let total = shape.folders() + shape.files + shape.created_after();
    let every = (total / 10).max(1);
    let commits = futures::stream::iter(shape.histories(tl)).map(|versions| {
        let catalog = catalog.clone();
        async move {
            for v in &versions {
                catalog.commit_version(v, &record_of(v)).await?;
            }
            Ok::<u64, shared::store::StoreError>(versions.len() as u64)
        }
    });
    let seeded = commits
        .buffer_unordered(IN_FLIGHT)
        .try_fold(Seeded::default(), |mut seeded, versions| async move {
            seeded.items += 1;
            seeded.versions += versions;
            if (seeded.items as usize).is_multiple_of(every) {
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "   {} / {total} items, {} versions, {:.0} versions/s",
                    seeded.items,
                    seeded.versions,
                    seeded.versions as f64 / secs
                );
            }
            Ok(seeded)
        })
        .await?;
    Ok(Seeded { secs: started.elapsed().as_secs_f64(), ..seeded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(files: usize, per_folder: usize) -> DriveShape {
        DriveShape { tenant_id: "t".into(), label: "X", files, files_per_folder: per_folder }
    }

    #[test]
    fn histories_lay_versions_on_both_sides_of_t() {
        // Given a drive of 1,000 files in folders of 500
        let tl = Timeline::before(Utc::now());
        let shape = shape(1_000, 500);
        let all: Vec<Vec<ItemVersion>> = shape.histories(tl).collect();
        // Then every item is there once: two folders and the archive, files, new files
        assert_eq!(all.len(), 3 + 1_000 + 2);
        assert_eq!(shape.created_after(), 2);
        // And each history is oldest first, with the version current at T alive for every file
        for versions in &all {
            assert!(versions.windows(2).all(|w| w[0].modified < w[1].modified), "{versions:?}");
        }
        let files = &all[3..1_003];
        let at_t = |h: &Vec<ItemVersion>| h.iter().rfind(|v| v.modified <= tl.t).cloned();
        assert!(files.iter().all(|h| at_t(h).is_some_and(|v| !v.deleted)));
        let changed_after = files.iter().filter(|h| h.last().is_some_and(|v| v.modified > tl.t)).count();
        assert_eq!(changed_after, 1_000 * 23 / 100);
        // And a file moved after T keeps its bytes under the next folder
        let moved = &files[11];
        assert_eq!(moved[1].parent_id.as_deref(), Some(shape.folder_id(1).as_str()));
        assert_eq!(moved[0].content, moved[1].content);
        // And the created-after-T files exist only after T
        assert!(all[1_003..].iter().all(|h| h[0].modified > tl.t));
    }
}
