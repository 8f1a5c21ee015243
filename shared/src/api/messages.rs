//! The `restores` queue's message: the API sends the plan step, the restorer fans the files
//! out to itself in `items` steps (an export's in `export_part` steps). Ids only, never names,
//! links or content.

use serde::{Deserialize, Serialize};

use crate::model::SCHEMA_VERSION;

/// Message of the `restores` queue.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RestoreTask {
    pub v: u32,
    pub job_id: String,
    pub step: RestoreStep,
}

/// What the restorer does with a job on this delivery.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreStep {
    /// Walk the scope as of the job's time, count items and bytes, create folders and fan
    /// the files out. A dry run stops after counting: the job stays a plan.
    Plan { dry_run: bool },
    /// Restore these items of the job's container (a chunk of the plan).
    Items { item_ids: Vec<String> },
    /// Export jobs: write zip `part` of `of`, holding the messages in scope whose ids lie in
    /// `[from, to)` in item order (`None`: unbounded). Ranges, not id lists, keep the message
    /// small whatever the part's size, and cover every message even if the catalog gained
    /// one since the plan.
    ExportPart {
        part: u32,
        of: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
}

impl RestoreTask {
    pub fn plan(job_id: impl Into<String>, dry_run: bool) -> Self {
        Self { v: SCHEMA_VERSION, job_id: job_id.into(), step: RestoreStep::Plan { dry_run } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_step_has_the_documented_wire_shape() {
        let json = serde_json::to_value(RestoreTask::plan("job-1", true)).expect("json");
        assert_eq!(json, serde_json::json!({"v": 1, "job_id": "job-1", "step": {"kind": "plan", "dry_run": true}}));
        let items: RestoreTask =
            serde_json::from_str(r#"{"v":1,"job_id":"j","step":{"kind":"items","item_ids":["a","b"]}}"#)
                .expect("parse");
        assert_eq!(items.step, RestoreStep::Items { item_ids: vec!["a".into(), "b".into()] });
        // An export part names its range; an open end is left out of the message.
        let part: RestoreTask =
            serde_json::from_str(r#"{"v":1,"job_id":"j","step":{"kind":"export_part","part":2,"of":3,"from":"m7"}}"#)
                .expect("parse");
        let step = RestoreStep::ExportPart { part: 2, of: 3, from: Some("m7".into()), to: None };
        assert_eq!(part.step, step);
        let json = serde_json::to_value(&step).expect("json");
        assert_eq!(json, serde_json::json!({"kind": "export_part", "part": 2, "of": 3, "from": "m7"}));
    }
}
