//! `graph-sim --port N --tenant-id T [--app NAME:CLIENT_ID:SECRET:PERM,PERM...]... [--seed-file f.json]`:
//! serves the simulator and prints its base URL on stdout. Without `--app`, the default
//! reader, subscriber and restorer apps (`SimConfig::default`).

use anyhow::{Context, bail};
use graph_sim::{GraphSim, SimApp, SimConfig};

struct Args {
    port: u16,
    cfg: SimConfig,
    seed_file: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut cfg = SimConfig::default();
    let mut port = 0;
    let mut seed_file = None;
    let mut apps = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = value()?.parse().context("--port must be a number")?,
            "--tenant-id" => cfg.tenant_id = value()?,
            "--app" => apps.push(parse_app(&value()?)?),
            "--seed-file" => seed_file = Some(value()?),
            "--delta-page-size" => cfg.delta_page_size = value()?.parse().context("--delta-page-size")?,
            "--help" | "-h" => {
                println!(
                    "graph-sim --port N --tenant-id T [--app NAME:CLIENT_ID:SECRET:PERM,PERM]... [--seed-file f.json] [--delta-page-size N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if !apps.is_empty() {
        cfg.apps = apps;
    }
    Ok(Args { port, cfg, seed_file })
}

/// `NAME:CLIENT_ID:SECRET:PERM,PERM` (the secret may not contain `:`).
fn parse_app(raw: &str) -> anyhow::Result<SimApp> {
    let mut parts = raw.splitn(4, ':');
    let mut next = || parts.next().filter(|p| !p.is_empty());
    let (Some(name), Some(id), Some(secret)) = (next(), next(), next()) else {
        bail!("--app wants NAME:CLIENT_ID:SECRET:PERM,PERM");
    };
    let permissions: Vec<&str> = next().map(|p| p.split(',').collect()).unwrap_or_default();
    Ok(SimApp::new(name, id, secret, &permissions))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await.context("bind")?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let sim = GraphSim::new(args.cfg);
    if let Some(path) = args.seed_file {
        let body = std::fs::read(&path).with_context(|| format!("read {path}"))?;
        let router = sim.router();
        let server = tokio::spawn(axum::serve(listener, router).into_future());
        let resp = reqwest::Client::new()
            .post(format!("{url}/admin/seed"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("seeding failed: {}", resp.text().await.unwrap_or_default());
        }
        println!("{url}");
        server.await??;
        return Ok(());
    }
    println!("{url}");
    sim.serve(listener).await?;
    Ok(())
}
