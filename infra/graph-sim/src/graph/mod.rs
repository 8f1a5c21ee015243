//! The `/v1.0` Graph surface. Drive paths are parsed by hand rather than by
//! the router so that Graph's several spellings land on one implementation:
//! `/drives/{d}/root`, `/drives/{d}/items/root`, `/users/{u}/drive/...`,
//! `.../delta`, `.../delta()` and `.../delta(token='...')`.

mod content;
mod delta;
mod items;
mod render;
mod subscriptions;
mod users;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};

use crate::error::{GraphError, GraphResult};
use crate::{Inner, base_url};

pub use content::download_router;

type Params = Query<HashMap<String, String>>;

pub fn router(sim: Arc<Inner>) -> Router<Arc<Inner>> {
    Router::new()
        .route("/users", get(users::list))
        .route("/users/{user}", get(users::get_one))
        .route("/users/{user}/drive", get(users::user_drive))
        .route("/users/{user}/drive/{*rest}", get(user_drive_rest))
        .route("/drives/{drive}", get(items::get_drive))
        .route("/drives/{drive}/{*rest}", get(drive_rest))
        .route("/subscriptions", post(subscriptions::create).get(subscriptions::list))
        .route(
            "/subscriptions/{id}",
            get(subscriptions::get_one).patch(subscriptions::update).delete(subscriptions::delete),
        )
        .route("/subscriptions/{id}/reauthorize", post(subscriptions::reauthorize))
        .fallback(|| async { GraphError::bad_request("Resource not found for the segment.") })
        .route_layer(axum::middleware::from_fn_with_state(sim, crate::auth::require_bearer))
}

async fn drive_rest(
    State(sim): State<Arc<Inner>>,
    Path((drive, rest)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> GraphResult<Response> {
    dispatch(&sim, &drive, &rest, q, &headers).await
}

async fn user_drive_rest(
    State(sim): State<Arc<Inner>>,
    Path((user, rest)): Path<(String, String)>,
    Query(q): Params,
    headers: HeaderMap,
) -> GraphResult<Response> {
    let drive = users::drive_of(&sim.lock(), &user)?;
    dispatch(&sim, &drive, &rest, q, &headers).await
}

async fn dispatch(
    sim: &Arc<Inner>,
    drive: &str,
    rest: &str,
    mut q: HashMap<String, String>,
    headers: &HeaderMap,
) -> GraphResult<Response> {
    let base = base_url(headers);
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let (item, action) = match segs.as_slice() {
        ["root"] => ("root", None),
        ["root", a] => ("root", Some(*a)),
        ["items", i] => (*i, None),
        ["items", i, a] => (*i, Some(*a)),
        _ => {
            return Err(GraphError::bad_request(format!(
                "Resource not found for the segment '{}'.",
                segs.last().unwrap_or(&"")
            )));
        }
    };
    match action {
        None => items::get_item(sim, &base, drive, item),
        Some("children") => items::children(sim, &base, drive, item, &q),
        Some("content") => content::content(sim, &base, drive, item, headers),
        Some(a) if a == "delta" || a.starts_with("delta(") => {
            if let Some(tok) = a.strip_prefix("delta(token='").and_then(|t| t.strip_suffix("')")) {
                q.insert("token".into(), tok.to_string());
            }
            delta::delta(sim, &base, drive, item, &q, headers)
        }
        Some(a) => Err(GraphError::bad_request(format!("Resource not found for the segment '{a}'."))),
    }
}
