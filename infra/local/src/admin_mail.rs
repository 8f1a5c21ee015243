//! The simulator's mailboxes through its admin API: ground truth and mutations.

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::Admin;

/// A mailbox as the simulator holds it now.
#[derive(Deserialize, Clone, Debug)]
pub struct SimMailbox {
    pub user_id: String,
    pub folders: Vec<SimMailFolder>,
    pub messages: Vec<SimMessage>,
}

#[derive(Deserialize, Clone, Debug)]
pub struct SimMailFolder {
    pub id: String,
    pub name: String,
    pub path: String,
    pub parent_id: Option<String>,
    pub well_known: Option<String>,
    #[serde(default)]
    pub hidden: bool,
}

#[derive(Deserialize, Clone, Debug)]
pub struct SimMessage {
    pub id: String,
    pub immutable_id: String,
    pub folder_id: String,
    pub folder_path: String,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    pub is_read: bool,
    pub is_draft: bool,
    pub flag: Option<String>,
    pub received: Option<String>,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub attachments: Vec<SimAttachment>,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimAttachment {
    pub name: String,
    pub size: u64,
    pub inline: bool,
    pub sha256: String,
}

impl SimMailbox {
    pub fn folder(&self, path: &str) -> Option<&SimMailFolder> {
        self.folders.iter().find(|f| f.path == path || f.well_known.as_deref() == Some(path))
    }
}

impl Admin {
    pub async fn mailbox(&self, user: &str) -> Result<SimMailbox> {
        self.call(reqwest::Method::GET, &format!("/mailboxes/{user}"), None).await
    }

    /// Delivers a message (into the Inbox unless `folder` says otherwise); its immutable id.
    pub async fn deliver(&self, user: &str, message: Value) -> Result<String> {
        let created: Value =
            self.call(reqwest::Method::POST, &format!("/mailboxes/{user}/messages"), Some(message)).await?;
        Ok(created["immutable_id"].as_str().unwrap_or_default().to_owned())
    }

    /// Marks read, flags or moves (`{"is_read"?, "flag"?, "folder"?}`).
    pub async fn change_message(&self, user: &str, id: &str, change: Value) -> Result<()> {
        let _: Value =
            self.call(reqwest::Method::PATCH, &format!("/mailboxes/{user}/messages/{id}"), Some(change)).await?;
        Ok(())
    }

    /// Attaches a file of `size` bytes to a message already there (Dynamic Delivery); its id.
    pub async fn add_attachment(&self, user: &str, id: &str, name: &str, size: u64) -> Result<String> {
        let path = format!("/mailboxes/{user}/messages/{id}/attachments");
        let added: Value =
            self.call(reqwest::Method::POST, &path, Some(serde_json::json!({"name": name, "size": size}))).await?;
        Ok(added["id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn delete_message(&self, user: &str, id: &str, hard: bool) -> Result<()> {
        let query = if hard { "?hard=true" } else { "" };
        let _: Value =
            self.call(reqwest::Method::DELETE, &format!("/mailboxes/{user}/messages/{id}{query}"), None).await?;
        Ok(())
    }

    /// Deletes every message of a folder for good; how many.
    pub async fn empty_folder(&self, user: &str, folder: &str) -> Result<u64> {
        let done: Value = self
            .call(reqwest::Method::POST, &format!("/mailboxes/{user}/folders/{folder}/empty"), Some(json!({})))
            .await?;
        Ok(done["deleted"].as_u64().unwrap_or_default())
    }

    /// Deletes every message and every folder that is not well known; how many messages.
    pub async fn purge_mailbox(&self, user: &str) -> Result<u64> {
        let done: Value =
            self.call(reqwest::Method::POST, &format!("/mailboxes/{user}/purge"), Some(json!({}))).await?;
        Ok(done["deleted"].as_u64().unwrap_or_default())
    }

    /// Deletes a mailbox or takes its licence away, or gives either back
    /// (`{"has_mailbox"?, "licensed"?}`); the content stays in the simulator.
    pub async fn set_mailbox_state(&self, user: &str, change: Value) -> Result<()> {
        let _: Value = self.call(reqwest::Method::PATCH, &format!("/users/{user}"), Some(change)).await?;
        Ok(())
    }

    pub async fn create_mail_folder(&self, user: &str, parent: Option<&str>, name: &str) -> Result<String> {
        let body = json!({"parent": parent, "name": name});
        let created: Value =
            self.call(reqwest::Method::POST, &format!("/mailboxes/{user}/folders"), Some(body)).await?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }
}
