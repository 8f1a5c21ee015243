//! Deterministic mailboxes for `POST /admin/seed` (the `mail` section of a
//! user): nested custom folders and a hidden one, then messages spread over
//! two years before a fixed date, a third of them replies in threads
//! (`In-Reply-To`, `References`, shared conversation), some with attachments
//! or inline images, non-ASCII names and subjects (RFC 2047 on the wire),
//! and one message per requested large attachment. Same seed, same bytes.

use bytes::Bytes;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Deserialize;

use crate::mime_gen::{Attachment, Mailbox as Addr, MessageSpec};
use crate::store::ids::IdRng;
use crate::store::mail::{Mailbox, NewMessage};

fn small_attachments() -> u64 {
    64_000
}

/// `"mail": {"messages": N, "folders": M, "seed": S, "large_attachments": [bytes, ...],
/// "max_attachment_size": bytes}`.
#[derive(Debug, Deserialize, Default)]
pub struct SeedMail {
    #[serde(default)]
    pub messages: usize,
    #[serde(default)]
    pub folders: usize,
    pub seed: Option<u64>,
    /// One message in the Inbox per entry, carrying an attachment this large.
    #[serde(default)]
    pub large_attachments: Vec<u64>,
    #[serde(default = "small_attachments")]
    pub max_attachment_size: u64,
}

const PEOPLE: &[(&str, &str)] = &[
    ("Megan Bowen", "megan@fabrikam.test"),
    ("José Müller", "jose.muller@fabrikam.test"),
    ("Zoë Ångström", "zoe@northwind.test"),
    ("李雷", "li.lei@contoso.test"),
    ("Alex \"AJ\" Wilber", "alex@contoso.test"),
    ("Ольга Петрова", "olga@northwind.test"),
    ("", "noreply@service.test"),
    ("Patti Fernandez", "patti@fabrikam.test"),
];

const SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Réunion d'équipe — ordre du jour",
    "Invoice 4471 overdue",
    "会议纪要 (Q3)",
    "Größenänderung der Präsentation",
    "Lunch on Friday? 🍕",
    "Contract renewal",
    "Привет из Москвы",
    "Build failed: main #1042",
    "Travel booking confirmation",
    "Budget 2025 – final numbers",
    "Welcome aboard!",
];

const FOLDER_NAMES: &[&str] = &["Projects", "Receipts", "Clients", "Newsletters", "Travel", "Café Team", "Legal"];

const FILES: &[(&str, &str)] = &[
    ("report.pdf", "application/pdf"),
    ("Präsentation.pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
    ("budget.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("报告.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("notes.txt", "text/plain"),
    ("photo.jpg", "image/jpeg"),
];

/// A 1×1 PNG, for inline images.
const PIXEL_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xE9, 0xFA, 0xDC, 0xD8, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

fn pick<'a, T>(rng: &mut IdRng, list: &'a [T]) -> &'a T {
    &list[(rng.next_u64() % list.len() as u64) as usize]
}

fn person(rng: &mut IdRng) -> Addr {
    let (name, address) = pick(rng, PEOPLE);
    Addr::new(name, address)
}

/// Deterministic bytes of `size`.
pub fn filler(seed: u64, size: u64) -> Bytes {
    let mut rng = IdRng::seeded(seed);
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(size as usize);
    Bytes::from(out)
}

fn file(rng: &mut IdRng, size: u64) -> Attachment {
    let (name, content_type) = pick(rng, FILES);
    Attachment {
        id: String::new(),
        name: name.to_string(),
        content_type: content_type.to_string(),
        bytes: filler(rng.next_u64(), size),
        content_id: None,
        inline: false,
    }
}

struct Sent {
    message_id: String,
    references: Option<String>,
    conversation: String,
    subject: String,
    date: DateTime<Utc>,
}

/// The latest date seeded messages carry (fixed, so bytes never drift).
fn anchor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 2, 9, 30, 0).single().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub fn seed_mailbox(seed: u64, user_id: &str, upn: &str, display: &str, spec: &SeedMail) -> Mailbox {
    let salt = upn.bytes().fold(0x6d61_696c_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut rng = IdRng::seeded(spec.seed.unwrap_or(seed) ^ salt);
    let mut mb = Mailbox::new(user_id, &mut rng);
    let me = Addr::new(display, upn);
    let domain = upn.rsplit_once('@').map_or("contoso.test", |(_, d)| d).to_string();
    // Seeded names are unique per parent, so these creations cannot fail.
    let _ = mb.create_folder("msgfolderroot", "Sync Issues", true, &mut rng);
    let mut custom: Vec<(String, usize)> = Vec::new();
    for i in 0..spec.folders {
        let eligible: Vec<&(String, usize)> = custom.iter().filter(|(_, d)| *d < 3).collect();
        let (parent, depth) = if eligible.is_empty() || rng.chance(0.4) {
            let top = if rng.chance(0.7) { "inbox" } else { "archive" };
            (top.to_string(), 1)
        } else {
            let (p, d) = pick(&mut rng, &eligible);
            (p.clone(), d + 1)
        };
        let name = format!("{} {}", pick(&mut rng, FOLDER_NAMES), i + 1);
        if let Ok(id) = mb.create_folder(&parent, &name, false, &mut rng) {
            custom.push((id, depth));
        }
    }
    let mut sent: Vec<Sent> = Vec::new();
    for i in 0..spec.messages {
        let roll = rng.range(0, 99);
        let folder = match roll {
            0..=54 => "inbox".to_string(),
            55..=69 => "sentitems".to_string(),
            70..=77 => "archive".to_string(),
            78..=85 if !custom.is_empty() => pick(&mut rng, &custom).0.clone(),
            86..=89 => "deleteditems".to_string(),
            90..=93 => "junkemail".to_string(),
            94..=96 => "drafts".to_string(),
            _ => "inbox".to_string(),
        };
        let outgoing = folder == "sentitems" || folder == "drafts";
        let parent = (!sent.is_empty() && rng.chance(0.33)).then(|| (rng.next_u64() % sent.len() as u64) as usize);
        let mut date = anchor() - Duration::seconds(rng.range(0, 730 * 86_400) as i64);
        let mut m = MessageSpec {
            message_id: format!("<CA{:016X}.{i}@mail.{domain}>", rng.next_u64()),
            importance: if rng.chance(0.1) { "high" } else { "normal" }.to_string(),
            ..MessageSpec::default()
        };
        let mut conversation = None;
        match parent {
            Some(p) => {
                let prev = &sent[p];
                date = prev.date + Duration::seconds(rng.range(600, 3 * 86_400) as i64);
                m.subject = format!("RE: {}", prev.subject.trim_start_matches("RE: "));
                m.in_reply_to = Some(prev.message_id.clone());
                let refs = match &prev.references {
                    Some(r) => format!("{r} {}", prev.message_id),
                    None => prev.message_id.clone(),
                };
                m.references = Some(refs);
                conversation = Some(prev.conversation.clone());
            }
            None => m.subject = pick(&mut rng, SUBJECTS).to_string(),
        }
        let other = person(&mut rng);
        if outgoing {
            m.from = Some(me.clone());
            m.to = vec![other.clone()];
        } else {
            m.from = Some(other.clone());
            m.to = vec![me.clone()];
        }
        if rng.chance(0.3) {
            m.cc = vec![person(&mut rng)];
        }
        m.date = Some(date);
        let greeting = other.name.clone().unwrap_or_else(|| "there".into());
        let line = format!("Hi {greeting},\n\nPlease find the update below — merci, danke, 谢谢.\n\nMessage {i}.");
        m.text = Some(line.clone());
        let mut html = format!("<html><body><p>{}</p>", line.replace('\n', "<br>"));
        if i % 7 == 5 {
            let cid = format!("image{i}@{domain}");
            html.push_str(&format!("<img src=\"cid:{cid}\" alt=\"logo\">"));
            m.attachments.push(Attachment {
                id: String::new(),
                name: "logo.png".into(),
                content_type: "image/png".into(),
                bytes: Bytes::from_static(PIXEL_PNG),
                content_id: Some(cid),
                inline: true,
            });
        }
        html.push_str("</body></html>");
        m.html = Some(html);
        if i % 5 == 3 {
            for _ in 0..rng.range(1, 2) {
                let size = rng.range(200, spec.max_attachment_size.max(200));
                m.attachments.push(file(&mut rng, size));
            }
        }
        let new = NewMessage {
            spec: m.clone(),
            raw_mime: None,
            is_read: outgoing || !rng.chance(0.3),
            is_draft: folder == "drafts",
            flag: match rng.range(0, 19) {
                0 | 1 => "flagged",
                2 => "complete",
                _ => "notFlagged",
            }
            .to_string(),
            received: date,
            sent: Some(date - Duration::seconds(rng.range(1, 90) as i64)),
            conversation_id: conversation,
        };
        let new = with_attachment_ids(new);
        if let Ok(id) = mb.add_message(&folder, new, &mut rng) {
            let conversation = mb.message(&id).map(|x| x.conversation_id.clone()).unwrap_or_default();
            sent.push(Sent {
                message_id: m.message_id,
                references: m.references,
                conversation,
                subject: m.subject,
                date,
            });
        }
    }
    for (k, size) in spec.large_attachments.iter().enumerate() {
        let date = anchor() - Duration::hours(k as i64 + 1);
        let mut attachment = file(&mut rng, *size);
        attachment.name = format!("large-{}-{}", k + 1, attachment.name);
        let m = MessageSpec {
            subject: format!("Large attachment {} ({size} bytes)", k + 1),
            from: Some(person(&mut rng)),
            to: vec![me.clone()],
            date: Some(date),
            message_id: format!("<LARGE{:016X}.{k}@mail.{domain}>", rng.next_u64()),
            importance: "normal".into(),
            text: Some("The file is attached.".into()),
            attachments: vec![attachment],
            ..MessageSpec::default()
        };
        let new = NewMessage {
            spec: m,
            raw_mime: None,
            is_read: false,
            is_draft: false,
            flag: "notFlagged".into(),
            received: date,
            sent: Some(date),
            conversation_id: None,
        };
        let _ = mb.add_message("inbox", with_attachment_ids(new), &mut rng);
    }
    mb
}

/// Attachment ids are per message: `att-1`, `att-2`, ...
pub fn with_attachment_ids(mut new: NewMessage) -> NewMessage {
    for (i, a) in new.spec.attachments.iter_mut().enumerate() {
        a.id = format!("att-{}", i + 1);
    }
    new
}
