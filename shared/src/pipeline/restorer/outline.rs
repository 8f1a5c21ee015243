//! A restore plan's view of a container: per item, only what planning needs of its state at
//! T and now (parent, kind, name, size, a fingerprint of its bytes), read from the catalog a
//! page at a time. A million items take a few hundred bytes each, never whole versions.
//!
//! Ids are interned: an item is an index, its parent an index, its name a span of one string
//! of names. Scope, depth and path are computed over indexes, memoised, in linear time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{ItemKind, ItemVersion, RestoreJob, RestoreScope};
use crate::pipeline::PipelineError;
use crate::store::RestorerCatalog;

/// Items per catalog page a plan reads.
pub const PLAN_PAGE: usize = 1_000;
/// Parent chains longer than this are treated as broken (a cycle in bad data).
const MAX_DEPTH: usize = 10_000;

/// Which of an item's two states: as it was at the restore time, or as it is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    At,
    Now,
}

/// One state of an item: what a plan compares, counts and orders by.
#[derive(Clone, Copy, Debug)]
pub(super) struct State {
    pub(super) parent: Option<u32>,
    pub(super) kind: ItemKind,
    /// Bytes of its content (0 without content).
    pub(super) size: u64,
    /// The first 64 bits of its content's SHA-256 (0 without content): equal bytes, equal print.
    content: u64,
    /// Its name, a span of [`Outline::names`].
    name: (u32, u32),
}

/// The container at T and now, in indexes.
#[derive(Default)]
pub(super) struct Outline {
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u32>,
    at: Vec<Option<State>>,
    now: Vec<Option<State>>,
    names: String,
    /// Catalog pages read to build it.
    pub(super) pages: u64,
}

impl Outline {
    /// The container as of the job's time and, unless `at_only`, its heads now: alive items
    /// only (a tombstone means the item did not exist), the drive root left out.
    pub(super) async fn load(
        catalog: &dyn RestorerCatalog,
        job: &RestoreJob,
        at_only: bool,
    ) -> Result<Outline, PipelineError> {
        let mut outline = Outline::default();
        let mut cursor: Option<String> = None;
        loop {
            let page = catalog.container_as_of_page(&job.container, job.as_of, cursor.as_deref(), PLAN_PAGE).await?;
            outline.pages += 1;
            for v in page.items.iter().filter(|v| !v.deleted && v.kind != ItemKind::Root) {
                outline.add(Side::At, v);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if at_only {
            return Ok(outline);
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = catalog.heads_page(&job.container, cursor.as_deref(), PLAN_PAGE).await?;
            outline.pages += 1;
            for h in page.items.iter().filter(|h| !h.current.deleted && h.current.kind != ItemKind::Root) {
                outline.add(Side::Now, &h.current);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(outline)
    }

    /// Records `v` as the item's state on `side`.
    pub(super) fn add(&mut self, side: Side, v: &ItemVersion) {
        let item = self.intern(&v.key.item_id) as usize;
        let parent = v.parent_id.as_deref().map(|p| self.intern(p));
        let start = self.names.len();
        self.names.push_str(v.name.as_deref().unwrap_or_default());
        let name = (start as u32, (self.names.len() - start) as u32);
        let content = v.content.as_ref().map_or(0, |c| fingerprint(&c.sha256));
        let size = v.content.as_ref().map_or(0, |c| c.size);
        let state = State { parent, kind: v.kind, size, content, name };
        self.side_mut(side)[item] = Some(state);
    }

    fn intern(&mut self, id: &str) -> u32 {
        if let Some(i) = self.index.get(id) {
            return *i;
        }
        let i = self.ids.len() as u32;
        let id: Arc<str> = Arc::from(id);
        self.ids.push(id.clone());
        self.index.insert(id, i);
        self.at.push(None);
        self.now.push(None);
        i
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<Option<State>> {
        match side {
            Side::At => &mut self.at,
            Side::Now => &mut self.now,
        }
    }

    /// Items known to the outline (alive at T or now, or the parent of one).
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn id(&self, item: u32) -> &str {
        &self.ids[item as usize]
    }

    pub(super) fn find(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub(super) fn state(&self, side: Side, item: u32) -> Option<&State> {
        match side {
            Side::At => self.at[item as usize].as_ref(),
            Side::Now => self.now[item as usize].as_ref(),
        }
    }

    pub(super) fn name(&self, state: &State) -> &str {
        let (start, len) = (state.name.0 as usize, state.name.1 as usize);
        &self.names[start..start + len]
    }

    /// Whether the item's state now differs from its state at T (content, name or parent).
    pub(super) fn differs(&self, item: u32) -> bool {
        let (Some(at), Some(now)) = (self.state(Side::At, item), self.state(Side::Now, item)) else { return true };
        at.content != now.content || at.parent != now.parent || self.name(at) != self.name(now)
    }

    /// The items alive on `side` inside the scope (the scope item and its descendants there),
    /// in index order.
    pub(super) fn in_scope(&self, side: Side, scope: &RestoreScope) -> Vec<u32> {
        let alive = (0..self.len() as u32).filter(|i| self.state(side, *i).is_some());
        match scope {
            RestoreScope::Container => alive.collect(),
            RestoreScope::Item { item_id } => {
                let Some(top) = self.find(item_id) else { return Vec::new() };
                let inside = self.below(side, top);
                alive.filter(|i| inside[*i as usize]).collect()
            }
        }
    }

    /// For every item, whether it is `top` or descends from it on `side`.
    fn below(&self, side: Side, top: u32) -> Vec<bool> {
        // 0: not known yet, 1: inside, 2: outside.
        let mut known = vec![0u8; self.len()];
        known[top as usize] = 1;
        let mut chain = Vec::new();
        for start in 0..self.len() as u32 {
            let mut cur = Some(start);
            let mut verdict = 2;
            while let Some(c) = cur {
                match known[c as usize] {
                    0 if chain.len() < MAX_DEPTH => {
                        chain.push(c);
                        cur = self.state(side, c).and_then(|s| s.parent);
                    }
                    0 => break,
                    k => {
                        verdict = k;
                        break;
                    }
                }
            }
            for c in chain.drain(..) {
                known[c as usize] = verdict;
            }
        }
        known.into_iter().map(|k| k == 1).collect()
    }

    /// Every item's depth at T (an item whose parent has no state at T is at depth 1, as a
    /// child of the root is).
    pub(super) fn depths(&self) -> Vec<u32> {
        let mut depth: Vec<Option<u32>> = vec![None; self.len()];
        let mut chain = Vec::new();
        for start in 0..self.len() as u32 {
            let mut cur = start;
            let mut base = 0;
            loop {
                if let Some(d) = depth[cur as usize] {
                    base = d;
                    break;
                }
                let Some(state) = self.state(Side::At, cur) else { break };
                chain.push(cur);
                match state.parent {
                    Some(p) if chain.len() < MAX_DEPTH => cur = p,
                    _ => break,
                }
            }
            for c in chain.drain(..).rev() {
                base += 1;
                depth[c as usize] = Some(base);
            }
        }
        depth.into_iter().map(Option::unwrap_or_default).collect()
    }

    /// The item's path for a report: names at T (or now, for what did not exist at T) from
    /// the top of the container.
    pub(super) fn path(&self, item: u32) -> String {
        let mut parts = Vec::new();
        let mut cur = Some(item);
        while let Some(c) = cur {
            let Some(state) = self.state(Side::At, c).or_else(|| self.state(Side::Now, c)) else { break };
            parts.push(self.name(state));
            if parts.len() > MAX_DEPTH {
                break;
            }
            cur = state.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }
}

/// The first 64 bits of a hex SHA-256 (any other string: a hash of it).
fn fingerprint(sha256: &str) -> u64 {
    match sha256.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()) {
        Some(print) => print,
        None => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            sha256.hash(&mut hasher);
            hasher.finish()
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::{ContainerId, ContentRef, ObjectRef, SCHEMA_VERSION, Verification};

    pub(in super::super) fn version(id: &str, kind: ItemKind, name: &str, parent: &str) -> ItemVersion {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: ContainerId::new("t", "d").item(id),
            version: format!("{id}-1"),
            kind,
            name: Some(name.to_owned()),
            parent_id: Some(parent.to_owned()),
            ctag: None,
            modified: t,
            captured_at: t,
            deleted: false,
            content: None,
            verification: Verification::NoContent,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        }
    }

    pub(in super::super) fn outline(at: &[ItemVersion], now: &[ItemVersion]) -> Outline {
        let mut outline = Outline::default();
        at.iter().for_each(|v| outline.add(Side::At, v));
        now.iter().for_each(|v| outline.add(Side::Now, v));
        outline
    }

    fn with_bytes(v: ItemVersion, sha256: &str) -> ItemVersion {
        let object = ObjectRef { key: "k".into(), version_id: "1".into() };
        let content = ContentRef { object, size: 10, sha256: sha256.into(), quick_xor_hash: None };
        ItemVersion { content: Some(content), ..v }
    }

    fn ids(outline: &Outline, items: &[u32]) -> Vec<String> {
        let mut ids: Vec<String> = items.iter().map(|i| outline.id(*i).to_owned()).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_subtree_scope_depths_and_paths_follow_each_side_parents() {
        // Given at T: docs/a/b.txt and other/x.txt; now: x.txt moved under docs/a
        let (file, folder) = (ItemKind::File, ItemKind::Folder);
        let at = [
            version("docs", folder, "docs", "root"),
            version("a", folder, "a", "docs"),
            version("b", file, "b.txt", "a"),
            version("other", folder, "other", "root"),
            version("x", file, "x.txt", "other"),
        ];
        let mut now = at.to_vec();
        now[4] = version("x", file, "x.txt", "a");
        let outline = outline(&at, &now);
        let scope = RestoreScope::Item { item_id: "docs".into() };

        // Then the scope at T is docs and what was below it then; now it has x as well
        assert_eq!(ids(&outline, &outline.in_scope(Side::At, &scope)), ["a", "b", "docs"]);
        assert_eq!(ids(&outline, &outline.in_scope(Side::Now, &scope)), ["a", "b", "docs", "x"]);
        assert_eq!(outline.in_scope(Side::At, &RestoreScope::Container).len(), 5);
        assert!(outline.in_scope(Side::At, &RestoreScope::Item { item_id: "nowhere".into() }).is_empty());

        // And depths count from the root; paths are names at T
        let depths = outline.depths();
        let depth = |id: &str| depths[outline.find(id).expect("known") as usize];
        assert_eq!((depth("docs"), depth("a"), depth("b")), (1, 2, 3));
        assert_eq!(outline.path(outline.find("x").expect("x")), "/other/x.txt");
    }

    #[test]
    fn an_item_differs_when_its_bytes_name_or_folder_changed_and_only_then() {
        // Given four files at T and now: one untouched, one re-encrypted, one renamed, one moved
        let f = |id: &str, name: &str, parent: &str, sha: &str| {
            with_bytes(version(id, ItemKind::File, name, parent), &format!("{sha:0<64}"))
        };
        let at =
            [f("same", "s", "p", "aa"), f("enc", "e", "p", "bb"), f("ren", "r", "p", "cc"), f("mv", "m", "p", "dd")];
        let now =
            [f("same", "s", "p", "aa"), f("enc", "e", "p", "ff"), f("ren", "r2", "p", "cc"), f("mv", "m", "q", "dd")];
        let outline = outline(&at, &now);

        // Then only the untouched one is the same; one gone since T differs too
        let differs = |id: &str| outline.differs(outline.find(id).expect("known"));
        assert!(!differs("same"));
        assert!(differs("enc") && differs("ren") && differs("mv"));
        let gone = super::tests::outline(&at, &now[..1]);
        assert!(gone.differs(gone.find("enc").expect("known")));
    }

    #[test]
    fn a_cycle_in_bad_data_ends_instead_of_looping() {
        // Given two folders each the other's parent
        let at = [version("a", ItemKind::Folder, "a", "b"), version("b", ItemKind::Folder, "b", "a")];
        let outline = outline(&at, &[]);

        // Then scope, depth and path all finish
        let scope = RestoreScope::Item { item_id: "a".into() };
        assert_eq!(ids(&outline, &outline.in_scope(Side::At, &scope)), ["a", "b"]);
        assert!(outline.depths().iter().all(|d| *d >= 1));
        assert!(outline.path(0).len() > 1);
    }
}
