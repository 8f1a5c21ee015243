//! `POST /graph/notifications` behind API Gateway: the shared axum router on lambda_http.

use std::sync::Arc;

use shared::config::{Env, WebhookConfig};
use shared::pipeline::webhook;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = WebhookConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::webhook(&config, &aws).await?;
    lambda_http::run(webhook::router(Arc::new(deps))).await
}
