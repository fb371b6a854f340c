//! Paginated ListObjectsV2 as a cursor: memory is bounded by the page size, not the bucket.

use std::collections::VecDeque;

use aws_sdk_s3::Client;

use crate::provenance::bare_etag;
use crate::s3_error::S3Failure;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key relative to the bucket's key prefix (a target's `prefix` removed).
    pub key: String,
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
}

/// A listing in key order, fetched a page at a time.
pub struct Lister {
    client: Client,
    bucket: String,
    /// Stripped from every key (a target's key prefix).
    strip: String,
    /// Listing prefix: `strip` plus the requested prefix.
    prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    exhausted: bool,
    buffer: VecDeque<Listed>,
    /// Pages requested so far.
    pub requests: u64,
}

impl Lister {
    /// Lists `bucket` under `strip + prefix`, after `start_after` (relative to `strip`).
    pub fn new(
        client: Client,
        bucket: &str,
        strip: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Self {
        Lister {
            client,
            bucket: bucket.to_string(),
            strip: strip.to_string(),
            prefix: format!("{strip}{prefix}"),
            start_after: start_after.map(|k| format!("{strip}{k}")),
            token: None,
            exhausted: false,
            buffer: VecDeque::new(),
            requests: 0,
        }
    }

    async fn fetch(&mut self) -> Result<(), String> {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix);
        request = match &self.token {
            Some(token) => request.continuation_token(token),
            None => request.set_start_after(self.start_after.clone()),
        };
        self.requests += 1;
        let page = request.send().await.map_err(|err| {
            let failure = S3Failure::from_sdk(&err);
            if failure.code.as_deref() == Some("NoSuchBucket") {
                format!("bucket {:?} does not exist", self.bucket)
            } else {
                failure.describe(
                    "ListObjectsV2",
                    &format!("s3://{}/{}", self.bucket, self.prefix),
                )
            }
        })?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let Some(relative) = key.strip_prefix(&self.strip) else {
                continue;
            };
            self.buffer.push_back(Listed {
                key: relative.to_string(),
                etag: bare_etag(object.e_tag().unwrap_or_default()).to_string(),
                size: object.size().unwrap_or_default(),
            });
        }
        self.token = page.next_continuation_token().map(str::to_string);
        self.exhausted = !page.is_truncated().unwrap_or(false) || self.token.is_none();
        Ok(())
    }

    /// The next page, or `None` when the listing is done.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Listed>>, String> {
        while self.buffer.is_empty() && !self.exhausted {
            self.fetch().await?;
        }
        if self.buffer.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.buffer.drain(..).collect()))
    }

    /// Every remaining entry with key at most `upper` (all remaining ones for `None`).
    pub async fn take_through(&mut self, upper: Option<&str>) -> Result<Vec<Listed>, String> {
        loop {
            let covered = match (upper, self.buffer.back()) {
                (Some(upper), Some(last)) => last.key.as_str() > upper,
                _ => false,
            };
            if covered || self.exhausted {
                break;
            }
            self.fetch().await?;
        }
        let mut taken = Vec::new();
        while let Some(front) = self.buffer.front() {
            if upper.is_some_and(|u| front.key.as_str() > u) {
                break;
            }
            taken.extend(self.buffer.pop_front());
        }
        Ok(taken)
    }
}
