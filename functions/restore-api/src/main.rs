//! The restore API behind API Gateway (IAM auth): the shared axum router on lambda_http.

use std::sync::Arc;

use shared::config::{Env, RestoreApiConfig};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = RestoreApiConfig::load(&Env)?;
    let aws = shared::aws::sdk_config().await;
    let deps = shared::wiring::restore_api(&config, &aws).await;
    lambda_http::run(shared::api::router(Arc::new(deps))).await
}
