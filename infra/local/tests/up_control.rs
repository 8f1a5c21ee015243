//! `make up` as a newcomer uses it: the `local up` binary seeds a tenant and backs it up, and
//! everything afterwards goes over HTTP with the URLs of its stack file, as the README's
//! "try it by hand" does with curl: the control API (run a task, verify the vault, wait for
//! idle), the restore API (browse, history, restore) and the simulator's admin API (change a
//! file).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The `local up` child, stopped (SIGTERM, then SIGKILL) however the test ends.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Waits for the stack file the child writes once every endpoint answers.
async fn stack_file(up: &mut Up, path: &Path) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok(serde_json::from_str(&text)?);
        }
        if let Some(status) = up.0.try_wait()? {
            bail!("local up exited early: {status}");
        }
        if Instant::now() > deadline {
            bail!("no {} after 180 s", path.display());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Result<(u16, Value)> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("calling {url}"))?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto and the local stack: make test"]
async fn make_up_gives_a_backed_up_tenant_driven_over_http() -> Result<()> {
    use reqwest::Method;
    // Given `local up` with a small seed (SEED names a file, as `SEED=path make up` does)
    let dir = std::env::temp_dir().join(format!("up-control-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let seed = dir.join("seed.json");
    std::fs::write(
        &seed,
        serde_json::to_vec(&json!({"seed": 5, "users": [
            {"user_principal_name": "dana@contoso.test", "display_name": "Dana", "has_drive": true,
             "files": 12, "folders": 3, "max_depth": 2, "min_size": 1, "max_size": 20_000,
             "hostile_names": false, "onenote_packages": 0, "large_files": [],
             "mail": {"messages": 6, "folders": 1, "seed": 3}}
        ]}))?,
    )?;
    let stack_json = dir.join("stack.json");
    let mut up = Up(Command::new(env!("CARGO_BIN_EXE_local"))
        .arg("up")
        .current_dir(repo_root())
        .env("SEED", &seed)
        .env("STACK_JSON", &stack_json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("starting local up")?);
    let stack = stack_file(&mut up, &stack_json).await?;
    let control = stack["control_url"].as_str().context("control_url")?.to_owned();
    let api = stack["api_url"].as_str().context("api_url")?.to_owned();
    let admin = stack["graph"]["admin_url"].as_str().context("graph.admin_url")?.to_owned();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?;

    // When the initial backup has run
    let (status, idle) = call(&http, Method::POST, &format!("{control}/idle?timeout_s=300"), None).await?;
    assert_eq!((status, &idle["idle"]), (200, &json!(true)), "{idle}");

    // Then the restore API lists the seeded user's drive and mailbox, and its files
    let (status, resources) = call(&http, Method::GET, &format!("{api}/v1/resources"), None).await?;
    assert_eq!(status, 200, "{resources}");
    let user = &resources["users"][0];
    assert_eq!(user["user_principal_name"], "dana@contoso.test", "{resources}");
    assert!(user["mailbox"]["mailbox_id"].is_string(), "the seeded mailbox is protected: {resources}");
    let drive = user["drives"][0]["drive_id"].as_str().context("a protected drive")?.to_owned();
    let (status, root) =
        call(&http, Method::GET, &format!("{api}/v1/drives/{drive}/children?parent=root"), None).await?;
    assert_eq!(status, 200, "{root}");
    let truth = call(&http, Method::GET, &format!("{admin}/drives/{drive}/items"), None).await?.1;
    let items = truth.as_array().context("simulator items")?;
    let top_level_in_graph = items.iter().filter(|i| i["parent_id"] == root["parent_id"]).count();
    assert!(top_level_in_graph > 0, "{truth}");
    assert_eq!(root["items"].as_array().map(Vec::len), Some(top_level_in_graph), "{root}");
    // and a clean backup has nothing to list as not backed up
    let (status, failures) = call(&http, Method::GET, &format!("{api}/v1/drives/{drive}/failures"), None).await?;
    assert_eq!((status, failures["items"].as_array().map(Vec::len)), (200, Some(0)), "{failures}");

    // And the vault keeper, run on demand, extends every current version's lock and then
    // verifies the whole vault: a finished run with nothing missing, short or altered
    let (status, extend) = call(&http, Method::POST, &format!("{control}/tasks/extend"), None).await?;
    assert_eq!(status, 200, "{extend}");
    assert!(extend["report"]["finished_at"].is_string(), "{extend}");
    assert_eq!(extend["report"]["report"]["failed"], 0, "{extend}");
    let (status, verify) = call(&http, Method::POST, &format!("{control}/tasks/verify?full=true"), None).await?;
    assert_eq!(status, 200, "{verify}");
    let run = &verify["report"];
    assert!(run["finished_at"].is_string(), "{verify}");
    assert_eq!(run["full"], true, "{verify}");
    let report = &run["report"];
    assert!(report["versions"].as_u64() > Some(12), "every seeded file and message checked: {verify}");
    assert!(report["hashed"].as_u64() >= report["versions"].as_u64(), "a full run reads every version back: {verify}");
    let problems = ["missing", "lock_short", "altered"].map(|k| report[k].as_u64());
    assert_eq!(problems, [Some(0); 3], "{verify}");
    let (status, bad) = call(&http, Method::POST, &format!("{control}/tasks/verify?full=maybe"), None).await?;
    assert_eq!(status, 400, "{bad}");

    // When a file is changed in Microsoft 365 (the simulator's admin API)
    let file =
        truth.as_array().and_then(|items| items.iter().find(|i| i["kind"] == "file")).context("a seeded file")?.clone();
    let file_id = file["id"].as_str().context("file id")?;
    // Microsoft 365 times are whole seconds: the change must land in a later second.
    let before_change = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, changed) = call(
        &http,
        Method::POST,
        &format!("{admin}/drives/{drive}/items/{file_id}/content"),
        Some(json!({"size": 4321, "seed": 99})),
    )
    .await?;
    assert!(status < 300, "{changed}");
    let (status, idle) = call(&http, Method::POST, &format!("{control}/idle?timeout_s=300"), None).await?;
    assert_eq!(status, 200, "{idle}");

    // Then the notification got it backed up: its history holds the new bytes and the old
    let versions_url = format!("{api}/v1/drives/{drive}/items/{file_id}/versions");
    let (_, history) = call(&http, Method::GET, &versions_url, None).await?;
    let hashes: Vec<&Value> =
        history["versions"].as_array().context("versions")?.iter().map(|v| &v["sha256"]).collect();
    assert_eq!(hashes.first(), Some(&&changed["sha256"]), "newest version is the change: {history}");
    assert!(hashes.contains(&&file["sha256"]), "the seeded version is kept: {history}");

    // And a scheduler task runs on demand and answers its report; an unknown one is refused
    let (status, sweep) = call(&http, Method::POST, &format!("{control}/tasks/sweep"), None).await?;
    assert_eq!(status, 200, "{sweep}");
    assert_eq!(sweep["report"]["enqueued"], 2, "one drive and one mailbox swept: {sweep}");
    let (status, busy) = call(&http, Method::POST, &format!("{control}/idle?timeout_s=0"), None).await?;
    assert_eq!((status, &busy["idle"]), (504, &json!(false)), "{busy}");
    let (status, unknown) = call(&http, Method::POST, &format!("{control}/tasks/defragment"), None).await?;
    assert_eq!(status, 400, "{unknown}");

    // And a restore of the file as of before the change puts its old bytes back
    let (status, job) = call(
        &http,
        Method::POST,
        &format!("{api}/v1/restores"),
        Some(json!({"drive_id": drive, "scope": {"kind": "item", "item_id": file_id},
                    "as_of": before_change.to_rfc3339(), "target": {"kind": "in_place"}})),
    )
    .await?;
    assert_eq!(status, 202, "{job}");
    let job_url = format!("{api}/v1/restores/{}", job["id"].as_str().context("job id")?);
    let (status, idle) = call(&http, Method::POST, &format!("{control}/idle?timeout_s=300"), None).await?;
    assert_eq!(status, 200, "{idle}");
    let (_, job) = call(&http, Method::GET, &job_url, None).await?;
    assert_eq!((&job["status"], &job["restored"]), (&json!("succeeded"), &json!(1)), "{job}");
    let (_, truth) = call(&http, Method::GET, &format!("{admin}/drives/{drive}/items"), None).await?;
    let restored = truth.as_array().and_then(|items| items.iter().find(|i| i["id"] == file["id"])).context("file")?;
    assert_eq!(restored["sha256"], file["sha256"], "{restored}");

    drop(up);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
