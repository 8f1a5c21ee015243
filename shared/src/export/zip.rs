//! A streaming zip writer for exports: entries are stored (not compressed), each local header
//! carries the entry's real CRC-32 and size (the caller knows them before writing: small
//! messages are read whole, large ones are hashed in a first pass), so there are no data
//! descriptors and every reader, streaming or not, can read the archive.
//!
//! The writer never holds the archive: it appends to a buffer that the caller drains into
//! multipart parts ([`ZipWriter::take`]) and keeps only the central directory (about 100
//! bytes per entry). No ZIP64: an archive is refused past 4 GiB or 65,535 entries, which the
//! exporter's part limits keep far away.

use bytes::{BufMut, Bytes, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
/// Names are UTF-8 (general purpose flag bit 11).
const FLAG_UTF8: u16 = 1 << 11;
/// Stored entries need version 1.0; "made by" Unix 2.0 so the mode bits below count.
const VERSION_NEEDED: u16 = 10;
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
/// A regular file, rw-r--r--.
const UNIX_FILE_MODE: u32 = 0o100_644 << 16;
/// Extended timestamp (0x5455): the modification time in UTC, which DOS times cannot say.
const EXTENDED_TIMESTAMP: u16 = 0x5455;
pub const MAX_ENTRIES: usize = u16::MAX as usize;
pub const MAX_ARCHIVE_BYTES: u64 = u32::MAX as u64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ZipError {
    #[error("an entry is already open")]
    EntryOpen,
    #[error("no entry is open")]
    NoEntry,
    #[error("entry {name} got {got} bytes with CRC-32 {got_crc:08x}; its header says {want} with {want_crc:08x}")]
    EntryMismatch { name: String, want: u64, got: u64, want_crc: u32, got_crc: u32 },
    #[error("the archive would exceed what a zip without ZIP64 holds (4 GiB, 65,535 entries)")]
    TooLarge,
    #[error("entry name longer than 65,535 bytes")]
    NameTooLong,
}

struct Entry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
    time: u16,
    date: u16,
    mtime: Option<u32>,
}

struct Open {
    entry: Entry,
    hasher: crc32fast::Hasher,
    written: u64,
}

/// Builds one zip archive, handing its bytes out as they are produced.
#[derive(Default)]
pub struct ZipWriter {
    out: BytesMut,
    /// Bytes produced so far (taken or not): the next entry's offset.
    produced: u64,
    entries: Vec<Entry>,
    open: Option<Open>,
}

/// DOS date and time (local time by the format; we write UTC and add the extended timestamp).
/// Dates before 1980 (the format's epoch) become 1980-01-01.
fn dos_time(t: DateTime<Utc>) -> (u16, u16) {
    if t.year() < 1980 || t.year() > 2107 {
        return (0, (1 << 5) | 1);
    }
    let time = ((t.hour() << 11) | (t.minute() << 5) | (t.second() / 2)) as u16;
    let date = ((((t.year() - 1980) as u32) << 9) | (t.month() << 5) | t.day()) as u16;
    (time, date)
}

fn extra(mtime: Option<u32>) -> Vec<u8> {
    let Some(mtime) = mtime else { return Vec::new() };
    let mut field = Vec::with_capacity(9);
    field.extend_from_slice(&EXTENDED_TIMESTAMP.to_le_bytes());
    field.extend_from_slice(&5u16.to_le_bytes());
    field.push(1);
    field.extend_from_slice(&mtime.to_le_bytes());
    field
}

impl ZipWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes produced so far, taken or not.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Bytes produced and not yet taken.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    pub fn entries(&self) -> usize {
        self.entries.len() + usize::from(self.open.is_some())
    }

    /// Hands out everything produced since the last call.
    pub fn take(&mut self) -> Bytes {
        self.out.split().freeze()
    }

    /// Whether an entry of `size` bytes named `name` still fits, with room for `reserve`
    /// more bytes (the central directory and a manifest) after it.
    pub fn fits(&self, name: &str, size: u64, reserve: u64) -> bool {
        let header = 30 + 46 + 2 * (name.len() as u64 + 9);
        self.entries.len() < MAX_ENTRIES - 1
            && self.produced + header + size + self.central_size() + reserve < MAX_ARCHIVE_BYTES
    }

    fn central_size(&self) -> u64 {
        self.entries.iter().map(|e| 46 + e.name.len() as u64 + 9).sum::<u64>() + 22
    }

    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.produced += bytes.len() as u64;
    }

    /// Opens an entry of `size` bytes whose CRC-32 is `crc`: its bytes follow through
    /// [`ZipWriter::write`], and [`ZipWriter::finish_entry`] checks they were those.
    pub fn start_entry(&mut self, name: &str, modified: DateTime<Utc>, size: u64, crc: u32) -> Result<(), ZipError> {
        if self.open.is_some() {
            return Err(ZipError::EntryOpen);
        }
        let name_len = u16::try_from(name.len()).map_err(|_| ZipError::NameTooLong)?;
        if !self.fits(name, size, 0) {
            return Err(ZipError::TooLarge);
        }
        let size32 = u32::try_from(size).map_err(|_| ZipError::TooLarge)?;
        let offset = u32::try_from(self.produced).map_err(|_| ZipError::TooLarge)?;
        let (time, date) = dos_time(modified);
        let mtime = u32::try_from(modified.timestamp()).ok();
        let extra = extra(mtime);
        let mut header = BytesMut::with_capacity(30 + name.len() + extra.len());
        header.put_u32_le(LOCAL_HEADER);
        header.put_u16_le(VERSION_NEEDED);
        header.put_u16_le(FLAG_UTF8);
        header.put_u16_le(0); // stored
        header.put_u16_le(time);
        header.put_u16_le(date);
        header.put_u32_le(crc);
        header.put_u32_le(size32);
        header.put_u32_le(size32);
        header.put_u16_le(name_len);
        header.put_u16_le(extra.len() as u16);
        header.put_slice(name.as_bytes());
        header.put_slice(&extra);
        self.put(&header);
        let entry = Entry { name: name.to_owned(), crc, size: size32, offset, time, date, mtime };
        self.open = Some(Open { entry, hasher: crc32fast::Hasher::new(), written: 0 });
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), ZipError> {
        let open = self.open.as_mut().ok_or(ZipError::NoEntry)?;
        open.hasher.update(data);
        open.written += data.len() as u64;
        self.put(data);
        Ok(())
    }

    /// Closes the open entry; its bytes must be exactly the size and CRC-32 its header gave
    /// (otherwise the archive is broken and must be abandoned).
    pub fn finish_entry(&mut self) -> Result<(), ZipError> {
        let open = self.open.take().ok_or(ZipError::NoEntry)?;
        let got_crc = open.hasher.finalize();
        if open.written != u64::from(open.entry.size) || got_crc != open.entry.crc {
            return Err(ZipError::EntryMismatch {
                name: open.entry.name,
                want: u64::from(open.entry.size),
                got: open.written,
                want_crc: open.entry.crc,
                got_crc,
            });
        }
        self.entries.push(open.entry);
        Ok(())
    }

    /// One whole entry.
    pub fn add(&mut self, name: &str, modified: DateTime<Utc>, data: &[u8]) -> Result<(), ZipError> {
        self.start_entry(name, modified, data.len() as u64, crc32fast::hash(data))?;
        self.write(data)?;
        self.finish_entry()
    }

    /// Writes the central directory and its end record. The archive is complete once the
    /// caller has taken what remains.
    pub fn finish(&mut self) -> Result<(), ZipError> {
        if self.open.is_some() {
            return Err(ZipError::EntryOpen);
        }
        let start = u32::try_from(self.produced).map_err(|_| ZipError::TooLarge)?;
        let count = u16::try_from(self.entries.len()).map_err(|_| ZipError::TooLarge)?;
        let mut central = BytesMut::new();
        for e in &self.entries {
            let extra = extra(e.mtime);
            central.put_u32_le(CENTRAL_HEADER);
            central.put_u16_le(VERSION_MADE_BY);
            central.put_u16_le(VERSION_NEEDED);
            central.put_u16_le(FLAG_UTF8);
            central.put_u16_le(0);
            central.put_u16_le(e.time);
            central.put_u16_le(e.date);
            central.put_u32_le(e.crc);
            central.put_u32_le(e.size);
            central.put_u32_le(e.size);
            central.put_u16_le(e.name.len() as u16);
            central.put_u16_le(extra.len() as u16);
            central.put_u16_le(0); // comment
            central.put_u16_le(0); // disk
            central.put_u16_le(0); // internal attributes
            central.put_u32_le(UNIX_FILE_MODE);
            central.put_u32_le(e.offset);
            central.put_slice(e.name.as_bytes());
            central.put_slice(&extra);
        }
        let size = u32::try_from(central.len()).map_err(|_| ZipError::TooLarge)?;
        if u64::from(start) + u64::from(size) + 22 > MAX_ARCHIVE_BYTES {
            return Err(ZipError::TooLarge);
        }
        central.put_u32_le(END_OF_CENTRAL_DIRECTORY);
        central.put_u16_le(0);
        central.put_u16_le(0);
        central.put_u16_le(count);
        central.put_u16_le(count);
        central.put_u32_le(size);
        central.put_u32_le(start);
        central.put_u16_le(0);
        self.put(&central);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    /// Year, month, day, hour, minute, second.
    type DosTime = (u16, u8, u8, u8, u8, u8);

    /// Reads an archive back with an independent reader: (name, bytes, DOS time) per entry.
    fn read_back(archive: &[u8]) -> Vec<(String, Vec<u8>, DosTime)> {
        let mut zip = ::zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a valid zip");
        (0..zip.len())
            .map(|i| {
                let mut file = zip.by_index(i).expect("entry");
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).expect("entry bytes (CRC checked by the reader)");
                let t = file.last_modified().expect("time");
                (file.name().to_owned(), bytes, (t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second()))
            })
            .collect()
    }

    #[test]
    fn entries_written_whole_or_streamed_read_back_byte_for_byte() {
        // Given entries of every shape: non-ASCII name, empty, binary, and one streamed in
        // pieces while the archive is drained in pieces (as the exporter uploads it)
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut zip = ZipWriter::new();
        let mut drained = Vec::new();
        zip.add("Inbox/2026-11-25T085907Z_Grüße_0a1b2c3d.eml", at("2026-11-25T08:59:07Z"), b"Subject: hi\r\n\r\nbody")
            .expect("add");
        zip.add("Inbox/empty.eml", at("2026-01-02T03:04:05Z"), b"").expect("add");
        drained.extend_from_slice(&zip.take());
        zip.start_entry("Archive/big.eml", at("1975-06-01T00:00:00Z"), big.len() as u64, crc32fast::hash(&big))
            .expect("start");
        for piece in big.chunks(70_000) {
            zip.write(piece).expect("write");
            drained.extend_from_slice(&zip.take());
        }
        zip.finish_entry().expect("finish entry");
        zip.add(crate::export::names::MANIFEST, at("2026-11-25T09:00:00Z"), b"{}").expect("manifest");
        zip.finish().expect("finish");
        drained.extend_from_slice(&zip.take());

        // When another implementation reads the archive
        let entries = read_back(&drained);

        // Then every entry is there in order with its exact bytes and its time (pre-1980
        // clamped to the format's epoch)
        assert_eq!(drained.len() as u64, zip.produced());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["Inbox/2026-11-25T085907Z_Grüße_0a1b2c3d.eml", "Inbox/empty.eml", "Archive/big.eml", "manifest.json"]
        );
        assert_eq!(entries[0].1, b"Subject: hi\r\n\r\nbody");
        assert!(entries[1].1.is_empty());
        assert_eq!(entries[2].1, big);
        assert_eq!(entries[0].2, (2026, 11, 25, 8, 59, 6), "DOS times have two-second steps");
        assert_eq!(entries[2].2, (1980, 1, 1, 0, 0, 0));
    }

    #[test]
    fn an_entry_whose_bytes_differ_from_its_header_is_refused() {
        // Given an entry announced with the CRC-32 of other bytes
        let mut zip = ZipWriter::new();
        zip.start_entry("a.eml", Utc::now(), 5, crc32fast::hash(b"hello")).expect("start");

        // When different bytes of the same length are written, closing it fails
        zip.write(b"HELLO").expect("write");
        assert!(matches!(zip.finish_entry(), Err(ZipError::EntryMismatch { .. })));

        // And an entry cannot be left open when the archive is finished
        let mut zip = ZipWriter::new();
        zip.start_entry("b.eml", Utc::now(), 1, 0).expect("start");
        assert_eq!(zip.finish(), Err(ZipError::EntryOpen));
    }

    #[test]
    fn an_archive_refuses_what_a_zip_without_zip64_cannot_hold() {
        let mut zip = ZipWriter::new();
        assert!(!zip.fits("huge.eml", MAX_ARCHIVE_BYTES, 0));
        assert_eq!(zip.start_entry("huge.eml", Utc::now(), MAX_ARCHIVE_BYTES, 0), Err(ZipError::TooLarge));
        assert!(zip.fits("small.eml", 1024, 64 * 1024 * 1024));
    }
}
