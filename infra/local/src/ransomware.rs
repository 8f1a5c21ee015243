//! The demo's ransomware chapter: a mass encryption of one user's drive, the moment it
//! started found in the catalog's change history, a dry run, an in-place restore as of one
//! minute before, and a byte-for-byte comparison of every file with its pre-attack state.
//! Everything goes through the restore API over HTTP, as a person's tools would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::stack::Stack;

pub struct RestoreFigures {
    pub encrypted: u64,
    pub attack_started: DateTime<Utc>,
    pub as_of: DateTime<Utc>,
    pub planned_items: u64,
    pub restored: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub verified_files: usize,
    pub problems: Vec<String>,
}

/// One call to the restore API; the JSON answer, or the problem as an error.
pub async fn api(stack: &Stack, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
    crate::admin::json_call(&reqwest::Client::new(), method, &stack.info.api_url, path, body).await
}

/// Polls a restore job until it leaves the running states.
pub async fn wait_job(stack: &Stack, id: &str, want: &[&str], timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let job = api(stack, reqwest::Method::GET, &format!("/v1/restores/{id}"), None).await?;
        let status = job["status"].as_str().unwrap_or_default().to_owned();
        if want.contains(&status.as_str()) {
            return Ok(job);
        }
        if status == "failed" || Instant::now() > deadline {
            bail!("restore job {id} ended as {status}: {job}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Starts a restore through the API; returns the job id.
pub async fn start_restore(stack: &Stack, body: Value) -> Result<String> {
    let job = api(stack, reqwest::Method::POST, "/v1/restores", Some(body)).await?;
    job["id"].as_str().map(str::to_owned).context("restore job without id")
}

pub async fn run(stack: &Stack, drive: &str, quiet_since: DateTime<Utc>) -> Result<RestoreFigures> {
    // A minute of calm before the attack, so "one minute before" is the pre-attack state.
    let calm_until = quiet_since + chrono::Duration::seconds(61);
    if let Ok(wait) = (calm_until - Utc::now()).to_std() {
        println!("   (waiting {:.0} s so that one minute before the attack is a quiet moment)", wait.as_secs_f64());
        tokio::time::sleep(wait).await;
    }
    let before: HashMap<String, crate::admin::SimItem> =
        stack.admin.items(drive).await?.into_iter().filter(|i| i.kind == "file").map(|i| (i.id.clone(), i)).collect();
    let attack = stack.admin.ransomware(drive, ".locked", 666).await?;
    let encrypted = attack["encrypted"].as_u64().unwrap_or_default();
    println!("   ransomware encrypted and renamed {encrypted} files; backing up what it did");
    stack.idle(Duration::from_secs(600)).await?;

    // Detection: the earliest version in the catalog's recent history with the new extension.
    let from = (quiet_since - chrono::Duration::minutes(5)).to_rfc3339();
    let to = Utc::now().to_rfc3339();
    let changes = api(
        stack,
        reqwest::Method::GET,
        &format!("/v1/drives/{drive}/changes?from={}&to={}&limit=5000", urlencode(&from), urlencode(&to)),
        None,
    )
    .await?;
    let attack_started = changes["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"].as_str().is_some_and(|n| n.ends_with(".locked")))
        .filter_map(|v| v["modified"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()))
        .map(|t| t.with_timezone(&Utc))
        .min()
        .context("no encrypted versions in the change history")?;
    let as_of = attack_started - chrono::Duration::minutes(1);
    println!("   the catalog shows the mass renaming starting at {attack_started}; restoring as of {as_of}");

    let request = |dry_run: bool| {
        json!({"drive_id": drive, "scope": {"kind": "container"}, "as_of": as_of.to_rfc3339(),
               "target": {"kind": "in_place"}, "conflict": "rename", "quarantine_new_items": false, "dry_run": dry_run})
    };
    let plan_id = start_restore(stack, request(true)).await?;
    let plan = wait_job(stack, &plan_id, &["planned"], Duration::from_secs(120)).await?;
    println!(
        "   dry run: {} items, {:.1} MB to write back",
        plan["planned_items"],
        plan["planned_bytes"].as_f64().unwrap_or(0.0) / 1e6
    );

    let started = Instant::now();
    let id = start_restore(stack, request(false)).await?;
    let job = wait_job(stack, &id, &["succeeded", "completed_with_errors"], Duration::from_secs(1800)).await?;
    let seconds = started.elapsed().as_secs_f64();

    // Byte for byte: every file has its pre-attack id, name, path and SHA-256 again.
    let after: HashMap<String, crate::admin::SimItem> =
        stack.admin.items(drive).await?.into_iter().filter(|i| i.kind == "file").map(|i| (i.id.clone(), i)).collect();
    let mut problems = Vec::new();
    for (id, old) in &before {
        match after.get(id) {
            Some(now) if now.sha256 == old.sha256 && now.name == old.name && now.path == old.path => {}
            Some(now) => problems.push(format!("{}: restored as {} with different bytes or place", old.path, now.path)),
            None => problems.push(format!("{}: item id {id} is gone", old.path)),
        }
    }
    if job["failed"].as_u64().unwrap_or(0) > 0 {
        problems.push(format!("{} items failed to restore", job["failed"]));
    }
    Ok(RestoreFigures {
        encrypted,
        attack_started,
        as_of,
        planned_items: job["planned_items"].as_u64().unwrap_or_default(),
        restored: job["restored"].as_u64().unwrap_or_default(),
        bytes: job["bytes_restored"].as_u64().unwrap_or_default(),
        seconds,
        verified_files: before.len() - problems.len().min(before.len()),
        problems,
    })
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
