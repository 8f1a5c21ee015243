//! Builds each function's dependencies from its typed config, once at start-up: the Lambda
//! binaries and the local stack share this, so both run the same wiring.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::catalog::DynamoCatalog;
use crate::aws::queue::SqsSink;
use crate::aws::secrets::SecretsManagerSource;
use crate::aws::vault::S3Vault;
use crate::clientstate::ClientStateKey;
use crate::clock;
use crate::config::{CopierConfig, EnumeratorConfig, GraphIdentity, KeeperConfig, SchedulerConfig, WebhookConfig};
use crate::graph::{ClientSecret, GraphClient, GraphConfig};
use crate::pipeline::copier::CopierDeps;
use crate::pipeline::enumerator::EnumeratorDeps;
use crate::pipeline::keeper::KeeperDeps;
use crate::pipeline::scheduler::SchedulerDeps;
use crate::pipeline::webhook::WebhookDeps;
use crate::store::SecretSource;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("cannot read secret: {0}")]
    Secret(#[source] crate::store::StoreError),
    #[error("invalid Graph endpoint {name}: {reason}")]
    Endpoint { name: &'static str, reason: String },
    #[error(transparent)]
    Graph(#[from] crate::graph::GraphError),
    #[error(transparent)]
    ClientState(#[from] crate::clientstate::ClientStateError),
}

pub const USER_AGENT: &str = concat!("ISV|M365Backup|m365-backup/", env!("CARGO_PKG_VERSION"));

pub async fn graph_client(identity: &GraphIdentity, secrets: &dyn SecretSource) -> Result<GraphClient, WiringError> {
    let secret = secrets.secret(&identity.secret_id).await.map_err(WiringError::Secret)?;
    let parse = |name: &'static str, value: &str| {
        url::Url::parse(value).map_err(|e| WiringError::Endpoint { name, reason: e.to_string() })
    };
    Ok(GraphClient::new(GraphConfig {
        base_url: parse("GRAPH_BASE_URL", &identity.base_url)?,
        login_url: parse("GRAPH_LOGIN_URL", &identity.login_url)?,
        tenant_id: identity.tenant_id.clone(),
        client_id: identity.client_id.clone(),
        client_secret: ClientSecret::new(secret),
        user_agent: USER_AGENT.into(),
        max_inline_throttle_wait: Duration::from_secs(5),
        max_retries: 3,
    })?)
}

async fn client_state_key(secrets: &dyn SecretSource, id: &str) -> Result<ClientStateKey, WiringError> {
    let secret = secrets.secret(id).await.map_err(WiringError::Secret)?;
    Ok(ClientStateKey::new(&secret)?)
}

pub async fn webhook(cfg: &WebhookConfig, aws: &aws_config::SdkConfig) -> Result<WebhookDeps, WiringError> {
    let secrets = SecretsManagerSource::new(aws);
    Ok(WebhookDeps {
        tenant_id: cfg.tenant_id.clone(),
        key: client_state_key(&secrets, &cfg.client_state_key_secret).await?,
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        clock: clock::system(),
    })
}

pub async fn enumerator(cfg: &EnumeratorConfig, aws: &aws_config::SdkConfig) -> Result<EnumeratorDeps, WiringError> {
    let secrets = SecretsManagerSource::new(aws);
    let graph = Arc::new(graph_client(&cfg.graph, &secrets).await?);
    Ok(EnumeratorDeps {
        graph: graph.clone(),
        mail: graph,
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        large_item_bytes: cfg.large_item_bytes,
        reserve: Duration::from_secs(30),
        clock: clock::system(),
    })
}

pub async fn copier(cfg: &CopierConfig, aws: &aws_config::SdkConfig) -> Result<CopierDeps, WiringError> {
    let secrets = SecretsManagerSource::new(aws);
    let graph = Arc::new(graph_client(&cfg.graph, &secrets).await?);
    Ok(CopierDeps {
        graph: graph.clone(),
        mail: graph,
        vault: Arc::new(S3Vault::new(aws, cfg.vault_bucket.clone())),
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        lock_mode: cfg.lock_mode,
        retention_days: cfg.retention_days,
        large_item_bytes: cfg.large_item_bytes,
        clock: clock::system(),
    })
}

pub async fn scheduler(cfg: &SchedulerConfig, aws: &aws_config::SdkConfig) -> Result<SchedulerDeps, WiringError> {
    let secrets = SecretsManagerSource::new(aws);
    Ok(SchedulerDeps {
        tenant_id: cfg.reader.tenant_id.clone(),
        reader: graph_client(&cfg.reader, &secrets).await?,
        subscriber: graph_client(&cfg.subscriber, &secrets).await?,
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        key: client_state_key(&secrets, &cfg.client_state_key_secret).await?,
        webhook_url: cfg.webhook_url.clone(),
        subscription_minutes: cfg.subscription_minutes,
        renew_within_minutes: cfg.renew_within_minutes,
        sites: cfg.sites.clone(),
        clock: clock::system(),
    })
}

/// The vault keeper's dependencies: no secrets to load, so nothing here can fail.
pub async fn keeper(cfg: &KeeperConfig, aws: &aws_config::SdkConfig) -> KeeperDeps {
    KeeperDeps {
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        vault: Arc::new(S3Vault::new(aws, cfg.vault_bucket.clone())),
        clock: clock::system(),
        policy: cfg.policy(),
        tenant_id: cfg.tenant_id.clone(),
        concurrency: cfg.concurrency,
    }
}

pub async fn restorer(
    cfg: &crate::config::RestorerConfig,
    aws: &aws_config::SdkConfig,
) -> Result<crate::pipeline::restorer::RestorerDeps, WiringError> {
    let secrets = SecretsManagerSource::new(aws);
    Ok(crate::pipeline::restorer::RestorerDeps {
        graph: graph_client(&cfg.graph, &secrets).await?,
        vault: Arc::new(S3Vault::new(aws, cfg.vault_bucket.clone())),
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        exports: Arc::new(crate::aws::S3Exports::new(aws, cfg.exports_bucket.clone())),
        clock: clock::system(),
    })
}

/// The restore API's dependencies: no secrets to load, so nothing here can fail.
pub async fn restore_api(cfg: &crate::config::RestoreApiConfig, aws: &aws_config::SdkConfig) -> crate::api::ApiDeps {
    crate::api::ApiDeps {
        tenant_id: cfg.tenant_id.clone(),
        catalog: Arc::new(DynamoCatalog::new(aws, cfg.catalog_table.clone())),
        sink: Arc::new(SqsSink::new(aws, cfg.queues.clone())),
        presigner: Arc::new(crate::api::S3Presigner::new(crate::aws::s3_client(aws), cfg.vault_bucket.clone())),
        exports: Arc::new(crate::api::S3Presigner::new(crate::aws::s3_client(aws), cfg.exports_bucket.clone())),
        clock: clock::system(),
    }
}
