//! The restore API (DESIGN §7): browse what is protected and what it looked like at any
//! moment, download a backed-up version through a presigned link, and start restore jobs.
//! An axum router served by `lambda_http` behind API Gateway (IAM auth) and by
//! `axum::serve` locally. Every route works on the one tenant from configuration.

pub mod messages;
pub mod presign;

pub use messages::{RestoreStep, RestoreTask};
pub use presign::{DOWNLOAD_LINK_LIFETIME, MemoryPresigner, PresignedGet, Presigner, S3Presigner};
