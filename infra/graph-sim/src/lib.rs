//! A Microsoft Graph simulator for the backup product's tests, demo and
//! benchmarks: OAuth client-credentials tokens, users and OneDrive for Business
//! drives, driveItem GET/children/delta, content download through
//! pre-authenticated URLs with Range, the restore write side (simple uploads,
//! resumable upload sessions, rename/move, folders, delete, versions,
//! permissions), webhook subscriptions with the validation
//! handshake and coalesced notifications, SharePoint sites (discovery, subsites,
//! groups, document libraries as drives, archived / denied / deleted sites,
//! `Sites.Selected` grants) with resource-unit throttling per app, Exchange
//! mail, injected faults, and an admin API
//! that mutates the tenant and exposes ground truth.
//!
//! Behaviour follows `graph-facts.md`. This crate deliberately shares no code
//! with the workspace's `shared` crate (an identical bug on both sides would
//! otherwise pass every test).

mod admin;
mod apps;
mod auth;
pub mod bad_mail;
pub mod content;
mod error;
mod faults;
mod graph;
pub mod mime_gen;
pub mod mime_read;
pub mod names;
mod notify;
pub mod quickxor;
mod seed;
mod seed_mail;
mod seed_sites;
mod signer;
mod store;
mod throttle;

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;

pub use apps::SimApp;
pub use error::GraphError;

/// Simulator settings; [`Default`] mirrors Graph's documented values.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub tenant_id: String,
    /// The tenant's SharePoint name: sites live on `{tenant_name}.sharepoint.com`, OneDrives
    /// on `{tenant_name}-my.sharepoint.com`.
    pub tenant_name: String,
    /// The tenant's app registrations; the token endpoint issues tokens to each, carrying
    /// its application permissions (graph-facts §10, §13.5). [`Default`] has three:
    /// [`SimApp::reader`], [`SimApp::subscriber`] and [`SimApp::restorer`].
    pub apps: Vec<SimApp>,
    /// Access-token lifetime (`expires_in`), 3599 s like Entra ID.
    pub token_lifetime: Duration,
    /// Items per delta page.
    pub delta_page_size: usize,
    /// Max subscription lifetime for driveItem: 42,300 minutes.
    pub subscription_max_minutes: i64,
    /// Subscriptions per `GET /subscriptions` page (then `@odata.nextLink`).
    pub subscription_page_size: usize,
    /// Coalescing window before a drive's change notification is sent.
    pub notification_delay: Duration,
    /// Lifetime of `@microsoft.graph.downloadUrl` links (about 1 h).
    pub download_url_lifetime: Duration,
    /// Chance that a newly written file lacks `quickXorHash` until `fill_hashes`.
    pub hash_missing_probability: f64,
    /// Delta tokens older than this answer `410 Gone`.
    pub delta_token_retention: Duration,
    /// ODfB omits `cTag` from delta items (graph-facts §4); set to include it.
    pub delta_includes_ctag: bool,
    /// Deadline for the subscription validation handshake (10 s in Graph).
    pub validation_timeout: Duration,
    /// Deadline for a notification POST (3 s in Graph).
    pub notification_timeout: Duration,
    /// Retries after a failed notification, and the pause between them.
    pub notification_retries: u32,
    pub notification_retry_delay: Duration,
    /// Largest body for a simple `PUT .../content` upload (250 MB in the
    /// current docs, 4 MB in older ones); larger answers `413`.
    pub simple_upload_max: u64,
    /// How long an upload session lives without receiving bytes; every
    /// accepted fragment extends it by this much.
    pub upload_session_lifetime: Duration,
    /// Mail delta / listing page size when `Prefer: odata.maxpagesize` is absent (10 in Graph).
    pub mail_page_size: usize,
    /// Max subscription lifetime for Outlook messages: 10,080 minutes in the current
    /// docs, 4,230 in older ones (graph-facts §1).
    pub mail_subscription_max_minutes: i64,
    /// Outlook limits per mailbox (graph-facts §9): concurrent requests, requests per
    /// window, bytes uploaded (POST/PUT/PATCH bodies) per window.
    pub mail_concurrency: usize,
    pub mail_requests_per_window: usize,
    pub mail_request_window: Duration,
    pub mail_upload_bytes_per_window: u64,
    pub mail_upload_window: Duration,
    /// Largest request body on a mail write (4 MB); larger answers `413`.
    pub mail_request_max: u64,
    /// Exchange Online's largest message (150 MB, MIME encoding included): a bigger
    /// delivery is refused (`413 ErrorMessageSizeExceeded`), so Graph never serves one.
    pub mail_max_message_bytes: u64,
    /// SharePoint/OneDrive resource units per app (graph-facts-sharepoint §2.4): the budget
    /// of a fixed window starting at the app's first counted request (1,250 per minute and
    /// 1,200,000 per 24 h for a tenant under 1,000 licences). Changeable at runtime with
    /// `PATCH /admin/throttling`.
    pub ru_per_minute: u64,
    pub ru_per_day: u64,
    pub ru_minute_window: Duration,
    pub ru_day_window: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            tenant_id: "00000000-0000-0000-0000-00000000c0de".into(),
            tenant_name: "contoso".into(),
            apps: vec![
                SimApp::reader("11111111-1111-1111-1111-111111111111", "sim-reader-secret"),
                SimApp::subscriber("22222222-2222-2222-2222-222222222222", "sim-subscriber-secret"),
                SimApp::restorer("33333333-3333-3333-3333-333333333333", "sim-restorer-secret"),
            ],
            token_lifetime: Duration::from_secs(3599),
            delta_page_size: 200,
            subscription_max_minutes: 42_300,
            subscription_page_size: 100,
            notification_delay: Duration::from_millis(200),
            download_url_lifetime: Duration::from_secs(3600),
            hash_missing_probability: 0.0,
            delta_token_retention: Duration::from_secs(30 * 24 * 3600),
            delta_includes_ctag: false,
            validation_timeout: Duration::from_secs(10),
            notification_timeout: Duration::from_secs(3),
            notification_retries: 3,
            notification_retry_delay: Duration::from_secs(1),
            simple_upload_max: 250_000_000,
            upload_session_lifetime: Duration::from_secs(15 * 60),
            mail_page_size: 10,
            mail_subscription_max_minutes: 10_080,
            mail_concurrency: 4,
            mail_requests_per_window: 10_000,
            mail_request_window: Duration::from_secs(600),
            mail_upload_bytes_per_window: 150 * 1024 * 1024,
            mail_upload_window: Duration::from_secs(300),
            mail_request_max: 4 * 1024 * 1024,
            mail_max_message_bytes: 150 * 1024 * 1024,
            ru_per_minute: 1_250,
            ru_per_day: 1_200_000,
            ru_minute_window: Duration::from_secs(60),
            ru_day_window: Duration::from_secs(24 * 3600),
        }
    }
}

impl SimConfig {
    /// The app named `name` (as configured; runtime permission changes are not reflected).
    pub fn app(&self, name: &str) -> Option<&SimApp> {
        self.apps.iter().find(|a| a.name == name)
    }
}

pub(crate) struct Inner {
    pub cfg: SimConfig,
    state: Mutex<store::State>,
    pub signer: signer::Signer,
    pub http: reqwest::Client,
    /// Drives with a notification waiting out the coalescing window.
    pub pending_notify: Mutex<HashSet<String>>,
    pub download_bytes: AtomicU64,
    /// Notifications scheduled or being delivered (retries included): a harness that waits
    /// for quiet must wait for these too, or it can look idle between a change and its POST.
    pub notifications_in_flight: AtomicU64,
    /// Outlook throttling state per mailbox.
    pub mail_limits: graph::mail_limits::MailLimits,
    /// SharePoint/OneDrive resource units per app.
    pub throttle: throttle::Throttle,
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, store::State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The simulator; cheap to clone.
#[derive(Clone)]
pub struct GraphSim {
    inner: Arc<Inner>,
}

impl GraphSim {
    pub fn new(cfg: SimConfig) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let state = store::State { apps: cfg.apps.clone(), ..store::State::default() };
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                signer: signer::Signer::new(),
                http,
                pending_notify: Mutex::new(HashSet::new()),
                download_bytes: AtomicU64::new(0),
                notifications_in_flight: AtomicU64::new(0),
                mail_limits: Default::default(),
                throttle: throttle::Throttle::new(&cfg),
                cfg,
            }),
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }

    /// The app named `name` in the configuration (`reader`, `subscriber`, `restorer` by default).
    pub fn app(&self, name: &str) -> Option<&SimApp> {
        self.inner.cfg.app(name)
    }

    /// Every route: `/v1.0/...`, `/{tenant}/oauth2/v2.0/token`, `/download/...`, `/upload/...`, `/admin/...`.
    pub fn router(&self) -> Router {
        let sim = Arc::clone(&self.inner);
        let gated = Router::new()
            .nest("/v1.0", graph::router(Arc::clone(&sim)))
            .merge(
                graph::download_router()
                    .merge(graph::upload_router())
                    .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), throttle::charge)),
            )
            .merge(
                graph::mail_upload_router()
                    .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), graph::mail_limit)),
            )
            .merge(auth::token_router())
            .layer(axum::middleware::from_fn_with_state(Arc::clone(&sim), faults::gate));
        gated.nest("/admin", admin::router()).with_state(sim)
    }

    /// Serves [`router`](Self::router) on `listener` until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

/// `http://host:port` of the request, for links the simulator hands out.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}")
}
