//! Delta feed computation (graph-facts §4). A delta request opens a paging
//! session holding the ordered item ids to emit; pages render each item's
//! *latest* state when served. Whenever a page is fetched, changes that
//! happened since the session last looked are appended, so an item changed
//! while the client is paging shows up again on a later page (Graph: "the same
//! item can appear more than once; the last occurrence wins"). The deltaLink
//! then carries the last change sequence the session has accounted for.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::ItemKind;
use super::tree::Drive;

/// How a drive answers a delta token it can no longer serve: `410 Gone` with one of
/// Graph's codes, with or without a `Location` that restarts a full enumeration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    pub code: ResyncCode,
    pub location: bool,
}

impl Default for Resync {
    fn default() -> Self {
        Self { code: ResyncCode::ResyncRequired, location: true }
    }
}

/// The codes of a drive delta 410 (graph-facts §4, §13.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncCode {
    ResyncRequired,
    /// Replace local state with the server's, deletions included.
    ApplyDifferences,
    /// Upload what the server lacks; keep both copies when unsure.
    UploadDifferences,
}

impl ResyncCode {
    pub fn parse(code: &str) -> Option<Self> {
        [Self::ResyncRequired, Self::ApplyDifferences, Self::UploadDifferences].into_iter().find(|c| c.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            Self::ResyncRequired => "resyncRequired",
            Self::ApplyDifferences => "resyncChangesApplyDifferences",
            Self::UploadDifferences => "resyncChangesUploadDifferences",
        }
    }
}

pub struct DeltaSession {
    pub drive_id: String,
    items: Vec<String>,
    positions: HashMap<String, usize>,
    pub observed_seq: u64,
    pub page_size: usize,
    pub last_used: Instant,
}

/// One page: the ids to render and where the next page starts.
pub struct Page {
    pub ids: Vec<String>,
    pub next: Option<usize>,
}

impl DeltaSession {
    pub fn new(drive: &Drive, items: Vec<String>, page_size: usize) -> Self {
        let positions = items.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        Self {
            drive_id: drive.id.clone(),
            items,
            positions,
            observed_seq: drive.seq,
            page_size: page_size.max(1),
            last_used: Instant::now(),
        }
    }

    pub fn page(&mut self, drive: &Drive, cursor: usize, duplicate: bool) -> Page {
        self.last_used = Instant::now();
        for id in drive.changed_between(self.observed_seq, drive.seq) {
            let pending = self.positions.get(&id).is_some_and(|&p| p >= cursor);
            if !pending {
                self.positions.insert(id.clone(), self.items.len());
                self.items.push(id);
            }
        }
        self.observed_seq = drive.seq;
        let start = cursor.min(self.items.len());
        let end = (start + self.page_size).min(self.items.len());
        let mut ids = Vec::with_capacity(end - start + 1);
        if duplicate && start > 0 {
            ids.push(self.items[start - 1].clone());
        }
        ids.extend(self.items[start..end].iter().cloned());
        Page { ids, next: (end < self.items.len()).then_some(end) }
    }
}

impl Drive {
    /// Every live item, root first, parents before children.
    pub fn full_order(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.items.len());
        let mut stack = vec![self.root_id.clone()];
        while let Some(id) = stack.pop() {
            stack.extend(self.live_children(&id).iter().rev().cloned());
            out.push(id);
        }
        out
    }

    /// Distinct item ids changed in `(after, upto]`, in first-change order.
    pub fn changed_between(&self, after: u64, upto: u64) -> Vec<String> {
        let start = self.log.partition_point(|(s, _)| *s <= after);
        let mut seen = HashSet::new();
        self.log[start..]
            .iter()
            .take_while(|(s, _)| *s <= upto)
            .filter(|(_, id)| seen.insert(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Items to report for a token at `since`: live changes (with their
    /// ancestors unless `exclude_parents`), parents first, then deletions of
    /// items that existed at `since`, deepest first.
    pub fn changes_since(&self, since: u64, exclude_parents: bool) -> Vec<String> {
        let changed = self.changed_between(since, self.seq);
        let mut live: Vec<String> = Vec::new();
        let mut deleted: Vec<String> = Vec::new();
        let mut included: HashSet<String> = HashSet::new();
        for id in changed {
            let Some(item) = self.items.get(&id) else {
                continue;
            };
            if item.deleted {
                if item.created_seq <= since && item.kind != ItemKind::Root && !item.deletion_unreported {
                    deleted.push(id);
                }
                continue;
            }
            if !exclude_parents {
                let mut chain = Vec::new();
                let mut cur = item.parent_id.clone();
                while let Some(p) = cur {
                    cur = self.items.get(&p).and_then(|i| i.parent_id.clone());
                    chain.push(p);
                }
                for p in chain.into_iter().rev() {
                    if included.insert(p.clone()) {
                        live.push(p);
                    }
                }
            }
            if included.insert(id.clone()) {
                live.push(id);
            }
        }
        live.sort_by_key(|id| self.depth(id));
        deleted.sort_by_key(|id| std::cmp::Reverse(self.depth(id)));
        live.extend(deleted);
        live
    }
}
