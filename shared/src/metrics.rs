//! Counts that alarms watch, as CloudWatch embedded metric format (EMF) lines on stdout:
//! Lambda turns each line into a metric of the `M365Backup` namespace, with no API call and no
//! permission. Off Lambda it is a log event instead.

use serde_json::json;

/// The namespace of every metric this crate emits (the template's alarms watch it).
pub const NAMESPACE: &str = "M365Backup";

/// Files recorded as Graph serves them, which differs from what it reports.
pub const AS_SERVED: &str = "VersionsRecordedAsServed";

/// Objects `verify` found missing, locked short of the retention rule, or altered.
pub const VAULT_PROBLEMS: &str = "VaultProblems";

/// Current versions whose lock the extension task could not extend (missing, refused).
pub const LOCK_EXTENSION_FAILURES: &str = "LockExtensionFailures";

/// Graph answers after which a tenant's drive work paused, every worker of it, because
/// SharePoint's resource-unit budget was down to its reserve. Not alarmed: this is pacing doing
/// its job (a 429 avoided); a steady count says the tenant's work outgrows its budget.
pub const GRAPH_BUDGET_PAUSES: &str = "GraphBudgetPauses";

/// The metrics a human must hear about: each has an alarm in `template.yaml` (checked by
/// `tests/tests/template_policy.rs`).
pub const ALARMED: [&str; 3] = [AS_SERVED, VAULT_PROBLEMS, LOCK_EXTENSION_FAILURES];

/// Adds `value` to the metric `name`: an EMF line on stdout in Lambda, a log event elsewhere
/// (the local stack and the demo print their own output).
pub fn count(name: &str, value: u64) {
    #[cfg(test)]
    RECORDED.with(|r| r.borrow_mut().push((name.to_owned(), value)));
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{}", line(name, value, chrono::Utc::now().timestamp_millis()));
    } else {
        tracing::info!(metric = name, value, "metric");
    }
}

#[cfg(test)]
thread_local! {
    /// What this thread emitted: a `#[tokio::test]` runs on one thread, so a test reads its
    /// own counts and no other test's.
    static RECORDED: std::cell::RefCell<Vec<(String, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The values of `name` this thread emitted, oldest first (tests only).
#[cfg(test)]
pub(crate) fn recorded(name: &str) -> Vec<u64> {
    RECORDED.with(|r| r.borrow().iter().filter(|(n, _)| n == name).map(|(_, v)| *v).collect())
}

fn line(name: &str, value: u64, timestamp_ms: i64) -> String {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [[]], "Metrics": [{"Name": name, "Unit": "Count"}]}],
        },
        name: value,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_one_embedded_metric_format_line() {
        let parsed: serde_json::Value = serde_json::from_str(&line("Things", 2, 1_700_000_000_000)).expect("json");
        assert_eq!(parsed["Things"], 2);
        assert_eq!(parsed["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        assert_eq!(parsed["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "Things");
        assert_eq!(parsed["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
