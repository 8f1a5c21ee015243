//! Injected faults and request accounting. Mirrors how Graph and SharePoint
//! fail in production (graph-facts §9): 429/503 with `Retry-After`, dropped
//! connections, bodies cut short of their `Content-Length`, per-item 403s,
//! lost or duplicated webhook deliveries, writes refused on a drive. The
//! [`gate`] middleware sits in front of every Graph, download and upload route.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Inner;
use crate::content::Content;
use crate::error::GraphError;
use crate::store::ids::IdRng;

#[derive(Debug, Clone)]
pub enum TransportAction {
    Throttle { status: u16, retry_after: u64 },
    Reset,
    Truncate,
}

#[derive(Debug, Clone)]
pub struct TransportFault {
    pub action: TransportAction,
    pub remaining: u64,
    pub path_contains: Option<String>,
}

#[derive(Debug, Default)]
pub struct Faults {
    pub transport: Vec<TransportFault>,
    pub forbidden_items: HashSet<String>,
    pub drop_notifications: u64,
    pub duplicate_notifications: u64,
    pub hide_hashes: bool,
    pub duplicate_items_in_delta: bool,
    /// Drives on which every Graph write answers `403 accessDenied`.
    pub forbid_writes: HashSet<String>,
    /// The next this-many upload sessions expire right after accepting a fragment, as a
    /// session that idles past its lifetime between two fragments would.
    pub expire_sessions_after_fragment: u64,
    /// Added to every mail request (see the mail limiter).
    pub mail_latency_ms: u64,
    /// Added (on top of `mail_latency_ms`) to every Exchange write: a message or folder
    /// created, changed or deleted, an attachment added or uploaded. Held inside the mail
    /// limiter, so a slow write occupies one of the mailbox's concurrent requests as it does
    /// in Exchange.
    pub mail_write_latency_ms: u64,
    /// Added to every drive upload request: a simple `PUT .../content`, a
    /// `createUploadSession`, a fragment `PUT` or a commit `POST` on an upload URL.
    pub upload_latency_ms: u64,
    /// Download URLs answering a `Range` request with `200` and the whole body.
    pub ignore_range: Vec<ItemFault>,
    /// Items whose current content downloads as other bytes than Graph's metadata describes.
    pub served_bytes: HashMap<String, ServedBytes>,
    /// Items whose JSON in delta pages is unusable, and how.
    pub malformed_in_delta: HashMap<String, Malformed>,
    /// Users about whom every Graph request answers an error.
    pub user_errors: Vec<UserErrors>,
}

/// Every `/v1.0` request naming one of `keys` (a user's id or lower-cased UPN in
/// `/users/{u}...`, their drive's id in `/drives/{d}...`) answers this error: a mailbox or
/// OneDrive that refuses the app, or throttles it, while the rest of the tenant answers.
#[derive(Debug, Clone)]
pub struct UserErrors {
    pub keys: HashSet<String>,
    pub error: GraphError,
}

impl Faults {
    fn user_error(&self, path: &str) -> Option<GraphError> {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let key = match segs.as_slice() {
            ["v1.0", "users" | "drives", key, ..] => key.to_lowercase(),
            _ => return None,
        };
        self.user_errors.iter().find(|f| f.keys.contains(&key)).map(|f| f.error.clone())
    }
}

/// How an item's JSON in a delta page is broken; the rest of the page is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Malformed {
    /// `"size": "not a number"`.
    SizeNotANumber,
    /// No `id` at all.
    NoId,
    /// `"parentReference": "not an object"`.
    ParentNotAnObject,
}

impl Malformed {
    pub fn apply(self, item: &mut Value) {
        let Some(o) = item.as_object_mut() else { return };
        match self {
            Malformed::SizeNotANumber => {
                o.insert("size".into(), json!("not a number"));
            }
            Malformed::NoId => {
                o.remove("id");
            }
            Malformed::ParentNotAnObject => {
                o.insert("parentReference".into(), json!("not an object"));
            }
        }
    }
}

/// What a sensitivity-labelled (encrypted) file looks like to a downloader (graph-facts
/// §13.2): `size` and `quickXorHash` describe one body, the download URL serves another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBytes {
    /// The same other bytes on every download (until the content changes).
    Fixed,
    /// Other bytes again on every download: two downloads never agree.
    Varying,
}

/// How much longer the served body is than the reported one (an encryption wrapper).
const LABEL_OVERHEAD: u64 = 4096;

impl ServedBytes {
    /// The body served instead of the `size` bytes of content version `ctag` of `item_id`.
    pub fn content(self, item_id: &str, ctag: &str, size: u64) -> Content {
        let seed = match self {
            ServedBytes::Fixed => {
                let digest = Sha256::digest(format!("label|{item_id}|{ctag}").as_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                u64::from_le_bytes(first)
            }
            ServedBytes::Varying => IdRng::random().next_u64(),
        };
        Content::Generated { seed, size: size + LABEL_OVERHEAD }
    }
}

/// A fault on the next `remaining` matching requests, of one item or of any.
#[derive(Debug, Clone)]
pub struct ItemFault {
    pub remaining: u64,
    pub item_id: Option<String>,
}

/// Consumes one of `faults` matching `item_id`; whether one did.
pub fn take_item_fault(faults: &mut Vec<ItemFault>, item_id: &str) -> bool {
    let Some(fault) = faults.iter_mut().find(|f| f.remaining > 0 && f.item_id.as_deref().is_none_or(|i| i == item_id))
    else {
        return false;
    };
    fault.remaining -= 1;
    faults.retain(|f| f.remaining > 0);
    true
}

impl Faults {
    /// Consumes one matching transport fault, if any.
    pub fn take(&mut self, path: &str) -> Option<TransportAction> {
        let fault = self
            .transport
            .iter_mut()
            .find(|f| f.remaining > 0 && f.path_contains.as_deref().is_none_or(|p| path.contains(p)))?;
        fault.remaining -= 1;
        let action = fault.action.clone();
        self.transport.retain(|f| f.remaining > 0);
        Some(action)
    }
}

pub const ROUTES: [&str; 26] = [
    "token",
    "users",
    "drive",
    "delta",
    "item",
    "content",
    "download",
    "subscriptions",
    "children",
    "upload",
    "create_upload_session",
    "upload_session",
    "patch",
    "create_folder",
    "delete",
    "versions",
    "permissions",
    "mail_folders",
    "mail_delta",
    "messages",
    "message_mime",
    "mail_write",
    "mail_attachments",
    "mail_upload",
    "sites",
    "groups",
];

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub requests_total: u64,
    pub by_route: BTreeMap<String, u64>,
    pub throttled: u64,
    pub notifications_sent: u64,
    pub notifications_failed: u64,
    /// Scheduled or being delivered now (a gauge, not reset).
    pub notifications_in_flight: u64,
    pub download_bytes: u64,
    /// SharePoint/OneDrive resource units charged (see `throttle`).
    pub resource_units: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            requests_total: 0,
            by_route: ROUTES.iter().map(|r| (r.to_string(), 0)).collect(),
            throttled: 0,
            notifications_sent: 0,
            notifications_failed: 0,
            notifications_in_flight: 0,
            download_bytes: 0,
            resource_units: 0,
        }
    }
}

fn classify(method: &Method, path: &str) -> &'static str {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let last = segs.last().copied().unwrap_or("");
    let mail = segs.get(1) == Some(&"users") && (segs.contains(&"mailFolders") || segs.contains(&"messages"));
    if segs.first() == Some(&"download") {
        "download"
    } else if segs.first() == Some(&"outlook") {
        "mail_upload"
    } else if mail {
        classify_mail(method, &segs)
    } else if last == "createUploadSession" {
        "create_upload_session"
    } else if segs.first() == Some(&"upload") {
        "upload_session"
    } else if path.contains("/oauth2/") {
        "token"
    } else if path.contains("/subscriptions") {
        "subscriptions"
    } else if segs.get(1) == Some(&"sites") || (segs.get(1) == Some(&"groups") && segs.get(3) == Some(&"sites")) {
        "sites"
    } else if segs.get(1) == Some(&"groups") {
        "groups"
    } else if segs.contains(&"versions") {
        "versions"
    } else if last == "permissions" {
        "permissions"
    } else if last.starts_with("delta") {
        "delta"
    } else if last == "content" {
        if method == Method::PUT { "upload" } else { "content" }
    } else if last == "children" {
        if method == Method::POST { "create_folder" } else { "children" }
    } else if method == Method::PATCH {
        "patch"
    } else if method == Method::DELETE {
        "delete"
    } else if last == "drive" || (segs.len() == 3 && segs[1] == "drives") {
        "drive"
    } else if segs.get(1) == Some(&"users") && !segs.contains(&"drive") {
        "users"
    } else {
        "item"
    }
}

fn classify_mail(method: &Method, segs: &[&str]) -> &'static str {
    let last = segs.last().copied().unwrap_or("");
    if last == "delta" {
        "mail_delta"
    } else if last == "$value" {
        "message_mime"
    } else if segs.contains(&"attachments") {
        "mail_attachments"
    } else if method != Method::GET {
        "mail_write"
    } else if segs.contains(&"messages") {
        "messages"
    } else {
        "mail_folders"
    }
}

/// Counts the request, then applies the next matching transport fault.
pub async fn gate(State(sim): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    // Inside nested routers the URI is stripped; faults match the full path.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string());
    let route = classify(req.method(), &path);
    let action = {
        let mut st = sim.lock();
        st.stats.requests_total += 1;
        *st.stats.by_route.entry(route.to_string()).or_default() += 1;
        if let Some(e) = st.faults.user_error(&path) {
            if e.status.as_u16() == 429 || e.status.as_u16() == 503 {
                st.stats.throttled += 1;
            }
            return e.into_response();
        }
        let action = if route == "token" { None } else { st.faults.take(&path) };
        if matches!(action, Some(TransportAction::Throttle { .. })) {
            st.stats.throttled += 1;
        }
        action
    };
    match action {
        None => {
            let uploading = matches!(route, "upload" | "upload_session" | "create_upload_session")
                && matches!(*req.method(), Method::PUT | Method::POST);
            let latency = if uploading { sim.lock().faults.upload_latency_ms } else { 0 };
            if latency > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
            }
            next.run(req).await
        }
        Some(TransportAction::Throttle { status, retry_after }) => {
            let (status, code, msg) = if status == 503 {
                (StatusCode::SERVICE_UNAVAILABLE, "serviceNotAvailable", "The service is temporarily unavailable.")
            } else {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "Too many requests. Please retry after the indicated time.",
                )
            };
            GraphError::new(status, code, msg)
                .with_header(header::RETRY_AFTER, &retry_after.to_string())
                .into_response()
        }
        Some(TransportAction::Reset) => break_body(next.run(req).await, false),
        Some(TransportAction::Truncate) => break_body(next.run(req).await, true),
    }
}

/// Keeps the announced `Content-Length` but ends the body early with an
/// error (half-way for truncation, at once for a reset), which makes hyper
/// drop the connection, as a cut TCP stream would.
fn break_body(resp: Response, truncate: bool) -> Response {
    let (mut parts, body) = resp.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(&body).exact())
        .unwrap_or(0);
    if let Ok(v) = HeaderValue::from_str(&announced.to_string()) {
        parts.headers.insert(header::CONTENT_LENGTH, v);
    }
    let limit = if truncate { announced / 2 } else { 0 };
    let mut sent = 0u64;
    let inner = body.into_data_stream();
    let cut = inner
        .map(move |chunk| -> Result<Bytes, std::io::Error> {
            let chunk = chunk.map_err(std::io::Error::other)?;
            if sent >= limit {
                return Err(std::io::Error::other("connection reset by fault injection"));
            }
            let take = (limit - sent).min(chunk.len() as u64) as usize;
            sent += take as u64;
            Ok(chunk.slice(..take))
        })
        .chain(futures::stream::once(async { Err(std::io::Error::other("connection reset by fault injection")) }))
        .take_while({
            let mut failed = false;
            move |r| {
                let keep = !failed;
                failed |= r.is_err();
                futures::future::ready(keep)
            }
        });
    Response::from_parts(parts, Body::from_stream(cut))
}

/// Adds streamed bytes to the download counter.
pub fn count_download(sim: &Arc<Inner>, n: u64) {
    sim.download_bytes.fetch_add(n, Ordering::Relaxed);
}
