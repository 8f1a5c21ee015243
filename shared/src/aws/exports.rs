//! The exports bucket on S3: plain multipart uploads, no versioning and no Object Lock
//! (exports are temporary copies that a lifecycle rule expires). Parts carry a CRC32 like the
//! vault's, so S3 rejects a part damaged on the way; the part token is the vault's
//! `"{etag} {crc32}"`.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::ChecksumAlgorithm;
use bytes::Bytes;

use super::sdk_error;
use super::vault::{abort_upload, complete_upload, started, upload_part};
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
        started(key, out.upload_id())
    }

    async fn upload_part(&self, upload: &mut Multipart, part_number: i32, body: Bytes) -> Result<(), StoreError> {
        upload_part(&self.client, &self.bucket, upload, part_number, body).await
    }

    async fn complete_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        complete_upload(&self.client, &self.bucket, &upload).await.map(|_| ())
    }

    async fn abort_upload(&self, upload: Multipart) -> Result<(), StoreError> {
        abort_upload(&self.client, &self.bucket, &upload).await
    }
}
