//! Content download (graph-facts §5, §13.6): `/content` answers `302 Found` to a
//! pre-authenticated `/download/{token}` URL (it expires, and a request carrying an
//! `Authorization` header is refused with `401`), which serves the body streamed, with
//! `Range` → `206` and `Content-Range`, or `416` when unsatisfiable; under the
//! `ignore_range` fault a ranged request gets `200` and the whole body. Under
//! `serve_different_bytes` an item's current content downloads as other bytes than its
//! metadata describes (graph-facts §13.2).
//!
//! Choice: a download URL names the item, not a content version; like Graph
//! it serves the item's *current* content when fetched, so a URL obtained
//! before an edit yields the new bytes. URLs handed out by
//! `versions/{id}/content` name that version and keep serving it.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use futures::StreamExt;

use super::items::drive_not_found;
use super::render::download_url;
use crate::Inner;
use crate::content::Content;
use crate::error::{GraphError, GraphResult};
use crate::faults::{count_download, take_item_fault};
use crate::store::ItemKind;

fn access_denied() -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "accessDenied",
        "Access denied. You do not have permission to perform this action or access this resource.",
    )
}

pub fn content(sim: &Arc<Inner>, base: &str, drive: &str, item: &str, headers: &HeaderMap) -> GraphResult<Response> {
    let st = sim.lock();
    let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
    let it = d.live(item)?;
    if it.kind != ItemKind::File {
        return Err(GraphError::bad_request(
            "The action can only be performed on a file; this item is a folder or package.",
        ));
    }
    if st.faults.forbidden_items.contains(&it.id) {
        return Err(access_denied());
    }
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        // eTags contain commas themselves, so match by containment.
        if inm.contains(&it.etag()) || inm.contains(&it.ctag()) {
            return Ok(StatusCode::NOT_MODIFIED.into_response());
        }
    }
    let url = download_url(sim, base, &d.id, &it.id);
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

pub fn download_router() -> Router<Arc<Inner>> {
    Router::new().route("/download/{token}", get(download))
}

enum Span {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// Parses a single `bytes=` range against `total`; other forms are ignored
/// (served whole), as the HTTP spec allows.
fn parse_range(h: Option<&str>, total: u64) -> Span {
    let Some(spec) = h.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Span::Whole;
    };
    if spec.contains(',') {
        return Span::Whole;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Span::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Span::Whole;
        };
        if n == 0 {
            return Span::Unsatisfiable;
        }
        (total.saturating_sub(n), total.saturating_sub(1))
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return Span::Whole;
        };
        let end = if b.is_empty() {
            total.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(total.saturating_sub(1)),
                _ => return Span::Whole,
            }
        };
        (start, end)
    };
    if start >= total {
        return Span::Unsatisfiable;
    }
    Span::Part(start, end)
}

async fn download(State(sim): State<Arc<Inner>>, Path(token): Path<String>, headers: HeaderMap) -> Response {
    // Pre-authenticated URLs refuse a bearer token (graph-facts §13.6).
    if headers.contains_key(header::AUTHORIZATION) {
        return GraphError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "A pre-authenticated download URL must be fetched without an Authorization header.",
        )
        .into_response();
    }
    match serve(&sim, &token, &headers) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn serve(sim: &Arc<Inner>, token: &str, headers: &HeaderMap) -> GraphResult<Response> {
    let unauthorized =
        || GraphError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "The download URL is invalid or has expired.");
    let f = sim.signer.verify(token).ok_or_else(unauthorized)?;
    let exp = f.get(3).and_then(|e| e.parse::<i64>().ok()).unwrap_or(0);
    if f.first().map(String::as_str) != Some("dl") || exp <= Utc::now().timestamp() {
        return Err(unauthorized());
    }
    let (content, ctag, ignore_range): (Content, String, bool) = {
        let mut st = sim.lock();
        let ranged = headers.contains_key(header::RANGE);
        let ignore_range = ranged && take_item_fault(&mut st.faults.ignore_range, &f[2]);
        let d = st.drives.get(&f[1]).ok_or_else(drive_not_found)?;
        let it = d.live(&f[2])?;
        if st.faults.forbidden_items.contains(&it.id) {
            return Err(access_denied());
        }
        // A sixth field names an earlier version (see `versions.rs`); the fifth is the app.
        match f.get(5).map(|v| v.parse::<u64>()) {
            None => {
                let blob = it.blob.clone().ok_or_else(|| GraphError::not_found("The item has no content."))?;
                let content = match st.faults.served_bytes.get(&it.id) {
                    Some(served) => served.content(&it.id, &it.ctag(), blob.size()),
                    None => blob.content.clone(),
                };
                (content, it.ctag(), ignore_range)
            }
            Some(Ok(n)) => {
                let old = it.history.iter().find(|v| v.number == n);
                let old = old.ok_or_else(|| GraphError::not_found("The version no longer exists."))?;
                (old.blob.content.clone(), format!("\"{{{}}},{n}.0\"", it.guid.to_uppercase()), ignore_range)
            }
            Some(Err(_)) => return Err(unauthorized()),
        }
    };
    let total = content.size();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| !ignore_range);
    let (status, start, end) = match parse_range(range, total) {
        Span::Whole => (StatusCode::OK, 0, total),
        Span::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        Span::Unsatisfiable => {
            let mut r = GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                "The requested range is not satisfiable.",
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(r);
        }
    };
    let counter = Arc::clone(sim);
    let stream = content.stream(start, end).inspect(move |chunk| {
        if let Ok(c) = chunk {
            count_download(&counter, c.len() as u64);
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_LENGTH, (end - start).to_string());
    set(header::CONTENT_TYPE, "application/octet-stream".into());
    set(header::ACCEPT_RANGES, "bytes".into());
    set(header::ETAG, ctag);
    if status == StatusCode::PARTIAL_CONTENT {
        set(header::CONTENT_RANGE, format!("bytes {start}-{}/{total}", end - 1));
    }
    Ok(resp)
}
