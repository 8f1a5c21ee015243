//! `GET /sites/delta` (graph-facts-sharepoint §1.1): without a token every live root site
//! (personal ones included), paged, then an `@odata.deltaLink`; `token=latest` an empty page
//! and a deltaLink; with a token the root sites created or changed since, deleted ones as
//! `{"id", "deleted": {"state": "deleted"}}`. Tokens are signed `sd|since|epoch` (delta) and
//! `sdp|since|upto|offset|epoch` (page); after the `expire_sites_delta` fault older ones
//! answer `410 Gone`, `resyncChangesApplyDifferences`, with a `Location` that enumerates
//! afresh. A site changed while a client pages may be reported twice, as Graph allows.

use std::collections::HashMap;

use axum::http::{StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::sites::site_json;
use crate::Inner;
use crate::error::{GraphError, GraphResult};

const PAGE: usize = 100;

fn link(base: &str, token: &str, q: &HashMap<String, String>) -> String {
    let mut l = format!("{base}/v1.0/sites/delta?token={}", utf8_percent_encode(token, NON_ALPHANUMERIC));
    for key in ["$select", "$top"] {
        if let Some(v) = q.get(key) {
            l.push_str(&format!("&{key}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)));
        }
    }
    l
}

fn invalid() -> GraphError {
    GraphError::bad_request("Invalid delta token or skip token.")
}

pub fn delta(sim: &Inner, base: &str, q: &HashMap<String, String>) -> GraphResult<Value> {
    let top = match q.get("$top").map(|t| t.parse::<usize>()) {
        None => PAGE,
        Some(Ok(n)) if (1..=999).contains(&n) => n,
        Some(_) => return Err(GraphError::bad_request("Invalid page size: '$top' must be between 1 and 999.")),
    };
    let select = q.get("$select").map(String::as_str);
    let st = sim.lock();
    let sites = &st.sites;
    let epoch = sites.token_epoch.to_string();
    let (since, upto, offset) = match q.get("token").map(String::as_str) {
        None => (0, sites.seq, 0),
        Some("latest") => {
            let token = sim.signer.sign(&["sd", &sites.seq.to_string(), &epoch]);
            return Ok(json!({"value": [], "@odata.deltaLink": link(base, &token, q)}));
        }
        Some(t) => {
            let f = sim.signer.verify(t).ok_or_else(invalid)?;
            let epoch_at = match f.first().map(String::as_str) {
                Some("sd") => f.get(2),
                Some("sdp") => f.get(4),
                _ => return Err(invalid()),
            };
            if epoch_at != Some(&epoch) {
                return Err(GraphError::new(
                    StatusCode::GONE,
                    "resyncChangesApplyDifferences",
                    "Resync required. Replace any local items with the server's version (including deletes) \
                     if you're sure that the service was up to date with your local changes when you last synced.",
                )
                .with_header(header::LOCATION, &format!("{base}/v1.0/sites/delta")));
            }
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(invalid);
            match f[0].as_str() {
                "sd" => (num(1)?, sites.seq, 0),
                _ => (num(1)?, num(2)?, num(3)? as usize),
            }
        }
    };
    let changed: Vec<Value> = sites
        .roots()
        .filter(|s| s.changed_seq > since)
        // A first enumeration lists what exists; later ones skip sites born and gone between.
        .filter(|s| !s.deleted || (since > 0 && s.created_seq <= since))
        .skip(offset)
        .take(top + 1)
        .map(|s| if s.deleted { json!({"id": s.id, "deleted": {"state": "deleted"}}) } else { site_json(s, select) })
        .collect();
    let more = changed.len() > top;
    let value: Vec<Value> = changed.into_iter().take(top).collect();
    let mut body = json!({ "value": value });
    if more {
        let token =
            sim.signer.sign(&["sdp", &since.to_string(), &upto.to_string(), &(offset + top).to_string(), &epoch]);
        body["@odata.nextLink"] = json!(link(base, &token, q));
    } else {
        let token = sim.signer.sign(&["sd", &upto.to_string(), &epoch]);
        body["@odata.deltaLink"] = json!(link(base, &token, q));
    }
    Ok(body)
}
