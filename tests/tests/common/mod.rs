//! What the mail end-to-end tests share: a local stack seeded with mailboxes (users from
//! `local_stack::mail_story::mail_user`).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use local_stack::stack::{Stack, StackOptions};
use serde_json::{Value, json};

/// Long enough for any of these pipelines to drain on two cores.
pub const IDLE: Duration = Duration::from_secs(300);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A stack whose tenant holds `users`, without periodic sweeps (tests run them when they mean to).
pub async fn start_mail_stack(prefix: &str, users: Vec<Value>) -> Result<Stack> {
    let mut opts = StackOptions::new(repo_root());
    opts.seed = Some(json!({"seed": 21, "users": users}));
    opts.sweep_every = None;
    opts.stack_name = format!("{prefix}-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    Stack::start(opts).await
}
