//! In-memory exports bucket: multipart uploads with S3's part-size rule, completed objects
//! readable by tests (the restorer itself never reads an export).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::MIN_PART_SIZE;
use crate::store::{ExportStore, Multipart, StoreError};

#[derive(Default)]
struct ExportsState {
    /// Upload id → (key, parts by number).
    uploads: BTreeMap<String, (String, BTreeMap<i32, Bytes>)>,
    objects: BTreeMap<String, Bytes>,
    next_upload: u64,
    largest_part: usize,
}

/// The exports bucket in memory.
#[derive(Default)]
pub struct MemoryExports {
    state: Mutex<ExportsState>,
}

impl MemoryExports {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, ExportsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A completed export's bytes.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    /// Uploads started and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.lock().uploads.len()
    }

    /// The largest part body uploaded so far: what an upload held in memory at once.
    pub fn largest_part(&self) -> usize {
        self.lock().largest_part
    }
}

fn no_upload(upload: &Multipart) -> StoreError {
    StoreError::NotFound { key: format!("upload {} of {}", upload.upload_id, upload.key) }
}

#[async_trait]
impl ExportStore for MemoryExports {
    async fn start_upload(&self, key: &str) -> Result<Multipart, StoreError> {
        let mut state = self.lock();
        state.next_upload += 1;
        let upload_id = format!("upload-{}", state.next_upload);
        state.uploads.insert(upload_id.clone(), (key.to_owned(), BTreeMap::new()));
        Ok(Multipart { key: key.to_owned(), upload_id, parts: Vec::new() })
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.largest_part = state.largest_part.max(body.len());
        let (_, parts) = state.uploads.get_mut(&upload.upload_id).ok_or_else(|| no_upload(upload))?;
        parts.insert(part_number, body);
        upload.parts.retain(|(n, _)| *n != part_number);
        upload.parts.push((part_number, format!("etag-{part_number}")));
        Ok(())
    }

    async fn complete_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        let mut state = self.lock();
        let (key, parts) = state.uploads.remove(&upload.upload_id).ok_or_else(|| no_upload(&upload))?;
        let last = parts.keys().next_back().copied();
        if let Some(small) = parts.iter().find(|(n, b)| Some(**n) != last && b.len() < MIN_PART_SIZE) {
            return Err(StoreError::Service {
                service: "s3",
                message: format!("EntityTooSmall: part {} of {key} is {} bytes", small.0, small.1.len()),
                retryable: false,
            });
        }
        let mut body = BytesMut::new();
        for part in parts.values() {
            body.extend_from_slice(part);
        }
        state.objects.insert(key, body.freeze());
        Ok(())
    }

    async fn abort_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        self.lock().uploads.remove(&upload.upload_id);
        Ok(())
    }
}
