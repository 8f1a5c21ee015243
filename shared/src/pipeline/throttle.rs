//! Graph's throttling shared by every worker: a `THROTTLE#` row per resource that only moves
//! later, read before each Graph call. A step calls Graph through [`paced`] (the copier, which
//! defers its job when throttled) or [`paced_within`] (the enumerators, which sleep while their
//! deadline allows). Drive steps also share SharePoint's own warning: once an answer shows the
//! tenant's resource-unit budget down to its reserve, the drive row moves to the budget's reset,
//! so every worker of the tenant waits *before* Graph has to answer 429.

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::{DriveReader, PipelineError};
use crate::clock::Clock;
use crate::graph::GraphError;
use crate::model::{ContainerId, ContainerKind};
use crate::store::{Coordination, StoreError};

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
    catalog: &dyn Coordination,
    c: &ContainerId,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, StoreError> {
    Ok(catalog
        .throttled_until(&c.tenant_id, &throttle_resource(c))
        .await?
        .filter(|until| *until > now)
        .and_then(|until| (until - now).to_std().ok()))
}

/// What a Graph call under the shared throttle came to.
pub(super) enum Paced<T> {
    /// Graph answered (anything but a throttle).
    Answered(T),
    /// Graph throttles the container: the shared row said so and nothing was called, or the
    /// call was throttled and its `Retry-After` is now shared. Try again after this long.
    Throttled(Duration),
}

/// Runs `call` unless the container is throttled; a throttled answer is shared with every
/// other worker before it is returned as the wait. `budget` is the drive reader whose
/// SharePoint budget is checked once Graph has answered (anything but a throttle): a pause it
/// asks for is shared the same way, and the answer still returned. `None` where no such budget
/// applies (Exchange throttles each mailbox on its own).
pub(super) async fn paced<T, E>(
    catalog: &dyn Coordination,
    clock: &dyn Clock,
    c: &ContainerId,
    budget: Option<&dyn DriveReader>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<Paced<T>, PipelineError>
where
    E: Into<PipelineError>,
{
    if let Some(wait) = throttle_delay(catalog, c, clock.now()).await? {
        return Ok(Paced::Throttled(wait));
    }
    let answer = call.await.map_err(Into::into);
    if let Err(PipelineError::Graph(GraphError::Throttled { retry_after, .. })) = answer {
        catalog.throttle(&c.tenant_id, &throttle_resource(c), later(clock, retry_after)).await?;
        return Ok(Paced::Throttled(retry_after));
    }
    if let Some(pause) = budget.and_then(|reader| reader.budget_pause()) {
        share_budget_pause(catalog, clock, c, pause).await;
    }
    answer.map(Paced::Answered)
}

/// Moves the shared row to the end of `pause`. Graph did answer, so a row that cannot be
/// written only costs the warning: the answer stands, and a 429 would still be shared.
async fn share_budget_pause(catalog: &dyn Coordination, clock: &dyn Clock, c: &ContainerId, pause: Duration) {
    let resource = throttle_resource(c);
    match catalog.throttle(&c.tenant_id, &resource, later(clock, pause)).await {
        Ok(()) => {
            info!(
                tenant = %c.tenant_id,
                resource,
                pause_s = pause.as_secs(),
                "SharePoint's budget is down to its reserve: drive work pauses until it resets"
            );
            crate::metrics::count(crate::metrics::GRAPH_BUDGET_PAUSES, 1);
        }
        Err(e) => warn!(tenant = %c.tenant_id, error = %e, "could not share SharePoint's budget pause"),
    }
}

fn later(clock: &dyn Clock, wait: Duration) -> DateTime<Utc> {
    clock.now() + chrono::Duration::from_std(wait).unwrap_or_default()
}

/// Calls until Graph answers with anything but a throttle, sleeping out each throttle while
/// that leaves `reserve` before `deadline`. `None` when it does not: the caller continues in
/// a new invocation.
pub(super) async fn paced_within<T, E, F>(
    catalog: &dyn Coordination,
    clock: &dyn Clock,
    c: &ContainerId,
    budget: Option<&dyn DriveReader>,
    deadline: Instant,
    reserve: Duration,
    mut call: impl FnMut() -> F,
) -> Result<Option<T>, PipelineError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<PipelineError>,
{
    loop {
        match paced(catalog, clock, c, budget, call()).await? {
            Paced::Answered(answer) => return Ok(Some(answer)),
            Paced::Throttled(wait) => {
                if !sleep_within(wait, deadline, reserve).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// Sleeps `wait` if that leaves the reserve before the deadline.
async fn sleep_within(wait: Duration, deadline: Instant, reserve: Duration) -> bool {
    if Instant::now() + wait + reserve > deadline {
        return false;
    }
    tokio::time::sleep(wait).await;
    true
}
