//! App-only tokens from the Microsoft identity platform (client-credentials grant).
//!
//! One token per client, shared by every task: the cache lock is held while a token is
//! fetched so a burst of callers costs one token request, not one each.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{GraphError, describe_transport, parse_retry_after};

/// `.default` asks for every application permission the tenant admin consented to.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Refresh this long before the token expires, so a token never dies mid-request.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The client secret of the app registration. Printing it shows `<redacted>`.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bearer token. Cheap to clone; compared by identity to know which token a 401 refused.
#[derive(Clone)]
pub(crate) struct AccessToken(Arc<str>);

impl AccessToken {
    pub(crate) fn header_value(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<access token>")
    }
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

/// Where to ask for tokens and as whom.
pub(crate) struct TokenRequest<'a> {
    pub endpoint: &'a url::Url,
    pub client_id: &'a str,
    pub secret: &'a ClientSecret,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    cached: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The cached token, or a fresh one. `on_request` is called once per HTTP request sent.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        req: &TokenRequest<'_>,
        on_request: impl Fn(),
    ) -> Result<AccessToken, GraphError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        on_request();
        let fetched_at = Instant::now();
        let (token, lifetime) = fetch(http, req).await?;
        let refresh_after = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        *cached = Some(Cached { token: token.clone(), refresh_at: fetched_at + refresh_after });
        tracing::debug!(lifetime_s = lifetime.as_secs(), "fetched Graph access token");
        Ok(token)
    }

    /// Forgets `stale` after Graph refused it, unless another task already replaced it.
    pub(crate) async fn invalidate(&self, stale: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| Arc::ptr_eq(&c.token.0, &stale.0)) {
            *cached = None;
        }
    }
}

async fn fetch(http: &reqwest::Client, req: &TokenRequest<'_>) -> Result<(AccessToken, Duration), GraphError> {
    #[derive(Deserialize)]
    struct Granted {
        access_token: String,
        expires_in: Option<u64>,
    }
    #[derive(Deserialize)]
    struct Refused {
        error: Option<String>,
    }

    let form = [
        ("client_id", req.client_id),
        ("client_secret", req.secret.expose()),
        ("scope", GRAPH_SCOPE),
        ("grant_type", "client_credentials"),
    ];
    let resp = http
        .post(req.endpoint.clone())
        .form(&form)
        .send()
        .await
        .map_err(|e| GraphError::transient(format!("token request: {}", describe_transport(e))))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body =
        resp.bytes().await.map_err(|e| GraphError::transient(format!("token response: {}", describe_transport(e))))?;
    match status.as_u16() {
        200..=299 => {
            let granted: Granted =
                serde_json::from_slice(&body).map_err(|e| GraphError::protocol(format!("token response: {e}")))?;
            let lifetime = Duration::from_secs(granted.expires_in.unwrap_or(3600));
            Ok((AccessToken(granted.access_token.into()), lifetime))
        }
        429 | 503 => Err(GraphError::Throttled {
            retry_after: parse_retry_after(&headers).unwrap_or(super::error::DEFAULT_THROTTLE_WAIT),
            status: status.as_u16(),
        }),
        500..=599 => Err(GraphError::transient(format!("token endpoint HTTP {}", status.as_u16()))),
        // Only the OAuth error code: the description is free text we do not control.
        _ => Err(GraphError::Auth {
            status: status.as_u16(),
            code: serde_json::from_slice::<Refused>(&body)
                .ok()
                .and_then(|r| r.error)
                .unwrap_or_else(|| "unknown".to_owned()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_never_print() {
        let secret = ClientSecret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "<redacted> <redacted>");
        let token = AccessToken(Arc::from("eyJ.secret"));
        assert!(!format!("{token:?}").contains("secret"));
    }
}
