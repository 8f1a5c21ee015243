//! The admin API (no auth) used by the demo, tests and benchmarks: seed the
//! tenant, mutate drives, read ground truth, inject faults, fire lifecycle
//! events and read request statistics. Rejections use the Graph error JSON,
//! so name-rule violations look exactly as they would from Graph.

mod control;
mod faults;
mod items;
mod mail;
mod sites;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{delete, get, patch, post};
use serde::de::DeserializeOwned;

use crate::Inner;
use crate::error::{GraphError, GraphResult};

pub fn router() -> Router<Arc<Inner>> {
    Router::new()
        .route("/seed", post(control::seed))
        .route("/users", get(control::list_users).post(control::add_user))
        .route("/users/{user}", patch(control::edit_user).delete(control::delete_user))
        .route("/apps", get(control::list_apps))
        .route("/apps/{client_id}", patch(control::edit_app))
        .route("/drives/{drive}/items", get(items::list).post(items::create))
        .route("/drives/{drive}/items/{id}", patch(items::rename_move).delete(items::remove))
        .route("/drives/{drive}/items/{id}/content", post(items::edit_content))
        .route("/drives/{drive}/items/{id}/versions", get(items::versions))
        .route("/drives/{drive}/items/{id}/share", post(items::share))
        .route("/drives/{drive}/items/{id}/restore", post(items::restore))
        .route("/drives/{drive}/recycle_bin", get(items::recycle_bin))
        .route("/drives/{drive}/ransomware", post(items::ransomware))
        .route("/mailboxes/{user}", get(mail::ground_truth))
        .route("/mailboxes/{user}/messages", post(mail::deliver))
        .route("/mailboxes/{user}/messages/{id}", patch(mail::edit_message).delete(mail::delete_message))
        .route("/mailboxes/{user}/messages/{id}/attachments", post(mail::add_attachment))
        .route("/mailboxes/{user}/messages/{id}/attachments/{attachment}", delete(mail::delete_attachment))
        .route("/mailboxes/{user}/folders", post(mail::create_folder))
        .route("/mailboxes/{user}/folders/{id}", patch(mail::edit_folder).delete(mail::delete_folder))
        .route("/mailboxes/{user}/folders/{id}/empty", post(mail::empty_folder))
        .route("/mailboxes/{user}/purge", post(mail::purge))
        .route("/sites", get(sites::list).post(sites::create))
        .route("/sites/{id}", patch(sites::edit).delete(sites::remove))
        .route("/sites/{id}/libraries", post(sites::add_library))
        .route("/sites/{id}/libraries/{drive}", delete(sites::remove_library))
        .route("/sites/{id}/grants", post(sites::grant))
        .route("/throttling", get(sites::throttling).patch(sites::edit_throttling))
        .route("/throttling/reset", post(sites::reset_throttling))
        .route("/mail_limits", get(control::mail_limits))
        .route("/mail_limits/reset", post(control::reset_mail_limits))
        .route("/faults", post(faults::add_fault).delete(faults::clear_faults))
        .route("/fill_hashes", post(control::fill_hashes))
        .route("/lifecycle", post(control::lifecycle))
        .route("/subscriptions", get(control::subscriptions))
        .route("/subscriptions/{id}/drop", post(control::drop_subscription))
        .route("/stats", get(control::stats))
        .route("/stats/reset", post(control::reset_stats))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { GraphError::not_found("No such admin route.") })
}

/// Parses a JSON body, answering 400 with Graph's error shape.
fn parse<T: DeserializeOwned>(body: &Bytes) -> GraphResult<T> {
    let raw: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(raw).map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}")))
}
