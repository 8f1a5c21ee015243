//! Deterministic SharePoint sites for `POST /admin/seed`: an explicit `sites` list and a bulk
//! generator (`site_count` sites, each with `libraries_min..=libraries_max` libraries, a
//! subsite every `subsite_every` sites, a Microsoft 365 group every `group_every`), plus the
//! personal site of every user with a OneDrive. Every site gets `Documents` and the hidden
//! `Site Pages` and `Style Library`. Libraries are generated like OneDrives (content is made
//! on read), so thousands of empty libraries cost a few milliseconds.

use serde::Deserialize;
use serde_json::Value;

use crate::seed::{ADJECTIVES, DriveSpec, NOUNS, fill_drive, fnv, pick};
use crate::store::User;
use crate::store::ids::IdRng;
use crate::store::sites::{ARCHIVE_STATES, Group, NewSite, Sites};
use crate::store::tree::Drive;

#[derive(Debug, Default, Deserialize)]
pub struct SeedSites {
    #[serde(default)]
    pub sites: Vec<SeedSite>,
    #[serde(default)]
    pub site_count: usize,
    #[serde(default = "one")]
    pub libraries_min: usize,
    #[serde(default = "one")]
    pub libraries_max: usize,
    #[serde(default)]
    pub files_per_library: usize,
    #[serde(default)]
    pub folders_per_library: usize,
    /// Every k-th generated site gets one subsite (0: none).
    #[serde(default)]
    pub subsite_every: usize,
    /// Every k-th generated site is a Microsoft 365 group's team site (0: none).
    #[serde(default)]
    pub group_every: usize,
    /// Security groups (no site) added to the directory.
    #[serde(default)]
    pub security_groups: usize,
}

fn one() -> usize {
    1
}

fn team() -> String {
    "team".into()
}

/// One site as `POST /admin/seed` (`sites`) and `POST /admin/sites` take it.
#[derive(Debug, Clone, Deserialize)]
pub struct SeedSite {
    pub name: String,
    /// `team` or `communication`.
    #[serde(default = "team")]
    pub template: String,
    /// Creates a Microsoft 365 (`Unified`) group whose team site this is.
    #[serde(default)]
    pub group: bool,
    /// The group is a team (`resourceProvisioningOptions: ["Team"]`).
    #[serde(default)]
    pub team: bool,
    #[serde(default)]
    pub libraries: Vec<SeedLibrary>,
    #[serde(default)]
    pub subsites: Vec<SeedSite>,
    #[serde(default)]
    pub preservation_hold: bool,
    /// `true` (`fullyArchived`) or an archive status.
    #[serde(default)]
    pub archived: Value,
    #[serde(default)]
    pub denied: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeedLibrary {
    pub name: String,
    #[serde(default)]
    pub system: bool,
    #[serde(flatten)]
    pub drive: DriveSpec,
}

/// `true` → `fullyArchived`, a status string → itself, `false`/`null` → not archived.
pub fn archive_state(v: &Value) -> Result<Option<String>, String> {
    match v {
        Value::Null | Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some("fullyArchived".into())),
        Value::String(s) if ARCHIVE_STATES.contains(&s.as_str()) => Ok(Some(s.clone())),
        _ => Err(format!("archived must be a boolean or one of {}.", ARCHIVE_STATES.join(", "))),
    }
}

const LIBRARY_NAMES: &[&str] = &["Projects", "Contracts", "Shared Assets", "Policies", "Records", "Marketing Assets"];

/// Creates `spec` (and its subsites) under `parent`; the drives to add to the tenant go to
/// `drives`. Returns the new site's id.
pub fn create_site(
    sites: &mut Sites,
    tenant: &str,
    spec: &SeedSite,
    parent: Option<&str>,
    rng: &mut IdRng,
    drives: &mut Vec<Drive>,
) -> Result<String, String> {
    let archived = archive_state(&spec.archived)?;
    let group_id = (spec.group && parent.is_none()).then(|| rng.guid());
    let new = NewSite {
        display_name: spec.name.clone(),
        url_name: String::new(),
        template: spec.template.clone(),
        parent: parent.map(str::to_string),
        group_id: group_id.clone(),
        personal_owner: None,
        archived,
        denied: spec.denied,
    };
    let id = sites.create(tenant, new, rng)?;
    if let (Some(gid), Some(site)) = (group_id, sites.get(&id)) {
        let mail = format!("{}@{tenant}.onmicrosoft.com", site.name);
        let group = Group {
            id: gid,
            display_name: spec.name.clone(),
            mail: Some(mail),
            unified: true,
            team: spec.team,
            site_id: Some(id.clone()),
        };
        sites.groups.push(group);
    }
    let mut libraries = spec.libraries.clone();
    if !libraries.iter().any(|l| l.name == "Documents") {
        libraries.insert(0, SeedLibrary { name: "Documents".into(), system: false, drive: empty_spec(0, 0) });
    }
    for (name, system) in [("Site Pages", true), ("Style Library", true), ("Preservation Hold Library", false)] {
        if name != "Preservation Hold Library" || spec.preservation_hold {
            libraries.push(SeedLibrary { name: name.into(), system, drive: empty_spec(0, 0) });
        }
    }
    for lib in &libraries {
        if let Some(mut d) = sites.new_library(&id, &lib.name, lib.system, rng) {
            fill_drive(&mut d, &lib.drive, rng);
            drives.push(d);
        }
    }
    for sub in &spec.subsites {
        create_site(sites, tenant, sub, Some(&id), rng, drives)?;
    }
    Ok(id)
}

fn empty_spec(files: usize, folders: usize) -> DriveSpec {
    DriveSpec { files, folders, max_depth: 3, max_size: 100_000, ..DriveSpec::default() }
}

/// The tenant's sites: explicit ones, generated ones, then each user's personal site.
pub fn seed_sites(seed: u64, tenant: &str, spec: &SeedSites, users: &[User]) -> Result<(Sites, Vec<Drive>), String> {
    let mut rng = IdRng::seeded(seed ^ fnv("sharepoint"));
    let mut sites = Sites::default();
    let mut drives = Vec::new();
    for s in &spec.sites {
        create_site(&mut sites, tenant, s, None, &mut rng, &mut drives)?;
    }
    let (lo, hi) = (spec.libraries_min.max(1), spec.libraries_max.max(spec.libraries_min.max(1)));
    for i in 0..spec.site_count {
        let n = i + 1;
        let name = format!("{} {} {n:03}", pick(&mut rng, ADJECTIVES), pick(&mut rng, NOUNS));
        let count = rng.range(lo as u64, hi as u64) as usize;
        let libraries = (0..count)
            .map(|k| SeedLibrary {
                name: if k == 0 { "Documents".into() } else { library_name(k) },
                system: false,
                drive: empty_spec(spec.files_per_library, spec.folders_per_library),
            })
            .collect();
        let every = |k: usize| k > 0 && n % k == 0;
        let subsites = if every(spec.subsite_every) {
            vec![SeedSite {
                name: format!("{name} Team"),
                template: team(),
                group: false,
                team: false,
                libraries: Vec::new(),
                subsites: Vec::new(),
                preservation_hold: false,
                archived: Value::Null,
                denied: false,
            }]
        } else {
            Vec::new()
        };
        let site = SeedSite {
            name,
            template: if n % 3 == 0 { "communication".into() } else { team() },
            group: every(spec.group_every),
            team: every(spec.group_every) && n % 2 == 0,
            libraries,
            subsites,
            preservation_hold: false,
            archived: Value::Null,
            denied: false,
        };
        create_site(&mut sites, tenant, &site, None, &mut rng, &mut drives)?;
    }
    for k in 0..spec.security_groups {
        sites.groups.push(Group {
            id: rng.guid(),
            display_name: format!("Security Group {}", k + 1),
            mail: None,
            unified: false,
            team: false,
            site_id: None,
        });
    }
    for u in users {
        if let Some(d) = &u.drive_id {
            let mut rng = IdRng::seeded(seed ^ fnv(&u.upn) ^ fnv("personal site"));
            sites.add_personal(tenant, &u.id, &u.upn, &u.display_name, d, &mut rng);
        }
    }
    Ok((sites, drives))
}

fn library_name(k: usize) -> String {
    let base = LIBRARY_NAMES[(k - 1) % LIBRARY_NAMES.len()];
    if k <= LIBRARY_NAMES.len() { base.to_string() } else { format!("{base} {k}") }
}
