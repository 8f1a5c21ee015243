//! The container registry: one row per protected drive or mailbox in its tenant's partition
//! (`T#` / `DRIVE#...` or `MAILBOX#...`).

use async_trait::async_trait;

use super::keys::{DRIVE_PREFIX, MAILBOX_PREFIX, registry_sk, tenant_pk};
use super::{DynamoCatalog, all_rows, json, key, parse_doc, s};
use crate::model::{ContainerId, ContainerRecord};
use crate::store::{Containers, StoreError};

#[async_trait]
impl Containers for DynamoCatalog {
    async fn container(&self, container: &ContainerId) -> Result<Option<ContainerRecord>, StoreError> {
        let row = self.get_row(key(tenant_pk(&container.tenant_id), registry_sk(container)), false).await?;
        row.as_ref().map(|r| parse_doc(r, "doc")).transpose()
    }

    async fn list_containers(&self, tenant_id: &str) -> Result<Vec<ContainerRecord>, StoreError> {
        let mut records = Vec::new();
        for prefix in [DRIVE_PREFIX, MAILBOX_PREFIX] {
            let query = self
                .query()
                .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
                .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
                .expression_attribute_values(":prefix", s(prefix));
            let rows = all_rows(query).await?;
            for row in &rows {
                records.push(parse_doc(row, "doc")?);
            }
        }
        Ok(records)
    }

    async fn put_container(&self, record: &ContainerRecord) -> Result<(), StoreError> {
        let c = &record.container;
        let mut row = key(tenant_pk(&c.tenant_id), registry_sk(c));
        row.insert("doc".to_owned(), json(record)?);
        self.put_row(row).await
    }
}
