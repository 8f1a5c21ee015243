//! Secrets Manager: string secrets by ARN or name, read once at start-up. Errors name the
//! secret id and the service's error code, never the value.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use super::{code_of, sdk_error};
use crate::store::{SecretSource, StoreError};

const SERVICE: &str = "secretsmanager";

#[derive(Clone, Debug)]
pub struct SecretsManagerSource {
    client: Client,
}

impl SecretsManagerSource {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secret(&self, id: &str) -> Result<String, StoreError> {
        let out = self.client.get_secret_value().secret_id(id).send().await.map_err(|e| match code_of(&e) {
            Some("ResourceNotFoundException") => StoreError::NotFound { key: id.to_owned() },
            _ => sdk_error(SERVICE, "GetSecretValue", e),
        })?;
        out.secret_string()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Malformed(format!("secret {id} has no string value")))
    }
}
