//! Identifier shapes that look like ODfB's (item ids `01` + 32 base32 chars,
//! drive ids `b!...`, user GUIDs), from a splitmix64 stream so a seeded tenant
//! gets the same ids every time.

use rand::RngCore;

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Deterministic (seeded) or random id source.
pub struct IdRng(u64);

impl IdRng {
    pub fn seeded(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn random() -> Self {
        Self(rand::rng().next_u64())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    pub fn item_id(&mut self) -> String {
        let mut s = String::from("01");
        for _ in 0..32 {
            s.push(BASE32[(self.next_u64() % 32) as usize] as char);
        }
        s
    }

    pub fn drive_id(&mut self) -> String {
        let mut s = String::from("b!");
        for _ in 0..64 {
            s.push(B64URL[(self.next_u64() % 64) as usize] as char);
        }
        s
    }

    pub fn guid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
    }
}
