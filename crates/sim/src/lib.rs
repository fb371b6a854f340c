//! An in-memory S3 behind the engine's storage port, for deterministic simulation.
//!
//! From a seed, [`SimStore`] injects errors per operation (throttling, internal errors,
//! connection resets, timeouts, some after the write was applied), latency on tokio's clock (run
//! it with the clock paused: time is virtual, deadlines exact, nothing sleeps), and writes or
//! deletes by another client between any two engine steps. It enforces what S3 enforces:
//! CopyObject at most 5 GiB, parts of 5 MiB to 5 GiB but the last, at most 10,000 parts,
//! `x-amz-copy-source-if-match`, `If-Match` / `If-None-Match` on writes and deletes, 2 KB of user
//! metadata, 10 tags, 1,024-byte keys. Object bytes are symbolic (segments of numbered
//! contents), so objects of any size cost nothing.

mod content;
mod rng;
mod store;

pub use content::Content;
pub use rng::Rng;
pub use store::{
    checksum_of, checksum_with, Faults, NewObject, Notice, NoticeKind, SimObject, SimStore,
};
