//! Entry names for exported messages: `{folder path}/{received}_{subject}_{short id}.eml`.
//!
//! Folder names and subjects come from mailboxes, so from anyone who can send mail: a name
//! must never climb out of the extraction directory (`..`, absolute paths, drive letters,
//! backslashes), hide (leading dots), smuggle control or bidirectional-override characters,
//! collide with a Windows device name, or grow without bound. Names are unique in the archive
//! ignoring case (case-insensitive file systems would otherwise merge two files).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// Characters kept of one folder name, and of a subject.
pub const SEGMENT_CHARS: usize = 64;
pub const SUBJECT_CHARS: usize = 60;
/// The manifest's name at the archive's root, reserved.
pub const MANIFEST: &str = "manifest.json";

const WINDOWS_DEVICES: [&str; 22] = [
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8", "com9", "lpt1", "lpt2",
    "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// Invisible characters that reorder or hide text (bidirectional controls, zero-width
/// characters): a name using them can read as something else (`exe.pdf` shown for `fdp.exe`).
fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || is_deceptive(c) || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
}

/// One path segment: unsafe characters become `_`, surrounding spaces and dots go (so `..`
/// and `.hidden` cannot survive), at most `max_chars` characters, never empty, never a
/// Windows device name.
pub fn segment(raw: &str, max_chars: usize) -> String {
    let replaced: String = raw.chars().map(|c| if is_unsafe(c) { '_' } else { c }).collect();
    let trimmed = replaced.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let mut out: String = trimmed.chars().take(max_chars).collect();
    out.truncate(out.trim_end_matches(|c: char| c == '.' || c.is_whitespace()).len());
    if out.is_empty() {
        return "_".to_owned();
    }
    let stem = out.split('.').next().unwrap_or_default().to_ascii_lowercase();
    if WINDOWS_DEVICES.contains(&stem.as_str()) {
        out.insert(0, '_');
    }
    out
}

/// A folder's directory name. It never ends in `.eml`, so no directory can share its name
/// with a message file, and a top-level one is never the manifest's name.
fn folder_segment(raw: &str, top: bool) -> String {
    let mut s = segment(raw, SEGMENT_CHARS);
    let lower = s.to_lowercase();
    if lower.ends_with(".eml") || (top && lower == MANIFEST) {
        s.push('_');
    }
    s
}

/// Eight hex digits of the item id's SHA-256: tells apart messages with the same time and
/// subject, in characters every file system accepts (Graph ids are case-sensitive base64).
pub fn short_id(item_id: &str) -> String {
    hex::encode(&Sha256::digest(item_id.as_bytes())[..4])
}

/// Hands out unique entry names for one archive.
pub struct EntryNames {
    /// Lower-cased names handed out (and the manifest's).
    taken: HashSet<String>,
}

impl Default for EntryNames {
    fn default() -> Self {
        Self { taken: HashSet::from([MANIFEST.to_owned()]) }
    }
}

impl EntryNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The folder path as a directory prefix (`Inbox/Projects/`), each segment made safe.
    pub fn folder(path: &[String]) -> String {
        let mut out = String::new();
        for (i, name) in path.iter().enumerate() {
            out.push_str(&folder_segment(name, i == 0));
            out.push('/');
        }
        out
    }

    /// The entry name of one message, unique in this archive.
    pub fn message(
        &mut self,
        folder_path: &[String],
        received: Option<DateTime<Utc>>,
        subject: Option<&str>,
        item_id: &str,
    ) -> String {
        let when = received.map_or_else(|| "undated".to_owned(), |t| t.format("%Y-%m-%dT%H%M%SZ").to_string());
        let subject = segment(subject.filter(|s| !s.trim().is_empty()).unwrap_or("(no subject)"), SUBJECT_CHARS);
        let stem = format!("{}{when}_{subject}_{}", Self::folder(folder_path), short_id(item_id));
        let mut name = format!("{stem}.eml");
        let mut n = 2;
        while !self.taken.insert(name.to_lowercase()) {
            name = format!("{stem}-{n}.eml");
            n += 1;
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: &str) {
        assert_eq!(segment(raw, SUBJECT_CHARS), expected, "segment of {raw:?}");
    }

    #[test]
    fn hostile_segments_become_harmless_names() {
        check("..", "_");
        check(".", "_");
        check("", "_");
        check("   ", "_");
        check("../../etc/passwd", "_.._etc_passwd");
        check("/absolute", "_absolute");
        check("C:\\Windows\\system32", "C__Windows_system32");
        check("a\u{0}b\r\nc\td", "a_b__c_d");
        check("invoice\u{202e}fdp.exe", "invoice_fdp.exe");
        check(".hidden", "hidden");
        check("trailing dots...", "trailing dots");
        check("CON", "_CON");
        check("nul.txt", "_nul.txt");
        check("Re: what? <yes> | \"no\" *", "Re_ what_ _yes_ _ _no_ _");
        check("Grüße aus Zürich ✉", "Grüße aus Zürich ✉");
    }

    #[test]
    fn segments_are_bounded_in_characters_not_bytes() {
        let long = "é".repeat(500);
        let s = segment(&long, SUBJECT_CHARS);
        assert_eq!(s.chars().count(), SUBJECT_CHARS);
        assert!(s.chars().all(|c| c == 'é'));
        // Truncation cannot leave a trailing dot or space behind.
        let dotted = format!("{}. x", "a".repeat(SUBJECT_CHARS - 2));
        assert_eq!(segment(&dotted, SUBJECT_CHARS), "a".repeat(SUBJECT_CHARS - 2));
    }

    #[test]
    fn a_message_name_is_folder_time_subject_and_short_id() {
        // Given a message in Inbox/Projects received at a known moment
        let mut names = EntryNames::new();
        let at = DateTime::parse_from_rfc3339("2026-11-25T08:59:07Z").expect("time").with_timezone(&Utc);
        let path = vec!["Inbox".to_owned(), "Projects".to_owned()];

        // When it is named, Then the name says where, when and what, and ends in .eml
        let name = names.message(&path, Some(at), Some("Q3 plan / draft"), "AAMkAD=");
        assert_eq!(name, format!("Inbox/Projects/2026-11-25T085907Z_Q3 plan _ draft_{}.eml", short_id("AAMkAD=")));
        assert_eq!(short_id("AAMkAD=").len(), 8);
        // And a message without subject or date still gets a name
        let bare = names.message(&path, None, Some("  "), "x");
        assert!(bare.starts_with("Inbox/Projects/undated_(no subject)_"), "{bare}");
    }

    #[test]
    fn names_are_unique_ignoring_case_and_never_escape_or_shadow_the_manifest() {
        // Given hostile folder paths and two messages that would get the same name
        let mut names = EntryNames::new();
        let hostile = vec!["..".to_owned(), "/etc".to_owned(), "a\\..\\b".to_owned()];
        let top = vec!["manifest.json".to_owned(), "box.eml".to_owned()];

        // When they are named
        let a = names.message(&["Inbox".to_owned()], None, Some("Same"), "id");
        let b = names.message(&["INBOX".to_owned()], None, Some("same"), "id");
        let escaped = names.message(&hostile, None, Some(".."), "id2");
        let shadow = names.message(&top, None, None, "id3");

        // Then each is unique ignoring case, and none climbs out or shadows the manifest
        assert_ne!(a.to_lowercase(), b.to_lowercase());
        assert!(b.ends_with("-2.eml"), "{b}");
        for name in [&a, &b, &escaped, &shadow] {
            assert!(!name.starts_with('/'), "{name}");
            assert!(name.split('/').all(|s| s != ".." && s != "." && !s.is_empty()), "{name}");
            assert!(!name.contains('\\'), "{name}");
        }
        assert!(shadow.starts_with("manifest.json_/box.eml_/"), "{shadow}");
    }
}
