//! The embedded local stack: moto for AWS (resources from `template.yaml`), the Graph
//! simulator, the webhook on loopback and queue pollers running the Lambdas' handlers.

pub mod moto;
pub mod provision;
