//! `local up | demo | bench`: the embedded local stack for people (the tests use the library).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use local_stack::stack::{Stack, StackOptions, default_stack_json};

fn repo_root() -> PathBuf {
    // The binary runs from the repository (make); fall back to the crate's grandparent.
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("template.yaml").exists() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What `SEED` asks `make up` to seed: unset or `demo` the demo's tenant, `none` nothing,
/// anything else the path of a JSON file holding a simulator `/admin/seed` body.
fn seed_from_env() -> Result<Option<serde_json::Value>> {
    match std::env::var("SEED").unwrap_or_default().as_str() {
        "" | "demo" => Ok(Some(local_stack::demo::demo_seed())),
        "none" => Ok(None),
        path => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading SEED file {path}"))?;
            Ok(Some(serde_json::from_str(&text).with_context(|| format!("SEED file {path} is not JSON"))?))
        }
    }
}

/// `make up`: the stack in the foreground, seeded and backed up once, until Ctrl-C or SIGTERM.
async fn up(repo_root: PathBuf) -> Result<()> {
    let mut opts = StackOptions::new(&repo_root);
    opts.seed = seed_from_env()?;
    // STACK_JSON moves the file (a test runs its own stack beside a developer's).
    opts.stack_json = Some(match std::env::var_os("STACK_JSON") {
        Some(path) => PathBuf::from(path),
        None => default_stack_json(&repo_root),
    });
    opts.sweep_every = Some(Duration::from_secs(60));
    let seeded = opts.seed.is_some();
    let started = Instant::now();
    let stack = Stack::start(opts).await?;
    println!("{}", serde_json::to_string_pretty(&stack.info)?);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stopped = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    tokio::pin!(stopped);
    if seeded {
        println!(
            "local stack up; initial backup of the seeded tenant running (POST {}/idle waits for it)",
            stack.info.control_url
        );
        tokio::select! {
            done = stack.idle(Duration::from_secs(1800)) => {
                done?;
                println!("initial backup done in {:.0} s", started.elapsed().as_secs_f64());
            }
            _ = &mut stopped => {
                stack.stop().await;
                return Ok(());
            }
        }
    }
    println!("local stack up; endpoints in the JSON above; Ctrl-C to stop");
    stopped.await;
    stack.stop().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let command = std::env::args().nth(1).unwrap_or_default();
    match command.as_str() {
        "up" => up(repo_root()).await,
        "demo" => local_stack::demo::run(repo_root()).await,
        "bench" => {
            local_stack::bench::run(repo_root()).await?;
            local_stack::bench_restore::run(repo_root()).await?;
            local_stack::bench_restore_plan::run().await?;
            local_stack::bench_restore_lab::run().await?;
            local_stack::bench_catalog::run(repo_root()).await?;
            local_stack::bench_discovery::run().await?;
            local_stack::bench_site_discovery::run().await?;
            local_stack::bench_sites::run().await?;
            local_stack::bench_keeper::run().await?;
            local_stack::bench_mail::run(repo_root()).await
        }
        "bench-backup" => local_stack::bench::run(repo_root()).await,
        "bench-restore" => local_stack::bench_restore::run(repo_root()).await,
        "bench-restore-plan" => local_stack::bench_restore_plan::run().await,
        "bench-restore-lab" => local_stack::bench_restore_lab::run().await,
        "bench-catalog" => local_stack::bench_catalog::run(repo_root()).await,
        "bench-mail" => local_stack::bench_mail::run(repo_root()).await,
        "bench-discovery" => local_stack::bench_discovery::run().await,
        "bench-keeper" => local_stack::bench_keeper::run().await,
        "bench-site-discovery" => local_stack::bench_site_discovery::run().await,
        "bench-sites" => local_stack::bench_sites::run().await,
        other => bail!(
            "unknown command {other:?}: use up, demo, bench, bench-backup, bench-restore, bench-restore-plan, bench-restore-lab, bench-catalog, bench-discovery, bench-site-discovery, bench-sites, bench-keeper or bench-mail"
        ),
    }
}
