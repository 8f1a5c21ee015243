//! The container registry: one row per protected drive or mailbox in its tenant's partition
//! (`T#` / `DRIVE#...` or `MAILBOX#...`).

use std::collections::HashMap;

use async_trait::async_trait;

use super::keys::{DRIVE_PREFIX, MAILBOX_PREFIX, registry_sk, tenant_pk};
use super::{DynamoCatalog, json, key, parse_doc, s};
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
            let rows = self
                .query_all(
                    None,
                    "PK = :pk AND begins_with(SK, :prefix)",
                    None,
                    HashMap::new(),
                    HashMap::from([(":pk".to_owned(), s(tenant_pk(tenant_id))), (":prefix".to_owned(), s(prefix))]),
                )
                .await?;
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
