//! SharePoint Online: site collections, their subsites, document libraries (each a full
//! [`Drive`](super::tree::Drive) in `State::drives`), Microsoft 365 groups and the personal
//! (OneDrive) site of every user with a drive. Sites are never removed, only flagged deleted,
//! so `/sites/delta` can report them; a site's `changed_seq` says when it last changed
//! (created, renamed, archived, deleted) in the tenant-wide site sequence.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::ids::IdRng;
use super::tree::{Drive, Library};

/// `fullyArchived` locks a site's content (`423`); the other states only show in `$select`.
pub const ARCHIVE_STATES: &[&str] = &["recentlyArchived", "fullyArchived", "reactivating"];

#[derive(Debug, Clone)]
pub struct Site {
    /// `{hostname},{site-collection-guid},{web-guid}`.
    pub id: String,
    pub hostname: String,
    pub collection_id: String,
    pub web_id: String,
    /// The last segment of the server-relative path.
    pub name: String,
    pub display_name: String,
    /// Server-relative path: `/sites/finance`, `/sites/finance/emea`, `/personal/adele_contoso_com`.
    pub path: String,
    /// The site this one is a subsite of.
    pub parent: Option<String>,
    /// The Microsoft 365 group whose team site this is.
    pub group_id: Option<String>,
    /// The user whose OneDrive this is.
    pub personal_owner: Option<String>,
    pub template: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    /// `siteCollection.archivalDetails.archiveStatus`.
    pub archived: Option<String>,
    /// Every call about the site answers `403 accessDenied`.
    pub denied: bool,
    pub deleted: bool,
    /// Drive ids of its libraries (deleted ones stay listed, flagged in `library_deleted`).
    pub libraries: Vec<String>,
    pub deleted_libraries: Vec<DeletedLibrary>,
    /// `Sites.Selected` grants: client id → roles (`read`, `write`, ...).
    pub grants: HashMap<String, Vec<String>>,
    pub created_seq: u64,
    pub changed_seq: u64,
}

/// A library removed from its site (its drive is gone from the tenant).
#[derive(Debug, Clone)]
pub struct DeletedLibrary {
    pub drive_id: String,
    pub name: String,
    pub system: bool,
}

impl Site {
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    pub fn is_personal(&self) -> bool {
        self.personal_owner.is_some()
    }

    pub fn web_url(&self) -> String {
        format!("https://{}{}", self.hostname, self.path)
    }

    pub fn fully_archived(&self) -> bool {
        self.archived.as_deref() == Some("fullyArchived")
    }

    /// Whether `client_id` holds a `Sites.Selected` grant of at least `role` (`read` < `write`
    /// < `owner`/`fullcontrol`).
    pub fn grants(&self, client_id: &str, role: &str) -> bool {
        let rank = |r: &str| match r {
            "read" => 1,
            "write" => 2,
            "owner" | "fullcontrol" => 3,
            _ => 0,
        };
        self.grants.get(client_id).is_some_and(|roles| roles.iter().any(|r| rank(r) >= rank(role)))
    }
}

/// A directory group: Microsoft 365 (`Unified`, maybe a team) or security.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub unified: bool,
    pub team: bool,
    /// Its team site (Unified groups only).
    pub site_id: Option<String>,
}

/// Every site of the tenant, in creation order, and the groups.
#[derive(Debug, Default)]
pub struct Sites {
    pub list: Vec<Site>,
    index: HashMap<String, usize>,
    /// Library (and personal OneDrive) drive id → site id.
    pub drive_site: HashMap<String, String>,
    pub groups: Vec<Group>,
    /// The site sequence: bumped by every site change.
    pub seq: u64,
    /// Bumped by the `expire_sites_delta` fault: older tokens answer `410`.
    pub token_epoch: u64,
}

/// What a new site is.
pub struct NewSite {
    pub display_name: String,
    /// URL segment; derived from the display name when empty.
    pub url_name: String,
    pub template: String,
    pub parent: Option<String>,
    pub group_id: Option<String>,
    pub personal_owner: Option<String>,
    pub archived: Option<String>,
    pub denied: bool,
}

/// `Finance & Legal` → `FinanceLegal` (SharePoint drops what URLs cannot carry).
pub fn url_segment(display: &str) -> String {
    let s: String = display.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    if s.is_empty() { "site".into() } else { s }
}

/// `adele.vance@contoso.com` → `adele_vance_contoso_com`, as OneDrive URLs spell owners.
pub fn personal_segment(upn: &str) -> String {
    upn.chars().map(|c| if c == '.' || c == '@' { '_' } else { c.to_ascii_lowercase() }).collect()
}

impl Sites {
    pub fn get(&self, id: &str) -> Option<&Site> {
        self.index.get(&id.to_lowercase()).map(|&i| &self.list[i])
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Site> {
        self.index.get(&id.to_lowercase()).map(|&i| &mut self.list[i])
    }

    /// The site at `https://{host}{path}` (case-insensitive, trailing slash ignored).
    pub fn by_path(&self, host: &str, path: &str) -> Option<&Site> {
        let path = format!("/{}", path.trim_matches('/')).to_lowercase();
        self.list.iter().find(|s| s.hostname.eq_ignore_ascii_case(host) && s.path.to_lowercase() == path)
    }

    /// The root site of `id`'s site collection.
    pub fn collection_root(&self, id: &str) -> Option<&Site> {
        let mut cur = self.get(id)?;
        while let Some(p) = cur.parent.as_deref().and_then(|p| self.get(p)) {
            cur = p;
        }
        Some(cur)
    }

    pub fn site_of_drive(&self, drive: &str) -> Option<&Site> {
        self.drive_site.get(drive).and_then(|s| self.get(s))
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.id.eq_ignore_ascii_case(id))
    }

    /// Marks `id` changed now (delta reports it).
    pub fn touch(&mut self, id: &str) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(s) = self.get_mut(id) {
            s.changed_seq = seq;
            s.modified = Utc::now();
        }
    }

    /// Creates a site (ids from `rng`); `tenant` is the tenant name (`contoso`).
    pub fn create(&mut self, tenant: &str, new: NewSite, rng: &mut IdRng) -> Result<String, String> {
        let parent = match &new.parent {
            Some(p) => Some(self.get(p).filter(|s| !s.deleted).ok_or_else(|| format!("No site '{p}'."))?.clone()),
            None => None,
        };
        let segment = if new.url_name.is_empty() { url_segment(&new.display_name) } else { new.url_name.clone() };
        let (hostname, collection_id, path) = match (&parent, &new.personal_owner) {
            (Some(p), _) => (p.hostname.clone(), p.collection_id.clone(), format!("{}/{segment}", p.path)),
            (None, Some(_)) => (format!("{tenant}-my.sharepoint.com"), rng.guid(), format!("/personal/{segment}")),
            (None, None) => (format!("{tenant}.sharepoint.com"), rng.guid(), format!("/sites/{segment}")),
        };
        if self.by_path(&hostname, &path).is_some_and(|s| !s.deleted) {
            return Err(format!("A site already exists at {path}."));
        }
        let web_id = rng.guid();
        let id = format!("{hostname},{collection_id},{web_id}");
        self.seq += 1;
        let now = Utc::now();
        let site = Site {
            id: id.clone(),
            hostname,
            collection_id,
            web_id,
            name: segment,
            display_name: new.display_name,
            path,
            parent: new.parent,
            group_id: new.group_id,
            personal_owner: new.personal_owner,
            template: new.template,
            created: now,
            modified: now,
            archived: new.archived,
            denied: new.denied,
            deleted: false,
            libraries: Vec::new(),
            deleted_libraries: Vec::new(),
            grants: HashMap::new(),
            created_seq: self.seq,
            changed_seq: self.seq,
        };
        self.index.insert(id.to_lowercase(), self.list.len());
        self.list.push(site);
        Ok(id)
    }

    /// A new, empty library of `site`: a drive to insert into the tenant.
    pub fn new_library(&mut self, site: &str, name: &str, system: bool, rng: &mut IdRng) -> Option<Drive> {
        let s = self.get(site)?;
        let web_url = format!("{}/{}", s.web_url(), library_url_name(name));
        let group = s.group_id.as_ref().and_then(|g| self.group(g)).map(|g| (g.id.clone(), g.display_name.clone()));
        let mut drive = Drive::new(rng.drive_id(), s.id.clone(), s.display_name.clone(), rng);
        drive.library = Some(Library { name: name.to_string(), web_url, system, group });
        self.drive_site.insert(drive.id.clone(), site.to_string());
        if let Some(s) = self.get_mut(site) {
            s.libraries.push(drive.id.clone());
        }
        Some(drive)
    }

    /// The personal site of a user and its OneDrive drive.
    pub fn add_personal(
        &mut self,
        tenant: &str,
        user_id: &str,
        upn: &str,
        display: &str,
        drive: &str,
        rng: &mut IdRng,
    ) {
        let new = NewSite {
            display_name: display.to_string(),
            url_name: personal_segment(upn),
            template: "personal".into(),
            parent: None,
            group_id: None,
            personal_owner: Some(user_id.to_string()),
            archived: None,
            denied: false,
        };
        if let Ok(id) = self.create(tenant, new, rng) {
            self.drive_site.insert(drive.to_string(), id.clone());
            if let Some(s) = self.get_mut(&id) {
                s.libraries.push(drive.to_string());
            }
        }
    }

    /// Flags `id` and its subsites deleted; returns the drive ids that go with them.
    pub fn delete(&mut self, id: &str) -> Vec<String> {
        let mut doomed = vec![id.to_lowercase()];
        let mut i = 0;
        while i < doomed.len() {
            let kids: Vec<String> = self
                .list
                .iter()
                .filter(|s| s.parent.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(&doomed[i])))
                .map(|s| s.id.to_lowercase())
                .collect();
            doomed.extend(kids);
            i += 1;
        }
        let mut drives = Vec::new();
        for d in doomed {
            self.touch(&d);
            if let Some(s) = self.get_mut(&d) {
                s.deleted = true;
                drives.extend(s.libraries.iter().cloned());
            }
        }
        drives
    }

    /// Root sites (personal ones included) in creation order.
    pub fn roots(&self) -> impl Iterator<Item = &Site> {
        self.list.iter().filter(|s| s.is_root())
    }

    /// Live direct subsites of `id`.
    pub fn children(&self, id: &str) -> Vec<&Site> {
        self.list
            .iter()
            .filter(|s| !s.deleted && s.parent.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(id)))
            .collect()
    }
}

/// `Documents` lives at `Shared%20Documents` and `Site Pages` at `SitePages`, as SharePoint
/// names those libraries' URLs.
fn library_url_name(name: &str) -> String {
    let name = match name {
        "Documents" => "Shared Documents",
        "Site Pages" => "SitePages",
        other => other,
    };
    name.replace(' ', "%20")
}
