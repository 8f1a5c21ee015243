//! The vault on S3 with versioning and Object Lock.
//!
//! Every object we create gets retention set explicitly and read back (`ensure_locked`):
//! lock headers on the create are a first attempt, `PutObjectRetention` on the exact version
//! is the fallback, `HeadObject` is the check, and anything short of the requested lock is
//! [`StoreError::NotLocked`] (fail closed). moto ignores lock headers on multipart creation
//! and answers `GetObjectRetention` with 500 for such objects, which is why the check reads
//! `HeadObject` first.
//!
//! Checksums: S3 requires Content-MD5 or an `x-amz-checksum-*` on writes to Object Lock
//! buckets. Single puts send SHA-256; multipart uploads use CRC32 per part, and the part
//! token kept in [`Multipart::parts`] is `"{etag} {crc32}"` because the complete request
//! must repeat each part's checksum. Callers treat the token as opaque.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ObjectLockMode, ObjectLockRetention,
    ObjectLockRetentionMode,
};
use bytes::Bytes;
use chrono::{DateTime, Timelike, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{code_of, from_aws_time, sdk_error, status_of, to_aws_time};
use crate::backoff::Backoff;
use crate::model::ObjectRef;
use crate::store::{Lock, LockMode, Multipart, ObjectInfo, StoreError, Stored, Vault};

const SERVICE: &str = "s3";
/// `409 ConditionalRequestConflict`: a concurrent conditional write to the same key; retry.
const CONFLICT_RETRIES: u32 = 4;

/// S3 Object Lock vault. The bucket must have versioning and Object Lock enabled.
#[derive(Clone, Debug)]
pub struct S3Vault {
    client: Client,
    bucket: String,
}

impl S3Vault {
    /// Builds the S3 client from `config` (path-style as [`super::s3_client`] decides).
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self::from_client(super::s3_client(config), bucket)
    }

    pub fn from_client(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The current version of `key` (after a 412 on a conditional create).
    async fn current_version(&self, key: &str) -> Result<ObjectRef, StoreError> {
        let out =
            self.client.head_object().bucket(&self.bucket).key(key).send().await.map_err(|e| match status_of(&e) {
                Some(404) => StoreError::NotFound { key: key.to_owned() },
                _ => sdk_error(SERVICE, "HeadObject", e),
            })?;
        let version_id = out
            .version_id()
            .filter(|v| *v != "null")
            .ok_or_else(|| StoreError::Malformed(format!("{key} has no version id: is bucket versioning on?")))?;
        Ok(ObjectRef { key: key.to_owned(), version_id: version_id.to_owned() })
    }

    /// Lock state of a version as `HeadObject` reports it (S3 returns the lock headers to a
    /// caller allowed `s3:GetObjectRetention`). Missing fields mean no lock we can confirm.
    /// No `GetObjectRetention` fallback: moto answers it with the object's whole body, which
    /// for a multi-GiB object would cost that much memory. `None`: the version is gone.
    async fn read_lock(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError> {
        self.head(object).await
    }

    async fn put_retention(&self, object: &ObjectRef, mode: LockMode, until: DateTime<Utc>) -> Result<(), StoreError> {
        let retention = ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::from(mode.as_str()))
            .retain_until_date(to_aws_time(until))
            .build();
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(&object.key)
            .version_id(&object.version_id)
            .retention(retention)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "PutObjectRetention", e))?;
        Ok(())
    }
}

/// S3 keeps retain-until dates at reduced precision (moto: microseconds; S3: seconds in
/// some paths), so a date with nanoseconds reads back earlier than asked. We ask for the
/// next whole second instead, which reads back as at least what the caller asked.
fn whole_seconds(lock: &Lock) -> Lock {
    let t = lock.retain_until;
    let floor = t.with_nanosecond(0).unwrap_or(t);
    let retain_until = if floor < t { floor + chrono::Duration::seconds(1) } else { floor };
    Lock { mode: lock.mode, retain_until }
}

fn lock_mode(mode: LockMode) -> ObjectLockMode {
    ObjectLockMode::from(mode.as_str())
}

fn part_token(etag: &str, crc32: Option<&str>) -> String {
    match crc32 {
        Some(c) => format!("{etag} {c}"),
        None => etag.to_owned(),
    }
}

fn completed_part(number: i32, token: &str) -> CompletedPart {
    let (etag, crc32) = match token.split_once(' ') {
        Some((etag, crc32)) => (etag, Some(crc32)),
        None => (token, None),
    };
    CompletedPart::builder().part_number(number).e_tag(etag).set_checksum_crc32(crc32.map(str::to_owned)).build()
}

/// The upload id of a started multipart upload to `key`.
pub(super) fn started(key: &str, upload_id: Option<&str>) -> Result<Multipart, StoreError> {
    let upload_id = upload_id
        .ok_or_else(|| StoreError::Malformed(format!("CreateMultipartUpload of {key} returned no upload id")))?;
    Ok(Multipart { key: key.to_owned(), upload_id: upload_id.to_owned(), parts: Vec::new() })
}

/// Uploads one part with its CRC32 and remembers its token (a retried part replaces itself).
/// Shared by the vault and the exports bucket.
pub(super) async fn upload_part(
    client: &Client,
    bucket: &str,
    upload: &mut Multipart,
    part_number: i32,
    body: Bytes,
) -> Result<(), StoreError> {
    let out = client
        .upload_part()
        .bucket(bucket)
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .part_number(part_number)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| sdk_error(SERVICE, "UploadPart", e))?;
    let etag = out
        .e_tag()
        .ok_or_else(|| StoreError::Malformed(format!("UploadPart {part_number} of {} returned no ETag", upload.key)))?;
    let token = part_token(etag, out.checksum_crc32());
    upload.parts.retain(|(n, _)| *n != part_number);
    upload.parts.push((part_number, token));
    Ok(())
}

/// Completes the upload from its parts in number order.
pub(super) async fn complete_upload(
    client: &Client,
    bucket: &str,
    upload: &Multipart,
) -> Result<CompleteMultipartUploadOutput, StoreError> {
    let mut parts = upload.parts.clone();
    parts.sort_by_key(|(n, _)| *n);
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(parts.iter().map(|(n, token)| completed_part(*n, token)).collect()))
        .build();
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(&upload.key)
        .upload_id(&upload.upload_id)
        .multipart_upload(completed)
        .send()
        .await
        .map_err(|e| sdk_error(SERVICE, "CompleteMultipartUpload", e))
}

/// Aborts the upload; one already completed or aborted has nothing left to clean up.
pub(super) async fn abort_upload(client: &Client, bucket: &str, upload: &Multipart) -> Result<(), StoreError> {
    match client.abort_multipart_upload().bucket(bucket).key(&upload.key).upload_id(&upload.upload_id).send().await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(sdk_error(SERVICE, "AbortMultipartUpload", e)),
    }
}

#[async_trait]
impl Vault for S3Vault {
    async fn put_if_absent(&self, key: &str, body: Bytes, lock: &Lock) -> Result<Stored, StoreError> {
        let lock = &whole_seconds(lock);
        let mut attempt = 0;
        let outcome = loop {
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body.clone()))
                .if_none_match("*")
                .object_lock_mode(lock_mode(lock.mode))
                .object_lock_retain_until_date(to_aws_time(lock.retain_until))
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .send()
                .await;
            match sent {
                Ok(out) => break Ok(out),
                Err(e) if status_of(&e) == Some(412) || code_of(&e) == Some("PreconditionFailed") => {
                    break Err(None);
                }
                Err(e) if code_of(&e) == Some("ConditionalRequestConflict") && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    Backoff::AWS.sleep(attempt).await;
                }
                Err(e) => break Err(Some(sdk_error(SERVICE, "PutObject", e))),
            }
        };
        let (object, created) = match outcome {
            Ok(out) => {
                let version_id = out.version_id().filter(|v| *v != "null").ok_or_else(|| {
                    StoreError::Malformed(format!(
                        "PutObject of {key} returned no version id: is bucket versioning on?"
                    ))
                })?;
                (ObjectRef { key: key.to_owned(), version_id: version_id.to_owned() }, true)
            }
            Err(None) => (self.current_version(key).await?, false),
            Err(Some(e)) => return Err(e),
        };
        self.ensure_locked(&object, lock).await?;
        Ok(Stored { object, created })
    }

    async fn start_multipart(&self, key: &str, lock: &Lock) -> Result<Multipart, StoreError> {
        let lock = &whole_seconds(lock);
        // Real S3 honours the lock headers here; moto ignores them, and complete_multipart
        // sets and verifies retention either way.
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .object_lock_mode(lock_mode(lock.mode))
            .object_lock_retain_until_date(to_aws_time(lock.retain_until))
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "CreateMultipartUpload", e))?;
        started(key, out.upload_id())
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        upload_part(&self.client, &self.bucket, upload, part_number, body).await
    }

    async fn complete_multipart(&self, upload: Multipart, lock: &Lock) -> Result<ObjectRef, StoreError> {
        let out = complete_upload(&self.client, &self.bucket, &upload).await?;
        let version_id = out.version_id().filter(|v| *v != "null").ok_or_else(|| {
            StoreError::Malformed(format!(
                "CompleteMultipartUpload of {} returned no version id: is bucket versioning on?",
                upload.key
            ))
        })?;
        let object = ObjectRef { key: upload.key, version_id: version_id.to_owned() };
        self.ensure_locked(&object, lock).await?;
        Ok(object)
    }

    async fn abort_multipart(&self, upload: Multipart) -> Result<(), StoreError> {
        abort_upload(&self.client, &self.bucket, &upload).await
    }

    async fn ensure_locked(&self, object: &ObjectRef, lock: &Lock) -> Result<(), StoreError> {
        let lock = &whole_seconds(lock);
        let not_found = || StoreError::NotFound { key: object.key.clone() };
        let current = self.read_lock(object).await?.ok_or_else(not_found)?;
        if current.satisfies(lock) {
            return Ok(());
        }
        // Never shorten and never weaken: keep a later date and COMPLIANCE if present.
        let mode = match current.lock_mode {
            Some(LockMode::Compliance) => LockMode::Compliance,
            _ => lock.mode,
        };
        let until = current.retain_until.map_or(lock.retain_until, |t| t.max(lock.retain_until));
        self.put_retention(object, mode, until).await?;
        let after = self.read_lock(object).await?.ok_or_else(not_found)?;
        if after.satisfies(lock) {
            Ok(())
        } else {
            Err(StoreError::NotLocked {
                key: object.key.clone(),
                detail: format!(
                    "version {} reads back mode {:?} until {:?} after asking {} until {}",
                    object.version_id,
                    after.lock_mode,
                    after.retain_until,
                    lock.mode.as_str(),
                    lock.retain_until
                ),
            })
        }
    }

    async fn head(&self, object: &ObjectRef) -> Result<Option<ObjectInfo>, StoreError> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .version_id(&object.version_id)
            .send()
            .await
        {
            Ok(out) => out,
            // 404: no such version; 400/405: a bad version id or a delete marker.
            Err(e) if matches!(status_of(&e), Some(404)) => return Ok(None),
            Err(e) => return Err(sdk_error(SERVICE, "HeadObject", e)),
        };
        Ok(Some(ObjectInfo {
            object: object.clone(),
            size: out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
            lock_mode: out.object_lock_mode().and_then(|m| LockMode::parse(m.as_str())),
            retain_until: out.object_lock_retain_until_date().and_then(from_aws_time),
        }))
    }

    async fn get(&self, object: &ObjectRef) -> Result<Bytes, StoreError> {
        let mut stream = self.get_stream(object).await?;
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(body))
    }

    async fn get_range(&self, object: &ObjectRef, start: u64, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .version_id(&object.version_id)
            .range(format!("bytes={}-{}", start, start + len - 1))
            .send()
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => StoreError::NotFound { key: object.key.clone() },
                _ => sdk_error(SERVICE, "GetObject", e),
            })?;
        let body = out.body.collect().await.map_err(|e| StoreError::Service {
            service: SERVICE,
            message: format!("GetObject body: {e}"),
            retryable: true,
        })?;
        let bytes = body.into_bytes();
        if bytes.len() as u64 != len {
            return Err(StoreError::Service {
                service: SERVICE,
                message: format!("ranged read returned {} of {len} bytes", bytes.len()),
                retryable: true,
            });
        }
        Ok(bytes)
    }

    async fn get_stream(
        &self,
        object: &ObjectRef,
    ) -> Result<BoxStream<'static, Result<Bytes, StoreError>>, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .version_id(&object.version_id)
            .send()
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => StoreError::NotFound { key: object.key.clone() },
                _ => sdk_error(SERVICE, "GetObject", e),
            })?;
        let stream = futures::stream::unfold(Some(out.body), |body| async move {
            let mut body = body?;
            match body.next().await {
                None => None,
                Some(Ok(chunk)) => Some((Ok(chunk), Some(body))),
                Some(Err(e)) => Some((
                    Err(StoreError::Service {
                        service: SERVICE,
                        message: format!("GetObject body: {e}"),
                        retryable: true,
                    }),
                    None,
                )),
            }
        });
        Ok(stream.boxed())
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectRef>, StoreError> {
        let mut found = Vec::new();
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| sdk_error(SERVICE, "ListObjectVersions", e))?;
            for v in out.versions() {
                if let (Some(key), Some(version_id)) = (v.key(), v.version_id()) {
                    found.push(ObjectRef { key: key.to_owned(), version_id: version_id.to_owned() });
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            version_marker = out.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(found)
    }
}
