//! The exports bucket on S3: plain multipart uploads, no versioning and no Object Lock
//! (exports are temporary copies that a lifecycle rule expires). Parts carry a CRC32 like the
//! vault's, so S3 rejects a part damaged on the way; the part token is the vault's
//! `"{etag} {crc32}"`.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload};
use bytes::Bytes;

use super::vault::{completed_part, part_token};
use super::{sdk_error, status_of};
use crate::store::{ExportStore, Multipart, StoreError};

const SERVICE: &str = "s3";

#[derive(Clone, Debug)]
pub struct S3Exports {
    client: Client,
    bucket: String,
}

impl S3Exports {
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        Self { client: super::s3_client(config), bucket: bucket.into() }
    }
}

#[async_trait]
impl ExportStore for S3Exports {
    async fn start_upload(&self, key: &str) -> Result<Multipart, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/zip")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "CreateMultipartUpload", e))?;
        let upload_id = out
            .upload_id()
            .ok_or_else(|| StoreError::Malformed(format!("CreateMultipartUpload of {key} returned no upload id")))?;
        Ok(Multipart { key: key.to_owned(), upload_id: upload_id.to_owned(), parts: Vec::new() })
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .part_number(part_number)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "UploadPart", e))?;
        let etag = out.e_tag().ok_or_else(|| {
            StoreError::Malformed(format!("UploadPart {part_number} of {} returned no ETag", upload.key))
        })?;
        let token = part_token(etag, out.checksum_crc32());
        upload.parts.retain(|(n, _)| *n != part_number);
        upload.parts.push((part_number, token));
        Ok(())
    }

    async fn complete_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        let mut parts = upload.parts.clone();
        parts.sort_by_key(|(n, _)| *n);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(parts.iter().map(|(n, token)| completed_part(*n, token)).collect()))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "CompleteMultipartUpload", e))?;
        Ok(())
    }

    async fn abort_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&upload.key)
            .upload_id(&upload.upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(sdk_error(SERVICE, "AbortMultipartUpload", e)),
        }
    }
}
