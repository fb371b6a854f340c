//! The replicate function's adapters around the engine's invocation handler: SQS visibility
//! changes for failed messages ([`visibility`]) and the retry queue where work owed to one
//! target waits ([`retry_queue`]).

pub mod retry_queue;
pub mod visibility;
