//! Typed configuration, one struct per function, parsed once at start-up from an
//! environment lookup (so tests never touch the process environment). Endpoints come from
//! here, never from test branches: `GRAPH_BASE_URL`, `GRAPH_LOGIN_URL`, `AWS_ENDPOINT_URL`.

use std::collections::BTreeMap;

use crate::store::{LockMode, QueueName};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing setting {0}")]
    Missing(&'static str),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// A source of settings: the process environment in Lambda, a map in tests.
pub trait Settings {
    fn get(&self, name: &str) -> Option<String>;

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name))
    }

    fn parsed<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string() }),
        }
    }
}

/// The process environment.
pub struct Env;

impl Settings for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Settings for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// Where a Graph app identity lives: its client id and the secret's ARN or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphIdentity {
    pub base_url: String,
    pub login_url: String,
    pub tenant_id: String,
    pub client_id: String,
    pub secret_id: String,
}

impl GraphIdentity {
    fn from(s: &impl Settings, client_id: &'static str, secret: &'static str) -> Result<Self, ConfigError> {
        Ok(Self {
            base_url: s.get("GRAPH_BASE_URL").unwrap_or_else(|| "https://graph.microsoft.com/v1.0".into()),
            login_url: s.get("GRAPH_LOGIN_URL").unwrap_or_else(|| "https://login.microsoftonline.com".into()),
            tenant_id: s.required("TENANT_ID")?,
            client_id: s.required(client_id)?,
            secret_id: s.required(secret)?,
        })
    }

    pub fn reader(s: &impl Settings) -> Result<Self, ConfigError> {
        Self::from(s, "GRAPH_READER_CLIENT_ID", "GRAPH_READER_SECRET_ARN")
    }

    pub fn subscriber(s: &impl Settings) -> Result<Self, ConfigError> {
        Self::from(s, "GRAPH_SUBSCRIBER_CLIENT_ID", "GRAPH_SUBSCRIBER_SECRET_ARN")
    }

    /// The only identity with write scopes; used by the restorer alone.
    pub fn restorer(s: &impl Settings) -> Result<Self, ConfigError> {
        Self::from(s, "GRAPH_RESTORER_CLIENT_ID", "GRAPH_RESTORER_SECRET_ARN")
    }
}

fn queue_urls(
    s: &impl Settings,
    wanted: &[(QueueName, &'static str)],
) -> Result<BTreeMap<QueueName, String>, ConfigError> {
    wanted.iter().map(|(q, name)| Ok((*q, s.required(name)?))).collect()
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub tenant_id: String,
    pub queues: BTreeMap<QueueName, String>,
    pub client_state_key_secret: String,
}

impl WebhookConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            tenant_id: s.required("TENANT_ID")?,
            queues: queue_urls(
                s,
                &[(QueueName::Changes, "CHANGES_QUEUE_URL"), (QueueName::Lifecycle, "LIFECYCLE_QUEUE_URL")],
            )?,
            client_state_key_secret: s.required("CLIENT_STATE_KEY_SECRET_ARN")?,
        })
    }
}

/// Items at least this large go to the `items-large` queue (long timeout, batch of one).
pub const DEFAULT_LARGE_ITEM_BYTES: u64 = 100 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct EnumeratorConfig {
    pub catalog_table: String,
    pub queues: BTreeMap<QueueName, String>,
    pub graph: GraphIdentity,
    pub large_item_bytes: u64,
}

impl EnumeratorConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            catalog_table: s.required("CATALOG_TABLE")?,
            queues: queue_urls(
                s,
                &[
                    (QueueName::Changes, "CHANGES_QUEUE_URL"),
                    (QueueName::Items, "ITEMS_QUEUE_URL"),
                    (QueueName::ItemsLarge, "ITEMS_LARGE_QUEUE_URL"),
                ],
            )?,
            graph: GraphIdentity::reader(s)?,
            large_item_bytes: s.parsed("LARGE_ITEM_BYTES", DEFAULT_LARGE_ITEM_BYTES)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct CopierConfig {
    pub catalog_table: String,
    pub vault_bucket: String,
    pub queues: BTreeMap<QueueName, String>,
    pub graph: GraphIdentity,
    pub lock_mode: LockMode,
    pub retention_days: u32,
    pub large_item_bytes: u64,
    /// Items in one SQS batch copied at the same time.
    pub concurrency: usize,
}

/// `OBJECT_LOCK_MODE` (default GOVERNANCE) and `RETENTION_DAYS` (default 35, at least 1), as
/// the copier and the keeper both read them.
fn lock_settings(s: &impl Settings) -> Result<(LockMode, u32), ConfigError> {
    let mode = s.get("OBJECT_LOCK_MODE").unwrap_or_else(|| "GOVERNANCE".into());
    let retention_days: u32 = s.parsed("RETENTION_DAYS", 35)?;
    if retention_days == 0 {
        return Err(ConfigError::Invalid { name: "RETENTION_DAYS", reason: "must be at least 1".into() });
    }
    let lock_mode = LockMode::parse(&mode).ok_or(ConfigError::Invalid {
        name: "OBJECT_LOCK_MODE",
        reason: format!("{mode:?} is not GOVERNANCE or COMPLIANCE"),
    })?;
    Ok((lock_mode, retention_days))
}

impl CopierConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        let (lock_mode, retention_days) = lock_settings(s)?;
        Ok(Self {
            catalog_table: s.required("CATALOG_TABLE")?,
            vault_bucket: s.required("VAULT_BUCKET")?,
            queues: queue_urls(
                s,
                &[(QueueName::Items, "ITEMS_QUEUE_URL"), (QueueName::ItemsLarge, "ITEMS_LARGE_QUEUE_URL")],
            )?,
            graph: GraphIdentity::reader(s)?,
            lock_mode,
            retention_days,
            large_item_bytes: s.parsed("LARGE_ITEM_BYTES", DEFAULT_LARGE_ITEM_BYTES)?,
            concurrency: s.parsed("COPY_CONCURRENCY", 4)?,
        })
    }
}

/// The vault keeper: lock extension and verification. It holds no Graph credential and no
/// queue; it reads and writes the catalog and reads and locks the vault.
#[derive(Debug, Clone)]
pub struct KeeperConfig {
    pub tenant_id: String,
    pub catalog_table: String,
    pub vault_bucket: String,
    pub lock_mode: LockMode,
    pub retention_days: u32,
    /// Days beyond `retention_days` an extension locks a current version.
    pub horizon_days: u32,
    /// Vault requests in flight at once.
    pub concurrency: usize,
}

impl KeeperConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        let (lock_mode, retention_days) = lock_settings(s)?;
        let concurrency: usize = s.parsed("KEEPER_CONCURRENCY", 16)?;
        if concurrency == 0 {
            return Err(ConfigError::Invalid { name: "KEEPER_CONCURRENCY", reason: "must be at least 1".into() });
        }
        Ok(Self {
            tenant_id: s.required("TENANT_ID")?,
            catalog_table: s.required("CATALOG_TABLE")?,
            vault_bucket: s.required("VAULT_BUCKET")?,
            lock_mode,
            retention_days,
            horizon_days: s.parsed("LOCK_HORIZON_DAYS", crate::pipeline::retention::DEFAULT_HORIZON_DAYS)?,
            concurrency,
        })
    }

    /// The retention rule's dates for this deployment.
    pub fn policy(&self) -> crate::pipeline::retention::Policy {
        crate::pipeline::retention::Policy {
            mode: self.lock_mode,
            retention_days: self.retention_days,
            horizon_days: self.horizon_days,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub catalog_table: String,
    pub queues: BTreeMap<QueueName, String>,
    pub reader: GraphIdentity,
    pub subscriber: GraphIdentity,
    pub client_state_key_secret: String,
    pub webhook_url: String,
    /// Subscription lifetime asked for; Graph caps drive subscriptions at 42,300 minutes.
    pub subscription_minutes: i64,
    /// Renew subscriptions expiring within this many minutes.
    pub renew_within_minutes: i64,
    /// Which SharePoint sites are backed up, and whether hidden system libraries are.
    pub sites: SitePolicy,
}

/// Which SharePoint sites discovery protects (`SHAREPOINT_SITES`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SiteScope {
    /// Every site of the tenant (`all`, the default): needs `Sites.Read.All`.
    #[default]
    All,
    /// Only these sites (ids or `hostname:/sites/path`, comma-separated): the app has
    /// `Sites.Selected`, which lists nothing tenant-wide.
    Selected(Vec<String>),
    /// No SharePoint site (`none`): OneDrive and mail only.
    Off,
}

impl std::str::FromStr for SiteScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "all" => Ok(SiteScope::All),
            "none" => Ok(SiteScope::Off),
            list => {
                let sites: Vec<String> =
                    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if sites.is_empty() || sites.iter().any(|s| s.chars().any(char::is_whitespace)) {
                    return Err("expected `all`, `none`, or comma-separated site ids or hostname:/sites/path".into());
                }
                Ok(SiteScope::Selected(sites))
            }
        }
    }
}

/// What discovery does with SharePoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SitePolicy {
    pub scope: SiteScope,
    /// Back up every hidden system library too (`SHAREPOINT_SYSTEM_LIBRARIES=true`); by default
    /// only those that hold user content are (see `pipeline::sites::library_policy`).
    pub system_libraries: bool,
}

impl SchedulerConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            catalog_table: s.required("CATALOG_TABLE")?,
            // `lifecycle` is also the scheduler's own work queue (discovery and renewal shares).
            queues: queue_urls(
                s,
                &[(QueueName::Changes, "CHANGES_QUEUE_URL"), (QueueName::Lifecycle, "LIFECYCLE_QUEUE_URL")],
            )?,
            reader: GraphIdentity::reader(s)?,
            subscriber: GraphIdentity::subscriber(s)?,
            client_state_key_secret: s.required("CLIENT_STATE_KEY_SECRET_ARN")?,
            webhook_url: s.required("WEBHOOK_URL")?,
            subscription_minutes: s.parsed("SUBSCRIPTION_MINUTES", 42_000)?,
            renew_within_minutes: s.parsed("RENEW_WITHIN_MINUTES", 3 * 24 * 60)?,
            sites: SitePolicy {
                scope: s.parsed("SHAREPOINT_SITES", SiteScope::All)?,
                system_libraries: s.parsed("SHAREPOINT_SYSTEM_LIBRARIES", false)?,
            },
        })
    }
}

#[derive(Debug, Clone)]
pub struct RestorerConfig {
    pub catalog_table: String,
    pub vault_bucket: String,
    /// Where export jobs write their zips (not the vault: no Object Lock, expired by lifecycle).
    pub exports_bucket: String,
    pub queues: BTreeMap<QueueName, String>,
    pub graph: GraphIdentity,
}

impl RestorerConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            catalog_table: s.required("CATALOG_TABLE")?,
            vault_bucket: s.required("VAULT_BUCKET")?,
            exports_bucket: s.required("EXPORTS_BUCKET")?,
            queues: queue_urls(s, &[(QueueName::Restores, "RESTORES_QUEUE_URL")])?,
            graph: GraphIdentity::restorer(s)?,
        })
    }
}

/// The restore API: reads the catalog, signs vault GETs, sends to the `restores` queue. It
/// holds no Graph credential.
#[derive(Debug, Clone)]
pub struct RestoreApiConfig {
    pub tenant_id: String,
    pub catalog_table: String,
    pub vault_bucket: String,
    /// Export zips, signed for download.
    pub exports_bucket: String,
    pub queues: BTreeMap<QueueName, String>,
}

impl RestoreApiConfig {
    pub fn load(s: &impl Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            tenant_id: s.required("TENANT_ID")?,
            catalog_table: s.required("CATALOG_TABLE")?,
            vault_bucket: s.required("VAULT_BUCKET")?,
            exports_bucket: s.required("EXPORTS_BUCKET")?,
            queues: queue_urls(s, &[(QueueName::Restores, "RESTORES_QUEUE_URL")])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn copier_config_rejects_unknown_lock_mode_and_missing_settings() {
        let base = [
            ("CATALOG_TABLE", "t"),
            ("VAULT_BUCKET", "b"),
            ("ITEMS_QUEUE_URL", "q1"),
            ("ITEMS_LARGE_QUEUE_URL", "q2"),
            ("TENANT_ID", "tid"),
            ("GRAPH_READER_CLIENT_ID", "c"),
            ("GRAPH_READER_SECRET_ARN", "arn"),
        ];
        let ok = CopierConfig::load(&settings(&base)).expect("valid");
        assert_eq!(ok.lock_mode, LockMode::Governance);
        assert_eq!(ok.graph.base_url, "https://graph.microsoft.com/v1.0");

        let mut bad = base.to_vec();
        bad.push(("OBJECT_LOCK_MODE", "LEGAL"));
        assert!(matches!(
            CopierConfig::load(&settings(&bad)),
            Err(ConfigError::Invalid { name: "OBJECT_LOCK_MODE", .. })
        ));
        assert_eq!(CopierConfig::load(&settings(&base[1..])).err(), Some(ConfigError::Missing("CATALOG_TABLE")));
    }

    #[test]
    fn keeper_config_reads_the_copiers_lock_settings_and_its_own_defaults() {
        let base = [("TENANT_ID", "tid"), ("CATALOG_TABLE", "t"), ("VAULT_BUCKET", "b")];
        let ok = KeeperConfig::load(&settings(&base)).expect("valid");
        assert_eq!((ok.lock_mode, ok.retention_days), (LockMode::Governance, 35));
        assert_eq!(ok.horizon_days, crate::pipeline::retention::DEFAULT_HORIZON_DAYS);
        assert_eq!(ok.concurrency, 16);
        assert_eq!(
            ok.policy(),
            crate::pipeline::retention::Policy {
                mode: LockMode::Governance,
                retention_days: 35,
                horizon_days: crate::pipeline::retention::DEFAULT_HORIZON_DAYS
            }
        );

        let mut set = base.to_vec();
        set.extend([
            ("OBJECT_LOCK_MODE", "COMPLIANCE"),
            ("RETENTION_DAYS", "365"),
            ("LOCK_HORIZON_DAYS", "90"),
            ("KEEPER_CONCURRENCY", "4"),
        ]);
        let set = KeeperConfig::load(&settings(&set)).expect("valid");
        assert_eq!(
            (set.lock_mode, set.retention_days, set.horizon_days, set.concurrency),
            (LockMode::Compliance, 365, 90, 4)
        );

        for (name, value) in [
            ("OBJECT_LOCK_MODE", "LEGAL"),
            ("RETENTION_DAYS", "0"),
            ("RETENTION_DAYS", "a year"),
            ("LOCK_HORIZON_DAYS", "-1"),
            ("KEEPER_CONCURRENCY", "0"),
        ] {
            let mut bad = base.to_vec();
            bad.push((name, value));
            assert!(
                matches!(KeeperConfig::load(&settings(&bad)), Err(ConfigError::Invalid { name: n, .. }) if n == name),
                "{name}={value}"
            );
        }
        for missing in ["TENANT_ID", "CATALOG_TABLE", "VAULT_BUCKET"] {
            let without: Vec<_> = base.iter().copied().filter(|(k, _)| *k != missing).collect();
            assert_eq!(KeeperConfig::load(&settings(&without)).err(), Some(ConfigError::Missing(missing)));
        }
    }
}
