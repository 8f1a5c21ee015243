//! Restore jobs (`R#{job}` / `JOB`) and their per-item reports (`R#{job}` / `ITEM#{item}`).
//!
//! The job's document is written once; what changes lives in separate attributes (`status`,
//! the plan, the counters) so restorers update it with `SET`/`ADD` and never rewrite JSON. An
//! item's report and the counters it moves are one transaction, conditional on the report
//! being exactly as read: a crash cannot count an outcome without its report (or the
//! reverse), and of two deliveries of the same item racing, one wins and the other re-reads.
//!
//! Every change of the job row stamps `updated_at` (the progress heartbeat), and a status
//! moves only from the states the condition names: a cancelled or failed job never becomes
//! anything else. A tenant's active jobs are listed in one row (`RJA#{tenant}` / `STATE`, a
//! string set) that the watchdog reads and prunes: no index, so no lag.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{
    JOB_SK, REPORT_PREFIX, REPORTS_END, STATE_SK, active_jobs_pk, job_g1sk, job_pk, jobs_g1pk, report_sk, sortable_time,
};
use super::{
    DynamoCatalog, GSI1, Row, SERVICE, applied, attr_s, first_rows, json, key, parse_doc, query_error, s, sdk_error,
};
use crate::backoff::Backoff;
use crate::model::{RestoreItemReport, RestoreJob, RestoreOutcome, RestorePlan, RestoreStatus, SCHEMA_VERSION};
use crate::store::{ActiveJob, JobEnd, Listing, OutcomeCounts, Page, RestoreJobs, StoreError, outcome_replaces};

/// Attempts at recording one outcome when concurrent deliveries of the same item race.
const RECORD_ATTEMPTS: u32 = 6;
/// Numeric attributes of the job row, named as the [`RestoreJob`] fields they fill.
const COUNTERS: [&str; 8] =
    ["planned_items", "planned_bytes", "conflicts", "restored", "unchanged", "skipped", "failed", "bytes_restored"];

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The heartbeat stamped on every change of a job row: the catalog's own clock, as a
/// server-side timestamp would be.
fn stamp() -> AttributeValue {
    s(sortable_time(chrono::Utc::now()))
}

/// `#status IN (...)` over `statuses`, with the names and values it needs.
fn status_in(statuses: &[RestoreStatus]) -> Result<(String, Vec<(String, AttributeValue)>), StoreError> {
    let mut names = Vec::with_capacity(statuses.len());
    let mut values = Vec::with_capacity(statuses.len());
    for (i, status) in statuses.iter().enumerate() {
        names.push(format!(":from{i}"));
        values.push((format!(":from{i}"), s(variant_name(status)?)));
    }
    Ok((format!("#status IN ({})", names.join(", ")), values))
}

/// The job counter an outcome counts in. `CreatedAfter` items were not restored: skipped.
fn counter_of(outcome: RestoreOutcome) -> &'static str {
    match outcome {
        RestoreOutcome::Restored => "restored",
        RestoreOutcome::Unchanged => "unchanged",
        RestoreOutcome::Skipped | RestoreOutcome::CreatedAfter => "skipped",
        RestoreOutcome::Failed => "failed",
        RestoreOutcome::Conflict => "conflicts",
    }
}

/// The serde name of a unit enum variant (`completed_with_errors`), as stored in attributes.
fn variant_name<T: Serialize>(value: &T) -> Result<String, StoreError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        _ => Err(StoreError::Malformed("enum does not serialise to a name".to_owned())),
    }
}

fn parse_variant<T: DeserializeOwned>(row: &Row, name: &str) -> Result<T, StoreError> {
    let text = attr_s(row, name).ok_or_else(|| StoreError::Malformed(format!("restore row lacks `{name}`")))?;
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|e| StoreError::Malformed(format!("restore `{name}`: {e}")))
}

fn parse_job(row: &Row) -> Result<RestoreJob, StoreError> {
    let mut job: RestoreJob = parse_doc(row, "doc")?;
    if job.v > SCHEMA_VERSION {
        return Err(StoreError::Malformed(format!("restore job schema v{} is newer than this build", job.v)));
    }
    job.status = parse_variant(row, "status")?;
    job.reason = attr_s(row, "reason").map(str::to_owned);
    if let Some(updated) = attr_s(row, "updated_at") {
        let t = chrono::DateTime::parse_from_rfc3339(updated)
            .map_err(|e| StoreError::Malformed(format!("restore `updated_at`: {e}")))?;
        job.updated_at = Some(t.with_timezone(&chrono::Utc));
    }
    for name in COUNTERS {
        let Some(value) = row.get(name).and_then(|v| v.as_n().ok()) else { continue };
        // ADD can take a counter below zero only through a bug; show it as zero.
        let value = value
            .parse::<i64>()
            .map_err(|e| StoreError::Malformed(format!("restore counter `{name}`: {e}")))?
            .max(0)
            .unsigned_abs();
        let field = match name {
            "planned_items" => &mut job.planned_items,
            "planned_bytes" => &mut job.planned_bytes,
            "conflicts" => &mut job.conflicts,
            "restored" => &mut job.restored,
            "unchanged" => &mut job.unchanged,
            "skipped" => &mut job.skipped,
            "failed" => &mut job.failed,
            _ => &mut job.bytes_restored,
        };
        *field = value;
    }
    Ok(job)
}

/// An element of the active jobs' set: `{created}#{id}` (a string set holds strings only).
fn active_entry(job: &ActiveJob) -> String {
    format!("{}#{}", sortable_time(job.created_at), job.id)
}

fn parse_active(entry: &str) -> Result<ActiveJob, StoreError> {
    let malformed = || StoreError::Malformed(format!("active restore job entry `{entry}`"));
    let (created, id) = entry.split_once('#').ok_or_else(malformed)?;
    let created_at = chrono::DateTime::parse_from_rfc3339(created).map_err(|_| malformed())?;
    Ok(ActiveJob { id: id.to_owned(), created_at: created_at.with_timezone(&chrono::Utc) })
}

fn parse_report(row: &Row) -> Result<RestoreItemReport, StoreError> {
    parse_doc(row, "doc")
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound { key: format!("restore job {id}") }
}

fn request(e: impl std::fmt::Display) -> StoreError {
    StoreError::Malformed(format!("TransactWriteItems request: {e}"))
}

/// Which part of a cancelled transaction failed its condition: (report, job).
fn cancelled_conditions(err: &TransactWriteItemsError) -> Option<(bool, bool)> {
    let TransactWriteItemsError::TransactionCanceledException(e) = err else { return None };
    let failed = |i: usize| e.cancellation_reasons().get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed");
    Some((failed(0), failed(1)))
}

#[async_trait]
impl RestoreJobs for DynamoCatalog {
    async fn create_restore_job(&self, job: &RestoreJob) -> Result<(), StoreError> {
        let mut row = key(job_pk(&job.id), JOB_SK);
        row.insert("doc".to_owned(), json(job)?);
        row.insert("status".to_owned(), s(variant_name(&job.status)?));
        let values = [
            job.planned_items,
            job.planned_bytes,
            job.conflicts,
            job.restored,
            job.unchanged,
            job.skipped,
            job.failed,
            job.bytes_restored,
        ];
        for (name, value) in COUNTERS.into_iter().zip(values) {
            row.insert(name.to_owned(), n(value));
        }
        row.insert("G1PK".to_owned(), s(jobs_g1pk(&job.container.tenant_id)));
        row.insert("G1SK".to_owned(), s(job_g1sk(job.created_at, &job.id)));
        row.insert("updated_at".to_owned(), s(sortable_time(job.progressed_at())));
        // Listed as active first: a crash in between leaves an id the watchdog forgets.
        let active = ActiveJob { id: job.id.clone(), created_at: job.created_at };
        self.change_active(&job.container.tenant_id, "ADD", std::slice::from_ref(&active)).await?;
        if !self.put_new_row(row).await? {
            return Err(StoreError::AlreadyExists { key: format!("restore job {}", job.id) });
        }
        Ok(())
    }

    async fn restore_job(&self, id: &str) -> Result<Option<RestoreJob>, StoreError> {
        self.get_row(key(job_pk(id), JOB_SK), true).await?.as_ref().map(parse_job).transpose()
    }

    async fn list_restore_jobs(&self, tenant_id: &str, limit: usize) -> Result<Vec<RestoreJob>, StoreError> {
        let query = self
            .query()
            .index_name(GSI1)
            .key_condition_expression("G1PK = :p")
            .expression_attribute_values(":p", s(jobs_g1pk(tenant_id)))
            .scan_index_forward(false);
        first_rows(query, limit).await?.iter().map(parse_job).collect()
    }

    async fn set_restore_status(
        &self,
        id: &str,
        status: RestoreStatus,
        plan: Option<RestorePlan>,
    ) -> Result<bool, StoreError> {
        let (working, values) = status_in(&RestoreStatus::WORKING)?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(job_pk(id), JOB_SK)))
            .condition_expression(format!("attribute_exists(PK) AND {working}"))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":status", s(variant_name(&status)?))
            .expression_attribute_values(":updated", stamp());
        update = match plan {
            Some(plan) => update
                .update_expression(
                    "SET #status = :status, #updated = :updated, #items = :items, #bytes = :bytes, \
                     #conflicts = :conflicts",
                )
                .expression_attribute_names("#items", "planned_items")
                .expression_attribute_names("#bytes", "planned_bytes")
                .expression_attribute_names("#conflicts", "conflicts")
                .expression_attribute_values(":items", n(plan.items))
                .expression_attribute_values(":bytes", n(plan.bytes))
                .expression_attribute_values(":conflicts", n(plan.conflicts)),
            None => update.update_expression("SET #status = :status, #updated = :updated"),
        };
        self.applied_or_found(id, update.send().await).await
    }

    async fn end_restore_job(&self, id: &str, end: &JobEnd<'_>) -> Result<bool, StoreError> {
        let (from, values) = status_in(end.from)?;
        let mut condition = format!("attribute_exists(PK) AND {from}");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(job_pk(id), JOB_SK)))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .update_expression("SET #status = :status, #reason = :reason, #updated = :updated")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":status", s(variant_name(&end.to)?))
            .expression_attribute_values(":reason", s(end.reason.to_owned()))
            .expression_attribute_values(":updated", stamp());
        if let Some(since) = end.idle_since {
            // RFC 3339 at millisecond precision in UTC: string order is time order.
            condition.push_str(" AND (attribute_not_exists(#updated) OR #updated <= :since)");
            update = update.expression_attribute_values(":since", s(sortable_time(since)));
        }
        self.applied_or_found(id, update.condition_expression(condition).send().await).await
    }

    async fn active_restore_jobs(&self, tenant_id: &str) -> Result<Vec<ActiveJob>, StoreError> {
        let row = self.get_row(key(active_jobs_pk(tenant_id), STATE_SK), true).await?;
        let Some(entries) = row.as_ref().and_then(|r| r.get("jobs")).and_then(|v| v.as_ss().ok()) else {
            return Ok(Vec::new());
        };
        entries.iter().map(|e| parse_active(e)).collect()
    }

    async fn forget_restore_jobs(&self, tenant_id: &str, jobs: &[ActiveJob]) -> Result<(), StoreError> {
        self.change_active(tenant_id, "DELETE", jobs).await
    }

    async fn record_restore_outcome(&self, report: &RestoreItemReport, bytes: u64) -> Result<bool, StoreError> {
        let report_key = key(job_pk(&report.job_id), report_sk(&report.item_id));
        for attempt in 0..RECORD_ATTEMPTS {
            let recorded = match self.get_row(report_key.clone(), true).await? {
                Some(row) => Some(parse_variant::<RestoreOutcome>(&row, "outcome")?),
                None => None,
            };
            if !outcome_replaces(recorded, report.outcome) {
                return Ok(false);
            }
            let items = vec![
                self.report_put(report, bytes, recorded)?,
                self.counters_update(&report.job_id, report.outcome, recorded, bytes)?,
            ];
            let sent = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
            let err = match sent {
                Ok(_) => return Ok(true),
                Err(e) => e,
            };
            match err.as_service_error().and_then(cancelled_conditions) {
                Some((_, true)) => return Err(not_found(&report.job_id)),
                // Another delivery of this item got there first: decide again on what it wrote.
                Some((true, false)) => {}
                // Transaction conflicts with a concurrent update of the job row.
                Some((false, false)) => Backoff::AWS.sleep(attempt).await,
                None => return Err(sdk_error(SERVICE, "TransactWriteItems", err)),
            }
        }
        Err(StoreError::Service {
            service: SERVICE,
            message: format!("TransactWriteItems: outcome of an item still contended after {RECORD_ATTEMPTS} attempts"),
            retryable: true,
        })
    }

    async fn settle_restore_job(
        &self,
        id: &str,
        status: RestoreStatus,
        counts: OutcomeCounts,
    ) -> Result<bool, StoreError> {
        let (working, values) = status_in(&RestoreStatus::WORKING)?;
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(job_pk(id), JOB_SK)))
            .condition_expression(format!("attribute_exists(PK) AND {working}"))
            .set_expression_attribute_values(Some(values.into_iter().collect()))
            .update_expression("SET #status = :status, #updated = :updated, #r = :r, #u = :u, #s = :s, #f = :f")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":updated", stamp())
            .expression_attribute_names("#r", "restored")
            .expression_attribute_names("#u", "unchanged")
            .expression_attribute_names("#s", "skipped")
            .expression_attribute_names("#f", "failed")
            .expression_attribute_values(":status", s(variant_name(&status)?))
            .expression_attribute_values(":r", n(counts.restored))
            .expression_attribute_values(":u", n(counts.unchanged))
            .expression_attribute_values(":s", n(counts.skipped))
            .expression_attribute_values(":f", n(counts.failed))
            .send()
            .await;
        self.applied_or_found(id, sent).await
    }

    async fn restore_report(&self, job_id: &str, item_id: &str) -> Result<Option<RestoreItemReport>, StoreError> {
        self.get_row(key(job_pk(job_id), report_sk(item_id)), true).await?.as_ref().map(parse_report).transpose()
    }

    async fn restore_reports(
        &self,
        job_id: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RestoreItemReport>, StoreError> {
        let listing = Listing::restore_reports(job_id);
        let after = listing.resume(cursor)?;
        let limit = limit.max(1);
        // BETWEEN is inclusive: the row of the cursor's own item comes back first and is dropped.
        // `ITEM$` sorts after every `ITEM#...` and before `JOB`.
        let lower = after.as_deref().map_or_else(|| REPORT_PREFIX.to_owned(), report_sk);
        // The cursor resumes from a key condition on the last item handed out, not from a
        // LastEvaluatedKey, so the paginator serves every page. One more report than the page
        // tells whether there is a next one.
        let mut rows = self
            .query()
            .key_condition_expression("PK = :pk AND SK BETWEEN :lo AND :hi")
            .expression_attribute_values(":pk", s(job_pk(job_id)))
            .expression_attribute_values(":lo", s(lower.clone()))
            .expression_attribute_values(":hi", s(REPORTS_END))
            .consistent_read(true)
            .into_paginator()
            .page_size(i32::try_from(limit + 2).unwrap_or(i32::MAX))
            .items()
            .send();
        let mut reports = Vec::new();
        while reports.len() <= limit {
            let Some(row) = rows.try_next().await.map_err(query_error)? else { break };
            if attr_s(&row, "SK") != Some(lower.as_str()) {
                reports.push(parse_report(&row)?);
            }
        }
        let more = reports.len() > limit;
        reports.truncate(limit);
        let next = reports.last().filter(|_| more).map(|r| listing.cursor(&r.item_id));
        Ok(Page { items: reports, next })
    }
}

impl DynamoCatalog {
    /// True if a conditional update of job `id` applied; false if its condition failed on a
    /// row that exists; [`StoreError::NotFound`] if there is no row.
    async fn applied_or_found<T, E>(
        &self,
        id: &str,
        sent: Result<T, aws_sdk_dynamodb::error::SdkError<E>>,
    ) -> Result<bool, StoreError>
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if applied(sent, "UpdateItem")? {
            return Ok(true);
        }
        match self.get_row(key(job_pk(id), JOB_SK), true).await? {
            Some(_) => Ok(false),
            None => Err(not_found(id)),
        }
    }

    /// Adds ids to (`ADD`) or takes them off (`DELETE`) the tenant's active jobs.
    async fn change_active(&self, tenant_id: &str, action: &str, jobs: &[ActiveJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = jobs.iter().map(active_entry).collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(active_jobs_pk(tenant_id), STATE_SK)))
            .update_expression(format!("{action} #jobs :ids"))
            .expression_attribute_names("#jobs", "jobs")
            .expression_attribute_values(":ids", AttributeValue::Ss(ids))
            .send()
            .await
            .map_err(|e| sdk_error(SERVICE, "UpdateItem", e))?;
        Ok(())
    }

    /// The report row, conditional on the row being exactly as read (`recorded`).
    fn report_put(
        &self,
        report: &RestoreItemReport,
        bytes: u64,
        recorded: Option<RestoreOutcome>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut row = key(job_pk(&report.job_id), report_sk(&report.item_id));
        row.insert("doc".to_owned(), json(report)?);
        row.insert("outcome".to_owned(), s(variant_name(&report.outcome)?));
        row.insert("bytes".to_owned(), n(bytes));
        let put = Put::builder().table_name(&self.table).set_item(Some(row));
        let put = match recorded {
            None => put.condition_expression("attribute_not_exists(PK)"),
            Some(previous) => put
                .condition_expression("#outcome = :previous")
                .expression_attribute_names("#outcome", "outcome")
                .expression_attribute_values(":previous", s(variant_name(&previous)?)),
        };
        Ok(TransactWriteItem::builder().put(put.build().map_err(request)?).build())
    }

    /// Counts `outcome` (and un-counts `recorded`) on the job row, which must exist.
    fn counters_update(
        &self,
        job_id: &str,
        outcome: RestoreOutcome,
        recorded: Option<RestoreOutcome>,
        bytes: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut adds = vec!["#new :one"];
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(job_pk(job_id), JOB_SK)))
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#new", counter_of(outcome))
            .expression_attribute_values(":one", n(1));
        // `outcome_replaces` only ever replaces a failure, whose counter differs from `#new`.
        if let Some(previous) = recorded {
            adds.push("#previous :minus_one");
            update = update
                .expression_attribute_names("#previous", counter_of(previous))
                .expression_attribute_values(":minus_one", AttributeValue::N("-1".to_owned()));
        }
        if outcome == RestoreOutcome::Restored && bytes > 0 {
            adds.push("#bytes :bytes");
            update = update
                .expression_attribute_names("#bytes", "bytes_restored")
                .expression_attribute_values(":bytes", n(bytes));
        }
        let update = update
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":updated", stamp())
            .update_expression(format!("ADD {} SET #updated = :updated", adds.join(", ")))
            .build()
            .map_err(request)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
