//! quickXorHash, the content hash OneDrive for Business and SharePoint report for files.
//!
//! Byte `i` of the content is rotated left by `(11 * i) mod 160` bits inside a 160-bit
//! state and XORed in; the length is then XORed into the last 8 bytes. The rotation
//! depends only on `i mod 160`, so bytes 160 apart land on the same bits: `update` folds
//! the input into a 160-byte accumulator with plain (vectorisable) XORs, and the rotations
//! are applied once, to those 160 bytes, in `finalize`.

use base64::Engine;

const WIDTH_BYTES: usize = 160;
const SHIFT_BITS: usize = 11;
const STATE_BITS: usize = 160;

#[derive(Clone)]
pub struct QuickXorHasher {
    /// `fold[k]` = XOR of every input byte at an offset `≡ k (mod 160)`.
    fold: [u8; WIDTH_BYTES],
    len: u64,
}

impl Default for QuickXorHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for QuickXorHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickXorHasher").field("len", &self.len).finish_non_exhaustive()
    }
}

impl QuickXorHasher {
    pub fn new() -> Self {
        Self { fold: [0; WIDTH_BYTES], len: 0 }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds the next bytes of the content; chunk boundaries do not matter.
    pub fn update(&mut self, mut data: &[u8]) {
        let phase = (self.len % WIDTH_BYTES as u64) as usize;
        self.len += data.len() as u64;
        if phase != 0 {
            let head = data.len().min(WIDTH_BYTES - phase);
            xor_into(&mut self.fold[phase..phase + head], &data[..head]);
            data = &data[head..];
        }
        let mut blocks = data.chunks_exact(WIDTH_BYTES);
        for block in &mut blocks {
            xor_into(&mut self.fold, block);
        }
        let tail = blocks.remainder();
        xor_into(&mut self.fold[..tail.len()], tail);
    }

    /// The hash as Graph reports it: standard base64 of 20 bytes (28 characters).
    pub fn finalize(self) -> String {
        let mut state = [0u8; STATE_BITS / 8];
        for (k, &byte) in self.fold.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            let shift = (SHIFT_BITS * k) % STATE_BITS;
            for bit in (0..8).filter(|b| byte >> b & 1 == 1) {
                let at = (shift + bit) % STATE_BITS;
                state[at / 8] ^= 1 << (at % 8);
            }
        }
        for (s, l) in state[12..].iter_mut().zip(self.len.to_le_bytes()) {
            *s ^= l;
        }
        base64::engine::general_purpose::STANDARD.encode(state)
    }

    /// One-shot convenience.
    pub fn digest(data: &[u8]) -> String {
        let mut h = Self::new();
        h.update(data);
        h.finalize()
    }
}

#[inline]
fn xor_into(acc: &mut [u8], data: &[u8]) {
    for (a, d) in acc.iter_mut().zip(data) {
        *a ^= d;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    /// The algorithm as the docs state it, one bit at a time.
    fn reference(data: &[u8]) -> String {
        let mut state = [false; STATE_BITS];
        for (i, &byte) in data.iter().enumerate() {
            for bit in 0..8 {
                if byte >> bit & 1 == 1 {
                    let at = (i * SHIFT_BITS + bit) % STATE_BITS;
                    state[at] = !state[at];
                }
            }
        }
        let mut out = [0u8; 20];
        for (at, _) in state.iter().enumerate().filter(|(_, set)| **set) {
            out[at / 8] |= 1 << (at % 8);
        }
        for (k, l) in (data.len() as u64).to_le_bytes().into_iter().enumerate() {
            out[12 + k] ^= l;
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn published_vectors() {
        for (input, expected) in [
            ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
            ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
            ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
        ] {
            assert_eq!(QuickXorHasher::digest(&b64(input)), expected, "{input}");
            assert_eq!(reference(&b64(input)), expected, "{input}");
        }
    }

    #[test]
    fn matches_the_bit_by_bit_reference_on_random_data() {
        let mut rng = StdRng::seed_from_u64(7);
        for len in 0..1000 {
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            assert_eq!(QuickXorHasher::digest(&data), reference(&data), "len {len}");
        }
    }

    #[test]
    fn any_chunking_gives_the_one_shot_hash() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let len = rng.random_range(0..3000);
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            let mut hasher = QuickXorHasher::new();
            let mut rest = &data[..];
            while !rest.is_empty() {
                let take = rng.random_range(0..=rest.len().min(400));
                hasher.update(&rest[..take]);
                rest = &rest[take..];
            }
            assert_eq!(hasher.len(), len as u64);
            assert_eq!(hasher.finalize(), QuickXorHasher::digest(&data));
        }
    }

    /// `cargo test --release -p shared quickxor_throughput -- --ignored --nocapture`
    #[test]
    #[ignore = "benchmark"]
    fn quickxor_throughput() {
        let data = vec![0xA5u8; 64 << 20];
        let start = std::time::Instant::now();
        let mut hasher = QuickXorHasher::new();
        for chunk in data.chunks(1 << 16) {
            hasher.update(chunk);
        }
        let hash = hasher.finalize();
        let secs = start.elapsed().as_secs_f64();
        println!("{hash}: {:.0} MB/s", data.len() as f64 / secs / 1e6);
    }
}
