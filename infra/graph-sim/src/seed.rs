//! Deterministic tenant generation for `POST /admin/seed`: the same seed
//! yields the same user ids, drive ids, item ids, names and bytes. With
//! `hostile_names` it adds the names that break naive backup code but that
//! ODfB accepts: NFC/NFD twins in different folders, emoji, RTL scripts,
//! `a..b`, `..hidden`, literal `%2F`/`%00`, `~$` lock files, 255-char names,
//! paths close to the 400-char limit and zero-byte files.

use bytes::Bytes;
use serde::Deserialize;

use crate::content::{Content, ContentBlob};
use crate::error::GraphError;
use crate::seed_mail::{SeedMail, seed_mailbox};
use crate::store::ids::IdRng;
use crate::store::mail::Mailbox;
use crate::store::tree::{Drive, NewItem};
use crate::store::{ItemKind, User};

#[derive(Debug, Deserialize)]
pub struct SeedRequest {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// SharePoint sites, explicit and generated (see [`crate::seed_sites`]).
    #[serde(flatten)]
    pub sites: crate::seed_sites::SeedSites,
}

fn yes() -> bool {
    true
}
fn three() -> usize {
    3
}
fn hundred_k() -> u64 {
    100_000
}

#[derive(Debug, Deserialize)]
pub struct SeedUser {
    pub user_principal_name: String,
    pub display_name: Option<String>,
    #[serde(default = "yes")]
    pub has_drive: bool,
    #[serde(flatten)]
    pub drive: DriveSpec,
    #[serde(default = "yes")]
    pub has_mailbox: bool,
    #[serde(default = "yes")]
    pub licensed: bool,
    #[serde(default)]
    pub mail: SeedMail,
}

/// What a generated drive (a OneDrive or a document library) holds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DriveSpec {
    #[serde(default)]
    pub files: usize,
    #[serde(default)]
    pub folders: usize,
    #[serde(default = "three")]
    pub max_depth: usize,
    #[serde(default)]
    pub min_size: u64,
    #[serde(default = "hundred_k")]
    pub max_size: u64,
    #[serde(default)]
    pub large_files: Vec<LargeFile>,
    #[serde(default)]
    pub hostile_names: bool,
    /// A chain of folders ending in a file whose path is a few characters short of the
    /// 400-character limit (also part of `hostile_names`).
    #[serde(default)]
    pub long_paths: bool,
    #[serde(default)]
    pub onenote_packages: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LargeFile {
    pub name: String,
    pub size: u64,
}

pub(crate) const ADJECTIVES: &[&str] = &[
    "Quarterly",
    "Draft",
    "Final",
    "Annual",
    "Team",
    "Project",
    "Budget",
    "Meeting",
    "Client",
    "Internal",
    "Shared",
    "Archived",
    "Weekly",
    "Legal",
    "Marketing",
];
pub(crate) const NOUNS: &[&str] = &[
    "Report", "Notes", "Plan", "Summary", "Invoice", "Slides", "Contract", "Roadmap", "Minutes", "Forecast",
    "Proposal", "Photo", "Export", "Backlog", "Review",
];
const EXTS: &[&str] = &["docx", "xlsx", "pptx", "pdf", "txt", "csv", "png", "jpg", "zip", "json"];
const FOLDERS: &[&str] = &[
    "Documents",
    "Projects",
    "Finance",
    "Photos",
    "Archive",
    "Shared",
    "Clients",
    "Templates",
    "Reports",
    "Personal",
    "Design",
    "Contracts",
];

pub(crate) fn pick<'a>(rng: &mut IdRng, list: &[&'a str]) -> &'a str {
    list[(rng.next_u64() % list.len() as u64) as usize]
}

pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Creates `name` under `parent`, adding ` (n)` before the extension on a
/// case-insensitive clash; `None` if the name is rejected for another reason.
fn create_unique(
    drive: &mut Drive,
    parent: &str,
    name: &str,
    kind: ItemKind,
    content: Option<Content>,
    rng: &mut IdRng,
) -> Option<String> {
    let blob = content.map(ContentBlob::new);
    for n in 0..50 {
        let candidate = if n == 0 {
            name.to_string()
        } else {
            match name.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({n}).{ext}"),
                _ => format!("{name} ({n})"),
            }
        };
        let new = NewItem { name: candidate, kind, blob: blob.clone(), hash_visible: true };
        match drive.create(parent, new, rng) {
            Ok(id) => return Some(id),
            Err(GraphError { code, .. }) if code == "nameAlreadyExists" => continue,
            Err(_) => return None,
        }
    }
    None
}

/// One seeded user with their drive and mailbox, if they have them.
pub struct Seeded {
    pub user: User,
    pub drive: Option<Drive>,
    pub mailbox: Option<Mailbox>,
}

pub fn seed_user(seed: u64, spec: &SeedUser) -> Seeded {
    let (user, drive) = seed_user_drive(seed, spec);
    let mailbox = spec.has_mailbox.then(|| seed_mailbox(seed, &user.id, &user.upn, &user.display_name, &spec.mail));
    Seeded { user, drive, mailbox }
}

/// Builds one user (and drive, unless `has_drive` is false).
fn seed_user_drive(seed: u64, spec: &SeedUser) -> (User, Option<Drive>) {
    let mut rng = IdRng::seeded(seed ^ fnv(&spec.user_principal_name));
    let display = spec.display_name.clone().unwrap_or_else(|| spec.user_principal_name.clone());
    let mut user = User {
        id: rng.guid(),
        upn: spec.user_principal_name.clone(),
        display_name: display.clone(),
        drive_id: None,
        has_mailbox: spec.has_mailbox,
        licensed: spec.licensed,
    };
    if !spec.has_drive {
        return (user, None);
    }
    let drive_id = rng.drive_id();
    let mut drive = Drive::new(drive_id.clone(), user.id.clone(), display, &mut rng);
    user.drive_id = Some(drive_id);
    fill_drive(&mut drive, &spec.drive, &mut rng);
    (user, Some(drive))
}

/// Generates `spec`'s folders and files in `drive` (content is generated lazily on read).
pub fn fill_drive(drive: &mut Drive, spec: &DriveSpec, rng: &mut IdRng) {
    let root = drive.root_id.clone();
    let mut containers: Vec<(String, usize)> = vec![(root.clone(), 0)];
    for i in 0..spec.folders {
        let eligible: Vec<&(String, usize)> =
            containers.iter().filter(|(_, depth)| *depth < spec.max_depth.max(1)).collect();
        let (parent, depth) = eligible[(rng.next_u64() % eligible.len() as u64) as usize].clone();
        let name = format!("{} {}", pick(rng, FOLDERS), i + 1);
        if let Some(id) = create_unique(drive, &parent, &name, ItemKind::Folder, None, rng) {
            containers.push((id, depth + 1));
        }
    }
    for _ in 0..spec.files {
        let parent = containers[(rng.next_u64() % containers.len() as u64) as usize].0.clone();
        let name = format!("{} {} {}.{}", pick(rng, ADJECTIVES), pick(rng, NOUNS), rng.range(1, 999), pick(rng, EXTS));
        let content = Content::Generated { seed: rng.next_u64(), size: rng.range(spec.min_size, spec.max_size) };
        create_unique(drive, &parent, &name, ItemKind::File, Some(content), rng);
    }
    for large in &spec.large_files {
        let content = Content::Generated { seed: rng.next_u64(), size: large.size };
        create_unique(drive, &root, &large.name, ItemKind::File, Some(content), rng);
    }
    for k in 0..spec.onenote_packages {
        let name = format!("Notebook {}", k + 1);
        if let Some(pkg) = create_unique(drive, &root, &name, ItemKind::Package, None, rng) {
            for s in 0..2 {
                let content = Content::Generated { seed: rng.next_u64(), size: rng.range(1_000, 20_000) };
                let section = format!("Section {}.one", s + 1);
                create_unique(drive, &pkg, &section, ItemKind::File, Some(content), rng);
            }
        }
    }
    if spec.hostile_names {
        hostile(drive, rng);
    }
    if spec.long_paths || spec.hostile_names {
        long_path(drive, rng);
    }
}

fn small(rng: &mut IdRng) -> Option<Content> {
    Some(Content::Generated { seed: rng.next_u64(), size: rng.range(1, 4096) })
}

fn hostile(drive: &mut Drive, rng: &mut IdRng) {
    let root = drive.root_id.clone();
    let folder = |d: &mut Drive, parent: &str, name: &str, rng: &mut IdRng| {
        create_unique(d, parent, name, ItemKind::Folder, None, rng)
    };
    if let Some(nfc) = folder(drive, &root, "Unicode NFC", rng) {
        create_unique(drive, &nfc, "caf\u{e9}.txt", ItemKind::File, small(rng), rng);
    }
    if let Some(nfd) = folder(drive, &root, "Unicode NFD", rng) {
        create_unique(drive, &nfd, "cafe\u{301}.txt", ItemKind::File, small(rng), rng);
    }
    let hostile_root = folder(drive, &root, "Hostile names", rng).unwrap_or(root.clone());
    let long_name = format!("{}.txt", "L".repeat(251));
    let names = [
        "😀 smile.txt",
        "مرحبا بالعالم.txt",
        "שלום.docx",
        "日本語のファイル.txt",
        "a..b",
        "..hidden",
        "100%2F.txt",
        "null%00byte.txt",
        "percent %20 space.txt",
        "#hash & ampersand+plus.txt",
        "~$lock.docx",
        "file...v2.txt",
        "dots.in.the.middle.name.txt",
        long_name.as_str(),
    ];
    for n in names {
        create_unique(drive, &hostile_root, n, ItemKind::File, small(rng), rng);
    }
    folder(drive, &hostile_root, "📁 Photos 🎉", rng);
    let empty = Some(Content::Inline(Bytes::new()));
    create_unique(drive, &hostile_root, "empty.bin", ItemKind::File, empty, rng);
}

/// A chain of folders ending in a file a few characters short of the 400-char path limit.
fn long_path(drive: &mut Drive, rng: &mut IdRng) {
    let mut parent = drive.root_id.clone();
    let mut level = 0;
    loop {
        let path_len = drive.path_of(&parent).chars().count();
        let name = format!("deep-level-{level:02}-{}", "d".repeat(40));
        if path_len + 1 + name.len() > 340 {
            let remaining = 395usize.saturating_sub(path_len + 1 + 4);
            let file = format!("{}.txt", "f".repeat(remaining.clamp(1, 250)));
            create_unique(drive, &parent, &file, ItemKind::File, small(rng), rng);
            break;
        }
        match create_unique(drive, &parent, &name, ItemKind::Folder, None, rng) {
            Some(id) => parent = id,
            None => break,
        }
        level += 1;
    }
}
