//! What the engine knows of an object, from a HEAD or a listing, independent of any client.

use std::collections::BTreeMap;

use super::provenance;

/// Content headers a replica takes from its source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Expires`, as the raw header: S3 stores any string there, not only valid dates.
    pub expires: Option<String>,
    /// `x-amz-website-redirect-location`.
    pub website_redirect: Option<String>,
}

/// An object's headers, as a HEAD request returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHead {
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes (of the part, for a HEAD with a part number).
    pub size: u64,
    /// Content headers.
    pub headers: ContentHeaders,
    /// User metadata (`x-amz-meta-*`), keys in lower case.
    pub metadata: BTreeMap<String, String>,
    /// Storage class; `None` means STANDARD.
    pub storage_class: Option<String>,
    /// Part count, for a HEAD with a part number of a multipart object.
    pub parts_count: Option<u32>,
    /// When it was last written, in milliseconds since the Unix epoch (S3 gives whole seconds).
    pub last_modified_ms: Option<i64>,
}

impl ObjectHead {
    /// Whether the object carries this tool's provenance, that is, it is a replica.
    pub fn is_replica(&self) -> bool {
        provenance::is_replica(&self.metadata)
    }

    /// The source ETag this object was copied from, when it is a replica.
    pub fn recorded_etag(&self) -> Option<&str> {
        provenance::recorded_etag(&self.metadata)
    }
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key (relative to a target's prefix, once a cursor has stripped it).
    pub key: String,
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
}

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// How a multipart source's parts are laid out, read with a HEAD of part 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every part but the last has this size: a copy with the same parts has the same ETag.
    Uniform(u64),
    /// The parts cannot be reproduced (uneven sizes, or part 1 could not be read).
    Irregular,
}

/// The part count of a multipart object, from its ETag (`"<md5>-<parts>"`).
pub fn parts_in_etag(etag: &str) -> Option<u64> {
    let (_, parts) = etag.trim_matches('"').rsplit_once('-')?;
    parts.parse().ok()
}

/// The layout of a multipart object of `size` bytes whose ETag says `parts` parts and whose
/// part 1 has `first_part` bytes.
pub fn layout_of(size: u64, parts: u64, first_part: u64) -> Layout {
    let uniform = first_part > 0 && size.div_ceil(first_part) == parts;
    if uniform {
        Layout::Uniform(first_part)
    } else {
        Layout::Irregular
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_part_count_from_etag() {
        assert_eq!(
            parts_in_etag("\"9b2cf535f27731c974343645a3985328-12\""),
            Some(12)
        );
        assert_eq!(parts_in_etag("9b2cf535f27731c974343645a3985328"), None);
    }

    #[test]
    fn uniform_parts_reproduce_the_count() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(layout_of(20 * MIB, 3, 8 * MIB), Layout::Uniform(8 * MIB));
        assert_eq!(layout_of(20 * MIB, 2, 8 * MIB), Layout::Irregular);
        assert_eq!(layout_of(20 * MIB, 3, 0), Layout::Irregular);
    }
}
