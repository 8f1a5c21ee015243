//! A counting pass-through proxy in front of moto, for benchmarks: every AWS request of the
//! pipeline is tallied by service and operation, which gives portable per-item counts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::TryStreamExt;

#[derive(Default, Debug)]
pub struct AwsCounts {
    pub by_operation: Mutex<BTreeMap<String, u64>>,
}

impl AwsCounts {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.by_operation.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn service_total(&self, service: &str) -> u64 {
        self.snapshot().iter().filter(|(k, _)| k.starts_with(&format!("{service}:"))).map(|(_, v)| v).sum()
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.by_operation.lock() {
            m.clear();
        }
    }
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<AwsCounts>,
}

fn operation(headers: &HeaderMap, method: &str, query: &str) -> String {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Credential=AKID/date/region/service/aws4_request
    let service = auth.split("Credential=").nth(1).and_then(|c| c.split('/').nth(3)).unwrap_or("unknown");
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).and_then(|t| t.rsplit('.').next());
    let op = match (target, service) {
        (Some(t), _) => t.to_string(),
        (None, "s3") => {
            let q = |k: &str| query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
            match method {
                "PUT" if q("partNumber") => "UploadPart".into(),
                "PUT" if q("retention") => "PutObjectRetention".into(),
                "PUT" => "PutObject".into(),
                "POST" if q("uploads") => "CreateMultipartUpload".into(),
                "POST" if q("uploadId") => "CompleteMultipartUpload".into(),
                "DELETE" if q("uploadId") => "AbortMultipartUpload".into(),
                "HEAD" => "HeadObject".into(),
                "GET" if q("versions") => "ListObjectVersions".into(),
                "GET" if q("retention") => "GetObjectRetention".into(),
                "GET" => "GetObject".into(),
                other => other.to_string(),
            }
        }
        (None, _) => method.to_string(),
    };
    format!("{service}:{op}")
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Result<Response, StatusCode> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let op = operation(&parts.headers, parts.method.as_str(), parts.uri.query().unwrap_or_default());
    if let Ok(mut m) = proxy.counts.by_operation.lock() {
        *m.entry(op).or_default() += 1;
    }
    let mut upstream = proxy.http.request(parts.method.clone(), format!("{}{path_and_query}", proxy.upstream));
    for (name, value) in &parts.headers {
        if name != "host" {
            upstream = upstream.header(name, value);
        }
    }
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let answer = upstream.body(body).send().await.map_err(|_| StatusCode::BAD_GATEWAY)?;
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    response.body(Body::from_stream(stream)).map_err(|_| StatusCode::BAD_GATEWAY)
}

/// Starts the proxy on a loopback port; returns its endpoint and the counters.
pub async fn start(upstream: &str) -> Result<(String, Arc<AwsCounts>, tokio::task::JoinHandle<()>)> {
    let counts = Arc::new(AwsCounts::default());
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: reqwest::Client::new(),
        counts: counts.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new().fallback(forward).with_state(proxy);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((endpoint, counts, task))
}
