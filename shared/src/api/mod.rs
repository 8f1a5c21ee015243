//! The restore API (DESIGN §7): browse what is protected and what it looked like at any
//! moment, see what could not be backed up and how the vault keeper last found the vault,
//! download a backed-up version through a presigned link, and start restore jobs.
//! An axum router served by `lambda_http` behind API Gateway (IAM auth, so no route checks
//! credentials itself) and by `axum::serve` locally. Every route works on the one tenant from
//! configuration; a drive or job of another tenant is simply not found.
//!
//! `openapi.yaml` (repository root) documents every route of [`ROUTES`]; a test holds the two
//! together, query parameter names included.

mod browse;
mod failures;
pub mod health;
pub mod presign;
pub mod problem;
mod resources;
mod restores;

#[cfg(test)]
mod browse_tests;
#[cfg(test)]
mod failures_tests;
#[cfg(test)]
mod health_tests;
#[cfg(test)]
mod restore_tests;
#[cfg(test)]
mod spec_tests;
#[cfg(test)]
mod test_support;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::routing::{MethodFilter, on};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

pub use presign::{DOWNLOAD_LINK_LIFETIME, MemoryPresigner, PresignedGet, Presigner, S3Presigner};
pub use problem::{ApiError, PROBLEM_CONTENT_TYPE, Problem};

use crate::clock::Clock;
use crate::model::{ContainerId, ContainerRecord};
use crate::store::{ApiCatalog, MessageSink};

/// What the API may do, mirroring its IAM policy: read and write catalog rows (jobs), send to
/// the `restores` queue, sign GETs of vault objects and of export zips.
pub struct ApiDeps {
    pub tenant_id: String,
    pub catalog: Arc<dyn ApiCatalog>,
    /// Sends to [`crate::store::QueueName::Restores`].
    pub sink: Arc<dyn MessageSink>,
    pub presigner: Arc<dyn Presigner>,
    /// Signs GETs of export zips in the exports bucket (not versioned: empty version ids).
    pub exports: Arc<dyn Presigner>,
    pub clock: Arc<dyn Clock>,
}

type Deps = State<Arc<ApiDeps>>;

/// Declares every route once: the router is built from this list and [`ROUTES`] (checked
/// against `openapi.yaml`) is derived from it, with each route's query struct.
macro_rules! api_routes {
    ($($method:ident $path:literal => $handler:path, $query:ty;)*) => {
        /// Every route as (method, path template), exactly as `openapi.yaml` documents them.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        fn add_routes(router: Router<Arc<ApiDeps>>) -> Router<Arc<ApiDeps>> {
            router$(.route($path, on(MethodFilter::$method, $handler)))*
        }

        /// (method, path, the serde field names of the route's query struct).
        #[cfg(test)]
        fn route_query_fields() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
            vec![$((stringify!($method), $path, spec_tests::field_names::<$query>())),*]
        }
    };
}

api_routes! {
    GET "/v1/resources" => resources::resources, NoQuery;
    GET "/v1/health" => health::health, NoQuery;
    GET "/v1/drives/{drive_id}/children" => browse::children, browse::ChildrenQuery;
    GET "/v1/drives/{drive_id}/items/{item_id}/versions" => browse::versions, browse::VersionsQuery;
    GET "/v1/drives/{drive_id}/items/{item_id}/download" => browse::download, browse::DownloadQuery;
    GET "/v1/drives/{drive_id}/changes" => browse::changes, browse::ChangesQuery;
    GET "/v1/drives/{drive_id}/failures" => failures::drive, failures::FailuresQuery;
    GET "/v1/mailboxes/{mailbox_id}/children" => browse::mailbox_children, browse::ChildrenQuery;
    GET "/v1/mailboxes/{mailbox_id}/items/{item_id}/versions" => browse::mailbox_versions, browse::VersionsQuery;
    GET "/v1/mailboxes/{mailbox_id}/items/{item_id}/download" => browse::mailbox_download, browse::DownloadQuery;
    GET "/v1/mailboxes/{mailbox_id}/changes" => browse::mailbox_changes, browse::ChangesQuery;
    GET "/v1/mailboxes/{mailbox_id}/failures" => failures::mailbox, failures::FailuresQuery;
    POST "/v1/restores" => restores::create, NoQuery;
    GET "/v1/restores" => restores::list, restores::ListQuery;
    GET "/v1/restores/{job_id}" => restores::get, NoQuery;
    POST "/v1/restores/{job_id}/cancel" => restores::cancel, NoQuery;
    GET "/v1/restores/{job_id}/items" => restores::items, restores::ItemsQuery;
}

/// The restore API.
pub fn router(deps: Arc<ApiDeps>) -> Router {
    add_routes(Router::new())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(restores::MAX_BODY_BYTES))
        .with_state(deps)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} {}", uri.path()))
}

/// Routes without query parameters refuse any (a typo is a 400, not silently ignored).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoQuery {}

/// `Query` whose rejection is a problem document.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::InvalidParameter(e.body_text()))
    }
}

/// `Path` whose rejection is a problem document.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::InvalidParameter(e.body_text()))
    }
}

/// An RFC 3339 time parameter.
fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value.trim()).map(|t| t.with_timezone(&Utc)).map_err(|e| {
        ApiError::InvalidParameter(format!(
            "{name} must be an RFC 3339 time such as 2024-05-01T12:00:00Z (encode '+' as %2B): {e}"
        ))
    })
}

/// A `limit` parameter within `1..=max`.
fn parse_limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(value) = value else { return Ok(default) };
    match value.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::InvalidParameter(format!("limit must be an integer from 1 to {max}"))),
    }
}

/// The protected drive `drive_id` of this tenant, or 404.
async fn protected_drive(deps: &ApiDeps, drive_id: &str) -> Result<ContainerRecord, ApiError> {
    let container = ContainerId::new(deps.tenant_id.clone(), drive_id);
    deps.catalog
        .container(&container)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no protected drive {drive_id}")))
}

async fn protected_mailbox(deps: &ApiDeps, user_id: &str) -> Result<ContainerRecord, ApiError> {
    let container = ContainerId::mailbox(deps.tenant_id.clone(), user_id);
    deps.catalog
        .container(&container)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no protected mailbox {user_id}")))
}

/// What a container route reads: a drive or a mailbox, as its path names it.
#[derive(Clone, Copy)]
enum Holder {
    Drive,
    Mailbox,
}

/// The container a response is about, named as its route names it (`drive_id` or
/// `mailbox_id`).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Owner {
    Drive { drive_id: String },
    Mailbox { mailbox_id: String },
}

impl Holder {
    /// The protected container the path names, or 404.
    async fn record(self, deps: &ApiDeps, id: &str) -> Result<ContainerRecord, ApiError> {
        match self {
            Holder::Drive => protected_drive(deps, id).await,
            Holder::Mailbox => protected_mailbox(deps, id).await,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Holder::Drive => "drive",
            Holder::Mailbox => "mailbox",
        }
    }

    fn owner(self, id: String) -> Owner {
        match self {
            Holder::Drive => Owner::Drive { drive_id: id },
            Holder::Mailbox => Owner::Mailbox { mailbox_id: id },
        }
    }
}

/// "As of T" is answerable only for a moment that has happened and that the backup covers.
fn check_as_of(name: &str, at: DateTime<Utc>, drive: &ContainerRecord, now: DateTime<Utc>) -> Result<(), ApiError> {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if at > now {
        return Err(ApiError::TimeOutOfRange(format!("{name} {} is in the future", fmt(at))));
    }
    if at < drive.discovered_at {
        return Err(ApiError::TimeOutOfRange(format!(
            "{name} {} is before the first backup of {} ({})",
            fmt(at),
            drive.container.graph_id,
            fmt(drive.discovered_at)
        )));
    }
    Ok(())
}
