//! The container registry.

use async_trait::async_trait;

use super::MemoryCatalog;
use crate::model::{ContainerId, ContainerRecord};
use crate::store::{Containers, StoreError};

#[async_trait]
impl Containers for MemoryCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        Ok(self.read().containers.get(container).cloned())
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let state = self.read();
        Ok(state.containers.values().filter(|r| r.container.tenant_id == tenant_id).cloned().collect())
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        self.write().containers.insert(record.container.clone(), record.clone());
        Ok(())
    }
}
