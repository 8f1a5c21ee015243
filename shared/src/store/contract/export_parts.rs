//! [`ExportParts`]: the completed zips of an export job.

use super::{at, job, report};
use crate::model::{ExportPart, RestoreOutcome};
use crate::store::{ExportParts, RestoreJobs};

contract_tests!(export_parts_are_recorded_once_listed_in_order_and_kept_out_of_the_reports);

async fn export_parts_are_recorded_once_listed_in_order_and_kept_out_of_the_reports(
    catalog: &(impl RestoreJobs + ExportParts),
) {
    // Given a job with one report
    catalog.create_restore_job(&job("j1", "2024-05-02T08:00:00Z")).await.expect("create");
    catalog.record_restore_outcome(&report("j1", "m1", RestoreOutcome::Restored), 1).await.expect("record");
    let part = |n: u32, sha: &str| ExportPart {
        part: n,
        of: 11,
        key: format!("exports/j1/part-{n}.zip"),
        bytes: u64::from(n) * 100,
        sha256: sha.to_owned(),
        messages: 1,
        failed: 0,
        completed_at: at("2024-05-02T09:00:00Z"),
    };

    // When parts 11, 2 and 1 are recorded, and part 2 again (a redelivered part task)
    for n in [11, 2, 1] {
        assert!(catalog.record_export_part("j1", &part(n, "first")).await.expect("record"));
    }
    let again = catalog.record_export_part("j1", &part(2, "second")).await.expect("record again");

    // Then the second record of part 2 changes nothing, parts list in part order, and the
    // report listing still holds the one report
    assert!(!again);
    let parts = catalog.export_parts("j1").await.expect("parts");
    let listed: Vec<(u32, &str)> = parts.iter().map(|p| (p.part, p.sha256.as_str())).collect();
    assert_eq!(listed, [(1, "first"), (2, "first"), (11, "first")]);
    assert_eq!(parts[2], part(11, "first"));
    let reports = catalog.restore_reports("j1", None, 10).await.expect("reports");
    assert_eq!(reports.items.iter().map(|r| r.item_id.as_str()).collect::<Vec<_>>(), ["m1"]);
    assert!(catalog.export_parts("j2").await.expect("none").is_empty());
}
