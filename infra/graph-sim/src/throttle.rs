//! SharePoint and OneDrive resource-unit throttling per app (graph-facts-sharepoint §2.4,
//! graph-facts §13.11). Every SharePoint/OneDrive request costs resource units: 1 for a
//! single item, site or drive, a delta with a token, a download; 2 for a listing (children,
//! getAllSites, sites/delta without a token, subsites, a site's drives, versions), a delta
//! without a token, any write; 5 for permissions (`/permissions`, `$expand=permissions`).
//! An app has two fixed windows (a minute and a day by default), each starting at its first
//! counted request after the previous one ended. A request that would pass either budget is
//! refused with `429` and `Retry-After` (whole seconds until that window ends) and costs
//! nothing; from 80 % of a budget every counted response carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` for the fuller window; a blocked app gets
//! `503` on every counted route. Mail, `/users`, `/groups`, `/subscriptions` and the token
//! endpoint are not counted. Pre-authenticated URLs carry the app that obtained them:
//! downloads cost it 1, upload fragments 2.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::apps::Caller;
use crate::error::GraphError;
use crate::{Inner, SimConfig};

tokio::task_local! {
    /// The app a `/v1.0` request comes from, for the pre-authenticated URLs it hands out.
    static CALLER_ID: String;
}

/// The client id of the app whose request is being answered ("" outside one).
pub fn current_client() -> String {
    CALLER_ID.try_with(Clone::clone).unwrap_or_default()
}

/// Budgets, changeable at runtime (`PATCH /admin/throttling`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub per_minute: u64,
    pub per_day: u64,
    pub minute_window: Duration,
    pub day_window: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: Option<Instant>,
    used: u64,
}

impl Window {
    /// Starts a new window if the last one has ended.
    fn roll(&mut self, now: Instant, len: Duration) {
        if self.start.is_none_or(|s| now >= s + len) {
            *self = Window { start: Some(now), used: 0 };
        }
    }

    fn used_at(&self, now: Instant, len: Duration) -> u64 {
        if self.start.is_some_and(|s| now < s + len) { self.used } else { 0 }
    }

    /// Whole seconds until the window ends, at least 1.
    fn reset_secs(&self, now: Instant, len: Duration) -> u64 {
        let end = self.start.map_or(now, |s| s + len);
        let ms = end.saturating_duration_since(now).as_millis() as u64;
        ms.div_ceil(1000).max(1)
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct AppUsage {
    #[serde(skip)]
    minute: Window,
    #[serde(skip)]
    day: Window,
    pub used_minute: u64,
    pub used_day: u64,
    pub total_ru: u64,
    pub requests: u64,
    /// Refused with `429`.
    pub throttled: u64,
    /// Refused with `503` while blocked.
    pub blocked: u64,
}

struct Ledger {
    limits: Limits,
    blocked_apps: HashSet<String>,
    apps: BTreeMap<String, AppUsage>,
    /// Units charged since the last `POST /admin/stats/reset`.
    stats_total: u64,
}

pub struct Throttle {
    ledger: Mutex<Ledger>,
}

type Headers = Vec<(HeaderName, String)>;

impl Throttle {
    pub fn new(cfg: &SimConfig) -> Self {
        let limits = Limits {
            per_minute: cfg.ru_per_minute,
            per_day: cfg.ru_per_day,
            minute_window: cfg.ru_minute_window,
            day_window: cfg.ru_day_window,
        };
        let ledger = Ledger { limits, blocked_apps: HashSet::new(), apps: BTreeMap::new(), stats_total: 0 };
        Self { ledger: Mutex::new(ledger) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charges `cost` to `client`: the headers to add to its response, or the refusal.
    fn admit(&self, client: &str, cost: u64) -> Result<Headers, GraphError> {
        let now = Instant::now();
        let mut ledger = self.lock();
        let l = ledger.limits.clone();
        let blocked = ledger.blocked_apps.contains(client);
        let app = ledger.apps.entry(client.to_string()).or_default();
        app.requests += 1;
        if blocked {
            app.blocked += 1;
            return Err(GraphError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "serviceNotAvailable",
                "The service is temporarily unavailable.",
            )
            .with_header(header::RETRY_AFTER, "3600"));
        }
        app.minute.roll(now, l.minute_window);
        app.day.roll(now, l.day_window);
        let windows = [(app.minute, l.per_minute, l.minute_window), (app.day, l.per_day, l.day_window)];
        let retry = windows
            .iter()
            .filter(|(w, limit, _)| w.used + cost > *limit)
            .map(|(w, _, len)| w.reset_secs(now, *len))
            .max();
        if let Some(retry) = retry {
            app.throttled += 1;
            let mut e = GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "The request has been throttled: the application exceeded its resource unit limit.",
            )
            .with_header(header::RETRY_AFTER, &retry.to_string());
            for (name, value) in rate_headers(&windows, now) {
                e = e.with_header(name, &value);
            }
            return Err(e);
        }
        app.minute.used += cost;
        app.day.used += cost;
        app.total_ru += cost;
        let windows = [(app.minute, l.per_minute, l.minute_window), (app.day, l.per_day, l.day_window)];
        ledger.stats_total += cost;
        Ok(rate_headers(&windows, now))
    }

    /// `GET /admin/throttling`: the budgets and every app's usage.
    pub fn report(&self) -> Value {
        let now = Instant::now();
        let ledger = self.lock();
        let l = &ledger.limits;
        let apps: BTreeMap<String, AppUsage> = ledger
            .apps
            .iter()
            .map(|(id, a)| {
                let mut a = a.clone();
                a.used_minute = a.minute.used_at(now, l.minute_window);
                a.used_day = a.day.used_at(now, l.day_window);
                (id.clone(), a)
            })
            .collect();
        let mut blocked: Vec<&String> = ledger.blocked_apps.iter().collect();
        blocked.sort();
        json!({
            "ru_per_minute": l.per_minute,
            "ru_per_day": l.per_day,
            "minute_window_ms": l.minute_window.as_millis() as u64,
            "day_window_ms": l.day_window.as_millis() as u64,
            "blocked_apps": blocked,
            "total_ru": apps.values().map(|a| a.total_ru).sum::<u64>(),
            "apps": apps,
        })
    }

    /// `PATCH /admin/throttling`; `None` leaves a setting as it is.
    pub fn update(&self, limits: LimitsPatch) {
        let mut ledger = self.lock();
        let l = &mut ledger.limits;
        l.per_minute = limits.ru_per_minute.unwrap_or(l.per_minute);
        l.per_day = limits.ru_per_day.unwrap_or(l.per_day);
        l.minute_window = limits.minute_window_ms.map_or(l.minute_window, Duration::from_millis);
        l.day_window = limits.day_window_ms.map_or(l.day_window, Duration::from_millis);
        if let Some(blocked) = limits.blocked_apps {
            ledger.blocked_apps = blocked.into_iter().collect();
        }
    }

    /// Forgets every app's usage (windows and counters); budgets and blocks stay.
    pub fn reset(&self) {
        self.lock().apps.clear();
    }

    pub fn stats_total(&self) -> u64 {
        self.lock().stats_total
    }

    pub fn reset_stats_total(&self) {
        self.lock().stats_total = 0;
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct LimitsPatch {
    pub ru_per_minute: Option<u64>,
    pub ru_per_day: Option<u64>,
    pub minute_window_ms: Option<u64>,
    pub day_window_ms: Option<u64>,
    pub blocked_apps: Option<Vec<String>>,
}

/// `RateLimit-*` for the fuller window once it is at 80 % or more, else nothing.
fn rate_headers(windows: &[(Window, u64, Duration)], now: Instant) -> Headers {
    let fraction = |w: &Window, limit: u64| if limit == 0 { 1.0 } else { w.used as f64 / limit as f64 };
    let fullest = windows.iter().max_by(|a, b| fraction(&a.0, a.1).total_cmp(&fraction(&b.0, b.1)));
    match fullest {
        Some((w, limit, len)) if fraction(w, *limit) >= 0.8 => vec![
            (HeaderName::from_static("ratelimit-limit"), limit.to_string()),
            (HeaderName::from_static("ratelimit-remaining"), limit.saturating_sub(w.used).to_string()),
            (HeaderName::from_static("ratelimit-reset"), w.reset_secs(now, *len).to_string()),
        ],
        _ => Vec::new(),
    }
}

/// What a `/v1.0` request (path below `/v1.0`) costs, or `None` if it is not counted.
pub fn cost(method: &Method, path: &str, query: Option<&str>) -> Option<u64> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let counted = matches!(
        segs.as_slice(),
        ["sites", ..] | ["drives", ..] | ["users", _, "drive", ..] | ["groups", _, "sites", ..]
    );
    if !counted {
        return None;
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
    let param = |k: &str| params.iter().find(|(name, _)| name.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
    let expands_permissions = param("$expand").is_some_and(|e| e.to_lowercase().contains("permissions"));
    if segs.contains(&"permissions") || expands_permissions {
        return Some(5);
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Some(2);
    }
    let last = segs.last().copied().unwrap_or("");
    if last.starts_with("delta") {
        let tokened = param("token").is_some_and(|t| !t.is_empty()) || last.contains("token=");
        return Some(if tokened { 1 } else { 2 });
    }
    let listing = match (segs.first(), last) {
        (_, "children" | "versions" | "getAllSites") => true,
        (Some(&"sites"), "sites" | "drives") => segs.len() > 2 || last == "drives",
        _ => false,
    };
    Some(if listing { 2 } else { 1 })
}

/// The app and cost of a pre-authenticated request: a download (1) or an upload fragment (2).
fn pre_authenticated(sim: &Inner, method: &Method, path: &str) -> Option<(String, u64)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (token, cost, field) = match segs.as_slice() {
        ["download", t] => (*t, 1, 4),
        ["upload", t] if *method == Method::PUT => (*t, 2, 3),
        _ => return None,
    };
    let fields = sim.signer.verify(token)?;
    let client = fields.get(field).filter(|c| !c.is_empty())?;
    Some((client.clone(), cost))
}

/// Charges counted requests to their app; see the module doc.
pub async fn charge(State(sim): State<Arc<Inner>>, req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<Caller>().map(|c| c.client_id.clone());
    let path = req.uri().path().trim_start_matches("/v1.0").to_string();
    let charged = match &caller {
        Some(client) => cost(req.method(), &path, req.uri().query()).map(|c| (client.clone(), c)),
        None => pre_authenticated(&sim, req.method(), &path),
    };
    let headers = match &charged {
        None => Vec::new(),
        Some((client, cost)) => match sim.throttle.admit(client, *cost) {
            Ok(h) => h,
            Err(e) => {
                sim.lock().stats.throttled += 1;
                return e.into_response();
            }
        },
    };
    let mut resp = match caller {
        Some(client) => CALLER_ID.scope(client, next.run(req)).await,
        None => next.run(req).await,
    };
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_sharepoint_table() {
        let get = Method::GET;
        let cases = [
            (get.clone(), "/drives/d/items/i", None, Some(1)),
            (get.clone(), "/drives/d/root/delta", None, Some(2)),
            (get.clone(), "/drives/d/root/delta", Some("token=abc"), Some(1)),
            (get.clone(), "/drives/d/items/i/children", None, Some(2)),
            (get.clone(), "/drives/d/items/i/versions", None, Some(2)),
            (get.clone(), "/drives/d/items/i/permissions", None, Some(5)),
            (get.clone(), "/drives/d/items/i", Some("$expand=permissions"), Some(5)),
            (get.clone(), "/sites/getAllSites", None, Some(2)),
            (get.clone(), "/sites/delta", None, Some(2)),
            (get.clone(), "/sites/delta", Some("token=x"), Some(1)),
            (get.clone(), "/sites/h,a,b", None, Some(1)),
            (get.clone(), "/sites/h,a,b/sites", None, Some(2)),
            (get.clone(), "/sites/h,a,b/drives", None, Some(2)),
            (get.clone(), "/sites/contoso.sharepoint.com:/sites/finance", None, Some(1)),
            (get.clone(), "/users/u/drive", None, Some(1)),
            (get.clone(), "/groups/g/sites/root", None, Some(1)),
            (Method::PUT, "/drives/d/items/p:/a.txt:/content", None, Some(2)),
            (Method::DELETE, "/drives/d/items/i", None, Some(2)),
            (get.clone(), "/users", None, None),
            (get.clone(), "/groups", None, None),
            (get.clone(), "/users/u/messages", None, None),
            (Method::POST, "/subscriptions", None, None),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(cost(&method, path, query), want, "{method} {path} {query:?}");
        }
    }
}
