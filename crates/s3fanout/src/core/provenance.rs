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

/// Whether a user-metadata key is provenance (written by this tool, not taken from the source).
pub fn is_provenance_key(key: &str) -> bool {
    key == SOURCE_ETAG || key == SOURCE_BUCKET
}

/// Strips the quotes S3 puts around ETags in headers.
pub fn bare_etag(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// Whether user metadata marks an object as a replica written by this tool.
pub fn is_replica(metadata: &BTreeMap<String, String>) -> bool {
    metadata.contains_key(SOURCE_ETAG)
}

/// The source bucket a replica was made from, if it carries provenance.
pub fn recorded_bucket(metadata: &BTreeMap<String, String>) -> Option<&str> {
    metadata.get(SOURCE_BUCKET).map(String::as_str)
}

/// Whether copying an object found in source bucket `bucket` onward would loop: it is a replica
/// of another configured source. A replica copied back into its own source (a restore), or a
/// replica bucket promoted to be the source after a failover (its objects name a bucket that
/// is no longer a source), is data to replicate like any other.
pub fn would_loop(
    metadata: &BTreeMap<String, String>,
    bucket: &str,
    sources: &std::collections::BTreeSet<String>,
) -> bool {
    recorded_bucket(metadata).is_some_and(|from| from != bucket && sources.contains(from))
}

/// The source ETag a replica was made from, if it carries provenance.
pub fn recorded_etag(metadata: &BTreeMap<String, String>) -> Option<&str> {
    metadata.get(SOURCE_ETAG).map(String::as_str)
}

/// S3's limit on user metadata: the UTF-8 bytes of every key and value.
pub const MAX_METADATA_BYTES: usize = 2048;

/// Bytes of user metadata as S3 counts them.
pub fn metadata_bytes(metadata: &BTreeMap<String, String>) -> usize {
    metadata.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// The source's user metadata plus provenance, as written on the replica; without provenance
/// when adding it would pass S3's 2 KB limit (the replica then matches its source by ETag,
/// which the copy preserves).
pub fn replica_metadata(
    source: &BTreeMap<String, String>,
    source_bucket: &str,
    source_etag: &str,
) -> BTreeMap<String, String> {
    let mut metadata = source.clone();
    metadata.insert(SOURCE_ETAG.to_string(), bare_etag(source_etag).to_string());
    metadata.insert(SOURCE_BUCKET.to_string(), source_bucket.to_string());
    if metadata_bytes(&metadata) > MAX_METADATA_BYTES {
        return source.clone();
    }
    metadata
}

/// Whether provenance fits beside this source metadata.
pub fn fits(source: &BTreeMap<String, String>, source_bucket: &str, source_etag: &str) -> bool {
    replica_metadata(source, source_bucket, source_etag).contains_key(SOURCE_ETAG)
}
