//! Adapters from Lambda payloads to the engine: event shapes, the SQS batch response, S3 Batch
//! Operations tasks, backfill payloads and metrics. The function `main`s call these.

pub mod backfill;
pub mod batch;
pub mod event;
pub mod invocation;
pub mod metrics;
pub mod owed;
