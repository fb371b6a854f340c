//! The replicate function's adapters around the engine's invocation handler: SQS visibility
//! changes for failed messages ([`visibility`]).

pub mod visibility;
