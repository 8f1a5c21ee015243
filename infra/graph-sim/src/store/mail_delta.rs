//! Delta over a mailbox's change log: which messages a folder gained or
//! lost, and which folders changed, between two change sequence numbers.

use std::collections::HashSet;

use super::mail::Mailbox;

/// An entry of a message delta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDelta {
    Upsert(String),
    /// Gone from the folder; the id the client knew it by (immutable, REST).
    Removed(String, String),
}

/// An entry of a folder delta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderDelta {
    Upsert(String),
    Removed(String),
}

impl Mailbox {
    /// Message changes of `folder` in `(from, upto]`: messages there at
    /// `upto`, then those that were there at `from` and left.
    pub fn message_changes(&self, folder: &str, from: u64, upto: u64) -> Vec<MessageDelta> {
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for imm in changed_between(&self.message_log, from, upto) {
            let Some(m) = self.any_message(&imm) else {
                continue;
            };
            let now = m.at(upto).and_then(|p| p.folder.as_deref());
            if now == Some(folder) {
                live.push(MessageDelta::Upsert(imm));
            } else if let Some(then) = m.at(from).filter(|p| from > 0 && p.folder.as_deref() == Some(folder)) {
                gone.push(MessageDelta::Removed(imm.clone(), then.rest_id.clone()));
            }
        }
        live.extend(gone);
        live
    }

    /// Folder changes in `(from, upto]`, every level, parents first, then
    /// folders deleted since `from`.
    pub fn folder_changes(&self, from: u64, upto: u64) -> Vec<FolderDelta> {
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for id in changed_between(&self.folder_log, from, upto) {
            let Some(f) = self.folders.iter().find(|f| f.id == id) else {
                continue;
            };
            if !f.deleted {
                live.push(id);
            } else if f.created_seq <= from {
                gone.push(FolderDelta::Removed(id));
            }
        }
        live.sort_by_key(|id| self.depth(id));
        live.into_iter().map(FolderDelta::Upsert).chain(gone).collect()
    }
}

/// Distinct ids changed in `(after, upto]`, in first-change order.
fn changed_between(log: &[(u64, String)], after: u64, upto: u64) -> Vec<String> {
    let start = log.partition_point(|(s, _)| *s <= after);
    let mut seen = HashSet::new();
    log[start..]
        .iter()
        .take_while(|(s, _)| *s <= upto)
        .filter(|(_, id)| seen.insert(id.as_str()))
        .map(|(_, id)| id.clone())
        .collect()
}
