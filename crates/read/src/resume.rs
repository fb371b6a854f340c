//! A GET body that survives a broken connection: the rest is asked for from the next byte, at
//! the other replicas first, pinned with `If-Match` to the ETag the first bytes came from, so
//! that bytes of two versions are never spliced together.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{ready, Context, Poll};

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body::{Body, Frame};

use crate::engine::Start;
use crate::error::ReadError;
use crate::reader::Reader;
use crate::s3;

/// A body that broke and could not be resumed: which bytes were delivered, why it broke, and
/// what each replica answered when asked for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeError {
    /// The key being read.
    pub key: String,
    /// The ETag the delivered bytes belong to.
    pub etag: String,
    /// Bytes of this GET delivered before the failure.
    pub delivered: u64,
    /// Bytes this GET should have delivered in all.
    pub expected: u64,
    /// Why the body broke (the last break, when there were several).
    pub cause: String,
    /// What the replicas answered to the request for the remaining bytes.
    pub read: ReadError,
}

impl fmt::Display for ResumeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the body of {:?} broke after {} of {} bytes ({}), and the rest of ETag {} could not be read: {}",
            self.key, self.delivered, self.expected, self.cause, self.etag, self.read
        )
    }
}

impl std::error::Error for ResumeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.read)
    }
}

/// Where a response's bytes sit in the object, from its Content-Range (a ranged GET) or its
/// Content-Length (a whole object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte.
    pub first: u64,
    /// Offset of the last byte (included).
    pub last: u64,
}

impl Span {
    /// The span of `output`'s body; `None` for an empty body or headers that do not say.
    pub fn of(output: &GetObjectOutput) -> Option<Span> {
        match output.content_range() {
            Some(range) => parse_content_range(range),
            None => {
                let length = u64::try_from(output.content_length()?).ok()?;
                length.checked_sub(1).map(|last| Span { first: 0, last })
            }
        }
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(value: &str) -> Option<Span> {
    let (range, _total) = value.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some(Span { first, last })
}

type Resumed = Pin<Box<dyn Future<Output = Result<(usize, SdkBody), ReadError>> + Send>>;

enum State {
    Streaming(SdkBody),
    /// The future sits behind a mutex only because bodies must be `Sync`; it is only ever
    /// reached through `&mut self`, so the lock is never contended.
    Resuming(Mutex<Resumed>),
    Failed,
}

/// The body handed to callers of `Reader::get`.
pub struct ResumingBody {
    reader: Reader,
    key: String,
    etag: String,
    /// The replica the bytes now come from.
    replica: usize,
    span: Span,
    /// Offset of the next byte to deliver.
    next: u64,
    cause: String,
    state: State,
}

impl ResumingBody {
    /// Wraps the body of a GET that `replica` answered with `span` of version `etag`.
    pub fn new(
        reader: Reader,
        key: &str,
        etag: &str,
        replica: usize,
        span: Span,
        body: SdkBody,
    ) -> Self {
        ResumingBody {
            reader,
            key: key.to_string(),
            etag: etag.to_string(),
            replica,
            span,
            next: span.first,
            cause: String::new(),
            state: State::Streaming(body),
        }
    }

    fn delivered(&self) -> u64 {
        self.next - self.span.first
    }

    fn expected(&self) -> u64 {
        self.span.last - self.span.first + 1
    }

    /// The connection broke: note it against the replica and ask for the rest.
    fn broke(&mut self, cause: String) {
        tracing::warn!(
            key = self.key,
            replica = self.replica,
            delivered = self.delivered(),
            expected = self.expected(),
            cause,
            "body broke; resuming"
        );
        self.reader.record_break(self.replica, &cause);
        self.cause = cause;
        let reader = self.reader.clone();
        let key = self.key.clone();
        let etag = self.etag.clone();
        let rest = Span {
            first: self.next,
            last: self.span.last,
        };
        let cut = self.replica;
        self.state = State::Resuming(Mutex::new(Box::pin(async move {
            let served = reader
                .fetch_span(&key, rest, &etag, Start::Resume { cut })
                .await?;
            Ok((served.index, served.output.body.into_inner()))
        })));
    }
}

impl Body for ResumingBody {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Streaming(body) => match ready!(Pin::new(body).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            this.next += data.len() as u64;
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    // Past the last byte nothing is left to resume: the error (a checksum
                    // mismatch, say) is the caller's to see.
                    Some(Err(err)) if this.next > this.span.last => {
                        return Poll::Ready(Some(Err(err)))
                    }
                    None if this.next > this.span.last => return Poll::Ready(None),
                    Some(Err(err)) => this.broke(s3::innermost(err.as_ref())),
                    None => this.broke(format!(
                        "the connection ended {} bytes early",
                        this.span.last + 1 - this.next
                    )),
                },
                State::Resuming(resumed) => {
                    let resumed = resumed
                        .get_mut()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    match ready!(resumed.as_mut().poll(cx)) {
                        Ok((replica, body)) => {
                            this.replica = replica;
                            this.state = State::Streaming(body);
                        }
                        Err(read) => {
                            this.state = State::Failed;
                            let err = ResumeError {
                                key: this.key.clone(),
                                etag: this.etag.clone(),
                                delivered: this.delivered(),
                                expected: this.expected(),
                                cause: std::mem::take(&mut this.cause),
                                read,
                            };
                            return Poll::Ready(Some(Err(Box::new(err))));
                        }
                    }
                }
                State::Failed => return Poll::Ready(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_from_content_range_or_length() {
        assert_eq!(
            parse_content_range("bytes 10-19/100"),
            Some(Span {
                first: 10,
                last: 19
            })
        );
        assert_eq!(
            parse_content_range("bytes 0-0/*"),
            Some(Span { first: 0, last: 0 })
        );
        assert_eq!(parse_content_range("bytes 19-10/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
        let whole = GetObjectOutput::builder().content_length(5).build();
        assert_eq!(Span::of(&whole), Some(Span { first: 0, last: 4 }));
        let empty = GetObjectOutput::builder().content_length(0).build();
        assert_eq!(Span::of(&empty), None);
        let tail = GetObjectOutput::builder()
            .content_length(5)
            .content_range("bytes 95-99/100")
            .build();
        assert_eq!(
            Span::of(&tail),
            Some(Span {
                first: 95,
                last: 99
            })
        );
    }
}
