//! Whether buckets are configured as websites, read once per execution environment and again
//! after a while: S3 uses an object's website redirect location only in such a bucket, and a
//! copy with the source's metadata never carries it, so a backfill may copy from its listing
//! alone only where neither the source nor the target serves as a website.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use crate::core::decide::Redirects;
use crate::store::Store;

use super::deadline::Deadline;
use super::replicator::Replicator;

/// How long a bucket's website configuration, as read, is trusted.
const WEBSITE_TTL: Duration = Duration::from_secs(300);

/// Per bucket: whether it serves as a website, and when that was read.
#[derive(Debug, Default)]
pub(crate) struct Websites {
    known: std::sync::Mutex<HashMap<String, (Instant, bool)>>,
    /// One read at a time, so that objects listed together share it.
    reads: tokio::sync::Mutex<()>,
}

impl Websites {
    /// Whether redirect locations can matter to a copy between these buckets: inert only when
    /// none of them is configured as a website. A configuration that cannot be read (no
    /// permission, the deadline) counts as a website, which costs a read and is always safe.
    pub(crate) async fn redirects<S: Store>(
        &self,
        replicator: &Replicator<S>,
        buckets: &[(&str, Option<&str>)],
        deadline: &Deadline,
    ) -> Redirects {
        let website = |this: &Self| {
            buckets
                .iter()
                .any(|(bucket, _)| this.known(bucket) == Some(true))
        };
        if website(self) {
            return Redirects::Possible;
        }
        if buckets
            .iter()
            .any(|(bucket, _)| self.known(bucket).is_none())
        {
            let _one = self.reads.lock().await;
            // What another object read meanwhile is not read again.
            if website(self) {
                return Redirects::Possible;
            }
            join_all(
                buckets
                    .iter()
                    .filter(|(bucket, _)| self.known(bucket).is_none())
                    .map(|&(bucket, region)| self.read(replicator, bucket, region, deadline)),
            )
            .await;
        }
        match buckets
            .iter()
            .all(|(bucket, _)| self.known(bucket) == Some(false))
        {
            true => Redirects::Inert,
            false => Redirects::Possible,
        }
    }

    fn known(&self, bucket: &str) -> Option<bool> {
        let known = self.known.lock().expect("never poisoned");
        known
            .get(bucket)
            .filter(|(read, _)| read.elapsed() < WEBSITE_TTL)
            .map(|(_, serves)| *serves)
    }

    async fn read<S: Store>(
        &self,
        replicator: &Replicator<S>,
        bucket: &str,
        region: Option<&str>,
        deadline: &Deadline,
    ) -> bool {
        let read = replicator
            .call(deadline, replicator.store().serves_website(bucket, region))
            .await;
        let serves = match read {
            Ok(serves) => serves,
            Err(failure) => {
                tracing::warn!(bucket, error = %failure.message,
                    "the bucket's website configuration could not be read; objects are read before they are copied");
                true
            }
        };
        self.known
            .lock()
            .expect("never poisoned")
            .insert(bucket.to_string(), (Instant::now(), serves));
        serves
    }
}
