//! The engine: settles replicas through the storage port, for events and for backfills, within
//! an invocation's deadline.

pub mod backfill;
pub mod breaker;
mod copy;
pub mod deadline;
pub mod replicator;
mod shared;
mod websites;
