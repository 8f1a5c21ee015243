//! Secrets in memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{bump, locked};
use crate::store::{SecretSource, StoreError};

/// Secrets by id.
#[derive(Default)]
pub struct MemorySecrets {
    values: Mutex<HashMap<String, String>>,
    gets: AtomicU64,
}

impl MemorySecrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(self, id: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(id, value);
        self
    }

    pub fn insert(&self, id: impl Into<String>, value: impl Into<String>) {
        locked(&self.values).insert(id.into(), value.into());
    }

    pub fn get_count(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl SecretSource for MemorySecrets {
    async fn secret(&self, id: &str) -> Result<String, StoreError> {
        bump(&self.gets);
        locked(&self.values).get(id).cloned().ok_or_else(|| StoreError::NotFound { key: id.to_owned() })
    }
}
