//! Download links: the API never streams a body, it hands out a presigned S3 GET that names
//! the exact S3 version recorded in the catalog, so a later version of the same key (a
//! content-addressed blob is written once, but still) can never be served in its place.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use chrono::{DateTime, Utc};

use crate::model::ObjectRef;
use crate::store::StoreError;

/// How long a download link works.
pub const DOWNLOAD_LINK_LIFETIME: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresignedGet {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Signs a time-limited GET of one vault object version. Needs only `s3:GetObjectVersion`.
#[async_trait]
pub trait Presigner: Send + Sync {
    async fn presign_get(
        &self,
        object: &ObjectRef,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<PresignedGet, StoreError>;
}

/// The S3 adapter: SigV4 query-string signing, no request is sent. An empty version id signs
/// the key alone (the exports bucket is not versioned).
pub struct S3Presigner {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Presigner {
    /// `client` should come from [`crate::aws::s3_client`] (path-style against moto).
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl Presigner for S3Presigner {
    async fn presign_get(
        &self,
        object: &ObjectRef,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<PresignedGet, StoreError> {
        let invalid = |message: String| StoreError::Service { service: "s3", message, retryable: false };
        let config = PresigningConfig::builder()
            .start_time(now.into())
            .expires_in(lifetime)
            .build()
            .map_err(|e| invalid(format!("presigning config: {e}")))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .set_version_id(Some(object.version_id.clone()).filter(|v| !v.is_empty()))
            .presigned(config)
            .await
            .map_err(|e| invalid(format!("presign GetObject: {}", aws_sdk_s3::error::DisplayErrorContext(&e))))?;
        let lifetime = chrono::Duration::from_std(lifetime).map_err(|e| invalid(e.to_string()))?;
        Ok(PresignedGet { url: request.uri().to_owned(), expires_at: now + lifetime })
    }
}

/// In-memory fake: a recognisable URL naming the key and version, and a log of what was signed.
#[derive(Default)]
pub struct MemoryPresigner {
    signed: Mutex<Vec<ObjectRef>>,
}

impl MemoryPresigner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn signed(&self) -> Vec<ObjectRef> {
        self.signed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl Presigner for MemoryPresigner {
    async fn presign_get(
        &self,
        object: &ObjectRef,
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> Result<PresignedGet, StoreError> {
        self.signed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(object.clone());
        let lifetime = chrono::Duration::from_std(lifetime).map_err(|e| StoreError::Service {
            service: "s3",
            message: e.to_string(),
            retryable: false,
        })?;
        let expires_at = now + lifetime;
        Ok(PresignedGet {
            url: format!(
                "memory://vault/{}?versionId={}&expires={}",
                object.key,
                object.version_id,
                expires_at.timestamp()
            ),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region, SdkConfig};
    use aws_sdk_s3::config::Credentials;

    #[tokio::test]
    async fn s3_links_name_the_recorded_version_and_expire_in_fifteen_minutes() {
        let aws = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .endpoint_url("http://127.0.0.1:5000")
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            )))
            .build();
        let presigner = S3Presigner::new(crate::aws::s3_client(&aws), "vault");
        let now = Utc::now();
        let object = ObjectRef { key: "v1/t/abc/blobs/sha256/00/00ff".into(), version_id: "ver-42".into() };
        let link = presigner.presign_get(&object, now, DOWNLOAD_LINK_LIFETIME).await.expect("presign");
        assert!(link.url.starts_with("http://127.0.0.1:5000/vault/v1/t/abc/blobs/sha256/00/00ff?"), "{}", link.url);
        assert!(link.url.contains("versionId=ver-42"), "{}", link.url);
        assert!(link.url.contains("X-Amz-Expires=900"), "{}", link.url);
        assert_eq!(link.expires_at, now + chrono::Duration::minutes(15));
    }
}
