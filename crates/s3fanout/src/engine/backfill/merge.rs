//! Merges the source's listing with every target's, a page at a time: whatever the key
//! distribution (millions of replica-only keys included), memory holds one page per listing.

use futures::future::try_join_all;

use super::listing::Cursor;
use crate::core::object::Listed;
use crate::core::outcome::Failure;
use crate::store::Store;

/// One key, as each listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The key (relative to the targets' prefixes).
    pub key: String,
    /// The source's entry, if the source listed it.
    pub source: Option<Listed>,
    /// Each target's entry, in target order.
    pub replicas: Vec<Option<Listed>>,
}

/// The source listing and the targets' listings, merged in key order.
#[derive(Debug)]
pub(crate) struct Merge {
    source: Cursor,
    replicas: Vec<Cursor>,
}

impl Merge {
    /// Merges these cursors.
    pub fn new(source: Cursor, replicas: Vec<Cursor>) -> Self {
        Merge { source, replicas }
    }

    /// List requests made so far.
    pub fn requests(&self) -> u64 {
        self.source.requests + self.replicas.iter().map(|r| r.requests).sum::<u64>()
    }

    /// The next key in UTF-8 binary order (S3's listing order), or `None` at the end.
    pub async fn next<S: Store>(&mut self, store: &S) -> Result<Option<Merged>, Failure> {
        // Every listing whose page ran out reads its next one at once: at a page boundary the
        // source's and every target's pages usually end together.
        let cursors = std::iter::once(&mut self.source).chain(self.replicas.iter_mut());
        try_join_all(
            cursors
                .filter(|cursor| cursor.needs_page())
                .map(|cursor| cursor.fill(store)),
        )
        .await?;
        let smallest = std::iter::once(&self.source)
            .chain(&self.replicas)
            .filter_map(Cursor::front_key)
            .min()
            .map(str::to_string);
        let Some(key) = smallest else {
            return Ok(None);
        };
        let source = take_if(&mut self.source, &key);
        let replicas = self
            .replicas
            .iter_mut()
            .map(|cursor| take_if(cursor, &key))
            .collect();
        Ok(Some(Merged {
            key,
            source,
            replicas,
        }))
    }
}

/// Takes the cursor's buffered front entry when it has this key (the buffer has been filled).
fn take_if(cursor: &mut Cursor, key: &str) -> Option<Listed> {
    let matches = cursor.front_key() == Some(key);
    if matches {
        cursor.pop()
    } else {
        None
    }
}
