//! quickXorHash, the content hash OneDrive for Business and SharePoint report in
//! `file.hashes.quickXorHash` (graph-facts §12; the C# reference in
//! onedrive-api-docs). Independent of the workspace's own implementation on
//! purpose: a shared bug would otherwise pass every test.
//!
//! Byte `i` is rotated left by `(11 * i) mod 160` bits into a 160-bit state.
//! Because 11 and 160 are coprime the shift pattern repeats every 160 bytes, so
//! bytes 160 apart are first XORed together into a 160-byte accumulator and the
//! rotations are applied once, at the end.

use base64::Engine;

const WIDTH_BYTES: usize = 160;

/// Streaming quickXorHash state; feed with [`update`](Self::update).
#[derive(Clone)]
pub struct QuickXorHasher {
    lanes: [u8; WIDTH_BYTES],
    len: u64,
}

impl Default for QuickXorHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHasher {
    pub fn new() -> Self {
        Self { lanes: [0; WIDTH_BYTES], len: 0 }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut pos = (self.len % WIDTH_BYTES as u64) as usize;
        let mut rest = data;
        while pos != 0 && !rest.is_empty() {
            self.lanes[pos] ^= rest[0];
            pos = (pos + 1) % WIDTH_BYTES;
            rest = &rest[1..];
        }
        let mut chunks = rest.chunks_exact(WIDTH_BYTES);
        for chunk in &mut chunks {
            for (lane, byte) in self.lanes.iter_mut().zip(chunk) {
                *lane ^= byte;
            }
        }
        for (lane, byte) in self.lanes.iter_mut().zip(chunks.remainder()) {
            *lane ^= byte;
        }
        self.len += data.len() as u64;
    }

    /// The 20 raw hash bytes.
    pub fn finish_raw(&self) -> [u8; 20] {
        let mut state = [0u8; 20];
        for (j, &byte) in self.lanes.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            let shift = (11 * j) % 160;
            for bit in 0..8 {
                if (byte >> bit) & 1 == 1 {
                    let p = (shift + bit) % 160;
                    state[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (k, b) in self.len.to_le_bytes().iter().enumerate() {
            state[12 + k] ^= b;
        }
        state
    }

    /// Standard base64 (28 characters), as Graph reports it.
    pub fn finish_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finish_raw())
    }
}

/// quickXorHash of a whole buffer, base64.
pub fn quick_xor_base64(data: &[u8]) -> String {
    let mut h = QuickXorHasher::new();
    h.update(data);
    h.finish_base64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn check(input_b64: &str, expected: &str) {
        let data = STANDARD.decode(input_b64).unwrap_or_default();
        assert_eq!(quick_xor_base64(&data), expected, "input {input_b64}");
    }

    #[test]
    fn published_vectors() {
        check("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        check("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA=");
        check("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA=");
        check("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg=");
    }

    fn reference(data: &[u8]) -> [u8; 20] {
        // Bit-by-bit rotation over a 160-bit integer, straight from graph-facts §12.
        let mut acc = [0u8; 20];
        for (i, &b) in data.iter().enumerate() {
            let shift = (i * 11) % 160;
            for bit in 0..8 {
                if (b >> bit) & 1 == 1 {
                    let p = (shift + bit) % 160;
                    acc[p / 8] ^= 1 << (p % 8);
                }
            }
        }
        for (k, lb) in (data.len() as u64).to_le_bytes().iter().enumerate() {
            acc[12 + k] ^= lb;
        }
        acc
    }

    #[test]
    fn streaming_in_odd_chunks_matches_reference() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let mut h = QuickXorHasher::new();
        for chunk in data.chunks(37) {
            h.update(chunk);
        }
        assert_eq!(h.finish_raw(), reference(&data));
        let mut one = QuickXorHasher::new();
        one.update(&data);
        assert_eq!(one.finish_raw(), reference(&data));
    }
}
