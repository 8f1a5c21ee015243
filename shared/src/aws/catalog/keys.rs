//! Every key of the catalog table, built here and nowhere else. Stored rows carry these
//! strings: a change of format is a data migration, not a refactor.
//!
//! | row | PK | SK | attributes |
//! |---|---|---|---|
//! | item version | `I#{tenant}#{drive}#{item}` | `V#{order}#{version}` | `doc` (ItemVersion JSON), `record` (ObjectRef JSON), `G1PK` = `VC#{tenant}#{drive}`, `G1SK` = `{item}#{order}#{version}`, and when it has a parent `G2PK` = `VP#{tenant}#{drive}#{parent}`, `G2SK` = `G1SK` |
//! | item head | `I#{tenant}#{drive}#{item}` | `HEAD` | `doc`, `record`, `modified` (its order time), `order` (its version row's SK), `locked_until` (how far the keeper locked the version's objects; removed when the head moves), `G1PK` = `H#{tenant}#{drive}`, `G1SK` = item id |
//! | sync state | `C#{tenant}#{drive}` | `SYNC` | `doc` (SyncState JSON) |
//! | full-scan marks | `C#{tenant}#{drive}` | `SEEN#{epoch}#{uuid}` | `marks` (comma-separated `seen_mark`s of up to 1,000 items), `expires` (N, TTL) |
//! | item failure | `C#{tenant}#{drive}` | `FAIL#{item}` | `item_id`, `reason`, `last_attempt`, `attempts` (N), `resolved` (BOOL) |
//! | container | `T#{tenant}` | `DRIVE#{drive}` or `MAILBOX#{user}` | `doc` (ContainerRecord JSON) |
//! | container by tag | `T#{tenant}` | `TAG#{tag}` (`ContainerId::tag`) | `container` (ContainerId JSON) |
//! | keeper run | `T#{tenant}` | `KEEPER#{task}` (`extend`, `verify`) | `doc` (KeeperRun JSON), `revision` (N) |
//! | SharePoint site | `T#{tenant}` | `SITE#{site id}` | `doc` (SiteRecord JSON) |
//! | sites delta | `T#{tenant}` | `SITES_DELTA` | `link` (the `/sites/delta` link) |
//! | unresolved drive or mailbox | `T#{tenant}` | `UNRESOLVED#{drive\|mailbox}#{user}` | `doc` (Unresolved JSON), `resolved` (BOOL) |
//! | throttle | `THROTTLE#{tenant}#{resource}` | `STATE` | `until` |
//! | concurrency slots | `SLOTS#{tenant}#{resource}` | `STATE` | `s0`..`sN`: each slot's lease end |
//! | restore job | `R#{job}` | `JOB` | `doc` (RestoreJob JSON as created), `status`, counters (N) `planned_items`, `planned_bytes`, `conflicts`, `restored`, `unchanged`, `skipped`, `failed`, `bytes_restored`; `G1PK` = `RJ#{tenant}`, `G1SK` = `{created_at}#{job}` |
//! | restore item report | `R#{job}` | `ITEM#{item}` | `doc` (RestoreItemReport JSON), `outcome`, `bytes` (N) |
//! | export part | `R#{job}` | `EXPORT#{part:05}` | `doc` (ExportPart JSON) |
//!
//! `{order}` is a version's order time (`ItemVersion::order_time`: its Microsoft 365 time, or
//! where a state that became current again was placed).
//! `{drive}` stands for the container's scoped id: a drive's Graph id, or `mailbox:{user id}`
//! for a mailbox (see `ContainerId::scoped_id`), so a mailbox's rows never meet a drive's.
//! Times are RFC 3339 UTC with milliseconds ([`sortable_time`]), so string order is time order.
//! Graph ids contain no `#`, so an item's rows are contiguous in `VC#`/`VP#` and `{item}$` is a
//! bound just past them (`$` sorts after `#`).

use chrono::{DateTime, SecondsFormat, Utc};

use crate::model::{ContainerId, ContainerKind, ItemKey, ItemVersion};

/// RFC 3339, UTC, milliseconds: lexicographic order is time order.
pub fn sortable_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Sort key of an item's head, of a throttle's and a slot row's state, of a job.
pub(super) const HEAD_SK: &str = "HEAD";
pub(super) const SYNC_SK: &str = "SYNC";
pub(super) const STATE_SK: &str = "STATE";
pub(super) const JOB_SK: &str = "JOB";

/// Sort key prefixes of the rows a query lists by prefix.
pub(super) const VERSION_PREFIX: &str = "V#";
pub(super) const FAILURE_PREFIX: &str = "FAIL#";
pub(super) const DRIVE_PREFIX: &str = "DRIVE#";
pub(super) const MAILBOX_PREFIX: &str = "MAILBOX#";
pub(super) const UNRESOLVED_PREFIX: &str = "UNRESOLVED#";
pub(super) const SITE_PREFIX: &str = "SITE#";
pub(super) const SITES_DELTA_SK: &str = "SITES_DELTA";
pub(super) const REPORT_PREFIX: &str = "ITEM#";
pub(super) const PART_PREFIX: &str = "EXPORT#";
/// Sorts after every `ITEM#...` and before `JOB`: the end of a job's reports.
pub(super) const REPORTS_END: &str = "ITEM$";

/// An item's partition: its versions and its head.
pub(super) fn item_pk(item: &ItemKey) -> String {
    format!("I#{}#{}#{}", item.container.tenant_id, item.container.scoped_id(), item.item_id)
}

pub(super) fn version_sk(modified: DateTime<Utc>, version: &str) -> String {
    format!("V#{}#{version}", sortable_time(modified))
}

/// Just past the last version modified within `at`'s millisecond: the bound of "as of `at`".
pub(super) fn versions_until_sk(at: DateTime<Utc>) -> String {
    format!("V#{}$", sortable_time(at))
}

/// A container's partition: its sync state and its items' failures.
pub(super) fn container_pk(c: &ContainerId) -> String {
    format!("C#{}#{}", c.tenant_id, c.scoped_id())
}

/// Prefix of the rows holding what the full scan `epoch` saw, in its container's partition.
pub(super) fn seen_prefix(epoch: &str) -> String {
    format!("SEEN#{epoch}#")
}

pub(super) fn failure_sk(item_id: &str) -> String {
    format!("{FAILURE_PREFIX}{item_id}")
}

/// A tenant's partition: its container registry.
pub(super) fn tenant_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}")
}

/// Sort key of the row finding a container by its [`ContainerId::tag`].
pub(super) fn tag_sk(tag: &str) -> String {
    format!("TAG#{tag}")
}

/// Sort key of a keeper task's run in its tenant's partition.
pub(super) fn keeper_sk(task: &str) -> String {
    format!("KEEPER#{task}")
}

/// Sort key of a user's unresolved drive or mailbox (`service`).
pub(super) fn unresolved_sk(service: &str, user_id: &str) -> String {
    format!("{UNRESOLVED_PREFIX}{service}#{user_id}")
}

/// Sort key of a container's registry row in its tenant's partition.
pub(super) fn registry_sk(c: &ContainerId) -> String {
    match c.kind {
        ContainerKind::Drive => format!("{DRIVE_PREFIX}{}", c.graph_id),
        ContainerKind::Mailbox => format!("{MAILBOX_PREFIX}{}", c.graph_id),
    }
}

/// Sort key of a SharePoint site's row (site ids hold `,` and `-`, never `#`).
pub(super) fn site_sk(site_id: &str) -> String {
    format!("{SITE_PREFIX}{site_id}")
}

pub(super) fn throttle_pk(tenant_id: &str, resource: &str) -> String {
    format!("THROTTLE#{tenant_id}#{resource}")
}

pub(super) fn slots_pk(tenant_id: &str, resource: &str) -> String {
    format!("SLOTS#{tenant_id}#{resource}")
}

/// The attribute of a slot row holding that slot's lease end.
pub(super) fn slot_attribute(slot: u32) -> String {
    format!("s{slot}")
}

/// A restore job's partition: the job, its reports and its export parts.
pub(super) fn job_pk(id: &str) -> String {
    format!("R#{id}")
}

pub(super) fn report_sk(item_id: &str) -> String {
    format!("{REPORT_PREFIX}{item_id}")
}

/// Zero-padded so parts list in order; `EXPORT#` sorts before `ITEM#`, outside the reports.
pub(super) fn part_sk(part: u32) -> String {
    format!("{PART_PREFIX}{part:05}")
}

/// `GSI1` partition of a container's heads; their `G1SK` is the item id.
pub(super) fn heads_g1pk(c: &ContainerId) -> String {
    format!("H#{}#{}", c.tenant_id, c.scoped_id())
}

/// `GSI1` partition of a container's versions.
pub(super) fn versions_g1pk(c: &ContainerId) -> String {
    format!("VC#{}#{}", c.tenant_id, c.scoped_id())
}

/// `GSI2` partition of the versions that had `parent_id` as parent.
pub(super) fn children_g2pk(c: &ContainerId, parent_id: &str) -> String {
    format!("VP#{}#{}#{parent_id}", c.tenant_id, c.scoped_id())
}

/// Sort key of a version in `VC#` and `VP#`: grouped by item, oldest first within an item.
pub(super) fn version_index_sk(version: &ItemVersion) -> String {
    format!("{}#{}#{}", version.key.item_id, sortable_time(version.order_time()), version.version)
}

/// Just past every `VC#`/`VP#` row of `item_id`.
pub(super) fn after_item_index_sk(item_id: &str) -> String {
    format!("{item_id}$")
}

/// `GSI1` partition of a tenant's restore jobs.
pub(super) fn jobs_g1pk(tenant_id: &str) -> String {
    format!("RJ#{tenant_id}")
}

/// The row listing a tenant's active restore jobs (sort key [`STATE_SK`]): not indexed.
pub(super) fn active_jobs_pk(tenant_id: &str) -> String {
    format!("RJA#{tenant_id}")
}

/// A job's sort key in `RJ#`: by creation time.
pub(super) fn job_g1sk(created_at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", sortable_time(created_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ItemKind, SCHEMA_VERSION, Verification};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("valid time").with_timezone(&Utc)
    }

    #[test]
    fn every_key_keeps_the_format_of_the_rows_already_stored() {
        let drive = ContainerId::new("t1", "b!d1");
        let mailbox = ContainerId::mailbox("t1", "u1");
        let t = at("2024-05-01T10:00:00.123456Z");
        let version = ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: drive.item("i1"),
            version: "\"{E},2\"".to_owned(),
            kind: ItemKind::File,
            name: None,
            parent_id: None,
            ctag: None,
            modified: t,
            captured_at: t,
            deleted: false,
            content: None,
            verification: Verification::Unverified,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        };
        let keys = [
            (item_pk(&drive.item("i1")), "I#t1#b!d1#i1"),
            (item_pk(&mailbox.item("m1")), "I#t1#mailbox:u1#m1"),
            (version_sk(t, "\"{E},2\""), "V#2024-05-01T10:00:00.123Z#\"{E},2\""),
            (versions_until_sk(t), "V#2024-05-01T10:00:00.123Z$"),
            (container_pk(&drive), "C#t1#b!d1"),
            (failure_sk("i1"), "FAIL#i1"),
            (tenant_pk("t1"), "T#t1"),
            (registry_sk(&drive), "DRIVE#b!d1"),
            (registry_sk(&mailbox), "MAILBOX#u1"),
            (throttle_pk("t1", "mailbox.u1"), "THROTTLE#t1#mailbox.u1"),
            (slots_pk("t1", "mailbox.u1"), "SLOTS#t1#mailbox.u1"),
            (slot_attribute(3), "s3"),
            (job_pk("j1"), "R#j1"),
            (report_sk("i1"), "ITEM#i1"),
            (part_sk(7), "EXPORT#00007"),
            (heads_g1pk(&drive), "H#t1#b!d1"),
            (versions_g1pk(&drive), "VC#t1#b!d1"),
            (children_g2pk(&drive, "p1"), "VP#t1#b!d1#p1"),
            (version_index_sk(&version), "i1#2024-05-01T10:00:00.123Z#\"{E},2\""),
            (after_item_index_sk("i1"), "i1$"),
            (jobs_g1pk("t1"), "RJ#t1"),
            (job_g1sk(t, "j1"), "2024-05-01T10:00:00.123Z#j1"),
            (active_jobs_pk("t1"), "RJA#t1"),
        ];
        for (built, stored) in keys {
            assert_eq!(built, stored);
        }
        let constants = [HEAD_SK, SYNC_SK, STATE_SK, JOB_SK, VERSION_PREFIX, REPORTS_END];
        assert_eq!(constants, ["HEAD", "SYNC", "STATE", "JOB", "V#", "ITEM$"]);
        assert_eq!(
            [FAILURE_PREFIX, DRIVE_PREFIX, MAILBOX_PREFIX, REPORT_PREFIX, PART_PREFIX],
            ["FAIL#", "DRIVE#", "MAILBOX#", "ITEM#", "EXPORT#"]
        );
    }

    #[test]
    fn version_keys_sort_by_time_and_as_of_bound_includes_the_same_millisecond() {
        let t = at("2024-05-01T10:00:00.123456Z");
        let same_ms = version_sk(t, "\"{ZZZ},9\"");
        let earlier = version_sk(at("2024-05-01T09:59:59.999Z"), "\"{AAA},1\"");
        let later = version_sk(at("2024-05-01T10:00:00.124Z"), "\"{000},1\"");
        let upper = versions_until_sk(t);
        assert!(earlier < same_ms && same_ms < later);
        assert!(same_ms <= upper, "{same_ms} within {upper}");
        assert!(later > upper, "{later} beyond {upper}");
        assert!(upper.as_str() > VERSION_PREFIX);
    }
}
