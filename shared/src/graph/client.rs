//! The HTTP core every Graph call goes through: bearer token, retries, error mapping.
//!
//! Retry policy, per call:
//! - transport failures and 500/502/504: up to `max_retries` more attempts after 100 ms,
//!   400 ms, 1.6 s (+ up to 50 % jitter), for idempotent calls only: a create that may
//!   have reached Graph is not resent blindly, the caller gets `Transient` and decides;
//! - 429/503: the wait is the greater of `Retry-After` and `RateLimit-Reset`; if it is ≤
//!   `max_inline_throttle_wait`, sleep it and retry (same budget); otherwise return
//!   [`GraphError::Throttled`] at once so the caller can park the work and share the pause
//!   with every other worker of the tenant;
//! - 401: refresh the token once and retry (not counted against the budget).
//!
//! Every answer (success, redirect or error) that reports SharePoint's resource-unit budget
//! (`RateLimit-*`, see `budget.rs`) updates the client's latest report, which
//! [`GraphClient::budget_pause`] turns into a pause before the budget runs out.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use url::Url;

use super::auth::{AccessToken, ClientSecret, TokenCache, TokenRequest};
use super::budget::BudgetWatch;
use super::error::{self, GraphError, redact_url};
use crate::backoff::Backoff;

const JSON_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Downloads may take as long as they need, but not stall.
const DOWNLOAD_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// e.g. `https://graph.microsoft.com/v1.0`
    pub base_url: Url,
    /// e.g. `https://login.microsoftonline.com`
    pub login_url: Url,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// SharePoint favours decorated traffic: `ISV|Company|App/Version`.
    pub user_agent: String,
    /// Longest `Retry-After` slept inside a call; longer ones become `Throttled`.
    pub max_inline_throttle_wait: Duration,
    pub max_retries: u32,
}

impl GraphConfig {
    /// Public-cloud endpoints and the default retry budget.
    pub fn new(tenant_id: impl Into<String>, client_id: impl Into<String>, client_secret: ClientSecret) -> Self {
        #[allow(clippy::unwrap_used)] // constant URLs
        Self {
            base_url: Url::parse("https://graph.microsoft.com/v1.0").unwrap(),
            login_url: Url::parse("https://login.microsoftonline.com").unwrap(),
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            user_agent: format!("ISV|M365Backup|m365-backup/{}", env!("CARGO_PKG_VERSION")),
            max_inline_throttle_wait: Duration::from_secs(5),
            max_retries: 3,
        }
    }
}

/// The Graph client. Cheap to clone: clones share connections and the token.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
    /// `odata.maxpagesize` of mail delta requests (see `mail.rs`).
    pub(super) mail_page_size: u32,
}

struct Inner {
    cfg: GraphConfig,
    token_endpoint: Url,
    /// JSON calls: overall timeout.
    api: reqwest::Client,
    /// Content: no overall timeout, a read timeout instead.
    content: reqwest::Client,
    tokens: TokenCache,
    requests: AtomicU64,
    /// SharePoint's budget as Graph last reported it.
    budget: BudgetWatch,
}

/// One logical request, possibly sent several times.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    /// Send the bearer token (never to a pre-authenticated download URL).
    pub bearer: bool,
    pub json: Option<&'a serde_json::Value>,
    /// Raw bytes (uploads). Cheap to clone for a resend.
    pub body: Option<Bytes>,
    pub headers: HeaderMap,
    /// Safe to resend after a failure that may have reached Graph.
    pub idempotent: bool,
    /// Use the streaming client (no overall timeout).
    pub content: bool,
    /// Overall limit for this request (uploads: scaled to the body's size).
    pub timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub(crate) fn get(url: Url) -> Self {
        Self {
            method: Method::GET,
            url,
            bearer: true,
            json: None,
            body: None,
            headers: HeaderMap::new(),
            idempotent: true,
            content: false,
            timeout: None,
        }
    }

    pub(crate) fn with_json(method: Method, url: Url, json: &'a serde_json::Value) -> Self {
        Self { method, json: Some(json), ..Self::get(url) }
    }
}

impl GraphClient {
    pub fn new(cfg: GraphConfig) -> Result<Self, GraphError> {
        if cfg.base_url.cannot_be_a_base() || cfg.login_url.cannot_be_a_base() {
            return Err(GraphError::protocol("Graph and login URLs must be hierarchical"));
        }
        let mut token_endpoint = cfg.login_url.clone();
        if let Ok(mut segs) = token_endpoint.path_segments_mut() {
            segs.pop_if_empty().extend([cfg.tenant_id.as_str(), "oauth2", "v2.0", "token"]);
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(cfg.user_agent.clone())
                .connect_timeout(CONNECT_TIMEOUT)
                // A 302 from /content must reach us: its target gets no Authorization.
                .redirect(reqwest::redirect::Policy::none())
        };
        let build_err = |e| GraphError::protocol(format!("building HTTP client: {e}"));
        let api = builder().timeout(JSON_TIMEOUT).build().map_err(build_err)?;
        let content = builder().read_timeout(DOWNLOAD_READ_TIMEOUT).build().map_err(build_err)?;
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                token_endpoint,
                api,
                content,
                tokens: TokenCache::default(),
                requests: AtomicU64::new(0),
                budget: BudgetWatch::default(),
            }),
            mail_page_size: super::mail::DEFAULT_MAIL_PAGE_SIZE,
        })
    }

    /// HTTP requests sent so far, token and download requests included.
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// How long the tenant's SharePoint work should pause: until the window resets, when the
    /// latest `RateLimit-*` report (not yet past its reset) shows the budget down to its
    /// reserve ([`super::BUDGET_RESERVE_PERCENT`]). `None` without such a report.
    pub fn budget_pause(&self) -> Option<Duration> {
        self.inner.budget.pause()
    }

    pub fn config(&self) -> &GraphConfig {
        &self.inner.cfg
    }

    /// `{base}/seg/seg/...`, each segment percent-encoded.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.cfg.base_url.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.pop_if_empty().extend(segments);
        }
        url
    }

    /// Links from Graph (nextLink, deltaLink) get our bearer token: follow only those
    /// pointing at the configured Graph origin.
    pub(crate) fn graph_link(&self, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(|_| GraphError::protocol("malformed Graph link"))?;
        if url.origin() != self.inner.cfg.base_url.origin() {
            return Err(GraphError::protocol(format!(
                "Graph link points outside {}",
                redact_url(&self.inner.cfg.base_url)
            )));
        }
        Ok(url)
    }

    /// GET and decode a JSON body.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T, GraphError> {
        self.execute(&Call::get(url), read_json).await
    }

    /// Sends `call`, retrying per the module policy, and hands a 2xx/3xx response to
    /// `read`. A transient failure while reading (truncated body) is retried like any other.
    pub(crate) async fn execute<T, F, Fut>(&self, call: &Call<'_>, read: F) -> Result<T, GraphError>
    where
        F: Fn(Response) -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        let max_retries = self.inner.cfg.max_retries;
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            let (err, token) = match self.attempt(call).await {
                Ok(resp) => match read(resp).await {
                    Ok(v) => return Ok(v),
                    Err(e) => (e, None),
                },
                Err(failure) => failure,
            };
            let wait = match &err {
                GraphError::Unauthorized { .. } if call.bearer && !refreshed => {
                    refreshed = true;
                    if let Some(token) = token {
                        self.inner.tokens.invalidate(&token).await;
                    }
                    tracing::debug!(url = %redact_url(&call.url), "401 from Graph, refreshing token");
                    continue;
                }
                GraphError::Throttled { retry_after, .. }
                    if *retry_after <= self.inner.cfg.max_inline_throttle_wait =>
                {
                    Some(*retry_after)
                }
                GraphError::Transient { .. } if call.idempotent => Some(Backoff::GRAPH.delay(retries)),
                _ => None,
            };
            match wait {
                Some(wait) if retries < max_retries => {
                    tracing::debug!(
                        method = %call.method,
                        url = %redact_url(&call.url),
                        retry = retries + 1,
                        wait_ms = wait.as_millis() as u64,
                        error = %err,
                        "retrying Graph call"
                    );
                    retries += 1;
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(err),
            }
        }
    }

    /// One send. On failure, also returns the token used so a 401 can retire it.
    async fn attempt(&self, call: &Call<'_>) -> Result<Response, (GraphError, Option<AccessToken>)> {
        let token = if call.bearer { Some(self.token().await.map_err(|e| (e, None))?) } else { None };
        let http = if call.content { &self.inner.content } else { &self.inner.api };
        let mut req = http.request(call.method.clone(), call.url.clone()).headers(call.headers.clone());
        if let Some(token) = &token {
            req = req.header(AUTHORIZATION, token.header_value());
        }
        if let Some(json) = call.json {
            req = req.json(json);
        }
        if let Some(body) = &call.body {
            req = req.body(body.clone());
        }
        if let Some(timeout) = call.timeout {
            req = req.timeout(timeout);
        }
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await.map_err(|e| (GraphError::from_transport(e), token.clone()))?;
        self.inner.budget.observe(resp.headers());
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        // The error body is best effort: a failure reading it changes nothing.
        let body = resp.bytes().await.unwrap_or_default();
        Err((error::from_response(status, &headers, &body, &call.url), token))
    }

    async fn token(&self) -> Result<AccessToken, GraphError> {
        let inner = &self.inner;
        let req = TokenRequest {
            endpoint: &inner.token_endpoint,
            client_id: &inner.cfg.client_id,
            secret: &inner.cfg.client_secret,
        };
        let count = || {
            inner.requests.fetch_add(1, Ordering::Relaxed);
        };
        inner.tokens.get(&inner.api, &req, count).await
    }
}

/// Reads the whole body and decodes it; a body cut short is transient.
pub(crate) async fn read_json<T: DeserializeOwned>(resp: Response) -> Result<T, GraphError> {
    let body = resp.bytes().await.map_err(GraphError::from_transport)?;
    serde_json::from_slice(&body).map_err(|e| GraphError::protocol(format!("decoding JSON: {e}")))
}

/// Accepts any 2xx, ignoring the body.
pub(crate) async fn read_nothing(_: Response) -> Result<(), GraphError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_other_origins_are_refused() {
        let cfg = GraphConfig::new("t", "c", ClientSecret::new("s"));
        let client = GraphClient::new(cfg).expect("client");
        assert!(client.graph_link("https://graph.microsoft.com/v1.0/x?token=1").is_ok());
        assert!(client.graph_link("https://evil.example/v1.0/x?token=1").is_err());
        let url = client.endpoint(&["users", "a b/c", "drive"]);
        assert_eq!(url.as_str(), "https://graph.microsoft.com/v1.0/users/a%20b%2Fc/drive");
    }
}
