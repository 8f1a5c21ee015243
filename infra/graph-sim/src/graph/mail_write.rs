//! Mail writes (restore side).

use axum::body::Body;
use axum::response::Response;

use super::mail::MailCtx;
use crate::error::{GraphError, GraphResult};

pub async fn create_folder(_ctx: &MailCtx<'_>, _parent: &str, _body: Body) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}

pub async fn create_message(_ctx: &MailCtx<'_>, _folder: &str, _body: Body) -> GraphResult<Response> {
    Err(GraphError::bad_request("not yet"))
}
