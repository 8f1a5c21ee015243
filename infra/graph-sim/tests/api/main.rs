//! End-to-end tests of the simulator over real HTTP: each test starts its own
//! simulator on 127.0.0.1:0 and talks to it with reqwest.

mod common;

mod apps;
mod auth_users;
mod backdating;
mod content;
mod delta;
mod faults;
mod mail_bad_input;
mod mail_limits;
mod mail_notify;
mod mail_read;
mod mail_write;
mod recycle;
mod sites;
mod sp_throttling;
mod subscriptions;
mod uploads;
mod writes;
