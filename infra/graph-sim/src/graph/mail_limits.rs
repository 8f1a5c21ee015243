//! Outlook throttling per mailbox (graph-facts §9): at most
//! `mail_concurrency` (4) requests in flight, `mail_requests_per_window`
//! (10,000) per `mail_request_window` (10 min) and
//! `mail_upload_bytes_per_window` (150 MB) of POST/PUT/PATCH bodies per
//! `mail_upload_window` (5 min). Over a limit: `429` with `Retry-After` and
//! Exchange's `ApplicationThrottled` error. Throttled requests still count
//! against the request window, as Graph warns they do. The
//! `mail_latency` fault slows every mail request down so that concurrent
//! ones overlap.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::Inner;
use crate::error::GraphError;

#[derive(Default)]
pub struct MailboxUsage {
    in_flight: usize,
    requests: VecDeque<Instant>,
    uploads: VecDeque<(Instant, u64)>,
}

/// Usage by mailbox (user id).
pub type MailLimits = Mutex<HashMap<String, MailboxUsage>>;

fn throttled(limit: &str, retry_after: Duration) -> Response {
    GraphError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "ApplicationThrottled",
        format!("Application is over its {limit} limit."),
    )
    .with_header(header::RETRY_AFTER, &retry_after.as_secs().max(1).to_string())
    .into_response()
}

/// The mailbox a request is for: `/users/{u}/...`, or the user an attachment
/// upload URL was issued for.
fn mailbox_of(sim: &Inner, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let raw = match segs.as_slice() {
        ["outlook", "upload", token] => sim.signer.verify(token)?.get(1)?.clone(),
        _ => {
            let at = segs.iter().position(|s| *s == "users")?;
            let user = segs.get(at + 1)?;
            percent_encoding::percent_decode_str(user).decode_utf8_lossy().into_owned()
        }
    };
    let st = sim.lock();
    Some(st.user(&raw).map_or_else(|| raw.to_lowercase(), |u| u.id.clone()))
}

/// Lowers the in-flight count when the request is done, however it ends.
struct InFlight<'a> {
    limits: &'a MailLimits,
    mailbox: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = limits.get_mut(&self.mailbox) {
            u.in_flight = u.in_flight.saturating_sub(1);
        }
    }
}

pub async fn limit(State(sim): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let Some(mailbox) = mailbox_of(&sim, req.uri().path()) else {
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
        let u = limits.entry(mailbox.clone()).or_default();
        let now = Instant::now();
        while u.requests.front().is_some_and(|t| now.duration_since(*t) >= cfg.mail_request_window) {
            u.requests.pop_front();
        }
        while u.uploads.front().is_some_and(|(t, _)| now.duration_since(*t) >= cfg.mail_upload_window) {
            u.uploads.pop_front();
        }
        u.requests.push_back(now);
        let uploaded: u64 = u.uploads.iter().map(|(_, n)| n).sum();
        let wait = |since: Instant, window: Duration| window.saturating_sub(now.duration_since(since));
        if u.in_flight >= cfg.mail_concurrency {
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
            }
            u.in_flight += 1;
            None
        }
    };
    if let Some(resp) = refused {
        sim.lock().stats.throttled += 1;
        return resp;
    }
    let _guard = InFlight { limits: &sim.mail_limits, mailbox };
    let latency = sim.lock().faults.mail_latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    next.run(req).await
}
