//! The container registry: one row per protected drive or mailbox in its tenant's partition
//! (`T#` / `DRIVE#...` or `MAILBOX#...`), one row per container finding it by tag (`TAG#...`),
//! one row per user's drive or mailbox that discovery could not resolve (`UNRESOLVED#...`),
//! one row per SharePoint site (`SITE#...`) and where `/sites/delta` left off (`SITES_DELTA`).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{
    DRIVE_PREFIX, MAILBOX_PREFIX, SITE_PREFIX, SITES_DELTA_SK, UNRESOLVED_PREFIX, registry_sk, site_sk, tag_sk,
    tenant_pk, unresolved_sk,
};
use super::{DynamoCatalog, all_rows, applied, json, key, parse_doc};
use crate::model::{ContainerId, ContainerRecord, Service, SiteRecord, Unresolved};
use crate::store::{Containers, StoreError};

#[async_trait]
impl Containers for DynamoCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        let row = self.get_row(key(tenant_pk(&container.tenant_id), registry_sk(container)), false).await?;
        row.as_ref().map(|r| parse_doc(r, "doc")).transpose()
    }

    async fn container_by_tag(&self, tenant_id: &str, tag: &str) -> Result<Option<ContainerRecord>, StoreError> {
        let Some(row) = self.get_row(key(tenant_pk(tenant_id), tag_sk(tag)), false).await? else {
            return Ok(None);
        };
        let container: ContainerId = parse_doc(&row, "container")?;
        self.container(&container).await
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut records = Vec::new();
        for prefix in [DRIVE_PREFIX, MAILBOX_PREFIX] {
            let rows = all_rows(self.prefixed(tenant_pk(tenant_id), prefix)).await?;
            for row in &rows {
                records.push(parse_doc(row, "doc")?);
            }
        }
        Ok(records)
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        let row = self.tag_then_registry_row(record).await?;
        self.put_row(row).await
    }

    async fn create_container(&self, record: &ContainerRecord) -> Result<bool, StoreError> {
        let row = self.tag_then_registry_row(record).await?;
        self.put_new_row(row).await
    }

    async fn list_unresolved(&self, tenant_id: &str) -> Result<Vec<Unresolved>, StoreError> {
        let query = self
            .prefixed(tenant_pk(tenant_id), UNRESOLVED_PREFIX)
            .filter_expression("#resolved = :no")
            .expression_attribute_names("#resolved", "resolved")
            .expression_attribute_values(":no", AttributeValue::Bool(false));
        all_rows(query).await?.iter().map(|row| parse_doc(row, "doc")).collect()
    }

    async fn put_unresolved(&self, unresolved: &Unresolved) -> Result<(), StoreError> {
        let pk = tenant_pk(&unresolved.tenant_id);
        let mut row = key(pk, unresolved_sk(unresolved.service.as_str(), &unresolved.user_id));
        row.insert("doc".to_owned(), json(unresolved)?);
        row.insert("resolved".to_owned(), AttributeValue::Bool(false));
        self.put_row(row).await
    }

    /// Marked, not deleted: the scheduler's role has no `dynamodb:DeleteItem`.
    async fn clear_unresolved(&self, tenant_id: &str, user_id: &str, service: Service) -> Result<(), StoreError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant_id), unresolved_sk(service.as_str(), user_id))))
            .update_expression("SET #resolved = :yes")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#resolved", "resolved")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await;
        applied(sent, "UpdateItem").map(|_| ()) // nothing to clear
    }

    async fn list_sites(&self, tenant_id: &str) -> Result<Vec<SiteRecord>, StoreError> {
        let rows = all_rows(self.prefixed(tenant_pk(tenant_id), SITE_PREFIX)).await?;
        rows.iter().map(|row| parse_doc(row, "doc")).collect()
    }

    async fn site(&self, tenant_id: &str, site_id: &str) -> Result<Option<SiteRecord>, StoreError> {
        let row = self.get_row(key(tenant_pk(tenant_id), site_sk(site_id)), false).await?;
        row.as_ref().map(|r| parse_doc(r, "doc")).transpose()
    }

    async fn put_site(&self, site: &SiteRecord) -> Result<(), StoreError> {
        let mut row = key(tenant_pk(&site.tenant_id), site_sk(&site.site_id));
        row.insert("doc".to_owned(), json(site)?);
        self.put_row(row).await
    }

    async fn sites_delta(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        let row = self.get_row(key(tenant_pk(tenant_id), SITES_DELTA_SK.to_owned()), false).await?;
        Ok(row.and_then(|r| r.get("link").and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn put_sites_delta(&self, tenant_id: &str, link: &str) -> Result<(), StoreError> {
        let mut row = key(tenant_pk(tenant_id), SITES_DELTA_SK.to_owned());
        row.insert("link".to_owned(), AttributeValue::S(link.to_owned()));
        self.put_row(row).await
    }
}

impl DynamoCatalog {
    /// Writes the container's tag row and returns its registry row, for the caller to write:
    /// the tag row first, so a registry row is never there without the row that finds it. It
    /// names the container, nothing more, so writing it again is harmless.
    async fn tag_then_registry_row(&self, record: &ContainerRecord) -> Result<super::Row, StoreError> {
        let c = &record.container;
        let mut tag = key(tenant_pk(&c.tenant_id), tag_sk(&c.tag()));
        tag.insert("container".to_owned(), json(c)?);
        self.put_row(tag).await?;
        let mut row = key(tenant_pk(&c.tenant_id), registry_sk(c));
        row.insert("doc".to_owned(), json(record)?);
        Ok(row)
    }
}
