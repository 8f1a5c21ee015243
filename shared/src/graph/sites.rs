//! SharePoint sites and their document libraries: the discovery side of site backup
//! (graph-facts-sharepoint §1).
//!
//! - every site collection's root site: `GET /sites/getAllSites` (app-only, all geos);
//! - subsites: `GET /sites/{id}/sites`, one level per call;
//! - Microsoft 365 group (team) sites: `GET /groups?$filter=groupTypes/any(...)`, then
//!   `GET /groups/{id}/sites/root`;
//! - new and deleted sites between listings: `GET /sites/delta`;
//! - a site's libraries: `GET /sites/{id}/drives`, system (hidden) ones only when `$select`
//!   names `system`.
//!
//! Sites are keyed by `id` (`hostname,{collection},{web}`), never by URL or name.

use super::client::GraphClient;
use super::drive::DeltaLink;
use super::error::GraphError;
use serde::Deserialize;

/// What discovery reads of a site: `siteCollection` is selected so that Graph includes its
/// `archivalDetails` (only served on `$select`).
const SITE_SELECT: &str = "id,name,displayName,webUrl,isPersonalSite,root,siteCollection,createdDateTime";
/// What discovery reads of a library; `system` makes Graph list hidden libraries too.
const DRIVE_SELECT: &str = "id,name,driveType,webUrl,system,createdDateTime,lastModifiedDateTime";
const GROUPS_PAGE_SIZE: &str = "999";
/// Microsoft 365 (unified) groups only: each has a team site.
const UNIFIED_GROUPS: &str = "groupTypes/any(c:c eq 'Unified')";

/// A site as Graph lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    /// A user's OneDrive: protected as that user's drive, not as a site.
    #[serde(default)]
    pub is_personal_site: bool,
    #[serde(default)]
    pub site_collection: Option<SiteCollection>,
    /// Set in `/sites/delta` for a deleted site.
    #[serde(default)]
    pub deleted: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteCollection {
    #[serde(default)]
    pub archival_details: Option<ArchivalDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivalDetails {
    #[serde(default)]
    pub archive_status: Option<String>,
}

impl Site {
    /// The name to show: Graph's `displayName`, else `name`, else the id.
    pub fn title(&self) -> String {
        self.display_name.clone().or_else(|| self.name.clone()).unwrap_or_else(|| self.id.clone())
    }

    /// `recentlyArchived`, `fullyArchived`, `reactivating`: the site is in Microsoft 365
    /// Archive (its content may not be read until reactivated).
    pub fn archive_status(&self) -> Option<&str> {
        self.site_collection.as_ref()?.archival_details.as_ref()?.archive_status.as_deref()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.is_some()
    }
}

/// A document library (or any drive) of a site.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Library {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `documentLibrary`; `business` for a OneDrive listed under its personal site.
    #[serde(default)]
    pub drive_type: Option<String>,
    #[serde(default)]
    pub web_url: Option<String>,
    /// Present on hidden system libraries (`Site Pages`, `Style Library`...).
    #[serde(default)]
    pub system: Option<serde_json::Value>,
}

impl Library {
    pub fn is_system(&self) -> bool {
        self.system.is_some()
    }

    /// A user's OneDrive (listed under a personal site): protected as the user's drive.
    pub fn is_onedrive(&self) -> bool {
        matches!(self.drive_type.as_deref(), Some("business" | "personal"))
    }
}

/// A Microsoft 365 group; its team site is `GET /groups/{id}/sites/root`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// One page of `/sites/delta`.
#[derive(Debug, Clone)]
pub struct SitesDeltaPage {
    pub sites: Vec<Site>,
    pub next: Option<DeltaLink>,
    pub delta: Option<DeltaLink>,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

impl GraphClient {
    /// Every site collection's root site, in every geo, all pages followed. Personal sites
    /// come too (Graph does not say they are left out): callers skip `is_personal_site`.
    pub async fn all_sites(&self) -> Result<Vec<Site>, GraphError> {
        let mut url = self.endpoint(&["sites", "getAllSites"]);
        url.query_pairs_mut().append_pair("$select", SITE_SELECT);
        self.all_pages(url).await
    }

    /// One site by id (or by `hostname:/server-relative-path`).
    pub async fn site(&self, site: &str) -> Result<Site, GraphError> {
        let mut url = self.endpoint(&["sites"]);
        // `host:/sites/x` must keep its `:` and `/`: appended raw, the rest encoded.
        url.set_path(&format!("{}/{}", url.path().trim_end_matches('/'), encode_site_ref(site)));
        url.query_pairs_mut().append_pair("$select", SITE_SELECT);
        self.get_json(url).await
    }

    /// The direct subsites of a site (one level: callers recurse).
    pub async fn subsites(&self, site_id: &str) -> Result<Vec<Site>, GraphError> {
        let mut url = self.endpoint(&["sites", site_id, "sites"]);
        url.query_pairs_mut().append_pair("$select", SITE_SELECT);
        self.all_pages(url).await
    }

    /// Every library of a site, hidden system ones included (flagged `system`).
    pub async fn site_libraries(&self, site_id: &str) -> Result<Vec<Library>, GraphError> {
        let mut url = self.endpoint(&["sites", site_id, "drives"]);
        url.query_pairs_mut().append_pair("$select", DRIVE_SELECT);
        self.all_pages(url).await
    }

    /// Every Microsoft 365 group of the tenant.
    pub async fn unified_groups(&self) -> Result<Vec<Group>, GraphError> {
        let mut url = self.endpoint(&["groups"]);
        url.query_pairs_mut()
            .append_pair("$filter", UNIFIED_GROUPS)
            .append_pair("$select", "id,displayName")
            .append_pair("$top", GROUPS_PAGE_SIZE);
        self.all_pages(url).await
    }

    /// A group's team site; `None` when the group has none (not provisioned yet).
    pub async fn group_site(&self, group_id: &str) -> Result<Option<Site>, GraphError> {
        let mut url = self.endpoint(&["groups", group_id, "sites", "root"]);
        url.query_pairs_mut().append_pair("$select", SITE_SELECT);
        match self.get_json(url).await {
            Ok(site) => Ok(Some(site)),
            Err(GraphError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of `/sites/delta`: from the start (`None`: every site), or a stored
    /// next or delta link. `latest` asks only for a delta link from now on.
    pub async fn sites_delta(&self, from: Option<&DeltaLink>, latest: bool) -> Result<SitesDeltaPage, GraphError> {
        let url = match from {
            Some(link) => self.graph_link(link.as_str())?,
            None => {
                let mut url = self.endpoint(&["sites", "delta"]);
                if latest {
                    url.query_pairs_mut().append_pair("token", "latest");
                }
                url
            }
        };
        let page: Page<Site> = self.get_json(url).await?;
        Ok(SitesDeltaPage {
            sites: page.value,
            next: page.next_link.map(DeltaLink::new),
            delta: page.delta_link.map(DeltaLink::new),
        })
    }
}

/// A site reference as a path: an id (`host,guid,guid`) is one segment; `host:/path` keeps
/// its separators. Anything else is percent-encoded.
fn encode_site_ref(site: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b',')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b':')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(site.trim_matches('/'), SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_refs_keep_ids_and_paths_and_encode_the_rest() {
        assert_eq!(encode_site_ref("contoso.sharepoint.com,1-2,3-4"), "contoso.sharepoint.com,1-2,3-4");
        assert_eq!(encode_site_ref("contoso.sharepoint.com:/sites/finance"), "contoso.sharepoint.com:/sites/finance");
        assert_eq!(encode_site_ref("host:/sites/a b?x"), "host:/sites/a%20b%3Fx");
    }

    #[test]
    fn archival_and_deletion_are_read_from_graphs_shapes() {
        let site: Site = serde_json::from_value(serde_json::json!({
            "id": "h,1,2", "displayName": "Finance",
            "siteCollection": {"hostname": "h", "archivalDetails": {"archiveStatus": "fullyArchived"}}
        }))
        .expect("site");
        assert_eq!((site.title().as_str(), site.archive_status()), ("Finance", Some("fullyArchived")));
        let gone: Site = serde_json::from_value(serde_json::json!({"id": "h,1,2", "deleted": {"state": "deleted"}}))
            .expect("deleted site");
        assert!(gone.is_deleted() && gone.archive_status().is_none());
        let pages: Library =
            serde_json::from_value(serde_json::json!({"id": "b!x", "name": "Site Pages", "system": {}})).expect("lib");
        assert!(pages.is_system() && !pages.is_onedrive());
    }
}
