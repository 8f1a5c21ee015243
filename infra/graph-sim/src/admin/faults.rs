//! Admin fault injection: `POST /admin/faults` adds one fault or sets one knob,
//! `DELETE /admin/faults` clears them all (see `crate::faults` for what each does).

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::parse;
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::faults::{ItemFault, Malformed, ServedBytes, TransportAction, TransportFault, UserErrors};
use crate::store::delta::{Resync, ResyncCode};
use crate::store::mail::MailDeltaExpiry;

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultReq {
    Throttle {
        status: Option<u16>,
        retry_after: Option<u64>,
        count: Option<u64>,
        path_contains: Option<String>,
    },
    Reset {
        count: Option<u64>,
        path_contains: Option<String>,
    },
    Truncate {
        count: Option<u64>,
        path_contains: Option<String>,
    },
    ForbidContent {
        item_id: String,
    },
    DropNotifications {
        count: u64,
    },
    DuplicateNotifications {
        count: u64,
    },
    /// Every delta and page token of the drive answers `410 Gone` with `code` (default
    /// `resyncRequired`), with a restarting `Location` unless `location` is false.
    ExpireDeltaTokens {
        drive_id: String,
        code: Option<String>,
        location: Option<bool>,
    },
    /// Every `/sites/delta` token issued so far answers `410 Gone`.
    ExpireSitesDelta,
    HideHashes {
        enabled: bool,
    },
    DuplicateItemsInDelta {
        enabled: bool,
    },
    ExpireTokens,
    ExpireUploadSessions,
    /// The next `count` sessions expire just after their next accepted fragment.
    ExpireUploadSessionsMidway {
        count: u64,
    },
    /// The drive holds at most `bytes` (its `quota.total`): an upload session whose
    /// `fileSize` does not fit is `507`. A knob of the drive: clearing faults keeps it.
    DriveQuota {
        drive_id: String,
        bytes: u64,
    },
    ForbidWrites {
        drive_id: String,
    },
    /// Every mail delta and next link issued so far for `user` (every mailbox
    /// without one) answers `status` (400, 404 or 410; default 410) with `code`
    /// (`SyncStateNotFound` by default, `ErrorSyncStateNotFound`,
    /// `ErrorInvalidSyncStateData` or `invalidDeltaToken`).
    ExpireMailDeltaTokens {
        user: Option<String>,
        status: Option<u16>,
        code: Option<String>,
    },
    /// Mail requests take this long to answer (0 turns it off): makes
    /// concurrent requests overlap.
    MailLatency {
        ms: u64,
    },
    /// Exchange writes (creates, changes, deletes, attachments) take this long more, held
    /// inside the mailbox's concurrency (0 turns it off).
    MailWriteLatency {
        ms: u64,
    },
    /// Drive upload requests (simple PUT, createUploadSession, fragment PUT, commit) take
    /// this long to answer (0 turns it off).
    UploadLatency {
        ms: u64,
    },
    /// Download URLs answer the next `count` ranged requests (every one without a count) of
    /// `item_id` (of any item without one) with `200` and the whole body.
    IgnoreRange {
        count: Option<u64>,
        item_id: Option<String>,
    },
    /// Downloads of `item_id` serve other bytes (another length) than its size and hash
    /// describe: the same ones every time, or other ones every time when `varying`.
    ServeDifferentBytes {
        item_id: String,
        #[serde(default)]
        varying: bool,
    },
    /// `item_id` appears in delta pages with unusable JSON (`variant`, default
    /// `size_not_a_number`); the rest of each page is fine.
    MalformedInDelta {
        item_id: String,
        variant: Option<Malformed>,
    },
    /// Every Graph request about one of `users` (id or UPN; `/users/{u}...` and
    /// `/drives/{their drive}...`) answers `status` with `code` (and `Retry-After` for 429/503).
    UserErrors {
        users: Vec<String>,
        status: u16,
        code: Option<String>,
        message: Option<String>,
        retry_after: Option<u64>,
    },
    /// Deleting a folder in `drive_id` makes delta report the folder's deletion only, not
    /// its descendants'.
    OmitDescendantDeletions {
        drive_id: String,
        enabled: bool,
    },
}

pub async fn add_fault(State(sim): State<Arc<Inner>>, body: Bytes) -> GraphResult<Json<Value>> {
    let req: FaultReq = parse(&body)?;
    let mut st = sim.lock();
    let transport = |action, count: Option<u64>, path_contains| TransportFault {
        action,
        remaining: count.unwrap_or(1),
        path_contains,
    };
    match req {
        FaultReq::Throttle { status, retry_after, count, path_contains } => {
            let status = status.unwrap_or(429);
            if status != 429 && status != 503 {
                return Err(GraphError::bad_request("throttle status must be 429 or 503."));
            }
            let action = TransportAction::Throttle { status, retry_after: retry_after.unwrap_or(1) };
            st.faults.transport.push(transport(action, count, path_contains));
        }
        FaultReq::Reset { count, path_contains } => {
            st.faults.transport.push(transport(TransportAction::Reset, count, path_contains))
        }
        FaultReq::Truncate { count, path_contains } => {
            st.faults.transport.push(transport(TransportAction::Truncate, count, path_contains))
        }
        FaultReq::ForbidContent { item_id } => {
            st.faults.forbidden_items.insert(item_id);
        }
        FaultReq::DropNotifications { count } => st.faults.drop_notifications += count,
        FaultReq::DuplicateNotifications { count } => st.faults.duplicate_notifications += count,
        FaultReq::ExpireDeltaTokens { drive_id, code, location } => {
            let code = match code.as_deref() {
                None => ResyncCode::ResyncRequired,
                Some(c) => ResyncCode::parse(c).ok_or_else(|| {
                    GraphError::bad_request(
                        "code must be resyncRequired, resyncChangesApplyDifferences or resyncChangesUploadDifferences.",
                    )
                })?,
            };
            let d =
                st.drives.get_mut(&drive_id).ok_or_else(|| GraphError::not_found("The drive could not be found."))?;
            d.token_epoch += 1;
            d.resync = Resync { code, location: location.unwrap_or(true) };
        }
        FaultReq::ExpireSitesDelta => st.sites.token_epoch += 1,
        FaultReq::HideHashes { enabled } => st.faults.hide_hashes = enabled,
        FaultReq::DuplicateItemsInDelta { enabled } => st.faults.duplicate_items_in_delta = enabled,
        FaultReq::ExpireTokens => st.token_generation += 1,
        FaultReq::ExpireUploadSessions => {
            let past = Utc::now() - chrono::Duration::seconds(1);
            for s in st.uploads.values_mut() {
                s.expires = past;
            }
        }
        FaultReq::ExpireUploadSessionsMidway { count } => st.faults.expire_sessions_after_fragment += count,
        FaultReq::DriveQuota { drive_id, bytes } => {
            let d =
                st.drives.get_mut(&drive_id).ok_or_else(|| GraphError::not_found("The drive could not be found."))?;
            d.quota = Some(bytes);
        }
        FaultReq::ForbidWrites { drive_id } => {
            if !st.drives.contains_key(&drive_id) {
                return Err(GraphError::not_found("The drive could not be found."));
            }
            st.faults.forbid_writes.insert(drive_id);
        }
        FaultReq::ExpireMailDeltaTokens { user, status, code } => {
            let expiry = MailDeltaExpiry::new(status.unwrap_or(410), code.as_deref().unwrap_or("SyncStateNotFound"))
                .ok_or_else(|| {
                    GraphError::bad_request(
                        "status must be 400, 404 or 410; code SyncStateNotFound, ErrorSyncStateNotFound, \
                         ErrorInvalidSyncStateData or invalidDeltaToken.",
                    )
                })?;
            let only = match &user {
                Some(u) => {
                    Some(st.user(u).map(|u| u.id.clone()).ok_or_else(|| GraphError::not_found("No such user."))?)
                }
                None => None,
            };
            for (id, mb) in st.mailboxes.iter_mut() {
                if only.as_ref().is_none_or(|o| o == id) {
                    mb.token_epoch += 1;
                    mb.expiry = expiry.clone();
                }
            }
        }
        FaultReq::MailLatency { ms } => st.faults.mail_latency_ms = ms,
        FaultReq::MailWriteLatency { ms } => st.faults.mail_write_latency_ms = ms,
        FaultReq::UploadLatency { ms } => st.faults.upload_latency_ms = ms,
        FaultReq::IgnoreRange { count, item_id } => {
            st.faults.ignore_range.push(ItemFault { remaining: count.unwrap_or(u64::MAX), item_id })
        }
        FaultReq::MalformedInDelta { item_id, variant } => {
            st.faults.malformed_in_delta.insert(item_id, variant.unwrap_or(Malformed::SizeNotANumber));
        }
        FaultReq::OmitDescendantDeletions { drive_id, enabled } => {
            let d =
                st.drives.get_mut(&drive_id).ok_or_else(|| GraphError::not_found("The drive could not be found."))?;
            d.omit_descendant_deletions = enabled;
        }
        FaultReq::UserErrors { users, status, code, message, retry_after } => {
            let status = axum::http::StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .ok_or_else(|| GraphError::bad_request("status must be a 4xx or 5xx."))?;
            let mut keys = HashSet::new();
            for u in &users {
                let user = st.user(u).ok_or_else(|| GraphError::not_found(format!("No such user '{u}'.")))?;
                keys.insert(user.id.to_lowercase());
                keys.insert(user.upn.to_lowercase());
                keys.extend(user.drive_id.iter().map(|d| d.to_lowercase()));
            }
            let throttled = status.as_u16() == 429 || status.as_u16() == 503;
            let code = code.unwrap_or_else(|| if throttled { "TooManyRequests" } else { "accessDenied" }.into());
            let message = message.unwrap_or_else(|| {
                if throttled { "Too many requests. Please retry after the indicated time." } else { "Access denied" }
                    .into()
            });
            let mut error = GraphError::new(status, &code, message);
            if throttled || retry_after.is_some() {
                error = error.with_header(axum::http::header::RETRY_AFTER, &retry_after.unwrap_or(1).to_string());
            }
            st.faults.user_errors.push(UserErrors { keys, error });
        }
        FaultReq::ServeDifferentBytes { item_id, varying } => {
            let served = if varying { ServedBytes::Varying } else { ServedBytes::Fixed };
            st.faults.served_bytes.insert(item_id, served);
        }
    }
    Ok(Json(json!({})))
}

/// Clears every fault (transport, per-item, notification and delta knobs).
/// Access tokens and delta tokens already expired stay expired.
pub async fn clear_faults(State(sim): State<Arc<Inner>>) -> Json<Value> {
    let mut st = sim.lock();
    st.faults = Default::default();
    for d in st.drives.values_mut() {
        d.omit_descendant_deletions = false;
    }
    Json(json!({}))
}
