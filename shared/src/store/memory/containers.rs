//! The container registry, the unresolved drives and mailboxes, the SharePoint sites.

use async_trait::async_trait;

use super::MemoryCatalog;
use crate::model::{ContainerId, ContainerRecord, Service, SiteRecord, Unresolved};
use crate::store::{Containers, StoreError};

#[async_trait]
impl Containers for MemoryCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        Ok(self.read().containers.get(container).cloned())
    }

    async fn container_by_tag(&self, tenant_id: &str, tag: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let state = self.read();
        Ok(state.containers.values().find(|r| r.container.tenant_id == tenant_id && r.container.tag() == tag).cloned())
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let state = self.read();
        Ok(state.containers.values().filter(|r| r.container.tenant_id == tenant_id).cloned().collect())
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        // The registry row and the row that finds it by tag: two writes, as in DynamoDB.
        drop(self.write());
        self.write().containers.insert(record.container.clone(), record.clone());
        Ok(())
    }

    async fn create_container(&self, record: &ContainerRecord) -> Result<bool, StoreError> {
        drop(self.write()); // the tag row
        let mut state = self.write();
        if state.containers.contains_key(&record.container) {
            return Ok(false);
        }
        state.containers.insert(record.container.clone(), record.clone());
        Ok(true)
    }

    async fn list_unresolved(&self, tenant_id: &str) -> Result<Vec<Unresolved>, StoreError> {
        let state = self.read();
        Ok(state.unresolved.iter().filter(|((t, _, _), _)| t == tenant_id).map(|(_, u)| u.clone()).collect())
    }

    async fn put_unresolved(&self, unresolved: &Unresolved) -> Result<(), StoreError> {
        let key = (unresolved.tenant_id.clone(), unresolved.user_id.clone(), unresolved.service);
        self.write().unresolved.insert(key, unresolved.clone());
        Ok(())
    }

    async fn clear_unresolved(&self, tenant_id: &str, user_id: &str, service: Service) -> Result<(), StoreError> {
        self.write().unresolved.remove(&(tenant_id.to_owned(), user_id.to_owned(), service));
        Ok(())
    }

    async fn list_sites(&self, tenant_id: &str) -> Result<Vec<SiteRecord>, StoreError> {
        let state = self.read();
        Ok(state
            .sites
            .range((tenant_id.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == tenant_id)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn site(&self, tenant_id: &str, site_id: &str) -> Result<Option<SiteRecord>, StoreError> {
        Ok(self.read().sites.get(&(tenant_id.to_owned(), site_id.to_owned())).cloned())
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<(), StoreError> {
        self.write().sites.insert((site.tenant_id.clone(), site.site_id.clone()), site.clone());
        Ok(())
    }

    async fn sites_delta(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read().sites_delta.get(tenant_id).cloned())
    }

    async fn put_sites_delta(&self, tenant_id: &str, link: &str) -> Result<(), StoreError> {
        self.write().sites_delta.insert(tenant_id.to_owned(), link.to_owned());
        Ok(())
    }
}
