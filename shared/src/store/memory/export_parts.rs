//! The completed zips of export jobs; a part is recorded once.

use async_trait::async_trait;

use super::MemoryCatalog;
use crate::model::ExportPart;
use crate::store::{ExportParts, StoreError};

#[async_trait]
impl ExportParts for MemoryCatalog {
    async fn record_export_part(&self, job_id: &str, part: &ExportPart) -> Result<bool, StoreError> {
        let mut state = self.write();
        let key = (job_id.to_owned(), part.part);
        if state.export_parts.contains_key(&key) {
            return Ok(false);
        }
        state.export_parts.insert(key, part.clone());
        Ok(true)
    }

    async fn export_parts(&self, job_id: &str) -> Result<Vec<ExportPart>, StoreError> {
        let state = self.read();
        Ok(state
            .export_parts
            .range((job_id.to_owned(), 0)..)
            .take_while(|((job, _), _)| job == job_id)
            .map(|(_, p)| p.clone())
            .collect())
    }
}
