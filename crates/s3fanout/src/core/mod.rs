//! The domain: configuration, changes, what is known of objects, the decision of what to do with
//! a replica, and outcomes. Nothing here performs I/O or knows of Lambda or the AWS SDK.

pub mod change;
pub mod config;
pub mod decide;
pub mod keys;
pub mod object;
pub mod outcome;
pub mod provenance;
