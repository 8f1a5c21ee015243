//! The Microsoft Graph client the backup functions use: discovery, delta, content and
//! subscriptions for the backup; folders, moves, uploads and upload sessions for the
//! restorer (`write.rs`, `upload.rs`); Exchange Online mail folders, delta and MIME
//! (`mail.rs`).
//!
//! One [`GraphClient`] per process, cloned freely. Every call goes through one retry
//! policy (see `client.rs`); what is left for the caller comes back as a [`GraphError`]
//! with predicates (`is_throttled`, `retry_after`, `is_resync`) to branch on. Long
//! throttling is *not* waited out here: the caller shares it with the other workers.
//!
//! Nothing here logs or returns tokens, the client secret, `clientState`, or delta and
//! next links (they carry the delta token). Upload URLs (pre-authenticated) are never
//! logged and only handed out inside the redacted [`UploadUrl`].

mod auth;
mod budget;
mod client;
mod directory;
mod drive;
mod error;
mod mail;
mod mail_write;
pub mod quickxor;
mod sites;
mod subscriptions;
mod upload;
mod write;

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod client_tests;
#[cfg(test)]
pub(crate) mod test_server;

pub use auth::ClientSecret;
pub use budget::{BUDGET_RESERVE_MAX_UNITS, BUDGET_RESERVE_PERCENT, RateLimit};
pub use client::{GraphClient, GraphConfig};
pub use directory::{Drive, User};
pub use drive::{ByteStream, DeltaCursor, DeltaLink, DeltaPage, Download, DriveItem, ItemKind, UnusableItem};
pub use error::{DEFAULT_THROTTLE_WAIT, GraphError};
pub use mail::{
    DEFAULT_MAIL_PAGE_SIZE, MailFolder, MailFolderChange, MailFolderDeltaCursor, MailFolderDeltaPage, Message,
    MessageChange, MessageDeltaCursor, MessageDeltaPage, Recipient,
};
pub use mail_write::{ATTACHMENT_FRAGMENT, FolderMessage};
pub use quickxor::QuickXorHasher;
pub use sites::{Group, Library, Site, SitesDeltaPage};
pub use subscriptions::{NewSubscription, Subscription};
pub use upload::{
    DEFAULT_FRAGMENT_SIZE, FragmentResult, SessionOptions, UPLOAD_FRAGMENT_UNIT, UploadSession, UploadUrl,
};
pub use write::{ConflictBehavior, DriveItemVersion, UploadTarget};
