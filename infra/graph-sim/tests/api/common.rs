//! Test harness: a running simulator, an authenticated client and JSON helpers.
#![allow(dead_code)]

use std::time::Duration;

use graph_sim::{GraphSim, SimConfig};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// A simulator and a token for each default app: `get` reads as the reader, `send` writes as
/// the restorer, and both use the subscriber's token on `/subscriptions`.
pub struct Sim {
    pub base: String,
    pub http: Client,
    /// The reader's token.
    pub token: String,
    pub subscriber_token: String,
    pub restorer_token: String,
    pub cfg: SimConfig,
}

pub fn fast_config() -> SimConfig {
    SimConfig {
        notification_delay: Duration::from_millis(100),
        notification_retry_delay: Duration::from_millis(100),
        ..SimConfig::default()
    }
}

pub fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

pub async fn start(cfg: SimConfig) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let sim = GraphSim::new(cfg.clone());
    tokio::spawn(sim.serve(listener));
    let mut s = Sim {
        base,
        http: client(),
        token: String::new(),
        subscriber_token: String::new(),
        restorer_token: String::new(),
        cfg,
    };
    s.token = s.token_of("reader").await;
    s.subscriber_token = s.token_of("subscriber").await;
    s.restorer_token = s.token_of("restorer").await;
    s
}

impl Sim {
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, self.cfg.tenant_id)
    }

    pub fn app(&self, name: &str) -> &graph_sim::SimApp {
        self.cfg.app(name).expect("app in the config")
    }

    /// A token request as the reader with `secret`.
    pub async fn token_request(&self, secret: &str) -> Response {
        self.token_request_as(&self.app("reader").client_id, secret).await
    }

    pub async fn token_request_as(&self, client_id: &str, secret: &str) -> Response {
        self.http
            .post(self.token_url())
            .form(&[
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
            .expect("token request")
    }

    /// A new token of the reader.
    pub async fn fetch_token(&self) -> String {
        self.token_of("reader").await
    }

    /// A new token of the app `name` (`reader`, `subscriber`, `restorer`).
    pub async fn token_of(&self, name: &str) -> String {
        let app = self.app(name);
        let r = self.token_request_as(&app.client_id, &app.client_secret).await;
        let v: Value = r.json().await.expect("token json");
        v["access_token"].as_str().expect("access_token").to_string()
    }

    /// The token a request to `path_or_url` goes with: the subscriber's on `/subscriptions`,
    /// else `default`.
    fn token_for<'a>(&'a self, path_or_url: &str, default: &'a str) -> &'a str {
        let path = path_or_url.split_once("/v1.0").map_or(path_or_url, |(_, p)| p);
        if path.starts_with("/subscriptions") { &self.subscriber_token } else { default }
    }

    /// GET a Graph path (`/users`) or an absolute URL (a nextLink) with the bearer token.
    pub async fn get(&self, path_or_url: &str) -> Response {
        self.get_with(path_or_url, &[]).await
    }

    pub async fn get_with(&self, path_or_url: &str, headers: &[(&str, &str)]) -> Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}/v1.0{}", self.base, path_or_url)
        };
        let mut req = self.http.get(url).bearer_auth(self.token_for(path_or_url, &self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("graph request")
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}/v1.0{}", self.base, path_or_url)
        }
    }

    /// A Graph write with the restorer's token (the subscriber's on `/subscriptions`): raw
    /// bytes, JSON or nothing.
    pub async fn send(&self, method: reqwest::Method, path: &str, body: Body, headers: &[(&str, &str)]) -> Response {
        let token = self.token_for(path, &self.restorer_token);
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req = match body {
            Body::None => req,
            Body::Bytes(b) => req.body(b),
            Body::Json(v) => req.json(&v),
        };
        req.send().await.expect("graph write")
    }

    /// `PUT {path}` with raw bytes (a simple upload).
    pub async fn put_bytes(&self, path: &str, bytes: &[u8]) -> Response {
        self.send(reqwest::Method::PUT, path, Body::Bytes(bytes.to_vec()), &[]).await
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: Value) -> Response {
        self.send(method, path, Body::Json(body), &[]).await
    }

    /// The deltaLink for "now" (`token=latest`).
    pub async fn latest_delta(&self, drive: &str) -> String {
        let v = self.get_json(&format!("/drives/{drive}/root/delta?token=latest")).await;
        v["@odata.deltaLink"].as_str().expect("deltaLink").to_string()
    }

    /// Downloads through a `302` (from `/content` or `versions/{v}/content`).
    pub async fn download(&self, path: &str) -> Vec<u8> {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::FOUND, "GET {path}");
        let url = r.headers().get("location").and_then(|v| v.to_str().ok()).expect("Location").to_string();
        let body = self.http.get(url).send().await.expect("download");
        assert_eq!(body.status(), StatusCode::OK);
        body.bytes().await.expect("body").to_vec()
    }

    pub async fn get_json(&self, path_or_url: &str) -> Value {
        let r = self.get(path_or_url).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {path_or_url}");
        r.json().await.expect("json")
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Response {
        self.http
            .request(method, format!("{}/admin{}", self.base, path))
            .json(&body)
            .send()
            .await
            .expect("admin request")
    }

    pub async fn admin_ok(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self.admin(method, path, body).await;
        assert!(r.status().is_success(), "admin {path}: {}", r.status());
        if r.status() == StatusCode::NO_CONTENT {
            return Value::Null;
        }
        r.json().await.expect("admin json")
    }

    pub async fn post_admin(&self, path: &str, body: Value) -> Value {
        self.admin_ok(reqwest::Method::POST, path, body).await
    }

    /// Seeds one user "adele" with `files` files and returns its drive id.
    pub async fn seed_one(&self, files: usize, folders: usize) -> String {
        let v = self
            .post_admin(
                "/seed",
                json!({"seed": 42, "users": [{
                    "user_principal_name": "adele@contoso.test", "display_name": "Adele",
                    "has_drive": true, "files": files, "folders": folders, "max_depth": 3,
                    "min_size": 0, "max_size": 5000}]}),
            )
            .await;
        v["users"][0]["drive_id"].as_str().expect("drive id").to_string()
    }

    /// Seeds one user "adele" with the given `mail` section; returns the user id.
    pub async fn seed_mail(&self, mail: Value) -> String {
        let v = self
            .post_admin(
                "/seed",
                json!({"seed": 7, "users": [{"user_principal_name": "adele@contoso.test",
                    "display_name": "Adele Vance", "has_drive": false, "mail": mail}]}),
            )
            .await;
        v["users"][0]["id"].as_str().expect("user id").to_string()
    }

    /// `GET /admin/mailboxes/{user}`.
    pub async fn mailbox_truth(&self, user: &str) -> Value {
        self.admin_ok(reqwest::Method::GET, &format!("/mailboxes/{user}"), Value::Null).await
    }

    /// Follows a mail delta to its deltaLink with `prefer`; returns (items, deltaLink, pages).
    pub async fn mail_delta_all(&self, start: &str, prefer: &str) -> (Vec<Value>, String, usize) {
        let mut url = start.to_string();
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let r = self.get_with(&url, &[("prefer", prefer)]).await;
            assert_eq!(r.status(), StatusCode::OK, "GET {url}");
            let page: Value = r.json().await.expect("json");
            pages += 1;
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            if let Some(next) = page["@odata.nextLink"].as_str() {
                url = next.to_string();
                continue;
            }
            let link = page["@odata.deltaLink"].as_str().expect("deltaLink");
            return (items, link.to_string(), pages);
        }
    }

    pub async fn ground_truth(&self, drive: &str) -> Vec<Value> {
        let v = self.admin_ok(reqwest::Method::GET, &format!("/drives/{drive}/items"), Value::Null).await;
        v.as_array().cloned().unwrap_or_default()
    }

    /// Follows a delta feed to its deltaLink; returns (items, deltaLink, pages).
    pub async fn delta_all(&self, start: &str) -> (Vec<Value>, String, usize) {
        let mut url = start.to_string();
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let page = self.get_json(&url).await;
            pages += 1;
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            if let Some(next) = page["@odata.nextLink"].as_str() {
                url = next.to_string();
                continue;
            }
            let link = page["@odata.deltaLink"].as_str().expect("deltaLink");
            return (items, link.to_string(), pages);
        }
    }
}

pub enum Body {
    None,
    Bytes(Vec<u8>),
    Json(Value),
}

/// The JSON of a response that must have `status`.
pub async fn expect(r: Response, status: StatusCode) -> Value {
    let got = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(got, status, "body: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn ids(items: &[Value]) -> Vec<String> {
    items.iter().filter_map(|i| i["id"].as_str().map(str::to_string)).collect()
}
