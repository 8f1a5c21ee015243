//! The completed zips of an export job (`R#{job}` / `EXPORT#{part:05}`), beside its reports.

use async_trait::async_trait;

use super::keys::{PART_PREFIX, job_pk, part_sk};
use super::{DynamoCatalog, all_rows, json, key, parse_doc, s};
use crate::model::ExportPart;
use crate::store::{ExportParts, StoreError};

#[async_trait]
impl ExportParts for DynamoCatalog {
    async fn record_export_part(&self, job_id: &str, part: &ExportPart) -> Result<bool, StoreError> {
        let mut row = key(job_pk(job_id), part_sk(part.part));
        row.insert("doc".to_owned(), json(part)?);
        self.put_new_row(row).await
    }

    /// Strongly consistent, so the part that completes an export sees every other part.
    async fn export_parts(&self, job_id: &str) -> Result<Vec<ExportPart>, StoreError> {
        let query = self
            .query()
            .key_condition_expression("PK = :pk AND begins_with(SK, :export)")
            .expression_attribute_values(":pk", s(job_pk(job_id)))
            .expression_attribute_values(":export", s(PART_PREFIX))
            .consistent_read(true);
        all_rows(query).await?.iter().map(|row| parse_doc::<ExportPart>(row, "doc")).collect()
    }
}
