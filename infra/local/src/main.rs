//! `local up | demo | bench`: the embedded local stack for people (the tests use the library).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use local_stack::stack::{Stack, StackOptions};

fn repo_root() -> PathBuf {
    // The binary runs from the repository (make); fall back to the crate's grandparent.
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("template.yaml").exists() {
        return cwd;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let command = std::env::args().nth(1).unwrap_or_default();
    match command.as_str() {
        "up" => {
            let mut opts = StackOptions::new(repo_root());
            opts.write_stack_json = true;
            opts.sweep_every = Some(Duration::from_secs(60));
            let stack = Stack::start(opts).await?;
            println!("{}", serde_json::to_string_pretty(&stack.info)?);
            println!("local stack up; .local/stack.json written; Ctrl-C to stop");
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stack.stop().await;
            Ok(())
        }
        "demo" => local_stack::demo::run(repo_root()).await,
        "bench" => {
            local_stack::bench::run(repo_root()).await?;
            local_stack::bench_restore::run(repo_root()).await?;
            local_stack::bench_catalog::run(repo_root()).await?;
            local_stack::bench_mail::run(repo_root()).await
        }
        "bench-backup" => local_stack::bench::run(repo_root()).await,
        "bench-restore" => local_stack::bench_restore::run(repo_root()).await,
        "bench-catalog" => local_stack::bench_catalog::run(repo_root()).await,
        "bench-mail" => local_stack::bench_mail::run(repo_root()).await,
        other => bail!(
            "unknown command {other:?}: use up, demo, bench, bench-backup, bench-restore, bench-catalog or bench-mail"
        ),
    }
}
