//! What the mail end-to-end tests share: a local stack seeded with mailboxes, and users by
//! name.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use local_stack::stack::{Stack, StackOptions};
use serde_json::{Value, json};

/// Long enough for any of these pipelines to drain on two cores.
pub const IDLE: Duration = Duration::from_secs(300);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A seeded user with a mailbox only: `mail` is the simulator's mail seed section.
pub fn mail_user(upn: &str, name: &str, mail: Value) -> Value {
    json!({"user_principal_name": upn, "display_name": name, "has_drive": false,
           "files": 0, "folders": 0, "max_depth": 0, "min_size": 0, "max_size": 0, "hostile_names": false,
           "onenote_packages": 0, "large_files": [], "mail": mail})
}

/// A stack whose tenant holds `users`, without periodic sweeps (tests run them when they mean to).
pub async fn start_mail_stack(prefix: &str, users: Vec<Value>) -> Result<Stack> {
    let mut opts = StackOptions::new(repo_root());
    opts.seed = Some(json!({"seed": 21, "users": users}));
    opts.sweep_every = None;
    opts.stack_name = format!("{prefix}-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    Stack::start(opts).await
}

pub async fn user_id(stack: &Stack, upn: &str) -> Result<String> {
    let users = stack.admin.users().await?;
    Ok(users.into_iter().find(|u| u.user_principal_name == upn).context("no such user")?.id)
}
