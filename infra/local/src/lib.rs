//! The embedded local stack: moto for AWS (resources from `template.yaml`), the Graph
//! simulator, the webhook on loopback and queue pollers running the Lambdas' handlers.

pub mod admin;
pub mod admin_mail;
pub mod admin_sites;
pub mod bench;
pub mod bench_catalog;
pub mod bench_discovery;
pub mod bench_keeper;
pub mod bench_mail;
pub mod bench_restore;
pub mod bench_restore_lab;
pub mod bench_restore_plan;
pub mod bench_site_discovery;
pub mod bench_sites;
pub mod control;
pub mod counter;
pub mod demo;
pub mod mail_story;
pub mod moto;
pub mod provision;
pub mod ransomware;
pub mod runner;
pub mod sharepoint_story;
pub mod stack;
pub mod verify;
