//! Lookup-free verification of Graph notifications. A subscription's `clientState` is
//! `v1.<nonce>.<container tag>.<mac>` where mac = HMAC-SHA256(key, tenant | tag | nonce).
//! The webhook checks it in constant time with one key loaded at start-up: no catalog read
//! per notification, and a leaked clientState of one drive cannot vouch for another drive.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::keys::opaque_id;

type HmacSha256 = Hmac<Sha256>;

/// The HMAC key. Debug never prints it.
#[derive(Clone)]
pub struct ClientStateKey(Vec<u8>);

impl std::fmt::Debug for ClientStateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientStateKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientStateError {
    #[error("client-state key is too short (need at least 32 bytes)")]
    WeakKey,
    #[error("clientState is malformed")]
    Malformed,
    #[error("clientState does not match")]
    Mismatch,
}

/// What a verified clientState vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vouched {
    /// `keys::opaque_id` of the drive the subscription was made for.
    pub container_tag: String,
}

impl ClientStateKey {
    pub fn new(secret: &str) -> Result<Self, ClientStateError> {
        if secret.len() < 32 {
            return Err(ClientStateError::WeakKey);
        }
        Ok(Self(secret.as_bytes().to_vec()))
    }

    fn mac(&self, tenant_id: &str, tag: &str, nonce: &str) -> HmacSha256 {
        // Keys of any length are accepted by HMAC.
        let mut mac = HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(tenant_id.as_bytes());
        mac.update(b"|");
        mac.update(tag.as_bytes());
        mac.update(b"|");
        mac.update(nonce.as_bytes());
        mac
    }

    /// A fresh clientState for a subscription on the container whose scoped id is `container`
    /// (96 characters, Graph allows 128).
    pub fn derive(&self, tenant_id: &str, container: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let nonce = URL_SAFE_NO_PAD.encode(nonce);
        let tag = opaque_id(container);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(tenant_id, &tag, &nonce).finalize().into_bytes());
        format!("v1.{nonce}.{tag}.{mac}")
    }

    /// Checks a clientState for `tenant_id`, in constant time over the MAC.
    pub fn verify(&self, tenant_id: &str, client_state: &str) -> Result<Vouched, ClientStateError> {
        let mut parts = client_state.split('.');
        let (Some("v1"), Some(nonce), Some(tag), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ClientStateError::Malformed);
        };
        if nonce.len() != 16 || tag.len() != 32 || client_state.len() > 128 {
            return Err(ClientStateError::Malformed);
        }
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| ClientStateError::Malformed)?;
        self.mac(tenant_id, tag, nonce).verify_slice(&mac).map_err(|_| ClientStateError::Mismatch)?;
        Ok(Vouched { container_tag: tag.to_owned() })
    }
}

/// Constant-time string equality (tenant ids).
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClientStateKey {
        ClientStateKey::new("0123456789abcdef0123456789abcdef-test-key").expect("key")
    }

    #[test]
    fn derived_state_verifies_for_its_tenant_and_drive() {
        let cs = key().derive("tenant-a", "drive-1");
        assert!(cs.len() <= 128);
        let vouched = key().verify("tenant-a", &cs).expect("valid");
        assert_eq!(vouched.container_tag, opaque_id("drive-1"));
    }

    #[test]
    fn forged_or_foreign_states_are_rejected() {
        let cs = key().derive("tenant-a", "drive-1");
        assert_eq!(key().verify("tenant-b", &cs), Err(ClientStateError::Mismatch));
        let other = ClientStateKey::new("another-key-another-key-another-key!").expect("key");
        assert_eq!(other.verify("tenant-a", &cs), Err(ClientStateError::Mismatch));
        let tampered = cs.replace(&opaque_id("drive-1"), &opaque_id("drive-2"));
        assert_eq!(key().verify("tenant-a", &tampered), Err(ClientStateError::Mismatch));
        for bad in ["", "secret", "v1.a.b.c", "v2.x.y.z.w", &format!("{cs}.extra")] {
            assert!(key().verify("tenant-a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weak_keys_are_refused() {
        assert_eq!(ClientStateKey::new("short").err(), Some(ClientStateError::WeakKey));
    }
}
