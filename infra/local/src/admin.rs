//! Client of the Graph simulator's admin API: seeding, mutations, fault injection, ground
//! truth and request counts. Used by the demo, the end-to-end tests and the benchmarks.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Admin {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize, Clone, Debug)]
pub struct SimUser {
    pub id: String,
    pub user_principal_name: String,
    pub drive_id: Option<String>,
}

/// The simulator's ground truth for one current item.
#[derive(Deserialize, Clone, Debug)]
pub struct SimItem {
    pub id: String,
    pub name: String,
    pub path: String,
    pub parent_id: Option<String>,
    pub kind: String,
    #[serde(default)]
    pub size: u64,
    pub etag: String,
    pub ctag: Option<String>,
    pub sha256: Option<String>,
    pub quick_xor_hash: Option<String>,
}

impl Admin {
    pub fn new(base: String) -> Self {
        Self { base, http: reqwest::Client::new() }
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        json_call(&self.http, method, &self.base, path, body).await
    }

    pub async fn seed(&self, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, "/seed", Some(body.clone())).await
    }

    pub async fn users(&self) -> Result<Vec<SimUser>> {
        self.call(reqwest::Method::GET, "/users", None).await
    }

    pub async fn add_user(&self, upn: &str, has_drive: bool) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/users",
            Some(json!({"user_principal_name": upn, "display_name": upn, "has_drive": has_drive})),
        )
        .await
    }

    pub async fn items(&self, drive: &str) -> Result<Vec<SimItem>> {
        self.call(reqwest::Method::GET, &format!("/drives/{drive}/items"), None).await
    }

    pub async fn create_file(&self, drive: &str, parent_id: &str, name: &str, size: u64) -> Result<SimItem> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/items"),
            Some(json!({"parent_id": parent_id, "name": name, "kind": "file", "size": size})),
        )
        .await
    }

    pub async fn create_folder(&self, drive: &str, parent_id: &str, name: &str) -> Result<SimItem> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/items"),
            Some(json!({"parent_id": parent_id, "name": name, "kind": "folder"})),
        )
        .await
    }

    pub async fn edit(&self, drive: &str, item: &str, size: u64, seed: u64) -> Result<SimItem> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/items/{item}/content"),
            Some(json!({"size": size, "seed": seed})),
        )
        .await
    }

    /// New content dated at `last_modified` (older than now), as "copy over with an older
    /// file" and migration tools leave it: a new eTag, a modification time in the past.
    pub async fn edit_dated(
        &self,
        drive: &str,
        item: &str,
        size: u64,
        seed: u64,
        last_modified: chrono::DateTime<chrono::Utc>,
    ) -> Result<SimItem> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/items/{item}/content"),
            Some(json!({"size": size, "seed": seed, "last_modified": last_modified.to_rfc3339()})),
        )
        .await
    }

    pub async fn rename_or_move(
        &self,
        drive: &str,
        item: &str,
        name: Option<&str>,
        parent_id: Option<&str>,
    ) -> Result<SimItem> {
        let mut body = json!({});
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        if let Some(parent) = parent_id {
            body["parent_id"] = json!(parent);
        }
        self.call(reqwest::Method::PATCH, &format!("/drives/{drive}/items/{item}"), Some(body)).await
    }

    pub async fn delete(&self, drive: &str, item: &str) -> Result<()> {
        let _: Value = self.call(reqwest::Method::DELETE, &format!("/drives/{drive}/items/{item}"), None).await?;
        Ok(())
    }

    /// Brings a deleted item (and what was deleted with it) back from the recycle bin: same
    /// ids, old modification times, and the old eTags unless `new_etag`.
    pub async fn restore_from_recycle_bin(&self, drive: &str, item: &str, new_etag: bool) -> Result<SimItem> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/items/{item}/restore"),
            Some(json!({"new_etag": new_etag})),
        )
        .await
    }

    pub async fn ransomware(&self, drive: &str, extension: &str, seed: u64) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            &format!("/drives/{drive}/ransomware"),
            Some(json!({"extension": extension, "seed": seed})),
        )
        .await
    }

    pub async fn fault(&self, fault: Value) -> Result<()> {
        let _: Value = self.call(reqwest::Method::POST, "/faults", Some(fault)).await?;
        Ok(())
    }

    pub async fn clear_faults(&self) -> Result<()> {
        let _: Value = self.call(reqwest::Method::DELETE, "/faults", None).await?;
        Ok(())
    }

    pub async fn fill_hashes(&self) -> Result<()> {
        let _: Value = self.call(reqwest::Method::POST, "/fill_hashes", None).await?;
        Ok(())
    }

    pub async fn lifecycle(&self, subscription_id: &str, event: &str) -> Result<()> {
        let _: Value = self
            .call(
                reqwest::Method::POST,
                "/lifecycle",
                Some(json!({"subscription_id": subscription_id, "event": event})),
            )
            .await?;
        Ok(())
    }

    pub async fn subscriptions(&self) -> Result<Vec<Value>> {
        self.call(reqwest::Method::GET, "/subscriptions", None).await
    }

    pub async fn stats(&self) -> Result<Value> {
        self.call(reqwest::Method::GET, "/stats", None).await
    }

    pub async fn reset_stats(&self) -> Result<()> {
        let _: Value = self.call(reqwest::Method::POST, "/stats/reset", None).await?;
        Ok(())
    }
}

/// One JSON call to a loopback service (the simulator's admin API, the restore API): a
/// non-2xx answer is an error naming the call and the body; an empty body reads as null.
pub async fn json_call<T: DeserializeOwned>(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    body: Option<Value>,
) -> Result<T> {
    let mut request = http.request(method.clone(), format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("{method} {path}"))?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{method} {path}: {status}: {text}");
    }
    let text = if text.is_empty() { "null".to_string() } else { text };
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: unexpected answer"))
}
