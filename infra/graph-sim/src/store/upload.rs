//! Resumable upload sessions (graph-facts §6). A session collects the bytes
//! of one file from `PUT {uploadUrl}` requests carrying
//! `Content-Range: bytes a-b/total`, and enforces Graph's rules: fragments
//! arrive in order starting at the next expected byte (a re-sent or skipped
//! range is `416`), every fragment but the last is a multiple of 320 KiB
//! (`400`), each request is under 60 MiB, and the total never changes
//! (`400`). Received bytes are appended to one buffer; a finished upload is
//! frozen into [`Bytes`] once, so committing (or retrying a failed commit)
//! copies nothing.

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use super::write::Conflict;
use crate::error::GraphError;

/// Fragments other than the last must be multiples of this (320 KiB).
pub const FRAGMENT_UNIT: u64 = 327_680;
/// Each `PUT` to an upload URL must be smaller than this (60 MiB).
pub const MAX_FRAGMENT: u64 = 60 * 1024 * 1024;

/// What the session writes when it commits.
#[derive(Debug, Clone)]
pub enum UploadTarget {
    /// `items/{parent}:/{name}:/createUploadSession`: a file by name.
    NewFile { parent_id: String, name: String },
    /// `items/{id}/createUploadSession`: new content for an existing file.
    Existing { item_id: String },
}

#[derive(Debug)]
pub struct UploadSession {
    pub drive_id: String,
    pub target: UploadTarget,
    pub conflict: Conflict,
    pub defer_commit: bool,
    pub expires: DateTime<Utc>,
    /// Announced by `item.fileSize` or by the first fragment.
    pub total: Option<u64>,
    /// `item.fileSystemInfo`: applied to the file when the session completes.
    pub dates: FileDates,
    data: BytesMut,
    finished: Option<Bytes>,
}

/// The dates an upload asks its file to keep (`fileSystemInfo`); `None` = now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileDates {
    pub created: Option<DateTime<Utc>>,
    pub modified: Option<DateTime<Utc>>,
}

/// A parsed `Content-Range: bytes start-end/total` (inclusive end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

impl ContentRange {
    pub fn parse(raw: Option<&str>) -> Result<Self, GraphError> {
        let bad = || GraphError::bad_request("The Content-Range header is missing or malformed.");
        let spec = raw.map(str::trim).and_then(|r| r.strip_prefix("bytes ")).ok_or_else(bad)?;
        let (range, total) = spec.trim().split_once('/').ok_or_else(bad)?;
        let (start, end) = range.split_once('-').ok_or_else(bad)?;
        let num = |s: &str| s.trim().parse::<u64>().map_err(|_| bad());
        let r = ContentRange { start: num(start)?, end: num(end)?, total: num(total)? };
        if r.end < r.start || r.end >= r.total {
            return Err(GraphError::bad_request(format!(
                "The Content-Range 'bytes {}-{}/{}' is not valid.",
                r.start, r.end, r.total
            )));
        }
        Ok(r)
    }

    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

impl UploadSession {
    pub fn new(
        drive_id: String,
        target: UploadTarget,
        conflict: Conflict,
        defer_commit: bool,
        total: Option<u64>,
        expires: DateTime<Utc>,
    ) -> Self {
        let dates = FileDates::default();
        Self { drive_id, target, conflict, defer_commit, expires, total, dates, data: BytesMut::new(), finished: None }
    }

    pub fn received(&self) -> u64 {
        self.finished.as_ref().map_or(self.data.len(), Bytes::len) as u64
    }

    /// All bytes are in; the session can be committed.
    pub fn is_complete(&self) -> bool {
        self.finished.is_some()
    }

    /// `["N-"]` while bytes are missing, `[]` once complete.
    pub fn next_expected_ranges(&self) -> Vec<String> {
        if self.is_complete() { Vec::new() } else { vec![format!("{}-", self.received())] }
    }

    /// Appends one fragment, enforcing the fragment rules. A rejected
    /// fragment leaves the session untouched.
    pub fn accept(&mut self, range: ContentRange, body: &[u8]) -> Result<(), GraphError> {
        if body.len() as u64 != range.len() {
            return Err(GraphError::bad_request(format!(
                "Content-Length {} does not match the Content-Range length {}.",
                body.len(),
                range.len()
            )));
        }
        if self.total.is_some_and(|t| t != range.total) {
            return Err(GraphError::bad_request(
                "The total size in Content-Range differs from the size declared for this upload session.",
            ));
        }
        let expected = self.received();
        if self.is_complete() || range.start != expected {
            return Err(GraphError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "invalidRange",
                format!(
                    "The uploaded fragment starts at byte {} but the next expected byte is {expected}.",
                    range.start
                ),
            ));
        }
        let last = range.end + 1 == range.total;
        if !last && !range.len().is_multiple_of(FRAGMENT_UNIT) {
            return Err(GraphError::bad_request(format!(
                "The fragment is {} bytes; fragments other than the last must be a multiple of 320 KiB (327,680 bytes).",
                range.len()
            )));
        }
        self.total = Some(range.total);
        if self.data.capacity() == 0 {
            self.data.reserve(range.total.min(512 * 1024 * 1024) as usize);
        }
        self.data.extend_from_slice(body);
        if last {
            self.finished = Some(std::mem::take(&mut self.data).freeze());
        }
        Ok(())
    }

    /// The whole file, once complete.
    pub fn content(&self) -> Option<Bytes> {
        self.finished.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> UploadSession {
        let target = UploadTarget::Existing { item_id: "x".into() };
        UploadSession::new("d".into(), target, Conflict::Fail, false, None, Utc::now())
    }

    fn range(start: u64, end: u64, total: u64) -> ContentRange {
        ContentRange { start, end, total }
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(ContentRange::parse(Some("bytes 0-25/128")).ok(), Some(range(0, 25, 128)));
        for bad in [None, Some("bytes 0-25"), Some("0-25/128"), Some("bytes 5-4/128"), Some("bytes 0-128/128")] {
            assert!(ContentRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fragments_must_be_in_order_and_320k_aligned() {
        let unit = FRAGMENT_UNIT as usize;
        let total = (unit * 2 + 10) as u64;
        let mut s = session();
        let odd = vec![1u8; unit - 1];
        assert_eq!(
            s.accept(range(0, odd.len() as u64 - 1, total), &odd).map_err(|e| e.status),
            Err(StatusCode::BAD_REQUEST)
        );
        let frag = vec![2u8; unit];
        assert!(s.accept(range(0, FRAGMENT_UNIT - 1, total), &frag).is_ok());
        let again = s.accept(range(0, FRAGMENT_UNIT - 1, total), &frag).map_err(|e| e.status);
        assert_eq!(again, Err(StatusCode::RANGE_NOT_SATISFIABLE));
        let gap = s.accept(range(2 * FRAGMENT_UNIT, total - 1, total), &[0; 10]).map_err(|e| e.status);
        assert_eq!(gap, Err(StatusCode::RANGE_NOT_SATISFIABLE));
        let other_total = s.accept(range(FRAGMENT_UNIT, 2 * FRAGMENT_UNIT - 1, total + 1), &frag).map_err(|e| e.status);
        assert_eq!(other_total, Err(StatusCode::BAD_REQUEST));
        assert_eq!(s.next_expected_ranges(), [format!("{FRAGMENT_UNIT}-")]);
        let mut tail = vec![3u8; unit];
        tail.extend([4u8; 10]);
        assert!(s.accept(range(FRAGMENT_UNIT, total - 1, total), &tail).is_ok());
        assert!(s.is_complete());
        assert!(s.next_expected_ranges().is_empty());
        assert_eq!(s.content().map(|c| c.len() as u64), Some(total));
    }
}
