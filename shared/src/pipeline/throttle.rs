//! Graph's throttling shared by every worker: a `THROTTLE#` row per resource that only moves
//! later, read before each Graph call.

use chrono::{DateTime, Utc};

use crate::model::{ContainerId, ContainerKind};
use crate::store::{Catalog, StoreError};

/// The resource name under which drive throttling is shared by every Lambda instance.
pub const DRIVE_RESOURCE: &str = "drive";

/// Where Graph's throttling of a container is shared: a tenant's drives share SharePoint's
/// budget; Exchange throttles each mailbox on its own.
pub fn throttle_resource(c: &ContainerId) -> String {
    match c.kind {
        ContainerKind::Drive => DRIVE_RESOURCE.to_owned(),
        ContainerKind::Mailbox => format!("mailbox.{}", crate::keys::opaque_id(&c.graph_id)),
    }
}

/// Delay until Graph may be called again for this container, if we are throttled.
pub async fn throttle_delay(
    catalog: &dyn Catalog,
    c: &ContainerId,
    now: DateTime<Utc>,
) -> Result<Option<std::time::Duration>, StoreError> {
    Ok(catalog
        .throttled_until(&c.tenant_id, &throttle_resource(c))
        .await?
        .filter(|until| *until > now)
        .and_then(|until| (until - now).to_std().ok()))
}
