//! The simulator's SharePoint sites through its admin API: ground truth and mutations.

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::Admin;

/// A site as the simulator holds it now (`GET /admin/sites`), deleted and personal ones included.
#[derive(Deserialize, Clone, Debug)]
pub struct SimSite {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub web_url: String,
    pub parent_id: Option<String>,
    pub group_id: Option<String>,
    pub is_personal: bool,
    pub archived: Option<String>,
    pub denied: bool,
    pub deleted: bool,
    pub libraries: Vec<SimLibrary>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct SimLibrary {
    pub drive_id: String,
    pub name: String,
    pub system: bool,
    pub deleted: bool,
}

impl SimSite {
    /// Graph serves it: not personal (a user's OneDrive), deleted, denied or archived.
    pub fn is_served(&self) -> bool {
        !self.is_personal && !self.deleted && !self.denied && self.archived.is_none()
    }

    pub fn library(&self, name: &str) -> Option<&SimLibrary> {
        self.libraries.iter().find(|l| l.name == name && !l.deleted)
    }
}

impl Admin {
    pub async fn sites(&self) -> Result<Vec<SimSite>> {
        self.call(reqwest::Method::GET, "/sites", None).await
    }

    /// The live, non-personal site named `display_name`.
    pub async fn site(&self, display_name: &str) -> Result<SimSite> {
        let sites = self.sites().await?;
        sites
            .into_iter()
            .find(|s| s.display_name == display_name && !s.deleted && !s.is_personal)
            .ok_or_else(|| anyhow::anyhow!("no live site named {display_name:?}"))
    }

    /// The site and its subsites are deleted; `/sites/delta` reports it.
    pub async fn delete_site(&self, site_id: &str) -> Result<()> {
        let _: Value = self.call(reqwest::Method::DELETE, &format!("/sites/{site_id}"), None).await?;
        Ok(())
    }

    /// The library is deleted: its drive routes answer `404`.
    pub async fn delete_library(&self, site_id: &str, drive_id: &str) -> Result<()> {
        let _: Value =
            self.call(reqwest::Method::DELETE, &format!("/sites/{site_id}/libraries/{drive_id}"), None).await?;
        Ok(())
    }

    /// `{"archived"?, "denied"?, "display_name"?}`.
    pub async fn edit_site(&self, site_id: &str, patch: Value) -> Result<SimSite> {
        self.call(reqwest::Method::PATCH, &format!("/sites/{site_id}"), Some(patch)).await
    }

    /// Resource-unit budgets and each app's use (`GET /admin/throttling`).
    pub async fn throttling(&self) -> Result<Value> {
        self.call(reqwest::Method::GET, "/throttling", None).await
    }

    pub async fn set_throttling(&self, patch: Value) -> Result<Value> {
        self.call(reqwest::Method::PATCH, "/throttling", Some(patch)).await
    }

    pub async fn add_library(&self, site_id: &str, name: &str) -> Result<String> {
        let created: Value = self
            .call(reqwest::Method::POST, &format!("/sites/{site_id}/libraries"), Some(json!({"name": name})))
            .await?;
        created["drive_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("library without drive_id"))
    }
}
