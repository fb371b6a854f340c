//! Keeps N full copies of S3 buckets in other buckets and regions, without versioning.
//!
//! Layers: [`core`] (configuration, changes, the decision of what happens to a replica,
//! outcomes; no I/O), [`store`] (the narrow storage port and its aws-sdk-s3 implementation),
//! [`engine`] (settles replicas for events and backfills within a deadline), [`lambda`]
//! (Lambda payload shapes and responses around the engine).

pub mod core;
pub mod engine;
pub mod lambda;
pub mod store;

pub use crate::core::change::{Change, ChangeKind};
pub use crate::core::config::{Config, ConfigError, Target};
pub use crate::core::outcome::{ChangeReport, Failure, FailureKind, Outcome, TargetReport};
pub use crate::core::{keys, provenance};
pub use engine::backfill;
pub use engine::deadline::Deadline;
pub use engine::replicator::Replicator;
pub use lambda::{event, invocation};
pub use store::clients::Clients;
pub use store::Store;
