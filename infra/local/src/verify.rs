//! Proof of a backup: every current item of the simulated tenant (users' drives and every
//! SharePoint library the backup protects) has a catalogued version equal to its state, every file's bytes read back from the vault by the recorded S3
//! version id hash to the simulator's SHA-256, deleted items are tombstoned, and every
//! vault object is under Object Lock.

use std::collections::HashMap;

use anyhow::Result;
use chrono::Utc;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use shared::store::{Containers, ItemHistory, Vault};

use crate::stack::Stack;

#[derive(Debug, Default, Clone)]
pub struct Check {
    pub files: usize,
    pub folders: usize,
    pub bytes: u64,
    pub tombstones: usize,
    pub problems: Vec<String>,
}

impl Check {
    pub fn merge(&mut self, other: Check) {
        self.files += other.files;
        self.folders += other.folders;
        self.bytes += other.bytes;
        self.tombstones += other.tombstones;
        self.problems.extend(other.problems);
    }
}

/// Compares one drive's backup with the simulator's current state, reading every file back.
pub async fn drive(stack: &Stack, drive_id: &str) -> Result<Check> {
    let truth = stack.admin.items(drive_id).await?;
    let container = stack.container(drive_id);
    let heads: HashMap<String, _> =
        stack.catalog.list_heads(&container).await?.into_iter().map(|h| (h.current.key.item_id.clone(), h)).collect();
    let mut check = Check::default();
    for item in &truth {
        let Some(head) = heads.get(&item.id) else {
            check.problems.push(format!("{}: no backed-up version", item.path));
            continue;
        };
        let v = &head.current;
        if v.deleted {
            check.problems.push(format!("{}: catalog says deleted", item.path));
            continue;
        }
        if v.version != item.etag || v.name.as_deref() != Some(item.name.as_str()) || v.parent_id != item.parent_id {
            check.problems.push(format!("{}: catalog holds an older state", item.path));
            continue;
        }
        if item.kind != "file" {
            check.folders += 1;
            continue;
        }
        let Some(content) = &v.content else {
            check.problems.push(format!("{}: no content recorded", item.path));
            continue;
        };
        if Some(&content.sha256) != item.sha256.as_ref() || content.size != item.size {
            check.problems.push(format!("{}: recorded hash or size differs from Microsoft 365", item.path));
            continue;
        }
        match read_sha256(stack, &content.object).await {
            Ok((len, sha)) if len == item.size && Some(&sha) == item.sha256.as_ref() => {
                check.files += 1;
                check.bytes += len;
            }
            Ok(_) => check.problems.push(format!("{}: vault bytes differ", item.path)),
            Err(e) => check.problems.push(format!("{}: vault read failed: {e}", item.path)),
        }
    }
    let alive: std::collections::HashSet<&str> = truth.iter().map(|i| i.id.as_str()).collect();
    for (id, head) in &heads {
        if alive.contains(id.as_str()) {
            continue;
        }
        if head.current.deleted {
            check.tombstones += 1;
        } else {
            check.problems.push(format!("item {id} was deleted in Microsoft 365 but not in the catalog"));
        }
    }
    Ok(check)
}

/// What [`libraries`] proved: the sites and libraries checked, and every library's items.
#[derive(Debug, Default, Clone)]
pub struct SiteCheck {
    pub sites: usize,
    pub libraries: usize,
    /// Hidden system libraries left out by policy (`SHAREPOINT_SYSTEM_LIBRARIES`).
    pub excluded: usize,
    pub items: Check,
}

/// Compares every library of every site Graph serves (not deleted, denied, archived or
/// personal) with the simulator's ground truth, as [`drive`] does a OneDrive. A library users
/// see must be protected; a hidden system library is checked when the backup holds it.
pub async fn libraries(stack: &Stack) -> Result<SiteCheck> {
    let mut check = SiteCheck::default();
    for site in stack.admin.sites().await?.iter().filter(|s| s.is_served()) {
        check.sites += 1;
        for library in site.libraries.iter().filter(|l| !l.deleted) {
            let record = stack.catalog.container(&stack.container(&library.drive_id)).await?;
            let protected = record.is_some_and(|r| r.site.is_some_and(|link| link.site_id == site.id));
            match (protected, library.system) {
                (true, _) => {
                    check.libraries += 1;
                    check.items.merge(drive(stack, &library.drive_id).await?);
                }
                (false, true) => check.excluded += 1,
                (false, false) => check
                    .items
                    .problems
                    .push(format!("{} / {}: library not protected", site.display_name, library.name)),
            }
        }
    }
    Ok(check)
}

async fn read_sha256(stack: &Stack, object: &shared::model::ObjectRef) -> Result<(u64, String)> {
    let mut stream = stack.vault.get_stream(object).await?;
    let mut sha = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        sha.update(&chunk);
    }
    Ok((len, hex::encode(sha.finalize())))
}

/// Every object version in the vault is locked into the future. Returns (objects, problems).
pub async fn locks(stack: &Stack) -> Result<(usize, Vec<String>)> {
    let now = Utc::now();
    let mut problems = Vec::new();
    let objects = stack.vault.list_versions("").await?;
    for object in &objects {
        match stack.vault.head(object).await? {
            Some(info) if info.lock_mode.is_some() && info.retain_until.is_some_and(|t| t > now) => {}
            _ => problems.push(format!("{} ({}) is not locked", object.key, object.version_id)),
        }
    }
    Ok((objects.len(), problems))
}
