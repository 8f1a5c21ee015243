//! Pages of a listing and the cursors that resume them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::ContainerId;

/// One page of a listing. `next` resumes right after it; `None` means the listing is complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Listings by item id follow the index order, where an id is compared as `{id}#`: the same as
/// plain id order except that an id sorts after its extensions starting with a character
/// below `#` (`a!1` before `a`), which Graph ids essentially never have.
pub(crate) fn item_order(item_id: &str) -> String {
    format!("{item_id}#")
}

/// Body of a page cursor (base64url JSON). It holds the last item id handed out and a digest
/// of the listing it belongs to. Nothing in it widens what a request reads (the partition
/// always comes from the request), and a cursor that was edited or comes from another listing
/// is [`StoreError::InvalidCursor`].
#[derive(Serialize, Deserialize)]
struct CursorDoc {
    v: u32,
    listing: String,
    after: String,
}

const CURSOR_VERSION: u32 = 1;
const MAX_CURSOR_LEN: usize = 2048;

/// A paginated listing: hands out cursors and checks the ones it gets back.
pub(crate) struct Listing(String);

impl Listing {
    /// A folder's children as of a moment (the moment is part of the listing: a cursor does
    /// not carry over to another `at`).
    pub(crate) fn children(container: &ContainerId, parent_id: &str, at: DateTime<Utc>) -> Self {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Self::named(&["children", &container.tenant_id, &container.graph_id, parent_id, &at])
    }

    /// A container's versions as of a moment.
    pub(crate) fn container_as_of(container: &ContainerId, at: DateTime<Utc>) -> Self {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Self::named(&["container-as-of", &container.tenant_id, &container.scoped_id(), &at])
    }

    /// A container's heads now.
    pub(crate) fn heads(container: &ContainerId) -> Self {
        Self::named(&["heads", &container.tenant_id, &container.scoped_id()])
    }

    pub(crate) fn restore_reports(job_id: &str) -> Self {
        Self::named(&["restore-reports", job_id])
    }

    fn named(parts: &[&str]) -> Self {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in parts {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        Self(hex::encode(&hash.finalize()[..12]))
    }

    pub(crate) fn cursor(&self, after: &str) -> String {
        use base64::Engine;
        let doc = CursorDoc { v: CURSOR_VERSION, listing: self.0.clone(), after: after.to_owned() };
        // Serialising a struct of strings cannot fail.
        let json = serde_json::to_vec(&doc).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The item id to resume after, or `None` for the first page.
    pub(crate) fn resume(&self, cursor: Option<&str>) -> Result<Option<String>, StoreError> {
        use base64::Engine;
        let Some(cursor) = cursor else { return Ok(None) };
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(StoreError::InvalidCursor);
        }
        let json =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
        let doc: CursorDoc = serde_json::from_slice(&json).map_err(|_| StoreError::InvalidCursor)?;
        let id_ok = !doc.after.is_empty() && !doc.after.chars().any(|c| c == '#' || c.is_control());
        if doc.v != CURSOR_VERSION || doc.listing != self.0 || !id_ok {
            return Err(StoreError::InvalidCursor);
        }
        Ok(Some(doc.after))
    }
}
