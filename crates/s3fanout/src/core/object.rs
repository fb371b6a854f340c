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
    /// Its full-object checksum, when it has one (`x-amz-checksum-*` with checksum mode on, of
    /// type `FULL_OBJECT`); composite checksums of multipart uploads are not one.
    pub checksum: Option<Checksum>,
    /// Encrypted with SSE-KMS or DSSE-KMS (`x-amz-server-side-encryption`): its ETag is then
    /// not a digest of its bytes, and an equal ETag proves nothing.
    pub kms: bool,
    /// Whether its bytes can be read (and so copied) now.
    pub access: Access,
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

/// The algorithm of a full-object checksum: each is independent of the part layout and of the
/// encryption, so equal values of one algorithm mean equal bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChecksumAlgorithm {
    /// CRC-64/NVME, S3's default since December 2024.
    Crc64Nvme,
    /// CRC-32 of type `FULL_OBJECT`.
    Crc32,
    /// CRC-32C of type `FULL_OBJECT`.
    Crc32C,
}

/// A full-object checksum as S3 reports it (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// Which algorithm.
    pub algorithm: ChecksumAlgorithm,
    /// The value, base64 as S3 sends it.
    pub value: String,
}

/// Whether an object's bytes can be read now: objects in GLACIER or DEEP_ARCHIVE, or in an
/// archive tier of INTELLIGENT_TIERING, answer 403 `ObjectNotInActiveTierError` to
/// CopyObject and UploadPartCopy until they are restored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Access {
    /// Readable.
    #[default]
    Ready,
    /// Archived, and no restored copy is available (none asked for, or one in progress).
    Archived,
}

impl Access {
    /// From the headers of a HEAD: the storage class, `x-amz-restore` and
    /// `x-amz-archive-status`. A restored copy (`ongoing-request="false"`) is readable.
    pub fn from_headers(
        storage_class: Option<&str>,
        restore: Option<&str>,
        archive_status: Option<&str>,
    ) -> Self {
        let restored = restore.is_some_and(|r| r.contains("ongoing-request=\"false\""));
        let archived_class = matches!(storage_class, Some("GLACIER" | "DEEP_ARCHIVE"));
        let archived_tier = matches!(
            archive_status,
            Some("ARCHIVE_ACCESS" | "DEEP_ARCHIVE_ACCESS")
        );
        if (archived_class || archived_tier) && !restored {
            Access::Archived
        } else {
            Access::Ready
        }
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
    /// Storage class (`None`: STANDARD).
    pub storage_class: Option<String>,
}

impl Listed {
    /// Whether the object may be archived ([`may_be_archived`]).
    pub fn may_be_archived(&self) -> bool {
        may_be_archived(self.storage_class.as_deref())
    }
}

/// Whether an object of this storage class may be archived, which only a HEAD can tell:
/// GLACIER and DEEP_ARCHIVE until restored, INTELLIGENT_TIERING in its archive tiers.
pub fn may_be_archived(storage_class: Option<&str>) -> bool {
    matches!(
        storage_class,
        Some("GLACIER" | "DEEP_ARCHIVE" | "INTELLIGENT_TIERING")
    )
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

    /// S3 API reference, HeadObject: `x-amz-restore` is `ongoing-request="true"` while a
    /// restore runs and `ongoing-request="false", expiry-date="..."` once the copy is there;
    /// `x-amz-archive-status` is `ARCHIVE_ACCESS` or `DEEP_ARCHIVE_ACCESS` for
    /// Intelligent-Tiering's archive tiers.
    #[test]
    fn archived_objects_are_readable_only_once_restored() {
        use Access::*;
        assert_eq!(Access::from_headers(None, None, None), Ready);
        assert_eq!(Access::from_headers(Some("STANDARD_IA"), None, None), Ready);
        assert_eq!(Access::from_headers(Some("GLACIER_IR"), None, None), Ready);
        assert_eq!(Access::from_headers(Some("GLACIER"), None, None), Archived);
        assert_eq!(
            Access::from_headers(Some("DEEP_ARCHIVE"), Some("ongoing-request=\"true\""), None),
            Archived
        );
        assert_eq!(
            Access::from_headers(
                Some("GLACIER"),
                Some("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\""),
                None
            ),
            Ready
        );
        assert_eq!(
            Access::from_headers(Some("INTELLIGENT_TIERING"), None, Some("ARCHIVE_ACCESS")),
            Archived
        );
        assert_eq!(
            Access::from_headers(Some("INTELLIGENT_TIERING"), None, None),
            Ready
        );
    }

    #[test]
    fn uniform_parts_reproduce_the_count() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(layout_of(20 * MIB, 3, 8 * MIB), Layout::Uniform(8 * MIB));
        assert_eq!(layout_of(20 * MIB, 2, 8 * MIB), Layout::Irregular);
        assert_eq!(layout_of(20 * MIB, 3, 0), Layout::Irregular);
    }
}
