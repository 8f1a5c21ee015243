//! A versioned, Object-Locked bucket in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};

use super::{MIN_PART_SIZE, bump, injected, locked, take_fault};
use crate::model::ObjectRef;
use crate::store::{Lock, LockMode, Multipart, ObjectInfo, StoreError, Stored, Vault};

const STREAM_CHUNK: usize = 64 * 1024;

struct ObjectVersion {
    version_id: String,
    body: Bytes,
    lock_mode: Option<LockMode>,
    retain_until: Option<DateTime<Utc>>,
}

struct PendingUpload {
    key: String,
    parts: BTreeMap<i32, (String, Bytes)>,
}

#[derive(Default)]
struct VaultState {
    /// Versions per key, oldest first.
    objects: BTreeMap<String, Vec<ObjectVersion>>,
    uploads: HashMap<String, PendingUpload>,
    fail_puts: u32,
    drop_lock_on_multipart: bool,
    refuse_retention: bool,
}

impl VaultState {
    fn version(&self, object: &ObjectRef) -> Option<&ObjectVersion> {
        self.objects.get(&object.key)?.iter().find(|v| v.version_id == object.version_id)
    }

    fn add(&mut self, key: &str, body: Bytes, lock: Option<&Lock>) -> ObjectRef {
        let version_id = uuid::Uuid::new_v4().simple().to_string();
        self.objects.entry(key.to_owned()).or_default().push(ObjectVersion {
            version_id: version_id.clone(),
            body,
            lock_mode: lock.map(|l| l.mode),
            retain_until: lock.map(|l| l.retain_until),
        });
        ObjectRef { key: key.to_owned(), version_id }
    }
}

fn version_mut<'a>(state: &'a mut VaultState, object: &ObjectRef) -> Option<&'a mut ObjectVersion> {
    state.objects.get_mut(&object.key)?.iter_mut().find(|v| v.version_id == object.version_id)
}

fn info(key: &str, v: &ObjectVersion) -> ObjectInfo {
    ObjectInfo {
        object: ObjectRef { key: key.to_owned(), version_id: v.version_id.clone() },
        size: v.body.len() as u64,
        lock_mode: v.lock_mode,
        retain_until: v.retain_until,
    }
}

/// Versioned, Object-Locked bucket: nothing is ever overwritten or deleted.
#[derive(Default)]
pub struct MemoryVault {
    state: Mutex<VaultState>,
    puts: AtomicU64,
    parts: AtomicU64,
    completes: AtomicU64,
    retention_puts: AtomicU64,
    heads: AtomicU64,
    gets: AtomicU64,
}

impl MemoryVault {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` `put_if_absent` calls fail with a retryable error, storing nothing.
    pub fn fail_next_puts(&self, n: u32) {
        locked(&self.state).fail_puts = n;
    }

    /// Completed multipart uploads carry no lock (moto's gap), so only the explicit
    /// retention set afterwards can lock them.
    pub fn drop_lock_on_multipart(&self, drop: bool) {
        locked(&self.state).drop_lock_on_multipart = drop;
    }

    /// Retention updates are accepted but not applied: verification must fail closed.
    pub fn refuse_retention(&self, refuse: bool) {
        locked(&self.state).refuse_retention = refuse;
    }

    /// Test knob: replaces the bytes of a stored version in place, as corruption by an
    /// attacker or a bug would (the vault API itself never does this). False if there is no
    /// such version.
    pub fn tamper(&self, object: &ObjectRef, body: Bytes) -> bool {
        let mut state = locked(&self.state);
        let Some(version) = version_mut(&mut state, object) else { return false };
        version.body = body;
        true
    }

    /// Test knob: sets a version's retain-until date as it is, shorter or removed (a lapsed
    /// lock, as moto lets GOVERNANCE be shortened); the mode stays, or becomes GOVERNANCE
    /// when a date is set on an unlocked version. False if there is no such version.
    pub fn set_retention_unchecked(&self, object: &ObjectRef, retain_until: Option<DateTime<Utc>>) -> bool {
        let mut state = locked(&self.state);
        let Some(version) = version_mut(&mut state, object) else { return false };
        version.retain_until = retain_until;
        version.lock_mode = match retain_until {
            None => None,
            Some(_) => Some(version.lock_mode.unwrap_or(LockMode::Governance)),
        };
        true
    }

    /// Number of object versions stored.
    pub fn object_count(&self) -> usize {
        locked(&self.state).objects.values().map(Vec::len).sum()
    }

    pub fn all_objects(&self) -> Vec<(ObjectRef, ObjectInfo)> {
        let state = locked(&self.state);
        state
            .objects
            .iter()
            .flat_map(|(key, versions)| versions.iter().map(|v| info(key, v)))
            .map(|i| (i.object.clone(), i))
            .collect()
    }

    /// `put_if_absent` calls, including failed and deduplicated ones.
    pub fn put_count(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }

    pub fn part_count(&self) -> u64 {
        self.parts.load(Ordering::Relaxed)
    }

    pub fn complete_count(&self) -> u64 {
        self.completes.load(Ordering::Relaxed)
    }

    pub fn retention_put_count(&self) -> u64 {
        self.retention_puts.load(Ordering::Relaxed)
    }

    pub fn head_count(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }

    pub fn get_count(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Vault for MemoryVault {
    async fn put_if_absent(&self, key: &str, body: Bytes, lock: &Lock) -> Result<Stored, StoreError> {
        bump(&self.puts);
        let stored = {
            let mut state = locked(&self.state);
            if take_fault(&mut state.fail_puts) {
                return Err(injected("s3"));
            }
            match state.objects.get(key).and_then(|v| v.last()) {
                Some(current) => Stored {
                    object: ObjectRef { key: key.to_owned(), version_id: current.version_id.clone() },
                    created: false,
                },
                None => Stored { object: state.add(key, body, Some(lock)), created: true },
            }
        };
        self.ensure_locked(&stored.object, lock).await?;
        Ok(stored)
    }

    async fn start_multipart(&self, key: &str, _lock: &Lock) -> Result<Multipart, StoreError> {
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let pending = PendingUpload { key: key.to_owned(), parts: BTreeMap::new() };
        locked(&self.state).uploads.insert(upload_id.clone(), pending);
        Ok(Multipart { key: key.to_owned(), upload_id, parts: Vec::new() })
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        bump(&self.parts);
        if !(1..=10_000).contains(&part_number) {
            return Err(StoreError::Malformed(format!("part number {part_number} out of range")));
        }
        let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
        let mut state = locked(&self.state);
        let pending =
            state.uploads.get_mut(&upload.upload_id).ok_or_else(|| StoreError::NotFound { key: upload.key.clone() })?;
        pending.parts.insert(part_number, (etag.clone(), body));
        upload.parts.retain(|(n, _)| *n != part_number);
        upload.parts.push((part_number, etag));
        Ok(())
    }

    async fn complete_multipart(&self, upload: Multipart, lock: &Lock) -> Result<ObjectRef, StoreError> {
        bump(&self.completes);
        let object = {
            let mut state = locked(&self.state);
            let pending =
                state.uploads.get(&upload.upload_id).ok_or_else(|| StoreError::NotFound { key: upload.key.clone() })?;
            let mut listed = upload.parts.clone();
            listed.sort_by_key(|(n, _)| *n);
            if listed.is_empty() {
                return Err(StoreError::Malformed("a multipart upload needs at least one part".to_owned()));
            }
            let mut body = Vec::new();
            for (i, (n, etag)) in listed.iter().enumerate() {
                let (stored_etag, part) = pending
                    .parts
                    .get(n)
                    .filter(|(e, _)| e == etag)
                    .ok_or_else(|| StoreError::Malformed(format!("part {n} was not uploaded as listed")))?;
                debug_assert_eq!(stored_etag, etag);
                if i + 1 < listed.len() && part.len() < MIN_PART_SIZE {
                    return Err(StoreError::Malformed(format!("part {n} is smaller than 5 MiB (EntityTooSmall)")));
                }
                body.extend_from_slice(part);
            }
            let key = pending.key.clone();
            state.uploads.remove(&upload.upload_id);
            let lock_on_create = (!state.drop_lock_on_multipart).then_some(lock);
            state.add(&key, Bytes::from(body), lock_on_create)
        };
        self.ensure_locked(&object, lock).await?;
        Ok(object)
    }

    async fn abort_multipart(&self, upload: Multipart) -> Result<(), StoreError> {
        locked(&self.state).uploads.remove(&upload.upload_id);
        Ok(())
    }

    async fn ensure_locked(&self, object: &ObjectRef, lock: &Lock) -> Result<(), StoreError> {
        let mut state = locked(&self.state);
        let refuse = state.refuse_retention;
        let version =
            version_mut(&mut state, object).ok_or_else(|| StoreError::NotFound { key: object.key.clone() })?;
        if info(&object.key, version).satisfies(lock) {
            return Ok(());
        }
        bump(&self.retention_puts);
        if !refuse {
            // Never shorten, never weaken COMPLIANCE.
            if version.lock_mode != Some(LockMode::Compliance) {
                version.lock_mode = Some(lock.mode);
            }
            version.retain_until = Some(version.retain_until.map_or(lock.retain_until, |t| t.max(lock.retain_until)));
        }
        let after = info(&object.key, version);
        if after.satisfies(lock) {
            Ok(())
        } else {
            Err(StoreError::NotLocked {
                key: object.key.clone(),
                detail: format!("reads back mode {:?} until {:?}", after.lock_mode, after.retain_until),
            })
        }
    }

    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError> {
        bump(&self.heads);
        Ok(locked(&self.state).version(object).map(|v| info(&object.key, v)))
    }

    async fn get(&self, object: &ObjectRef) -> Result<Bytes, StoreError> {
        bump(&self.gets);
        let state = locked(&self.state);
        let version = state.version(object).ok_or_else(|| StoreError::NotFound { key: object.key.clone() })?;
        Ok(version.body.clone())
    }

    async fn get_stream(
        &self,
        object: &ObjectRef,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let body = self.get(object).await?;
        let chunks: Vec<Result<Bytes, StoreError>> = (0..body.len())
            .step_by(STREAM_CHUNK)
            .map(|start| Ok(body.slice(start..(start + STREAM_CHUNK).min(body.len()))))
            .collect();
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectRef>, StoreError> {
        let state = locked(&self.state);
        Ok(state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .flat_map(|(key, versions)| {
                versions.iter().rev().map(|v| ObjectRef { key: key.clone(), version_id: v.version_id.clone() })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    fn lock(until: &str) -> Lock {
        Lock { mode: LockMode::Governance, retain_until: at(until) }
    }

    #[tokio::test]
    async fn a_second_put_of_the_same_key_is_a_locked_no_op() {
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let first = vault.put_if_absent("blob", Bytes::from_static(b"one"), &l).await.expect("first put");
        let second = vault.put_if_absent("blob", Bytes::from_static(b"two"), &l).await.expect("second put");
        assert!(first.created && !second.created);
        assert_eq!(first.object, second.object);
        assert_eq!(vault.object_count(), 1);
        assert_eq!(vault.get(&first.object).await.expect("get"), Bytes::from_static(b"one"));
        let (_, info) = &vault.all_objects()[0];
        assert!(info.satisfies(&l));
    }

    #[tokio::test]
    async fn injected_put_faults_store_nothing_and_are_retryable() {
        let vault = MemoryVault::new();
        vault.fail_next_puts(1);
        let err = vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2031-01-01T00:00:00Z")).await;
        assert!(err.is_err_and(|e| e.is_retryable()));
        assert_eq!(vault.object_count(), 0);
        assert!(vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2031-01-01T00:00:00Z")).await.is_ok());
        assert_eq!(vault.put_count(), 2);
    }

    #[tokio::test]
    async fn multipart_without_lock_on_create_ends_locked_or_fails_closed() {
        let vault = MemoryVault::new();
        vault.drop_lock_on_multipart(true);
        let l = lock("2031-01-01T00:00:00Z");
        let big = Bytes::from(vec![7u8; MIN_PART_SIZE]);
        let mut upload = vault.start_multipart("large", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, big.clone()).await.expect("part 1");
        vault.upload_part(&mut upload, 2, Bytes::from_static(b"tail")).await.expect("part 2");
        let object = vault.complete_multipart(upload, &l).await.expect("complete");
        let info = vault.head(&object).await.expect("head").expect("exists");
        assert!(info.satisfies(&l));
        assert_eq!(info.size, MIN_PART_SIZE as u64 + 4);
        assert_eq!(vault.retention_put_count(), 1);

        vault.refuse_retention(true);
        let mut upload = vault.start_multipart("large2", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, Bytes::from_static(b"small")).await.expect("part");
        let err = vault.complete_multipart(upload, &l).await;
        assert!(matches!(err, Err(StoreError::NotLocked { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn small_middle_parts_are_rejected_and_retention_never_shortens() {
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let mut upload = vault.start_multipart("large", &l).await.expect("start");
        vault.upload_part(&mut upload, 1, Bytes::from_static(b"tiny")).await.expect("part 1");
        vault.upload_part(&mut upload, 2, Bytes::from_static(b"tail")).await.expect("part 2");
        assert!(vault.complete_multipart(upload, &l).await.is_err());

        let stored =
            vault.put_if_absent("k", Bytes::from_static(b"x"), &lock("2032-01-01T00:00:00Z")).await.expect("put");
        vault.ensure_locked(&stored.object, &l).await.expect("already longer");
        let info = vault.head(&stored.object).await.expect("head").expect("exists");
        assert_eq!(info.retain_until, Some(at("2032-01-01T00:00:00Z")));
    }

    #[tokio::test]
    async fn tampering_replaces_one_versions_bytes_in_place() {
        // Given two versions of a key (the second written by a raw add, as a later put would)
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let first = vault.put_if_absent("k", Bytes::from_static(b"clean"), &l).await.expect("put").object;
        let second = locked(&vault.state).add("k", Bytes::from_static(b"other"), Some(&l));

        // When the first is tampered with
        assert!(vault.tamper(&first, Bytes::from_static(b"encrypted!")));

        // Then it reads back (whole and streamed) with the new bytes and size, same version id
        // and lock, nothing added, and the other version is untouched
        assert_eq!(vault.get(&first).await.expect("get"), Bytes::from_static(b"encrypted!"));
        let streamed: Vec<Bytes> =
            vault.get_stream(&first).await.expect("stream").map(|c| c.expect("chunk")).collect().await;
        assert_eq!(streamed.concat(), b"encrypted!");
        let info = vault.head(&first).await.expect("head").expect("exists");
        assert_eq!((info.size, info.object.clone()), (10, first.clone()));
        assert!(info.satisfies(&l));
        assert_eq!(vault.object_count(), 2);
        assert_eq!(vault.get(&second).await.expect("get"), Bytes::from_static(b"other"));

        // And a version that does not exist is not created
        let ghost = ObjectRef { key: "k".into(), version_id: "nope".into() };
        assert!(!vault.tamper(&ghost, Bytes::from_static(b"x")));
        assert_eq!(vault.object_count(), 2);
    }

    #[tokio::test]
    async fn retention_set_unchecked_can_shorten_or_remove_a_lock() {
        // Given a version locked until 2031
        let vault = MemoryVault::new();
        let l = lock("2031-01-01T00:00:00Z");
        let object = vault.put_if_absent("k", Bytes::from_static(b"x"), &l).await.expect("put").object;

        // When its lock is made to lapse in 2020
        assert!(vault.set_retention_unchecked(&object, Some(at("2020-01-01T00:00:00Z"))));

        // Then it reads back shortened, in the same mode, and no longer satisfies the lock
        let info = vault.head(&object).await.expect("head").expect("exists");
        assert_eq!((info.lock_mode, info.retain_until), (Some(LockMode::Governance), Some(at("2020-01-01T00:00:00Z"))));
        assert!(!info.satisfies(&l));
        assert_eq!(vault.retention_put_count(), 0);

        // And ensure_locked lengthens it again as usual
        vault.ensure_locked(&object, &l).await.expect("relock");
        assert!(vault.head(&object).await.expect("head").expect("exists").satisfies(&l));

        // When the lock is removed altogether, then the version has none
        assert!(vault.set_retention_unchecked(&object, None));
        let info = vault.head(&object).await.expect("head").expect("exists");
        assert_eq!((info.lock_mode, info.retain_until), (None, None));
        let ghost = ObjectRef { key: "k".into(), version_id: "nope".into() };
        assert!(!vault.set_retention_unchecked(&ghost, None));
    }
}
