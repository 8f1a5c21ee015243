//! The vault's S3 key layout. Keys are built only from hashes and fixed words: names from
//! Microsoft 365 (unicode, `..`, control characters, reserved names) never become keys.

use sha2::{Digest, Sha256};

use crate::model::{ContainerId, ContainerKind, ItemKey};

/// A short, key-safe, stable stand-in for a Graph id (ids may contain `!`, `=`, `/`...).
pub fn opaque_id(id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    hex::encode(&digest[..16])
}

fn tenant_prefix(tenant_id: &str) -> String {
    format!("v1/t/{}", opaque_id(tenant_id))
}

/// Small content, stored once per tenant by SHA-256.
pub fn blob_key(tenant_id: &str, sha256_hex: &str) -> String {
    format!("{}/blobs/sha256/{}/{}", tenant_prefix(tenant_id), &sha256_hex[..2], sha256_hex)
}

/// Large content, one object per item version (multipart upload straight to it).
pub fn large_key(item: &ItemKey, version: &str) -> String {
    format!("{}/large/{}", item_prefix(item), opaque_id(version))
}

/// The immutable record of one item version.
pub fn record_key(item: &ItemKey, version: &str) -> String {
    format!("{}/records/{}.json", item_prefix(item), opaque_id(version))
}

fn item_prefix(item: &ItemKey) -> String {
    format!("{}/items/{}", container_prefix(&item.container), opaque_id(&item.item_id))
}

/// One zip of an export job, in the exports bucket (not the vault). The job id is ours (a
/// UUID), never a name from Microsoft 365.
pub fn export_key(tenant_id: &str, job_id: &str, part: u32, of: u32) -> String {
    format!("{}/exports/{job_id}/mailbox-part-{part:04}-of-{of:04}.zip", tenant_prefix(tenant_id))
}

pub fn container_prefix(c: &ContainerId) -> String {
    let kind = match c.kind {
        ContainerKind::Drive => "drives",
        ContainerKind::Mailbox => "mailboxes",
    };
    format!("{}/{kind}/{}", tenant_prefix(&c.tenant_id), opaque_id(&c.graph_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_never_reach_keys() {
        let c = ContainerId::new("tenant", "b!../../etc/passwd\u{0}");
        let item = c.item("..\\CON\u{202e}txt");
        for key in [record_key(&item, "\"{etag},1\""), large_key(&item, "x/../y")] {
            assert!(key.chars().all(|ch| ch.is_ascii_alphanumeric() || "/._-".contains(ch)), "{key}");
            assert!(!key.contains(".."), "{key}");
        }
    }

    #[test]
    fn a_mailbox_never_shares_keys_with_a_drive_of_the_same_id() {
        let (drive, mailbox) = (ContainerId::new("t", "x"), ContainerId::mailbox("t", "x"));
        assert_ne!(container_prefix(&drive), container_prefix(&mailbox));
        assert_ne!(drive.scoped_id(), mailbox.scoped_id());
        assert_ne!(drive.group_id(), mailbox.group_id());
        // and a drive's JSON is what it was before mailboxes existed
        assert_eq!(
            serde_json::to_value(&drive).unwrap_or_default(),
            serde_json::json!({"tenant_id": "t", "drive_id": "x"})
        );
    }

    #[test]
    fn keys_are_stable() {
        let c = ContainerId::new("t", "d");
        assert_eq!(record_key(&c.item("i"), "e"), record_key(&c.item("i"), "e"));
        assert_ne!(record_key(&c.item("i"), "e1"), record_key(&c.item("i"), "e2"));
    }
}
