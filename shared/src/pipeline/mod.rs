//! The steps of the backup pipeline, each a plain async function over capability traits so
//! that tests run them in-process against fakes and end to end against moto and the Graph
//! simulator. Lambda adapters live in `functions/`, the local event-source runner in
//! `infra/local`.

pub mod batch;
pub mod copier;
pub mod enumerator;
mod error;
pub mod keeper;
pub mod mailbox;
mod order;
mod part_buffer;
mod readers;
pub mod restorer;
pub mod retention;
pub mod scheduler;
pub mod sites;
mod state;
mod throttle;
pub mod verify;
pub mod webhook;

pub use error::PipelineError;
pub use readers::{DriveReader, MailPage, MailReader};
pub use state::{item_state, mail_folder_state, message_state};
pub use throttle::{DRIVE_RESOURCE, throttle_delay, throttle_resource};

#[cfg(test)]
mod budget_tests;
#[cfg(test)]
mod mail_bad_input_tests;
#[cfg(test)]
mod mail_slot_tests;
#[cfg(test)]
mod mail_tests;
#[cfg(test)]
mod nothing_lost_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod sites_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod verify_tests;
