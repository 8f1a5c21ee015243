//! Where a newly observed state goes in its item's history (ARCHITECTURE.md, Time).
//!
//! Rows of an item's history are ordered by their order time (`ItemVersion::order_time`: the
//! Microsoft 365 time, unless the row says otherwise) then their version marker; an as-of read
//! takes the last row at or before T, and the head is the last row. Microsoft 365 time alone
//! does not order an item's states: an item restored from the recycle bin comes back with its
//! old modification time (and often its old eTag), a file copied over with an older one gets
//! an older time, and two edits in one second share theirs. So a state is placed by what we
//! observed: one that Graph reported after the head's state, whose Microsoft 365 time does not
//! put it after the head, is placed just after the head, at the time we observed it ("current
//! again"); one known to precede the head within the same instant is placed just before it.

use chrono::{DateTime, Duration, Utc};

use crate::model::ItemVersion;

/// The smallest step of the catalog's order (it keeps milliseconds).
const TICK: Duration = Duration::milliseconds(1);

/// Sets `new.current_from` (and a note) when its Microsoft 365 time would put it on the wrong
/// side of the item's head; leaves it at its Microsoft 365 time otherwise.
pub(super) fn place(head: Option<&ItemVersion>, new: &mut ItemVersion) {
    let Some(head) = head else { return };
    let (new_ms, head_ms) = (millis(new.modified), millis(head.order_time()));
    let natural_after = (new_ms, new.version.as_str()) > (head_ms, head.version.as_str());
    if new.version == head.version && new.deleted == head.deleted {
        // The head's own state, recorded again (verified now, or served as it is): a row of
        // its own after the head, or nothing new if it was observed no later.
        if new.observed() > head.observed() {
            new.current_from = Some(new.observed().max(head.order_time() + TICK));
        }
        return;
    }
    let later = match new_ms.cmp(&head_ms) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Equal => {
            etag_number(&new.version, &head.version).unwrap_or_else(|| new.observed() > head.observed())
        }
        std::cmp::Ordering::Less => new.observed() > head.observed(),
    };
    match (later, natural_after) {
        (true, false) => {
            new.current_from = Some(again_at(new, head));
            new.note.get_or_insert_with(|| "current again: Graph reported this state after the one held".to_owned());
        }
        (false, true) => {
            // Same instant, known to be the earlier state: just before the head.
            new.current_from = Some(new.modified - TICK);
        }
        _ => {}
    }
}

/// Just after the head: when we observed the new state, or one tick past the head when the
/// head's place is later than that (a Microsoft 365 clock ahead of ours, or a tie).
fn again_at(new: &ItemVersion, head: &ItemVersion) -> DateTime<Utc> {
    let after_head = head.order_time() + TICK;
    if millis(new.modified) == millis(head.order_time()) {
        return after_head;
    }
    new.observed().max(after_head)
}

/// Whether `new` is the later of two eTags of the form `{guid},N` with the same guid; `None`
/// when either does not parse so (eTags are opaque: the number only breaks ties).
fn etag_number(new: &str, head: &str) -> Option<bool> {
    let parse = |etag: &str| {
        let (guid, n) = etag.trim_matches('"').rsplit_once(',')?;
        let guid = guid.strip_prefix('{')?.strip_suffix('}')?;
        Some((guid.to_ascii_lowercase(), n.parse::<u64>().ok()?))
    };
    let ((g1, n1), (g2, n2)) = (parse(new)?, parse(head)?);
    (g1 == g2 && n1 != n2).then_some(n1 > n2)
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerId, ItemKind, SCHEMA_VERSION, Verification};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn state(version: &str, modified: &str, observed: &str) -> ItemVersion {
        ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: ContainerId::new("t", "d").item("i"),
            version: version.to_owned(),
            kind: ItemKind::File,
            name: None,
            parent_id: None,
            ctag: None,
            modified: at(modified),
            captured_at: at(observed),
            deleted: false,
            content: None,
            verification: Verification::QuickXor,
            mail: None,
            observed_at: Some(at(observed)),
            current_from: None,
            note: None,
        }
    }

    #[test]
    fn a_later_modification_keeps_its_microsoft_365_time() {
        let head = state("a", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z");
        let mut new = state("b", "2024-01-02T00:00:00Z", "2024-01-02T00:00:05Z");
        place(Some(&head), &mut new);
        assert_eq!(new.current_from, None);
    }

    #[test]
    fn a_state_observed_later_with_an_older_time_is_current_again_from_its_observation() {
        let head = state("deleted@x", "2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z");
        let mut back = state("a", "2024-01-01T00:00:00Z", "2024-03-05T10:00:00Z");
        place(Some(&head), &mut back);
        assert_eq!(back.current_from, Some(at("2024-03-05T10:00:00Z")));
        assert!(back.order_time() > head.order_time());
    }

    #[test]
    fn a_late_job_for_an_older_state_stays_history() {
        let head = state("b", "2024-01-02T00:00:00Z", "2024-01-02T00:00:05Z");
        let mut old = state("a", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z");
        place(Some(&head), &mut old);
        assert_eq!(old.current_from, None);
    }

    #[test]
    fn ties_are_broken_by_the_etag_number_only_when_both_parse() {
        let head = state("\"{AB12},9\"", "2024-01-01T00:00:00Z", "2024-01-01T00:00:09Z");
        // Observed earlier, but its number says it is later (though ",10" sorts before ",9"):
        // it goes just after the head.
        let mut new = state("\"{AB12},10\"", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z");
        place(Some(&head), &mut new);
        assert_eq!(new.current_from, Some(at("2024-01-01T00:00:00.001Z")));
        // Opaque markers fall back to the order of observation: "b" sorts after "a" but was
        // observed first, so it goes just before.
        let head = state("a", "2024-01-01T00:00:00Z", "2024-01-01T00:00:09Z");
        let mut earlier = state("b", "2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z");
        place(Some(&head), &mut earlier);
        assert_eq!(earlier.current_from, Some(at("2023-12-31T23:59:59.999Z")));
    }

    #[test]
    fn the_head_state_recorded_again_later_gets_a_row_of_its_own() {
        let head = state("a", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z");
        let mut again = state("a", "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z");
        place(Some(&head), &mut again);
        assert_eq!(again.current_from, Some(at("2024-02-01T00:00:00Z")));
        assert_ne!(again.row_id(), head.row_id());
        let mut redelivered = state("a", "2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z");
        place(Some(&head), &mut redelivered);
        assert_eq!(redelivered.current_from, None);
    }
}
