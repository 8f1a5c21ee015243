//! The Exchange mail surface (graph-facts §7): `/users/{u}/mailFolders/...`
//! and `/users/{u}/messages/...`, parsed by hand like drive paths so that a
//! message is the same under `/messages/{id}` and
//! `/mailFolders/{f}/messages/{id}`. Before anything else, the user must
//! exist (`404 ErrorInvalidUser`), have a mailbox (`404
//! MailboxNotEnabledForRESTAPI`) and an Exchange licence (`403`).
//!
//! `Prefer: IdType="ImmutableId"` decides which of a message's two ids the
//! request speaks (both resolve on input); `Prefer: odata.maxpagesize=N`
//! sets the page size. Applied preferences are echoed in `Preference-Applied`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use percent_encoding::percent_decode_str;

use super::{mail_attach, mail_delta, mail_read, mail_write};
use crate::error::{GraphError, GraphResult};
use crate::store::State as Tenant;
use crate::store::mail::Mailbox;
use crate::{Inner, base_url};

pub fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/users/{user}/mailFolders", any(handle))
        .route("/users/{user}/mailFolders/{*rest}", any(handle))
        .route("/users/{user}/messages", any(handle))
        .route("/users/{user}/messages/{*rest}", any(handle))
}

/// The `Prefer` header's mail-relevant preferences.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prefer {
    pub immutable_ids: bool,
    pub max_page_size: Option<usize>,
    /// `includesecuritywebhooks` on a drive subscription: sharing and permission changes
    /// notify too (without it Graph sends nothing for them, graph-facts-sharepoint §2.1).
    pub security_webhooks: bool,
}

impl Prefer {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut p = Prefer::default();
        for value in headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()) {
            for pref in value.split(',').map(str::trim) {
                let (k, v) = pref.split_once('=').unwrap_or((pref, ""));
                let v = v.trim().trim_matches('"');
                if k.trim().eq_ignore_ascii_case("IdType") && v.eq_ignore_ascii_case("ImmutableId") {
                    p.immutable_ids = true;
                } else if k.trim().eq_ignore_ascii_case("includesecuritywebhooks") {
                    p.security_webhooks = true;
                } else if k.trim().eq_ignore_ascii_case("odata.maxpagesize") {
                    p.max_page_size = v.parse::<usize>().ok().map(|n| n.clamp(1, 1000));
                }
            }
        }
        p
    }

    /// The `Preference-Applied` value, if any preference was honoured.
    pub fn applied(&self) -> Option<HeaderValue> {
        let mut parts = Vec::new();
        if self.immutable_ids {
            parts.push(r#"IdType="ImmutableId""#.to_string());
        }
        if let Some(n) = self.max_page_size {
            parts.push(format!("odata.maxpagesize={n}"));
        }
        (!parts.is_empty()).then(|| HeaderValue::from_str(&parts.join(", ")).ok()).flatten()
    }
}

/// What every mail handler needs about its request.
pub struct MailCtx<'a> {
    pub sim: &'a Arc<Inner>,
    pub base: String,
    /// The request path below `/v1.0`, as sent (for nextLinks).
    pub path: String,
    /// The user as addressed (id or UPN) and the user's id.
    pub user: String,
    pub user_id: String,
    pub prefer: Prefer,
    pub q: HashMap<String, String>,
    pub headers: &'a HeaderMap,
}

impl MailCtx<'_> {
    /// Runs `f` on the mailbox under the tenant lock.
    pub fn read<T>(&self, f: impl FnOnce(&Mailbox) -> GraphResult<T>) -> GraphResult<T> {
        let st = self.sim.lock();
        f(st.mailboxes.get(&self.user_id).ok_or_else(mailbox_not_enabled)?)
    }

    pub fn write<T>(&self, f: impl FnOnce(&mut Mailbox) -> GraphResult<T>) -> GraphResult<T> {
        let mut st = self.sim.lock();
        f(st.mailboxes.get_mut(&self.user_id).ok_or_else(mailbox_not_enabled)?)
    }

    /// `{base}/v1.0/users/{user}/...` for links.
    pub fn link(&self, rest: &str) -> String {
        let user = percent_encoding::utf8_percent_encode(&self.user, percent_encoding::NON_ALPHANUMERIC);
        format!("{}/v1.0/users/{user}/{rest}", self.base)
    }

    /// Adds `Preference-Applied` to a response.
    pub fn finish(&self, mut resp: Response) -> Response {
        if let Some(v) = self.prefer.applied() {
            resp.headers_mut().insert("preference-applied", v);
        }
        resp
    }
}

pub fn mailbox_not_enabled() -> GraphError {
    GraphError::new(
        StatusCode::NOT_FOUND,
        "MailboxNotEnabledForRESTAPI",
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    )
}

/// The id of `user` if its mailbox may be used, else Exchange's refusal.
pub fn mailbox_owner(st: &Tenant, user: &str) -> GraphResult<String> {
    let u = st.user(user).ok_or_else(|| {
        GraphError::new(StatusCode::NOT_FOUND, "ErrorInvalidUser", format!("The requested user '{user}' is invalid."))
    })?;
    if !u.has_mailbox || !st.mailboxes.contains_key(&u.id) {
        return Err(mailbox_not_enabled());
    }
    if !u.licensed {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        ));
    }
    Ok(u.id.clone())
}

fn unsupported(method: &Method, segs: &[String]) -> GraphError {
    let last = segs.last().map(String::as_str).unwrap_or("");
    if *method == Method::GET {
        GraphError::bad_request(format!("Resource not found for the segment '{last}'."))
    } else {
        GraphError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "ErrorInvalidRequest",
            format!("The OData request is not supported: {method} on '{last}'."),
        )
    }
}

async fn handle(
    State(sim): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let segs: Vec<String> = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let user = segs.get(1).cloned().unwrap_or_default();
    let owner = mailbox_owner(&sim.lock(), &user);
    let user_id = match owner {
        Ok(id) => id,
        Err(e) => {
            super::write::drain(body).await;
            return axum::response::IntoResponse::into_response(e);
        }
    };
    let ctx = MailCtx {
        sim: &sim,
        base: base_url(&headers),
        path: uri.path().to_string(),
        user,
        user_id,
        prefer: Prefer::parse(&headers),
        q,
        headers: &headers,
    };
    let method = if method == Method::HEAD { Method::GET } else { method };
    let result = dispatch(&ctx, &method, &segs[2..], body).await;
    ctx.finish(result.unwrap_or_else(axum::response::IntoResponse::into_response))
}

async fn dispatch(ctx: &MailCtx<'_>, method: &Method, segs: &[String], body: Body) -> GraphResult<Response> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    match s.as_slice() {
        ["mailFolders"] if get => mail_read::list_folders(ctx, None),
        ["mailFolders"] if post => mail_write::create_folder(ctx, "msgfolderroot", body).await,
        ["mailFolders", "delta"] if get => mail_delta::folders(ctx),
        ["mailFolders", f] if get => mail_read::folder(ctx, f),
        ["mailFolders", f, "childFolders"] if get => mail_read::list_folders(ctx, Some(f)),
        ["mailFolders", f, "childFolders"] if post => mail_write::create_folder(ctx, f, body).await,
        ["mailFolders", f, "messages"] if get => mail_read::list_messages(ctx, Some(f)),
        ["mailFolders", f, "messages"] if post => mail_write::create_message(ctx, f, body).await,
        ["mailFolders", f, "messages", "delta"] if get => mail_delta::messages(ctx, f),
        ["mailFolders", f, "messages", m, rest @ ..] => {
            ctx.read(|mb| mb.folder_or_404(f).map(drop))?;
            message(ctx, method, m, rest, body).await
        }
        ["messages"] if get => mail_read::list_messages(ctx, None),
        ["messages"] if post => mail_write::create_message(ctx, "drafts", body).await,
        ["messages", m, rest @ ..] => message(ctx, method, m, rest, body).await,
        _ => {
            super::write::drain(body).await;
            Err(unsupported(method, segs))
        }
    }
}

async fn message(ctx: &MailCtx<'_>, method: &Method, id: &str, rest: &[&str], body: Body) -> GraphResult<Response> {
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    match rest {
        [] if get => mail_read::message(ctx, id),
        ["$value"] if get => mail_read::mime(ctx, id),
        ["attachments"] if get => mail_attach::list(ctx, id),
        ["attachments"] if post => mail_attach::add(ctx, id, body).await,
        ["attachments", "createUploadSession"] if post => mail_attach::create_session(ctx, id, body).await,
        ["attachments", a] if get => mail_attach::get_one(ctx, id, a),
        _ => {
            super::write::drain(body).await;
            let segs: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            Err(unsupported(method, &segs))
        }
    }
}
