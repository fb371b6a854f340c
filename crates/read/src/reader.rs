//! The reader: GET and HEAD across the replicas, and its failure gauges.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::Client;

use crate::config::ReadConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;

use crate::engine::{self, lock, Served, Start};
use crate::error::{Answer, ConfigError, ReadError};
use crate::health::Health;
use crate::metrics::{self, Gauges, MetricsSink};
use crate::order::RotationStart;
use crate::replica::Replica;
use crate::resume::{self, ResumingBody, Span};
use crate::s3;

/// Part of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From this offset to the end.
    From(u64),
    /// Bytes `first..=last`.
    Inclusive {
        /// First byte.
        first: u64,
        /// Last byte (included).
        last: u64,
    },
    /// The last this many bytes.
    Suffix(u64),
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::From(first) => write!(f, "bytes={first}-"),
            ByteRange::Inclusive { first, last } => write!(f, "bytes={first}-{last}"),
            ByteRange::Suffix(n) => write!(f, "bytes=-{n}"),
        }
    }
}

/// Reads objects from N replicas, none of them primary. Cheap to clone; clones share the
/// learned latencies, breakers, budget and gauges.
#[derive(Clone)]
pub struct Reader {
    inner: Arc<Inner>,
}

struct Inner {
    replicas: Vec<Replica>,
    names: Vec<String>,
    clients: Vec<Client>,
    config: ReadConfig,
    health: Mutex<Health>,
    host: String,
}

impl Reader {
    /// A reader over `replicas`, with credentials and endpoint from the standard AWS
    /// environment and one S3 client per region (or per replica endpoint).
    pub async fn new(replicas: Vec<Replica>, config: ReadConfig) -> Result<Self, ConfigError> {
        if replicas.is_empty() {
            return Err(ConfigError::NoReplicas);
        }
        if let RotationStart::At(index) = config.start {
            if index >= replicas.len() {
                return Err(ConfigError::Setting {
                    name: "start",
                    reason: format!(
                        "replica index {index}, but the indices of the {} replicas are 0 to {}",
                        replicas.len(),
                        replicas.len() - 1
                    ),
                });
            }
        }
        let clients = s3::clients(&replicas, &config).await;
        let names = replicas
            .iter()
            .map(|r| format!("{}@{}", r.bucket, r.region))
            .collect();
        let host = config.host.clone().unwrap_or_else(metrics::host_name);
        Ok(Reader {
            inner: Arc::new(Inner {
                health: Mutex::new(Health::new(replicas.len(), &config, Instant::now())),
                replicas,
                names,
                clients,
                config,
                host,
            }),
        })
    }

    /// The replicas, in configuration order.
    pub fn replicas(&self) -> &[Replica] {
        &self.inner.replicas
    }

    /// GETs `key` (or part of it); the body streams from the replica that answered first.
    ///
    /// When the connection breaks while the body streams, the body asks for the rest itself,
    /// from the next byte, pinned with `If-Match` to the ETag of the bytes already delivered:
    /// the other replicas first, then the one that broke, each attempt paid from the retry
    /// budget. If none can serve that version any more, the body ends with a [`ResumeError`]
    /// naming what each replica answered. A response without an ETag or a length cannot be
    /// pinned, so its body is handed over as it came.
    pub async fn get(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Served<GetObjectOutput>, ReadError> {
        let inner = &self.inner;
        let send = |i: usize| {
            let request = inner.clients[i]
                .get_object()
                .bucket(&inner.replicas[i].bucket)
                .key(inner.replicas[i].key(key))
                .set_range(range.map(|r| r.to_string()));
            async move { request.send().await.map_err(s3::classify) }
        };
        let mut served = self.run(key, Start::Fresh, send).await?;
        let output = &mut served.output;
        if let (Some(etag), Some(span)) = (output.e_tag().map(str::to_string), Span::of(output)) {
            let body = std::mem::take(&mut output.body).into_inner();
            let body = ResumingBody::new(self.clone(), key, &etag, served.index, span, body);
            output.body = ByteStream::new(SdkBody::from_body_1_x(body));
        }
        Ok(served)
    }

    /// GETs `span` of version `etag` of `key`, checking that the answer is what was asked
    /// for: a server that ignored `If-Match` or `Range` must not splice other bytes in.
    pub(crate) async fn fetch_span(
        &self,
        key: &str,
        span: Span,
        etag: &str,
        start: Start,
    ) -> Result<Served<GetObjectOutput>, ReadError> {
        let inner = &self.inner;
        let range = format!("bytes={}-{}", span.first, span.last);
        let range = range.as_str();
        let send = |i: usize| {
            let request = inner.clients[i]
                .get_object()
                .bucket(&inner.replicas[i].bucket)
                .key(inner.replicas[i].key(key))
                .range(range)
                .if_match(etag);
            async move {
                let output = request.send().await.map_err(s3::classify)?;
                if output.e_tag() != Some(etag) {
                    return Err(Answer::OtherVersion {
                        code: Some(format!("ETag {:?} despite If-Match", output.e_tag())),
                    });
                }
                let answered = output.content_range().and_then(resume::parse_content_range);
                if answered != Some(span) {
                    return Err(Answer::Connection(format!(
                        "answered {:?} to Range {range}",
                        output.content_range()
                    )));
                }
                Ok(output)
            }
        };
        self.run(key, start, send).await
    }

    /// Notes that a body from `replica` broke: a replica failure, like a refused connection.
    pub(crate) fn record_break(&self, replica: usize, cause: &str) {
        lock(&self.inner.health).record(
            replica,
            Some(&Answer::Connection(format!("body broke: {cause}"))),
            Duration::ZERO,
            Instant::now(),
        );
    }

    /// HEADs `key`: its size, ETag and headers, from the first replica that answers.
    pub async fn head(&self, key: &str) -> Result<Served<HeadObjectOutput>, ReadError> {
        let inner = &self.inner;
        let send = |i: usize| {
            let request = inner.clients[i]
                .head_object()
                .bucket(&inner.replicas[i].bucket)
                .key(inner.replicas[i].key(key));
            async move { request.send().await.map_err(s3::classify) }
        };
        self.run(key, Start::Fresh, send).await
    }

    /// HEADs `key` with checksum mode (`x-amz-checksum-mode: ENABLED`): its full-object
    /// checksum as well. With SSE-KMS this needs `kms:Decrypt`, as a GET does.
    pub async fn head_with_checksum(
        &self,
        key: &str,
    ) -> Result<Served<HeadObjectOutput>, ReadError> {
        let inner = &self.inner;
        let send = |i: usize| {
            let request = inner.clients[i]
                .head_object()
                .bucket(&inner.replicas[i].bucket)
                .key(inner.replicas[i].key(key))
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled);
            async move { request.send().await.map_err(s3::classify) }
        };
        self.run(key, Start::Fresh, send).await
    }

    async fn run<T, F, Fut>(&self, key: &str, start: Start, send: F) -> Result<Served<T>, ReadError>
    where
        T: Send,
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::error::Answer>> + Send,
    {
        let inner = &self.inner;
        let (index, output) =
            engine::run(&inner.health, &inner.config, &inner.names, key, start, send).await?;
        Ok(Served {
            index,
            replica: inner.names[index].clone(),
            region: inner.replicas[index].region.clone(),
            output,
        })
    }

    /// The failure gauges now; `all_failed` counts every request since the reader was made.
    pub fn gauges(&self) -> Gauges {
        let health = lock(&self.inner.health);
        Gauges {
            regions: self.regions(&health.failing(Instant::now())),
            all_failed: health.all_failed_total(),
        }
    }

    /// Average time to first byte per replica, in configuration order.
    pub fn latencies(&self) -> Vec<Option<Duration>> {
        lock(&self.inner.health).latencies()
    }

    /// The gauges as EMF lines now, stamped with the start of the current `interval`; the
    /// all-regions counter covers the requests since the previous call.
    pub fn take_metrics_lines(&self, interval: Duration) -> Vec<String> {
        let gauges = {
            let mut health = lock(&self.inner.health);
            Gauges {
                regions: self.regions(&health.failing(Instant::now())),
                all_failed: health.take_all_failed(),
            }
        };
        metrics::emf_lines(&self.inner.host, metrics::aligned_now_ms(interval), &gauges)
    }

    /// Hands the lines of `take_metrics_lines` to `sink`, one at a time.
    pub fn emit_metrics(&self, interval: Duration, sink: &dyn Fn(&str)) {
        for line in self.take_metrics_lines(interval) {
            sink(&line);
        }
    }

    /// Emits the gauges every `interval`, at multiples of it since the Unix epoch, until the
    /// returned handle is dropped. Needs a Tokio runtime.
    pub fn spawn_metrics(&self, interval: Duration, sink: MetricsSink) -> MetricsTask {
        let reader = self.clone();
        let interval = interval.max(Duration::from_secs(1));
        MetricsTask(tokio::spawn(async move {
            loop {
                tokio::time::sleep(metrics::until_next_boundary(interval)).await;
                reader.emit_metrics(interval, &*sink);
            }
        }))
    }

    /// Region → failing, a region failing when any of its replicas is.
    fn regions(&self, failing: &[bool]) -> BTreeMap<String, bool> {
        let mut regions = BTreeMap::new();
        for (replica, failing) in self.inner.replicas.iter().zip(failing) {
            *regions.entry(replica.region.clone()).or_insert(false) |= *failing;
        }
        regions
    }
}

/// The periodic emission of a reader's gauges; stops when dropped.
pub struct MetricsTask(tokio::task::JoinHandle<()>);

impl Drop for MetricsTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::parse_replicas;

    #[tokio::test]
    async fn a_start_beyond_the_replicas_is_refused_naming_it() {
        let replicas = parse_replicas("a-1@us-east-1,b-2@us-west-2").unwrap();
        let config = ReadConfig {
            start: RotationStart::At(2),
            ..ReadConfig::default()
        };
        let err = Reader::new(replicas.clone(), config).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "invalid setting start: replica index 2, but the indices of the 2 replicas are 0 to 1"
        );
        let config = ReadConfig {
            start: RotationStart::At(1),
            ..ReadConfig::default()
        };
        assert!(Reader::new(replicas, config).await.is_ok());
    }
}
