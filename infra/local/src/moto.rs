//! A moto server (the project's pinned `moto[server]` in `.venv`) on a free loopback port,
//! owned by the process that started it.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

/// How long moto may take to answer its first request (a cold Python import is a few seconds).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs moto's own server entry point, but exits as soon as its standard input closes. The
/// parent holds the write end of that pipe, so however the parent dies (even SIGKILL, where
/// no destructor runs) the server follows it instead of lingering as an orphan on its port.
///
/// DynamoDB requests are served one at a time: moto's `TransactWriteItems` snapshots the
/// whole table and, when a condition fails, puts the snapshot back, erasing every write other
/// threads made meanwhile (acknowledged writes lost, which DynamoDB never does; see
/// ARCHITECTURE.md, moto's leniencies).
const PARENT_WATCHDOG: &str = "\
import os, sys, threading
def _exit_when_parent_dies():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=_exit_when_parent_dies, daemon=True).start()
import moto.dynamodb.responses as _ddb
_ddb_lock = threading.RLock()
_ddb_call = _ddb.DynamoHandler.call_action
def _one_at_a_time(self):
    with _ddb_lock:
        return _ddb_call(self)
_ddb.DynamoHandler.call_action = _one_at_a_time
from moto.server import main
sys.exit(main(sys.argv[1:]))
";

/// A running moto server. Dropping it stops the server.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`, for `endpoint_url`.
    pub endpoint: String,
    child: tokio::process::Child,
    log_path: PathBuf,
}

impl MotoServer {
    /// Starts `<repo>/.venv/bin/moto_server` on a free loopback port, logging to
    /// `<repo>/.local/moto-PORT.log`, and returns once it answers HTTP.
    pub async fn start(repo_root: &Path) -> anyhow::Result<MotoServer> {
        let venv_bin = repo_root.join(".venv/bin");
        let moto_server = venv_bin.join("moto_server");
        if !moto_server.exists() {
            bail!("{} not found: run `infra/venv.sh` (or `make test`) to install moto", moto_server.display());
        }
        let port = free_loopback_port()?;
        let log_dir = repo_root.join(".local");
        std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let log_path = log_dir.join(format!("moto-{port}.log"));
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone()?;

        // The venv's interpreter, so the same moto that `moto_server` would run.
        let child = tokio::process::Command::new(venv_bin.join("python"))
            .arg("-c")
            .arg(PARENT_WATCHDOG)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .context("spawning moto server")?;

        let mut server = MotoServer { endpoint: format!("http://127.0.0.1:{port}"), child, log_path };
        server.wait_until_ready().await?;
        tracing::info!(endpoint = %server.endpoint, "moto server ready");
        Ok(server)
    }

    /// Where the server's output goes (worth reading when a request fails oddly).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let probe = format!("{}/moto-api/", self.endpoint);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto server exited during start-up ({status}); see {}", self.log_path.display());
            }
            // Any HTTP answer means the server is accepting requests.
            if http.get(&probe).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "moto server did not answer on {} within {}s; see {}",
                    self.endpoint,
                    STARTUP_TIMEOUT.as_secs(),
                    self.log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Kill and reap synchronously: a test binary may exit right after the drop, before
        // tokio's background reaper runs, and the port must be free for the next server.
        if self.child.start_kill().is_err() {
            return; // already exited
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(log = %self.log_path.display(), "moto server did not exit after SIGKILL");
    }
}

fn free_loopback_port() -> anyhow::Result<u16> {
    // The port is free when the listener drops; the tiny race with other processes is
    // acceptable for a local test server (a clash fails loudly at start-up).
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// An SDK configuration that talks to `endpoint` with static test credentials, ignoring
/// whatever AWS profile or credentials the developer's environment holds.
pub async fn aws_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "local-stack"))
        .load()
        .await
}

/// An S3 client for moto: path-style addressing, because `bucket.127.0.0.1` does not resolve.
pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    let s3_config = aws_sdk_s3::config::Builder::from(cfg).force_path_style(true).build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
