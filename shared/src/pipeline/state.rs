//! Graph's items as our `ItemState`: drive items, mail folders and messages, and what a
//! delta feed reports removed.

use crate::graph::{DriveItem, MailFolder, Message, Recipient};
use crate::model::{Address, ItemKind, ItemState, MailMeta};

/// Our view of a Graph drive item.
pub fn item_state(item: &DriveItem) -> ItemState {
    use crate::graph::ItemKind as G;
    ItemState {
        id: item.id.clone(),
        kind: match item.kind {
            G::File => ItemKind::File,
            G::Folder => ItemKind::Folder,
            G::Package => ItemKind::Package,
            G::Root => ItemKind::Root,
        },
        name: item.name.clone(),
        parent_id: item.parent_id.clone(),
        etag: item.etag.clone(),
        ctag: item.ctag.clone(),
        size: item.size,
        quick_xor_hash: item.quick_xor_hash.clone(),
        modified: item.last_modified,
        created: item.created,
        deleted: item.deleted,
        mail: None,
    }
}

/// An item that is gone: what a delta feed reports removed, or a held item found deleted.
pub(super) fn removed(id: String, kind: ItemKind, parent: Option<&str>) -> ItemState {
    ItemState {
        created: None,
        id,
        kind,
        name: None,
        parent_id: parent.map(str::to_owned),
        etag: None,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: None,
        deleted: true,
        mail: None,
    }
}

/// Our view of a Graph mail folder (its version marker is derived by the enumerator).
pub fn mail_folder_state(f: MailFolder) -> ItemState {
    ItemState {
        created: None,
        id: f.id,
        kind: ItemKind::MailFolder,
        name: Some(f.display_name),
        parent_id: f.parent_folder_id,
        etag: None,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: None,
        deleted: false,
        mail: None,
    }
}

/// Our view of a Graph message: `changeKey` is its version, the subject its name.
pub fn message_state(m: Message) -> ItemState {
    let address = |r: Recipient| Address { name: r.name, address: r.address };
    let meta = MailMeta {
        subject: m.subject.clone(),
        from: m.from.map(address),
        to: m.to.into_iter().map(address).collect(),
        cc: m.cc.into_iter().map(address).collect(),
        received: m.received,
        sent: m.sent,
        internet_message_id: m.internet_message_id,
        conversation_id: m.conversation_id,
        is_read: m.is_read,
        is_draft: m.is_draft,
        flag: m.flag_status,
        importance: m.importance,
        categories: m.categories,
        has_attachments: m.has_attachments,
        attachments: Vec::new(),
        attachment_fingerprint: None,
    };
    ItemState {
        created: None,
        id: m.id,
        kind: ItemKind::Message,
        name: m.subject,
        parent_id: m.parent_folder_id,
        etag: m.change_key,
        ctag: None,
        size: None,
        quick_xor_hash: None,
        modified: m.last_modified.or(m.received),
        deleted: false,
        mail: Some(meta),
    }
}
