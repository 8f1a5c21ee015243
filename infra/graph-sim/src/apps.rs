//! App registrations and their application permissions (graph-facts §10, §13.5). Each token
//! carries its app's client id and the permissions the app had when the token was issued (as
//! Entra's `roles` claim does); every `/v1.0` route then asks for the permission Graph asks
//! for, and a missing one answers Graph's `403` in the shape of the service behind the route:
//!
//! - directory (`/users`): `Authorization_RequestDenied`, "Insufficient privileges to complete
//!   the operation." (microsoftgraph/microsoft-graph-docs-contrib#8159);
//! - files (`/drives`, `/users/{u}/drive`): `accessDenied`, "The caller does not have permission
//!   to perform the action." (microsoftgraph/microsoft-graph-docs-contrib#6608);
//! - mail: `ErrorAccessDenied`, "Access is denied. Check credentials and try again."
//!   (microsoftgraph/aspnetcore-connect-sample#37);
//! - subscriptions: `ExtensionError`, "Operation: Create; Exception: [Status Code: Forbidden;
//!   Reason: Access denied]" (OneDrive/onedrive-api-docs#1398, msgraph-sdk-java#1209).

use axum::http::{Method, StatusCode};
use serde::Serialize;

use crate::error::GraphError;

/// One app registration: its credentials and the application permissions consented to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimApp {
    /// What the tenant calls it (`reader`, `subscriber`, `restorer`); not seen by Graph clients.
    pub name: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    /// Application permissions (`roles`), e.g. `Files.Read.All`.
    pub permissions: Vec<String>,
}

impl SimApp {
    pub fn new(name: &str, client_id: &str, client_secret: &str, permissions: &[&str]) -> Self {
        Self {
            name: name.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// Enumerators, copiers and discovery: reads users, files and mail; writes nothing and
    /// cannot subscribe to drives.
    pub fn reader(client_id: &str, client_secret: &str) -> Self {
        Self::new(
            "reader",
            client_id,
            client_secret,
            &[USER_READ_ALL, FILES_READ_ALL, MAIL_READ, SITES_READ_ALL, GROUP_READ_ALL],
        )
    }

    /// Subscriptions: drive roots need `Files.ReadWrite.All`, messages `Mail.Read`
    /// (`subscription-post-subscriptions.md`).
    pub fn subscriber(client_id: &str, client_secret: &str) -> Self {
        Self::new("subscriber", client_id, client_secret, &[FILES_READ_WRITE_ALL, MAIL_READ])
    }

    /// Restores: writes (and reads back) files and mail.
    pub fn restorer(client_id: &str, client_secret: &str) -> Self {
        Self::new("restorer", client_id, client_secret, &[FILES_READ_WRITE_ALL, MAIL_READ_WRITE])
    }
}

pub const USER_READ_ALL: &str = "User.Read.All";
pub const FILES_READ_ALL: &str = "Files.Read.All";
pub const FILES_READ_WRITE_ALL: &str = "Files.ReadWrite.All";
pub const MAIL_READ: &str = "Mail.Read";
pub const SITES_READ_ALL: &str = "Sites.Read.All";
pub const GROUP_READ_ALL: &str = "Group.Read.All";
/// No access until a site grants the app a role (`POST /admin/sites/{id}/grants`).
pub const SITES_SELECTED: &str = "Sites.Selected";
pub const MAIL_READ_WRITE: &str = "Mail.ReadWrite";

const DIRECTORY_READ: &[&str] = &[USER_READ_ALL, "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
/// Reads of any drive or library, without a per-site grant.
pub const FILES_READ_TENANT: &[&str] =
    &[FILES_READ_ALL, FILES_READ_WRITE_ALL, SITES_READ_ALL, "Sites.ReadWrite.All", "Sites.FullControl.All"];
pub const FILES_WRITE_TENANT: &[&str] = &[FILES_READ_WRITE_ALL, "Sites.ReadWrite.All", "Sites.FullControl.All"];
/// Site discovery (`getAllSites`, `sites/delta`) and site reads without a grant.
pub const SITES_READ_TENANT: &[&str] = &[SITES_READ_ALL, "Sites.ReadWrite.All", "Sites.FullControl.All"];
// What lets a request past the bearer check; `Sites.Selected` is then checked against the
// site's grants (`graph::sites`).
const FILES_READ: &[&str] = &[
    FILES_READ_ALL,
    FILES_READ_WRITE_ALL,
    SITES_READ_ALL,
    "Sites.ReadWrite.All",
    "Sites.FullControl.All",
    SITES_SELECTED,
];
const FILES_WRITE: &[&str] = &[FILES_READ_WRITE_ALL, "Sites.ReadWrite.All", "Sites.FullControl.All", SITES_SELECTED];
const SITES_READ: &[&str] = &[SITES_READ_ALL, "Sites.ReadWrite.All", "Sites.FullControl.All", SITES_SELECTED];
const GROUP_READ: &[&str] = &[GROUP_READ_ALL, "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"];
const MAIL_READS: &[&str] = &[MAIL_READ, MAIL_READ_WRITE];
const MAIL_WRITES: &[&str] = &[MAIL_READ_WRITE];
/// Drive-root subscriptions: read permissions are not enough (graph-facts §1).
pub const DRIVE_SUBSCRIPTION: &[&str] = &[FILES_READ_WRITE_ALL];
/// Message subscriptions: `Mail.ReadBasic` or `Mail.Read` (or more).
pub const MESSAGE_SUBSCRIPTION: &[&str] = &["Mail.ReadBasic", MAIL_READ, MAIL_READ_WRITE];

/// The app behind a request's token, put in the request's extensions by the bearer check.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client_id: String,
    /// The permissions in the token (those of the app when the token was issued).
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_any(&self, wanted: &[&str]) -> bool {
        self.roles.iter().any(|r| wanted.contains(&r.as_str()))
    }
}

/// The service answering a route, which decides the shape of its `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Directory,
    Files,
    Mail,
}

fn denied(service: Service) -> GraphError {
    let (code, message) = match service {
        Service::Directory => ("Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
        Service::Files => ("accessDenied", "The caller does not have permission to perform the action."),
        Service::Mail => ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    };
    GraphError::new(StatusCode::FORBIDDEN, code, message)
}

/// The files `403` (`accessDenied`), as drives and sites answer it.
pub fn files_denied() -> GraphError {
    denied(Service::Files)
}

/// The `403` of a subscription operation (`Create`, `Update`, `Delete`, `Get`) the app may not do.
pub fn subscription_denied(operation: &str) -> GraphError {
    GraphError::new(
        StatusCode::FORBIDDEN,
        "ExtensionError",
        format!("Operation: {operation}; Exception: [Status Code: Forbidden; Reason: Access denied]"),
    )
}

/// What a `/v1.0` request (path below `/v1.0`) needs, if the route is permission-checked here;
/// `/subscriptions` is checked by its handlers (the resource is in the body or the record).
fn need(method: &Method, path: &str) -> Option<(Service, &'static [&'static str])> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let reading = method == Method::GET || method == Method::HEAD;
    let (service, read, write) = match segs.as_slice() {
        ["users"] | ["users", _] => (Service::Directory, DIRECTORY_READ, DIRECTORY_READ),
        ["users", _, "drive", ..] | ["drives", ..] => (Service::Files, FILES_READ, FILES_WRITE),
        ["sites", ..] | ["groups", _, "sites", ..] => (Service::Files, SITES_READ, SITES_READ),
        ["groups"] | ["groups", _] => (Service::Directory, GROUP_READ, GROUP_READ),
        ["users", _, "mailFolders" | "messages", ..] => (Service::Mail, MAIL_READS, MAIL_WRITES),
        _ => return None,
    };
    Some((service, if reading { read } else { write }))
}

/// `Err` with Graph's `403` when `caller` lacks what the route needs.
pub fn check(caller: &Caller, method: &Method, path: &str) -> Result<(), GraphError> {
    match need(method, path) {
        Some((service, wanted)) if !caller.has_any(wanted) => Err(denied(service)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str]) -> Caller {
        Caller { client_id: "c".into(), roles: roles.iter().map(|r| r.to_string()).collect() }
    }

    #[test]
    fn reads_need_read_writes_need_read_write() {
        let reader = caller(&[USER_READ_ALL, FILES_READ_ALL, MAIL_READ]);
        for (method, path) in [
            (Method::GET, "/users"),
            (Method::GET, "/users/u1/drive"),
            (Method::GET, "/drives/d/root/delta"),
            (Method::GET, "/users/u1/mailFolders/inbox/messages/delta"),
            (Method::GET, "/subscriptions"),
        ] {
            assert!(check(&reader, &method, path).is_ok(), "{method} {path}");
        }
        for (method, path, code) in [
            (Method::PUT, "/drives/d/items/p:/a.txt:/content", "accessDenied"),
            (Method::POST, "/users/u1/drive/items/p/children", "accessDenied"),
            (Method::POST, "/users/u1/mailFolders/inbox/messages", "ErrorAccessDenied"),
        ] {
            let e = check(&reader, &method, path).err().map(|e| e.code);
            assert_eq!(e.as_deref(), Some(code), "{method} {path}");
        }
        let restorer = caller(&[FILES_READ_WRITE_ALL, MAIL_READ_WRITE]);
        assert_eq!(
            check(&restorer, &Method::GET, "/users").err().map(|e| e.code).as_deref(),
            Some("Authorization_RequestDenied")
        );
        assert!(check(&restorer, &Method::GET, "/users/u1/messages/m/$value").is_ok());
    }
}
