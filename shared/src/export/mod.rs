//! Exports: mail as `.eml` files in zip archives. Pure pieces only (names, the zip format, the
//! manifest); the job that reads the vault and uploads the archives is the restorer's
//! (`pipeline::restorer::export`).

pub mod manifest;
pub mod names;
pub mod zip;
