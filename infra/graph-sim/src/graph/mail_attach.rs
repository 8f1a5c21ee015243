//! Message attachments.

use axum::body::Body;
use axum::response::Response;

use super::mail::MailCtx;
use crate::error::{GraphError, GraphResult};

pub fn list(_ctx: &MailCtx<'_>, _id: &str) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}

pub fn get_one(_ctx: &MailCtx<'_>, _id: &str, _a: &str) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}

pub async fn add(_ctx: &MailCtx<'_>, _id: &str, _body: Body) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}

pub async fn create_session(_ctx: &MailCtx<'_>, _id: &str, _body: Body) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}
