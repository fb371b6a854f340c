//! Keeps N full copies of S3 buckets in other buckets and regions, without versioning.
//!
//! [`Replicator`] applies object changes (created, removed) to every configured target
//! concurrently, by server-side copy; [`invocation::handle`] adapts it to Lambda payloads.

pub mod backfill;
pub mod client;
pub mod config;
pub mod copy;
pub mod deadline;
pub mod event;
pub mod invocation;
pub mod keys;
pub mod metrics;
pub mod outcome;
pub mod provenance;
pub mod replicator;
pub mod s3_error;

pub use client::Clients;
pub use config::{Config, ConfigError, Target};
pub use deadline::Deadline;
pub use event::{Change, ChangeKind};
pub use outcome::{ChangeReport, Outcome, TargetReport};
pub use replicator::Replicator;
