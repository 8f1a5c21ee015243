//! Bytes on their way into an S3 multipart upload (the copier's large items, the exporter's
//! zips), cut into parts of [`PART_SIZE`] so that memory stays bounded whatever the size.

use bytes::{Bytes, BytesMut};

/// Multipart part size: what a writer holds of an upload at most, beside what it is adding.
pub const PART_SIZE: usize = 16 * 1024 * 1024;

/// One part, ready for `UploadPart`.
pub struct UploadPart {
    /// S3 part numbers start at 1.
    pub number: i32,
    pub body: Bytes,
}

/// Collects bytes and hands them out as numbered parts: every part but the last is exactly
/// the part size (S3 wants at least 5 MiB of every part but the last).
pub struct PartBuffer {
    size: usize,
    part: BytesMut,
    next_number: i32,
    /// Bytes handed out in parts so far.
    handed_out: u64,
}

impl PartBuffer {
    pub fn new() -> Self {
        Self::of_size(PART_SIZE)
    }

    fn of_size(size: usize) -> Self {
        Self { size, part: BytesMut::new(), next_number: 1, handed_out: 0 }
    }

    /// Adds `data`; returns the parts it filled, in order. A run of whole parts at the start
    /// of an empty buffer is handed out without copying.
    pub fn push(&mut self, mut data: Bytes) -> Vec<UploadPart> {
        let mut full = Vec::new();
        while !data.is_empty() {
            if self.part.is_empty() && data.len() >= self.size {
                let body = data.split_to(self.size);
                full.push(self.number(body));
                continue;
            }
            if self.part.is_empty() {
                self.part.reserve(self.size);
            }
            let take = data.len().min(self.size - self.part.len());
            self.part.extend_from_slice(&data.split_to(take));
            if self.part.len() == self.size {
                let body = self.part.split().freeze();
                full.push(self.number(body));
            }
        }
        full
    }

    /// What is left as the upload's last part, if anything is.
    pub fn last_part(&mut self) -> Option<UploadPart> {
        if self.part.is_empty() {
            return None;
        }
        let body = self.part.split().freeze();
        Some(self.number(body))
    }

    /// Bytes pushed so far, handed out or not.
    pub fn pushed(&self) -> u64 {
        self.handed_out + self.part.len() as u64
    }

    fn number(&mut self, body: Bytes) -> UploadPart {
        let number = self.next_number;
        self.next_number += 1;
        self.handed_out += body.len() as u64;
        UploadPart { number, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `chunks` through a buffer of parts of 4 bytes; returns the parts' numbers and
    /// bodies, the last part included.
    fn check(chunks: &[&str], expected: &[(i32, &str)]) {
        let mut buffer = PartBuffer::of_size(4);
        let mut parts = Vec::new();
        for chunk in chunks {
            parts.extend(buffer.push(Bytes::copy_from_slice(chunk.as_bytes())));
        }
        let pushed: usize = chunks.iter().map(|c| c.len()).sum();
        assert_eq!(buffer.pushed(), pushed as u64);
        parts.extend(buffer.last_part());
        let got: Vec<(i32, String)> =
            parts.into_iter().map(|p| (p.number, String::from_utf8_lossy(&p.body).into_owned())).collect();
        let expected: Vec<(i32, String)> = expected.iter().map(|(n, b)| (*n, (*b).to_owned())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn small_writes_come_out_as_whole_parts_then_the_rest() {
        check(&["ab", "cde", "fghi", "j"], &[(1, "abcd"), (2, "efgh"), (3, "ij")]);
    }

    #[test]
    fn a_large_write_is_cut_into_parts() {
        check(&["abcdefghij"], &[(1, "abcd"), (2, "efgh"), (3, "ij")]);
        check(&["a", "bcdefghijk"], &[(1, "abcd"), (2, "efgh"), (3, "ijk")]);
    }

    #[test]
    fn bytes_that_end_on_a_part_boundary_leave_no_empty_last_part() {
        check(&["abcd", "efgh"], &[(1, "abcd"), (2, "efgh")]);
        check(&[], &[]);
    }
}
