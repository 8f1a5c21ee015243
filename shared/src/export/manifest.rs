//! `manifest.json`, the last entry of every export archive: what the archive holds (each
//! entry with its message's ids, folder, size and SHA-256, so a reader can check every file)
//! and what it should have held but does not (each with the reason).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Version of the manifest's shape.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub v: u32,
    pub job_id: String,
    pub mailbox_id: String,
    /// The moment the messages are as of.
    pub as_of: DateTime<Utc>,
    pub part: u32,
    pub parts: u32,
    pub entries: Vec<ManifestEntry>,
    pub failed: Vec<ManifestFailure>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The entry's name in the archive.
    pub path: String,
    pub item_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    /// The folder path as of the export time, unaltered (the entry name's is made safe).
    pub folder: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<DateTime<Utc>>,
    pub size: u64,
    /// Of the `.eml` bytes, as recorded at backup and checked while exporting.
    pub sha256: String,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct ManifestFailure {
    pub item_id: String,
    pub folder: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub reason: String,
}
