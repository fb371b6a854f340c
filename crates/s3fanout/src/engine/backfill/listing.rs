//! A paginated listing as a cursor: one page buffered at a time, so memory is bounded by the
//! page size, not by the bucket.

use std::collections::VecDeque;

use super::range::KeyRange;
use crate::core::object::Listed;
use crate::core::outcome::Failure;
use crate::store::{ListFrom, Store};

/// Keys per List request (S3's maximum).
pub const PAGE_SIZE: u32 = 1000;

/// One bucket's listing in key order.
#[derive(Debug)]
pub(crate) struct Cursor {
    bucket: String,
    region: Option<String>,
    /// Stripped from every key (a target's key prefix).
    strip: String,
    /// Listing prefix: `strip` plus the requested prefix.
    prefix: String,
    start_after: Option<String>,
    token: Option<String>,
    exhausted: bool,
    buffer: VecDeque<Listed>,
    page_size: u32,
    /// Only keys (relative to `strip`) in this range are shown.
    range: KeyRange,
    /// Pages requested so far.
    pub requests: u64,
}

impl Cursor {
    /// Lists `bucket` under `strip + prefix`, after `start_after` and within `range` (both
    /// relative to `strip`).
    pub fn new(
        bucket: &str,
        region: Option<&str>,
        strip: &str,
        prefix: &str,
        start_after: Option<&str>,
        range: &KeyRange,
        page_size: u32,
    ) -> Self {
        let range_start = range.list_after();
        let start_after = match (start_after, range_start.as_deref()) {
            (Some(resume), Some(start)) => Some(resume.max(start)),
            (resume, start) => resume.or(start),
        };
        Cursor {
            bucket: bucket.to_string(),
            region: region.map(str::to_string),
            strip: strip.to_string(),
            prefix: format!("{strip}{prefix}"),
            start_after: start_after.map(|k| format!("{strip}{k}")),
            token: None,
            exhausted: false,
            buffer: VecDeque::new(),
            page_size,
            range: range.clone(),
            requests: 0,
        }
    }

    /// Whether the buffer ran out while the listing goes on.
    pub fn needs_page(&self) -> bool {
        self.buffer.is_empty() && !self.exhausted
    }

    /// Reads pages until one entry is buffered or the listing ends.
    pub async fn fill<S: Store>(&mut self, store: &S) -> Result<(), Failure> {
        while self.needs_page() {
            self.fetch(store).await?;
        }
        Ok(())
    }

    /// The key of the buffered front entry, without reading.
    pub fn front_key(&self) -> Option<&str> {
        self.buffer.front().map(|l| l.key.as_str())
    }

    /// Takes the buffered front entry.
    pub fn pop(&mut self) -> Option<Listed> {
        self.buffer.pop_front()
    }

    async fn fetch<S: Store>(&mut self, store: &S) -> Result<(), Failure> {
        let from = match &self.token {
            Some(token) => ListFrom::Token(token),
            None => ListFrom::StartAfter(self.start_after.as_deref()),
        };
        self.requests += 1;
        let page = store
            .list_page(
                &self.bucket,
                self.region.as_deref(),
                &self.prefix,
                from,
                self.page_size,
            )
            .await?;
        self.exhausted = page.next.is_none();
        for object in page.objects {
            let Some(relative) = object.key.strip_prefix(&self.strip) else {
                continue;
            };
            if self.range.ended_by(relative) {
                self.exhausted = true;
                break;
            }
            if self.range.contains(relative) {
                self.buffer.push_back(Listed {
                    key: relative.to_string(),
                    ..object
                });
            }
        }
        self.token = page.next;
        Ok(())
    }
}
