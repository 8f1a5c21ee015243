//! Real adapters of the `crate::store` traits on the AWS SDK: S3 (the vault), DynamoDB (the
//! catalog), SQS (the queues) and Secrets Manager. Each maps SDK errors to
//! [`StoreError::Service`] with the SDK's own retry classification; messages carry the error
//! code and the service's message, never request contents or credentials.

pub mod catalog;
pub mod exports;
pub mod queue;
pub mod secrets;
#[cfg(test)]
pub(crate) mod test_moto;
pub mod vault;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use catalog::DynamoCatalog;
pub use exports::S3Exports;
pub use queue::SqsSink;
pub use secrets::SecretsManagerSource;
pub use vault::S3Vault;

use crate::store::StoreError;

/// Loads region, credentials and endpoint (`AWS_ENDPOINT_URL`, honoured by the SDK itself)
/// from the environment, once, at start-up.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Whether S3 should use path-style addressing: always against an endpoint override (moto,
/// MinIO) or when `AWS_S3_FORCE_PATH_STYLE=true`.
pub fn s3_path_style(config: &SdkConfig, force_path_style_env: Option<&str>) -> bool {
    config.endpoint_url().is_some() || force_path_style_env.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// An S3 client for `config`, path-style as [`s3_path_style`] decides from the environment.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let env = std::env::var("AWS_S3_FORCE_PATH_STYLE").ok();
    let path_style = s3_path_style(config, env.as_deref());
    // Reads are verified against the SHA-256 in the catalog; the SDK cannot validate the
    // part-level checksums of multipart objects and would only warn.
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Error codes the SDKs classify as throttling or transient (see smithy-rs'
/// `AwsErrorCodeClassifier`), plus the DynamoDB and SQS spellings.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",
];

/// HTTP status of a service error response, if there was one.
pub(crate) fn status_of<E>(err: &SdkError<E>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The service's error code (`PreconditionFailed`, `ConditionalCheckFailedException`...).
pub(crate) fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Maps an SDK error to [`StoreError::Service`]. Timeouts, dispatch failures, malformed
/// responses, 5xx, 429 and throttling codes are retryable; other client errors are not.
pub(crate) fn sdk_error<E>(service: &'static str, operation: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&err);
    let (message, retryable) = match &err {
        SdkError::ServiceError(service_err) => {
            let e = service_err.err();
            let code = e.code().unwrap_or("Unknown");
            let retryable = status.is_some_and(|s| s >= 500 || s == 429) || RETRYABLE_CODES.contains(&code);
            let detail = e.message().unwrap_or("");
            let status = status.map(|s| s.to_string()).unwrap_or_default();
            (format!("{operation}: {code} (HTTP {status}) {detail}"), retryable)
        }
        // Never format a raw response: its body can be content or a secret value.
        SdkError::TimeoutError(_) => (format!("{operation}: timed out"), true),
        SdkError::DispatchFailure(failure) => {
            let cause = failure.as_connector_error().map(|c| DisplayErrorContext(c).to_string()).unwrap_or_default();
            (format!("{operation}: dispatch failure {cause}"), true)
        }
        SdkError::ResponseError(_) => {
            let status = status.map(|s| s.to_string()).unwrap_or_default();
            (format!("{operation}: unreadable response (HTTP {status})"), true)
        }
        SdkError::ConstructionFailure(_) => (format!("{operation}: {}", DisplayErrorContext(&err)), false),
        _ => (format!("{operation}: unexpected SDK error"), false),
    };
    StoreError::Service { service, message: message.trim_end().to_owned(), retryable }
}

/// chrono time to the SDK's time type.
pub(crate) fn to_aws_time(t: chrono::DateTime<chrono::Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs_and_nanos(t.timestamp(), t.timestamp_subsec_nanos())
}

/// The SDK's time type to chrono.
pub(crate) fn from_aws_time(t: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_style_follows_endpoint_override_or_flag() {
        let plain = SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        assert!(!s3_path_style(&plain, None));
        assert!(!s3_path_style(&plain, Some("false")));
        assert!(s3_path_style(&plain, Some("TRUE")));
        let local = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url("http://127.0.0.1:5000")
            .build();
        assert!(s3_path_style(&local, None));
    }

    #[test]
    fn times_round_trip_through_the_sdk_type() {
        let t = chrono::DateTime::parse_from_rfc3339("2031-02-03T04:05:06.789Z")
            .expect("valid time")
            .with_timezone(&chrono::Utc);
        assert_eq!(from_aws_time(&to_aws_time(t)), Some(t));
    }
}
