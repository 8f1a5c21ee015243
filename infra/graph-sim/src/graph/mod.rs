//! The `/v1.0` Graph surface. Drive paths are parsed by hand rather than by
//! the router so that Graph's several spellings land on one implementation:
//! `/drives/{d}/root`, `/drives/{d}/items/root`, `/users/{u}/drive/...`,
//! path addressing `items/{id}:/a/b.txt:/content` and `root:/a/b.txt:`,
//! `.../delta`, `.../delta()` and `.../delta(token='...')`. Reads are GETs;
//! writes (PUT, POST, PATCH, DELETE) go to [`write`], [`upload`] and
//! [`versions`] and are refused on drives under the `forbid_writes` fault.

mod content;
mod delta;
mod items;
pub mod mail;
mod mail_attach;
mod mail_delta;
pub mod mail_limits;
mod mail_read;
mod mail_render;
mod mail_write;
mod render;
mod sites;
mod sites_delta;
mod subscriptions;
mod upload;
mod users;
mod versions;
mod write;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{any, get, post};

use crate::error::{GraphError, GraphResult};
use crate::{Inner, base_url};

pub use content::download_router;
pub use mail_attach::upload_router as mail_upload_router;
pub use mail_limits::limit as mail_limit;
pub use upload::upload_router;

type Params = Query<HashMap<String, String>>;

pub fn router(sim: Arc<Inner>) -> Router<Arc<Inner>> {
    Router::new()
        .route("/users", get(users::list))
        .route("/users/{user}", get(users::get_one))
        .route("/users/{user}/drive", get(users::user_drive))
        .route("/users/{user}/drive/{*rest}", any(user_drive_rest))
        .route("/drives/{drive}", get(items::get_drive))
        .route("/drives/{drive}/{*rest}", any(drive_rest))
        .route("/sites/{*rest}", get(sites::sites_rest))
        .route("/groups", get(sites::groups))
        .route("/groups/{group}/sites/root", get(sites::group_site))
        .route("/subscriptions", post(subscriptions::create).get(subscriptions::list))
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get_one).patch(subscriptions::update).delete(subscriptions::delete),
        )
        .route("/subscriptions/{id}/reauthorize", post(subscriptions::reauthorize))
        .merge(mail::routes().route_layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), mail_limits::limit)))
        .fallback(|| async { GraphError::bad_request("Resource not found for the segment.") })
        // Innermost first: the site gate, then resource-unit charging, both after the bearer
        // check has put the calling app in the request.
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), sites::gate))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), crate::throttle::charge))
        .route_layer(axum::middleware::from_fn_with_state(sim, crate::auth::require_bearer))
}

async fn drive_rest(
    State(sim): State<Arc<Inner>>,
    method: Method,
    Path((drive, rest)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> GraphResult<Response> {
    dispatch(&sim, Request { method, drive: &drive, rest: &rest, q, headers: &headers, body }).await
}

async fn user_drive_rest(
    State(sim): State<Arc<Inner>>,
    method: Method,
    Path((user, rest)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> GraphResult<Response> {
    let drive = users::drive_of(&sim.lock(), &user)?;
    dispatch(&sim, Request { method, drive: &drive, rest: &rest, q, headers: &headers, body }).await
}

/// One request below `/drives/{drive}/`.
struct Request<'a> {
    method: Method,
    drive: &'a str,
    rest: &'a str,
    q: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Body,
}

/// Where a request points: an item (`root` or an id), optionally a path
/// below it (`:/a/b.txt:`), then the action segments (`content`, `versions/2.0`).
#[derive(Debug, PartialEq, Eq)]
struct Address<'a> {
    base: &'a str,
    path: Option<&'a str>,
    action: Vec<&'a str>,
}

fn unknown_segment(seg: &str) -> GraphError {
    GraphError::bad_request(format!("Resource not found for the segment '{seg}'."))
}

fn parse_address(rest: &str) -> GraphResult<Address<'_>> {
    let (head, tail) = match rest.split_once(":/") {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    let segs: Vec<&str> = head.split('/').filter(|s| !s.is_empty()).collect();
    let (base, action) = match segs.as_slice() {
        ["root", a @ ..] => ("root", a.to_vec()),
        ["items", i, a @ ..] => (*i, a.to_vec()),
        _ => return Err(unknown_segment(segs.last().unwrap_or(&""))),
    };
    let Some(tail) = tail else {
        return Ok(Address { base, path: None, action });
    };
    if let Some(a) = action.first() {
        return Err(unknown_segment(a));
    }
    // Names cannot contain ':', so the first one closes the path.
    let (path, after) = tail.split_once(':').unwrap_or((tail, ""));
    Ok(Address { base, path: Some(path), action: after.split('/').filter(|s| !s.is_empty()).collect() })
}

impl Address<'_> {
    /// The id of the existing item addressed.
    fn item(&self, sim: &Inner, drive: &str) -> GraphResult<String> {
        let st = sim.lock();
        let d = st.drives.get(drive).ok_or_else(items::drive_not_found)?;
        let item = match self.path {
            None => d.live(self.base)?,
            Some(p) => {
                d.by_rel_path(self.base, p).ok_or_else(|| GraphError::not_found("The resource could not be found."))?
            }
        };
        Ok(item.id.clone())
    }
}

async fn dispatch(sim: &Arc<Inner>, req: Request<'_>) -> GraphResult<Response> {
    let Request { method, drive, rest, mut q, headers, body } = req;
    let base = base_url(headers);
    let addr = parse_address(rest)?;
    // HEAD answers as GET (hyper drops the body), as `get()` routes did.
    let method = if method == Method::HEAD { Method::GET } else { method };
    let writing = method != Method::GET;
    if writing && let Err(e) = write::check_writable(sim, drive) {
        write::drain(body).await;
        return Err(e);
    }
    let action = addr.action.clone();
    let ctx = write::Ctx { sim, base: &base, drive, headers };
    match (method, action.as_slice()) {
        (Method::GET, []) => items::get_item(sim, &base, drive, &addr.item(sim, drive)?),
        (Method::GET, ["children"]) => items::children(sim, &base, drive, &addr.item(sim, drive)?, &q),
        (Method::GET, ["content"]) => content::content(sim, &base, drive, &addr.item(sim, drive)?, headers),
        (Method::GET, [a]) if *a == "delta" || a.starts_with("delta(") => {
            if let Some(tok) = a.strip_prefix("delta(token='").and_then(|t| t.strip_suffix("')")) {
                q.insert("token".into(), tok.to_string());
            }
            delta::delta(sim, &base, drive, &addr.item(sim, drive)?, &q, headers)
        }
        (Method::GET, ["versions", rest @ ..]) => versions::get(sim, &base, drive, &addr.item(sim, drive)?, rest),
        (Method::POST, ["versions", v, "restoreVersion"]) => versions::restore(sim, drive, &addr.item(sim, drive)?, v),
        (Method::GET, ["permissions"]) => versions::permissions(sim, drive, &addr.item(sim, drive)?),
        (Method::PUT, ["content"]) => match addr.path {
            None => write::put_existing(ctx, addr.base, body).await,
            Some(path) => write::put_by_path(ctx, addr.base, path, &q, body).await,
        },
        (Method::POST, ["createUploadSession"]) => upload::create_session(ctx, addr.base, addr.path, body).await,
        (Method::POST, ["children"]) => write::create_folder(ctx, &addr.item(sim, drive)?, body).await,
        (Method::PATCH, []) => write::patch(ctx, &addr.item(sim, drive)?, body).await,
        (Method::DELETE, []) => write::delete(ctx, &addr.item(sim, drive)?),
        (m, [.., last]) if m != Method::GET => Err(GraphError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "invalidRequest",
            format!("{m} is not supported on '{last}'."),
        )),
        (_, _) => Err(unknown_segment(action.last().unwrap_or(&""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        let a = |base, path, action: &[&'static str]| Address { base, path, action: action.to_vec() };
        assert_eq!(parse_address("root").ok(), Some(a("root", None, &[])));
        assert_eq!(parse_address("items/X/content").ok(), Some(a("X", None, &["content"])));
        assert_eq!(
            parse_address("items/X/versions/2.0/content").ok(),
            Some(a("X", None, &["versions", "2.0", "content"]))
        );
        assert_eq!(
            parse_address("items/P:/new file.txt:/content").ok(),
            Some(a("P", Some("new file.txt"), &["content"]))
        );
        assert_eq!(
            parse_address("root:/a/b.bin:/createUploadSession").ok(),
            Some(a("root", Some("a/b.bin"), &["createUploadSession"]))
        );
        assert_eq!(parse_address("root:/a/b.bin:").ok(), Some(a("root", Some("a/b.bin"), &[])));
        assert_eq!(parse_address("root:/a/b.bin").ok(), Some(a("root", Some("a/b.bin"), &[])));
        assert!(parse_address("items").is_err());
        assert!(parse_address("items/X/children:/a:").is_err());
    }
}
