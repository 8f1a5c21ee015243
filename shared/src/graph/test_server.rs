//! A scripted local HTTP server standing in for Graph and the token endpoint in tests.
//! Deliberately independent of the graph simulator: each test states what Graph answers.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use url::Url;

use super::{ClientSecret, GraphClient, GraphConfig};

pub const TOKEN_PATH: &str = "/tenant-1/oauth2/v2.0/token";
pub const SECRET: &str = "very-secret-value";

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub auth: Option<String>,
    pub range: Option<String>,
    pub content_range: Option<String>,
    pub prefer: Option<String>,
    pub body: String,
    /// 1-based count of requests to this path so far, this one included.
    pub nth: usize,
}

type Responder = dyn Fn(&Seen, &str) -> Response + Send + Sync;

pub struct TestServer {
    pub origin: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    /// Serves `respond(request, origin)` for everything but the token endpoint, which
    /// hands out `tok-1`, `tok-2`, ... valid for `token_lifetime_s`.
    pub async fn start(
        token_lifetime_s: u64,
        respond: impl Fn(&Seen, &str) -> Response + Send + Sync + 'static,
    ) -> Self {
        Self::start_raw(move |seen, origin| {
            if seen.path == TOKEN_PATH {
                let body = serde_json::json!({
                    "token_type": "Bearer",
                    "access_token": format!("tok-{}", seen.nth),
                    "expires_in": token_lifetime_s,
                });
                json(200, &body)
            } else {
                respond(seen, origin)
            }
        })
        .await
    }

    /// Serves `respond` for every path, the token endpoint included.
    pub async fn start_raw(respond: impl Fn(&Seen, &str) -> Response + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let respond: Arc<Responder> = Arc::new(respond);
        let (log, base) = (seen.clone(), origin.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (log, respond, base) = (log.clone(), respond.clone(), base.clone());
            async move {
                let (auth, range, content_range, prefer) = {
                    let header = |name: &str| req.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                    let prefer = req.headers().get_all("prefer").iter().count();
                    assert!(prefer <= 1, "one Prefer header at most");
                    (header("authorization"), header("range"), header("content-range"), header("prefer"))
                };
                let method = req.method().to_string();
                let path = req.uri().path().to_owned();
                let query = req.uri().query().map(str::to_owned);
                let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap();
                let seen = {
                    let mut log = log.lock().unwrap();
                    let nth = log.iter().filter(|s| s.path == path).count() + 1;
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let seen = Seen { method, path, query, auth, range, content_range, prefer, body, nth };
                    log.push(seen.clone());
                    seen
                };
                respond(&seen, &base)
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { origin, seen }
    }

    pub fn client(&self) -> GraphClient {
        self.client_with(|_| {})
    }

    pub fn client_with(&self, tweak: impl FnOnce(&mut GraphConfig)) -> GraphClient {
        let mut cfg = GraphConfig::new("tenant-1", "client-1", ClientSecret::new(SECRET));
        cfg.base_url = Url::parse(&format!("{}/v1.0", self.origin)).unwrap();
        cfg.login_url = Url::parse(&self.origin).unwrap();
        cfg.max_inline_throttle_wait = Duration::from_secs(2);
        tweak(&mut cfg);
        GraphClient::new(cfg).unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Requests to paths other than the token endpoint.
    pub fn graph_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path != TOKEN_PATH).collect()
    }

    pub fn token_requests(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == TOKEN_PATH).collect()
    }
}

pub fn json(status: u16, body: &serde_json::Value) -> Response {
    reply(status, &[("content-type", "application/json")], body.to_string())
}

pub fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body.into()).unwrap()
}

pub fn graph_error(status: u16, code: &str) -> Response {
    json(status, &serde_json::json!({"error": {"code": code, "message": "scripted"}}))
}

/// A query string's parameters.
pub fn params(seen: &Seen) -> HashMap<String, String> {
    url::form_urlencoded::parse(seen.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect()
}
