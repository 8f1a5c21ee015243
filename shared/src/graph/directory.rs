//! Users and their OneDrives: the discovery side of the backup.

use serde::Deserialize;

use super::client::GraphClient;
use super::error::GraphError;

/// The largest page Graph serves for `/users`: fewer round trips on big tenants.
const USERS_PAGE_SIZE: &str = "999";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_principal_name: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub id: String,
    /// `business`, `documentLibrary`, `personal`.
    pub drive_type: Option<String>,
    pub owner_user_id: Option<String>,
}

#[derive(Deserialize)]
struct UsersPage {
    #[serde(default)]
    value: Vec<User>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDrive {
    id: String,
    drive_type: Option<String>,
    owner: Option<RawIdentitySet>,
}

#[derive(Deserialize)]
struct RawIdentitySet {
    user: Option<RawIdentity>,
}

#[derive(Deserialize)]
struct RawIdentity {
    id: Option<String>,
}

impl GraphClient {
    /// Every user of the tenant, all pages followed.
    pub async fn list_users(&self) -> Result<Vec<User>, GraphError> {
        let mut url = self.endpoint(&["users"]);
        url.query_pairs_mut()
            .append_pair("$select", "id,userPrincipalName,displayName")
            .append_pair("$top", USERS_PAGE_SIZE);
        let mut users = Vec::new();
        loop {
            let page: UsersPage = self.get_json(url).await?;
            users.extend(page.value);
            match page.next_link {
                Some(next) => url = self.graph_link(&next)?,
                None => return Ok(users),
            }
        }
    }

    /// The user's OneDrive, or `None` when the user has none (no license, never signed
    /// in, shared mailbox). Graph reports that inconsistently: 404 with various codes, or
    /// 403 `UnknownError` for shared mailboxes.
    pub async fn user_drive(&self, user_id: &str) -> Result<Option<Drive>, GraphError> {
        let mut url = self.endpoint(&["users", user_id, "drive"]);
        url.query_pairs_mut().append_pair("$select", "id,driveType,owner");
        match self.get_json::<RawDrive>(url).await {
            Ok(raw) => Ok(Some(Drive {
                id: raw.id,
                drive_type: raw.drive_type,
                owner_user_id: raw.owner.and_then(|o| o.user).and_then(|u| u.id),
            })),
            Err(GraphError::NotFound) => Ok(None),
            Err(GraphError::Forbidden { code }) if code.eq_ignore_ascii_case("UnknownError") => Ok(None),
            Err(e) => Err(e),
        }
    }
}
