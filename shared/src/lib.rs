//! The library behind every Lambda of the M365 backup: the Graph client, the vault, the
//! catalog and the pipeline steps (webhook, enumerator, copier, scheduler). It knows nothing
//! about Lambda event shapes; the thin binaries in `functions/` adapt those.

pub mod api;
pub mod aws;
pub mod backoff;
pub mod clientstate;
pub mod clock;
pub mod config;
pub mod export;
pub mod graph;
pub mod keys;
pub mod metrics;
pub mod mime;
pub mod model;
pub mod pipeline;
pub mod store;
pub mod wiring;
