//! One object change, however it was announced (an event, a listing, a Batch Operations task).

use serde::{Deserialize, Serialize};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// The object was created or overwritten.
    Created,
    /// The object was deleted (or expired).
    Removed,
    /// The object's tags were set or removed.
    Tagged,
}

/// How a created object was written, as its announcement names it. An object this tool writes
/// is always announced as copied or assembled (`CopyObject`, `CompleteMultipartUpload`), so
/// one announced as uploaded was written by a client: it is no replica made by any deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Written {
    /// `PutObject` or a browser `POST` upload.
    Uploaded,
    /// `CopyObject`.
    Copied,
    /// `CompleteMultipartUpload`.
    Assembled,
}

impl Written {
    /// From an S3 notification's event name (`ObjectCreated:Put`, `s3:ObjectCreated:Copy`, ...)
    /// or an EventBridge event's `detail.reason` (`PutObject`, `CopyObject`, ...); `None` for
    /// anything else (a restore, a name not known).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.strip_prefix("s3:").unwrap_or(name);
        let name = name.strip_prefix("ObjectCreated:").unwrap_or(name);
        match name {
            "Put" | "Post" | "PutObject" | "POST Object" => Some(Written::Uploaded),
            "Copy" | "CopyObject" => Some(Written::Copied),
            "CompleteMultipartUpload" => Some(Written::Assembled),
            _ => None,
        }
    }
}

/// One object change, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Created or removed.
    pub kind: ChangeKind,
    /// Source bucket.
    pub bucket: String,
    /// Decoded object key.
    pub key: String,
    /// Region of the source bucket, when the event says.
    pub region: Option<String>,
    /// ETag the event announced (without quotes), when it carries one.
    pub etag: Option<String>,
    /// Size the event announced.
    pub size: Option<i64>,
    /// The event's sequencer, which orders events for one key.
    pub sequencer: Option<String>,
    /// Version id, for versioned source buckets.
    pub version_id: Option<String>,
    /// Another spelling of the key, tried when no object exists under `key`: EventBridge keys
    /// are the key itself by every sign, but AWS does not document it, so the form-decoded
    /// spelling is kept too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternate_key: Option<String>,
    /// When the change happened, as the announcement says (milliseconds since the Unix epoch):
    /// the start of the replication latency measured for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<u64>,
    /// How a created object was written, when the announcement says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
}

impl Change {
    /// An object created (or overwritten) in `bucket`.
    pub fn created(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new(ChangeKind::Created, bucket.into(), key.into())
    }

    /// An object removed from `bucket`.
    pub fn removed(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self::new(ChangeKind::Removed, bucket.into(), key.into())
    }

    fn new(kind: ChangeKind, bucket: String, key: String) -> Self {
        Change {
            kind,
            bucket,
            key,
            region: None,
            etag: None,
            size: None,
            sequencer: None,
            version_id: None,
            alternate_key: None,
            event_time: None,
            written: None,
        }
    }

    /// With the ETag the announcement carried (quotes are removed).
    pub fn with_etag(mut self, etag: impl Into<String>) -> Self {
        self.etag = Some(etag.into().trim_matches('"').to_string());
        self
    }

    /// With the size the announcement carried.
    pub fn with_size(mut self, size: i64) -> Self {
        self.size = Some(size);
        self
    }

    /// Announced as written this way.
    pub fn written(mut self, written: Written) -> Self {
        self.written = Some(written);
        self
    }

    /// With the source bucket's region.
    pub fn in_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
}
