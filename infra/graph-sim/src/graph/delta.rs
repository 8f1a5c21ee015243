//! `GET .../root/delta` (graph-facts §4): full enumeration without a token,
//! `token=latest`, incremental changes from a deltaLink, paging through
//! `@odata.nextLink`, `deltaExcludeParent`, and `410 Gone` once a drive's tokens
//! are expired: `resyncRequired`, `resyncChangesApplyDifferences` or
//! `resyncChangesUploadDifferences`, with a `Location` (a fresh full-enumeration
//! nextLink) or without one, as the `expire_delta_tokens` fault chose. Items under
//! the `malformed_in_delta` fault are rendered with unusable JSON.
//!
//! Tokens are signed, not stored. Both kinds start with
//! `kind|drive|incarnation|epoch|issued`; a delta token (`d`) then carries
//! the change sequence number, a page token (`p`) a paging session
//! ([`crate::store::DeltaSession`]) and cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::items::drive_not_found;
use super::render::{Mode, item_json};
use crate::Inner;
use crate::error::{GraphError, GraphResult};
use crate::signer::nonce;
use crate::store::delta::ResyncCode;
use crate::store::tree::Drive;
use crate::store::{DeltaSession, ItemKind, State};

const SESSION_IDLE: Duration = Duration::from_secs(3600);

fn link(base: &str, drive: &str, token: &str) -> String {
    format!("{base}/v1.0/drives/{drive}/root/delta?token={}", utf8_percent_encode(token, NON_ALPHANUMERIC))
}

fn delta_token(sim: &Inner, d: &Drive, seq: u64) -> String {
    sim.signer.sign(&[
        "d",
        &d.id,
        &d.incarnation,
        &d.token_epoch.to_string(),
        &Utc::now().timestamp().to_string(),
        &seq.to_string(),
        &nonce(),
    ])
}

fn open_session(st: &mut State, drive: &str, ids: Vec<String>, page: usize) -> String {
    st.sessions.retain(|_, s| s.last_used.elapsed() < SESSION_IDLE);
    let id = nonce();
    if let Some(d) = st.drives.get(drive) {
        st.sessions.insert(id.clone(), DeltaSession::new(d, ids, page));
    }
    id
}

fn page_token(sim: &Inner, d: &Drive, session: &str, cursor: usize) -> String {
    sim.signer.sign(&[
        "p",
        &d.id,
        &d.incarnation,
        &d.token_epoch.to_string(),
        &Utc::now().timestamp().to_string(),
        session,
        &cursor.to_string(),
    ])
}

fn resync(st: &mut State, sim: &Inner, base: &str, drive: &str) -> GraphError {
    let answer = st.drives.get(drive).map(|d| d.resync).unwrap_or_default();
    let message = match answer.code {
        ResyncCode::ResyncRequired => "Resync required. The delta token is no longer valid; reset the sync state.",
        ResyncCode::ApplyDifferences => {
            "Resync required. Replace any local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd. Upload any local changes that the server doesn't know about."
        }
        ResyncCode::UploadDifferences => {
            "Resync required. Upload any local items that the service did not return, and upload any files that differ from the server's version (keeping both copies if you're not sure which one is more up-to-date)."
        }
    };
    let err = GraphError::new(StatusCode::GONE, answer.code.code(), message);
    if !answer.location {
        return err;
    }
    let ids = st.drives.get(drive).map(Drive::full_order).unwrap_or_default();
    let session = open_session(st, drive, ids, sim.cfg.delta_page_size);
    let location =
        st.drives.get(drive).map(|d| link(base, drive, &page_token(sim, d, &session, 0))).unwrap_or_default();
    err.with_header(header::LOCATION, &location)
}

fn invalid_token() -> GraphError {
    GraphError::bad_request("Invalid delta token or skip token.")
}

pub fn delta(
    sim: &Arc<Inner>,
    base: &str,
    drive: &str,
    item: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
) -> GraphResult<Response> {
    let exclude_parents =
        headers.get("deltaExcludeParent").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let page_size =
        q.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(sim.cfg.delta_page_size).clamp(1, 10_000);
    let token = q.get("token").map(String::as_str);

    let mut guard = sim.lock();
    let st = &mut *guard;
    let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
    if d.live(item)?.kind != ItemKind::Root {
        return Err(GraphError::bad_request(
            "Delta is only supported on the root of a OneDrive for Business or SharePoint drive.",
        ));
    }
    let (session, cursor) = match token {
        None | Some("") => {
            let ids = d.full_order();
            (open_session(st, drive, ids, page_size), 0)
        }
        Some("latest") => {
            let link = link(base, drive, &delta_token(sim, d, d.seq));
            return Ok(Json(json!({"value": [], "@odata.deltaLink": link})).into_response());
        }
        Some(t) => {
            let f = sim.signer.verify(t).ok_or_else(invalid_token)?;
            if f.len() < 7 || f[1] != d.id {
                return Err(invalid_token());
            }
            let issued = f[4].parse::<i64>().unwrap_or(0);
            let too_old = Utc::now().timestamp() - issued > sim.cfg.delta_token_retention.as_secs() as i64;
            if f[2] != d.incarnation || f[3] != d.token_epoch.to_string() || too_old {
                return Err(resync(st, sim, base, drive));
            }
            match f[0].as_str() {
                "d" => {
                    let seq = f[5].parse::<u64>().map_err(|_| invalid_token())?;
                    let ids = d.changes_since(seq, exclude_parents);
                    (open_session(st, drive, ids, page_size), 0)
                }
                "p" => {
                    let cursor = f[6].parse::<usize>().map_err(|_| invalid_token())?;
                    if st.sessions.get(&f[5]).is_none_or(|s| s.drive_id != d.id) {
                        return Err(resync(st, sim, base, drive));
                    }
                    (f[5].clone(), cursor)
                }
                _ => return Err(invalid_token()),
            }
        }
    };
    let duplicate = st.faults.duplicate_items_in_delta;
    let malformed = st.faults.malformed_in_delta.clone();
    let d = st.drives.get(drive).ok_or_else(drive_not_found)?;
    let s = st
        .sessions
        .get_mut(&session)
        .ok_or_else(|| GraphError::new(StatusCode::GONE, "resyncRequired", "Resync required."))?;
    s.last_used = Instant::now();
    let page = s.page(d, cursor, duplicate);
    let views: Vec<_> = page.ids.iter().filter_map(|id| d.view(id)).collect();
    let next = match page.next {
        Some(n) => ("@odata.nextLink", link(base, drive, &page_token(sim, d, &session, n))),
        None => ("@odata.deltaLink", link(base, drive, &delta_token(sim, d, s.observed_seq))),
    };
    drop(guard);
    let value: Vec<Value> = views
        .iter()
        .map(|v| {
            let mut json = item_json(sim, base, v, Mode::Delta);
            if let Some(how) = malformed.get(&v.id) {
                how.apply(&mut json);
            }
            json
        })
        .collect();
    let mut body = json!({
        "@odata.context": format!("{base}/v1.0/$metadata#Collection(driveItem)"),
        "value": value,
    });
    body[next.0] = json!(next.1);
    Ok(Json(body).into_response())
}
