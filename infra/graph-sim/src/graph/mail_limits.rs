//! Outlook throttling per app and mailbox (graph-facts §9): at most
//! `mail_concurrency` (4) requests in flight, `mail_requests_per_window`
//! (10,000) per `mail_request_window` (10 min) and
//! `mail_upload_bytes_per_window` (150 MB) of POST/PUT/PATCH bodies per
//! `mail_upload_window` (5 min). Over a limit: `429` with `Retry-After` and
//! Exchange's `ApplicationThrottled` error. Throttled requests still count
//! against the request window, as Graph warns they do. Two apps working on one
//! mailbox (the backup's reader and the restorer) each have their own limits, as
//! Exchange counts them; an attachment upload URL is charged to the app that
//! opened its session. The `mail_latency` fault slows every mail request down
//! so that concurrent ones overlap; `mail_write_latency` slows writes only (what
//! an Exchange create costs). `GET /admin/mail_limits` reports each app and
//! mailbox's use: requests and bytes in the current windows, the most requests
//! it ever had in flight at once, and its refusals.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Inner;
use crate::apps::Caller;
use crate::error::GraphError;

#[derive(Default)]
pub struct MailboxUsage {
    in_flight: usize,
    requests: VecDeque<Instant>,
    uploads: VecDeque<(Instant, u64)>,
    /// The most requests ever in flight at once.
    peak_in_flight: usize,
    /// Every request counted, and those refused, since the last reset.
    requests_total: u64,
    throttled: u64,
    uploaded_total: u64,
}

/// Whose limits a request counts against: the calling app's client id and the mailbox's
/// user id.
type Key = (String, String);

/// Usage by app and mailbox.
pub type MailLimits = Mutex<HashMap<Key, MailboxUsage>>;

/// `GET /admin/mail_limits`: every app and mailbox's use, in the current windows and since
/// the last reset.
pub fn report(sim: &Inner) -> Value {
    let now = Instant::now();
    let cfg = &sim.cfg;
    let limits = sim.mail_limits.lock().unwrap_or_else(|e| e.into_inner());
    let mut usage: Vec<Value> = limits
        .iter()
        .map(|((app, mailbox), u)| {
            let in_window = u.requests.iter().filter(|t| now.duration_since(**t) < cfg.mail_request_window).count();
            let uploaded: u64 =
                u.uploads.iter().filter(|(t, _)| now.duration_since(*t) < cfg.mail_upload_window).map(|(_, n)| n).sum();
            json!({"app": app, "mailbox": mailbox, "requests_in_window": in_window,
                "uploaded_bytes_in_window": uploaded, "peak_in_flight": u.peak_in_flight,
                "requests": u.requests_total, "uploaded_bytes": u.uploaded_total, "throttled": u.throttled})
        })
        .collect();
    usage.sort_by_key(|u| (u["app"].to_string(), u["mailbox"].to_string()));
    json!({
        "concurrency": cfg.mail_concurrency,
        "requests_per_window": cfg.mail_requests_per_window,
        "request_window_ms": cfg.mail_request_window.as_millis() as u64,
        "upload_bytes_per_window": cfg.mail_upload_bytes_per_window,
        "upload_window_ms": cfg.mail_upload_window.as_millis() as u64,
        "usage": usage,
    })
}

/// `POST /admin/mail_limits/reset`: every app and mailbox starts afresh (windows and
/// counters).
pub fn reset(sim: &Inner) {
    sim.mail_limits.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

fn throttled(limit: &str, retry_after: Duration) -> Response {
    GraphError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ApplicationThrottled",
        format!("Application is over its {limit} limit."),
    )
    .with_header(header::RETRY_AFTER, &retry_after.as_secs().max(1).to_string())
    .into_response()
}

/// The app and mailbox a request counts against: the caller and `/users/{u}/...`, or
/// the app and user an attachment upload URL was issued to.
fn key_of(sim: &Inner, req: &Request) -> Option<Key> {
    let segs: Vec<&str> = req.uri().path().split('/').filter(|s| !s.is_empty()).collect();
    let (app, raw) = match segs.as_slice() {
        ["outlook", "upload", token] => {
            let fields = sim.signer.verify(token)?;
            (fields.get(3)?.clone(), fields.get(1)?.clone())
        }
        _ => {
            let at = segs.iter().position(|s| *s == "users")?;
            let user = segs.get(at + 1)?;
            let app = req.extensions().get::<Caller>().map(|c| c.client_id.clone()).unwrap_or_default();
            (app, percent_encoding::percent_decode_str(user).decode_utf8_lossy().into_owned())
        }
    };
    let st = sim.lock();
    Some((app, st.user(&raw).map_or_else(|| raw.to_lowercase(), |u| u.id.clone())))
}

/// Lowers the in-flight count when the request is done, however it ends.
struct InFlight<'a> {
    limits: &'a MailLimits,
    key: Key,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = limits.get_mut(&self.key) {
            u.in_flight = u.in_flight.saturating_sub(1);
        }
    }
}

pub async fn limit(State(sim): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let Some(key) = key_of(&sim, &req) else {
        return next.run(req).await;
    };
    let uploading = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    let bytes = if uploading {
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
    } else {
        None
    }
    .unwrap_or(0u64);
    let cfg = &sim.cfg;
    let refused = {
        let mut limits = sim.mail_limits.lock().unwrap_or_else(|e| e.into_inner());
        let u = limits.entry(key.clone()).or_default();
        let now = Instant::now();
        while u.requests.front().is_some_and(|t| now.duration_since(*t) >= cfg.mail_request_window) {
            u.requests.pop_front();
        }
        while u.uploads.front().is_some_and(|(t, _)| now.duration_since(*t) >= cfg.mail_upload_window) {
            u.uploads.pop_front();
        }
        u.requests.push_back(now);
        u.requests_total += 1;
        let uploaded: u64 = u.uploads.iter().map(|(_, n)| n).sum();
        let wait = |since: Instant, window: Duration| window.saturating_sub(now.duration_since(since));
        let refused = if u.in_flight >= cfg.mail_concurrency {
            Some(throttled("MailboxConcurrency", Duration::from_secs(1)))
        } else if u.requests.len() > cfg.mail_requests_per_window {
            let oldest = u.requests.front().copied().unwrap_or(now);
            Some(throttled("MailboxRequestRate", wait(oldest, cfg.mail_request_window)))
        } else if bytes > 0 && uploaded + bytes > cfg.mail_upload_bytes_per_window {
            let oldest = u.uploads.front().map_or(now, |(t, _)| *t);
            Some(throttled("MailboxUploadRate", wait(oldest, cfg.mail_upload_window)))
        } else {
            if bytes > 0 {
                u.uploads.push_back((now, bytes));
                u.uploaded_total += bytes;
            }
            u.in_flight += 1;
            u.peak_in_flight = u.peak_in_flight.max(u.in_flight);
            None
        };
        if refused.is_some() {
            u.throttled += 1;
        }
        refused
    };
    if let Some(resp) = refused {
        sim.lock().stats.throttled += 1;
        return resp;
    }
    let _guard = InFlight { limits: &sim.mail_limits, key };
    let latency = {
        let st = sim.lock();
        let faults = &st.faults;
        let writing = *req.method() != Method::GET && *req.method() != Method::HEAD;
        faults.mail_latency_ms + if writing { faults.mail_write_latency_ms } else { 0 }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    next.run(req).await
}
