//! Provenance recorded on each replica as user metadata.
//!
//! It tells later runs that a replica already holds a given source content (multipart ETags
//! depend on part sizes, so the replica's own ETag cannot tell), and it marks replicas so that
//! an event about a replica is never copied onward.

use std::collections::BTreeMap;

/// User-metadata key holding the source object's ETag (without quotes).
pub const SOURCE_ETAG: &str = "fanout-source-etag";
/// User-metadata key holding the source bucket name.
pub const SOURCE_BUCKET: &str = "fanout-source-bucket";

/// Strips the quotes S3 puts around ETags in headers.
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// Whether user metadata marks an object as a replica written by this tool.
pub fn is_replica(metadata: &BTreeMap<String, String>) -> bool {
    metadata.contains_key(SOURCE_ETAG)
}

/// The source ETag a replica was made from, if it carries provenance.
pub fn recorded_etag(metadata: &BTreeMap<String, String>) -> Option<&str> {
    metadata.get(SOURCE_ETAG).map(String::as_str)
}

/// The source's user metadata plus provenance, as written on the replica.
pub fn replica_metadata(
    source: &BTreeMap<String, String>,
    source_bucket: &str,
    source_etag: &str,
) -> BTreeMap<String, String> {
    let mut metadata = source.clone();
    metadata.insert(SOURCE_ETAG.to_string(), bare_etag(source_etag).to_string());
    metadata.insert(SOURCE_BUCKET.to_string(), source_bucket.to_string());
    metadata
}
