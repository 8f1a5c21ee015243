//! Mail reads: folder listings (top level only, or `childFolders`; hidden
//! folders only with `includeHiddenFolders=true`), one folder, message
//! listings (newest first), one message, and its MIME (`$value`: the raw
//! bytes, `Content-Type: text/plain` as in Graph's own example). Listings
//! page with `$top` (default 10, Graph's) and `$skip` in `@odata.nextLink`.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::mail::MailCtx;
use super::mail_render::{check_message_select, folder_json, message_json};
use crate::error::{GraphError, GraphResult};

/// `(top, skip)` of a listing request.
fn paging(ctx: &MailCtx<'_>) -> GraphResult<(usize, usize)> {
    let default = ctx.prefer.max_page_size.unwrap_or(ctx.sim.cfg.mail_page_size);
    let top = match ctx.q.get("$top") {
        None => default,
        Some(t) => t.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidUrlQuery", "The value of $top is invalid.")
        })?,
    };
    let skip = match ctx.q.get("$skip") {
        None => 0,
        Some(s) => s.parse::<usize>().map_err(|_| {
            GraphError::new(StatusCode::BAD_REQUEST, "ErrorInvalidUrlQuery", "The value of $skip is invalid.")
        })?,
    };
    Ok((top, skip))
}

/// The request URL with `$skip` moved on.
fn next_link(ctx: &MailCtx<'_>, skip: usize) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    let mut pairs: Vec<(&String, &String)> = ctx.q.iter().filter(|(k, _)| k.as_str() != "$skip").collect();
    pairs.sort();
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.append_pair("$skip", &skip.to_string());
    format!("{}/v1.0{}?{}", ctx.base, ctx.path, q.finish())
}

fn listing(ctx: &MailCtx<'_>, context: &str, all: Vec<Value>, top: usize, skip: usize) -> Response {
    let total = all.len();
    let value: Vec<Value> = all.into_iter().skip(skip).take(top).collect();
    let mut body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#{context}", ctx.base),
        "value": value,
    });
    if skip + top < total {
        body["@odata.nextLink"] = json!(next_link(ctx, skip + top));
    }
    Json(body).into_response()
}

/// Top-level folders (`parent: None`) or the children of `parent`.
pub fn list_folders(ctx: &MailCtx<'_>, parent: Option<&str>) -> GraphResult<Response> {
    let (top, skip) = paging(ctx)?;
    let hidden = ctx.q.get("includeHiddenFolders").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let all = ctx.read(|mb| {
        let parent = mb.folder_or_404(parent.unwrap_or("msgfolderroot"))?;
        Ok(mb.children(&parent.id).into_iter().filter(|f| hidden || !f.hidden).map(|f| folder_json(mb, f)).collect())
    })?;
    Ok(listing(ctx, "mailFolders", all, top, skip))
}

pub fn folder(ctx: &MailCtx<'_>, id: &str) -> GraphResult<Response> {
    let json = ctx.read(|mb| Ok(folder_json(mb, mb.folder_or_404(id)?)))?;
    Ok(Json(json).into_response())
}

/// Messages of one folder, or of the whole mailbox, newest first.
pub fn list_messages(ctx: &MailCtx<'_>, folder: Option<&str>) -> GraphResult<Response> {
    let (top, skip) = paging(ctx)?;
    let select = ctx.q.get("$select").map(String::as_str);
    check_message_select(select)?;
    let immutable = ctx.prefer.immutable_ids;
    let all = ctx.read(|mb| {
        let folder = folder.map(|f| mb.folder_or_404(f).map(|f| f.id.clone())).transpose()?;
        let mut live: Vec<_> = mb
            .messages
            .iter()
            .filter(|m| m.folder().is_some() && (folder.is_none() || m.folder() == folder.as_deref()))
            .collect();
        live.sort_by_key(|m| std::cmp::Reverse(m.received));
        Ok(live.into_iter().map(|m| message_json(m, immutable, select)).collect())
    })?;
    Ok(listing(ctx, "messages", all, top, skip))
}

pub fn message(ctx: &MailCtx<'_>, id: &str) -> GraphResult<Response> {
    let select = ctx.q.get("$select").map(String::as_str);
    check_message_select(select)?;
    let json = ctx.read(|mb| Ok(message_json(mb.message_or_404(id)?, ctx.prefer.immutable_ids, select)))?;
    Ok(Json(json).into_response())
}

/// The raw MIME. The `forbid_content` fault (by immutable id) refuses one message's bytes
/// while the mailbox answers everything else, as when Exchange denies a single item.
pub fn mime(ctx: &MailCtx<'_>, id: &str) -> GraphResult<Response> {
    let forbidden = ctx.sim.lock().faults.forbidden_items.clone();
    let bytes = ctx.read(|mb| {
        let m = mb.message_or_404(id)?;
        if forbidden.contains(&m.immutable_id) {
            return Err(GraphError::new(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied to this item."));
        }
        Ok(m.mime.clone())
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain")], bytes).into_response())
}
