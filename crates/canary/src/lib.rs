//! The replication canary: every round writes a small object to the source, measures when each
//! replica has it (the replication lag, per target), and reads the previous round's object
//! back from each replica through the read path, so that "the replicas hold what was written"
//! is a metric rather than an assumption.
//!
//! Canary objects are `_s3fanout-canary/<milliseconds since the Unix epoch>`, holding their
//! write time; the newest [`CanaryConfig::keep`] are kept in the source, older ones deleted
//! (replicated as deletes when deletions are propagated).

pub mod config;
pub mod emf;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumType};
use aws_sdk_s3::Client;
use futures::future::join_all;
use s3fanout_read::{MissingPolicy, ReadConfig, ReadErrorKind, Reader, Replica};
use serde_json::{json, Value};

pub use config::{CanaryConfig, ConfigError};

/// Prefix of every canary object.
pub const PREFIX: &str = "_s3fanout-canary/";

/// The key of the canary written at `written_ms`.
pub fn canary_key(written_ms: u64) -> String {
    // Zero-padded, so that listing order is time order.
    format!("{PREFIX}{written_ms:013}")
}

/// The write time of a canary key, or `None` for any other key.
pub fn written_ms(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The body of the canary written at `written_ms`: its write time, readable.
pub fn canary_body(written_ms: u64) -> String {
    let time = DateTime::from_millis(written_ms as i64)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default();
    format!("s3fanout canary written at {time} ({written_ms} ms)\n")
}

/// The CRC64NVME (base64, as S3 reports it) of the canary written at `written_ms`: the
/// source's full-object checksum, since it is written with that algorithm.
pub fn canary_checksum(written_ms: u64) -> String {
    let mut crc = aws_smithy_checksums::ChecksumAlgorithm::Crc64Nvme.into_impl();
    crc.update(canary_body(written_ms).as_bytes());
    crc.header_value().to_str().unwrap_or_default().to_string()
}

/// Why a round could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// The settings are invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The read path refused the replicas.
    #[error("replicas: {0}")]
    Replicas(#[from] s3fanout_read::ConfigError),
    /// Writing the canary to the source failed: nothing can be measured.
    #[error("writing s3://{bucket}/{key}: {message}")]
    Write {
        /// Source bucket.
        bucket: String,
        /// Canary key.
        key: String,
        /// The S3 error.
        message: String,
    },
}

/// What one round found at one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRound {
    /// The replica's bucket.
    pub bucket: String,
    /// The replica's region.
    pub region: String,
    /// Milliseconds from the write to the replica having the canary. When the replica did not
    /// get it within the round, a lower bound: the age of the oldest canary it is missing.
    pub lag_ms: u64,
    /// Whether `lag_ms` was observed (the replica has this round's canary).
    pub measured: bool,
    /// Whether the lag reached the stale threshold.
    pub stale: bool,
    /// Reading the previous canary back from this replica: `None` when there was no previous
    /// canary, `Some(Ok(()))` when its bytes were right, otherwise what went wrong.
    pub read_back: Option<Result<(), String>>,
}

/// One round at every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The canary written this round.
    pub key: String,
    /// When it was written (ms since the Unix epoch).
    pub written_ms: u64,
    /// One per replica, in configuration order.
    pub targets: Vec<TargetRound>,
    /// Older canaries deleted from the source.
    pub deleted: usize,
}

impl Round {
    /// A summary for a function response or a log line.
    pub fn summary(&self) -> Value {
        json!({
            "canary": self.key,
            "deleted": self.deleted,
            "targets": self.targets.iter().map(|t| json!({
                "replica": format!("{}@{}", t.bucket, t.region),
                "lag_ms": t.lag_ms,
                "measured": t.measured,
                "stale": t.stale,
                "read_back": match &t.read_back {
                    None => Value::Null,
                    Some(Ok(())) => "ok".into(),
                    Some(Err(e)) => format!("failed: {e}").into(),
                },
            })).collect::<Vec<_>>(),
        })
    }
}

/// What every replica is asked about in one round.
struct Probe<'a> {
    /// This round's canary.
    key: &'a str,
    /// When it was written.
    written: u64,
    /// Earlier canaries still in the source, oldest first.
    earlier: &'a [u64],
    /// The newest of them, read back.
    previous: Option<u64>,
    /// How long to wait for this round's canary.
    wait: Duration,
}

/// The canary: a source client and one reader per replica.
pub struct Canary {
    config: CanaryConfig,
    source: Client,
    /// One reader per replica (not one over all of them): each replica is asked itself.
    readers: Vec<Reader>,
}

impl Canary {
    /// Credentials, region and endpoint from the standard AWS environment.
    pub async fn from_env() -> Result<Self, CanaryError> {
        let config = CanaryConfig::from_env()?;
        let clients = s3fanout::Clients::from_env().await;
        let region = config
            .source_region
            .clone()
            .unwrap_or_else(|| clients.default_region());
        Self::new(config, clients.for_region(&region)).await
    }

    /// Over an explicit source client; the replicas are read with the read path's clients.
    pub async fn new(config: CanaryConfig, source: Client) -> Result<Self, CanaryError> {
        let read = ReadConfig {
            // A replica without the canary must say so, not pass the read to another.
            missing: MissingPolicy::Fail,
            host: Some("canary".into()),
            ..ReadConfig::default()
        };
        let mut readers = Vec::new();
        for replica in &config.replicas {
            readers.push(Reader::new(vec![replica.clone()], read.clone()).await?);
        }
        Ok(Canary {
            config,
            source,
            readers,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &CanaryConfig {
        &self.config
    }

    /// Writes a canary, measures every replica for at most `wait`, reads the previous canary
    /// back, and deletes canaries beyond the newest `keep`.
    pub async fn round(&self, wait: Duration) -> Result<Round, CanaryError> {
        let written = now_ms();
        let key = canary_key(written);
        self.source
            .put_object()
            .bucket(&self.config.source_bucket)
            .key(&key)
            .content_type("text/plain; charset=utf-8")
            // CRC64NVME, the checksum replicas are compared by (the SDK's default is CRC32).
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .body(ByteStream::from(canary_body(written).into_bytes()))
            .send()
            .await
            .map_err(|e| CanaryError::Write {
                bucket: self.config.source_bucket.clone(),
                key: key.clone(),
                message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
        let earlier = self.earlier_canaries(written).await;
        let probe = Probe {
            key: &key,
            written,
            earlier: &earlier,
            previous: earlier.last().copied(),
            wait,
        };
        let rounds = self
            .readers
            .iter()
            .zip(&self.config.replicas)
            .map(|(reader, replica)| self.target_round(reader, replica, &probe));
        let targets = join_all(rounds).await;
        let deleted = self.delete_old(&earlier).await;
        Ok(Round {
            key,
            written_ms: written,
            targets,
            deleted,
        })
    }

    async fn target_round(
        &self,
        reader: &Reader,
        replica: &Replica,
        probe: &Probe<'_>,
    ) -> TargetRound {
        let (lag_ms, measured) = match self.wait_for(reader, probe).await {
            Some(lag) => (lag, true),
            None => (self.lag_lower_bound(reader, probe).await, false),
        };
        let read_back = match probe.previous {
            Some(previous) => Some(self.read_back(reader, previous).await),
            None => None,
        };
        let round = TargetRound {
            bucket: replica.bucket.clone(),
            region: replica.region.clone(),
            lag_ms,
            measured,
            stale: lag_ms >= self.config.stale_after.as_millis() as u64,
            read_back,
        };
        log(replica, &round);
        round
    }

    /// Looks at the replica until it has the canary or `wait` passed; the lag when it has.
    async fn wait_for(&self, reader: &Reader, probe: &Probe<'_>) -> Option<u64> {
        let started = tokio::time::Instant::now();
        loop {
            match reader.head(probe.key).await {
                Ok(_) => return Some(now_ms().saturating_sub(probe.written)),
                Err(e) if e.kind == ReadErrorKind::NotFound => {}
                Err(e) => tracing::warn!(error = %e, "canary look-up failed; looking again"),
            }
            if started.elapsed() + self.config.poll > probe.wait {
                return None;
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// For a replica without this round's canary: how long it has been missing canaries, from
    /// the oldest kept canary it does not have (newer than the newest it has).
    async fn lag_lower_bound(&self, reader: &Reader, probe: &Probe<'_>) -> u64 {
        let mut oldest_missing = probe.written;
        for &time in probe.earlier.iter().rev() {
            // A canary the replica cannot serve counts as missing, whatever the error.
            if reader.head(&canary_key(time)).await.is_ok() {
                break;
            }
            oldest_missing = time;
        }
        now_ms().saturating_sub(oldest_missing)
    }

    /// Reads a canary back from one replica: its bytes, then its full-object checksum against
    /// the source's. The source's is the CRC64NVME of the bytes the canary wrote (S3 refuses a
    /// PutObject whose declared checksum is not its body's, and stores it), so it is computed
    /// here rather than read: the canary's role may not read the source.
    async fn read_back(&self, reader: &Reader, written: u64) -> Result<(), String> {
        read_body(reader, written).await?;
        let key = canary_key(written);
        let replica = reader
            .head_with_checksum(&key)
            .await
            .map_err(|e| e.to_string())?;
        compare_checksums(
            &key,
            Some(("CRC64NVME", canary_checksum(written))),
            full_object_checksum(&replica.output),
        )
    }

    /// Canaries in the source older than `written`, oldest first.
    async fn earlier_canaries(&self, written: u64) -> Vec<u64> {
        let mut times = Vec::new();
        let mut pages = self
            .source
            .list_objects_v2()
            .bucket(&self.config.source_bucket)
            .prefix(PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => times.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().and_then(written_ms))
                        .filter(|t| *t < written),
                ),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e),
                        "listing earlier canaries failed");
                    break;
                }
            }
        }
        times.sort_unstable();
        times
    }

    /// Deletes the canaries older than the newest `keep` (this round's included).
    async fn delete_old(&self, earlier: &[u64]) -> usize {
        let excess = (earlier.len() + 1).saturating_sub(self.config.keep);
        let deletes = earlier[..excess].iter().map(|&time| async move {
            let key = canary_key(time);
            let deleted = self
                .source
                .delete_object()
                .bucket(&self.config.source_bucket)
                .key(&key)
                .send()
                .await;
            if let Err(e) = &deleted {
                tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(e),
                    "deleting an old canary failed");
            }
            deleted.is_ok()
        });
        join_all(deletes).await.into_iter().filter(|ok| *ok).count()
    }
}

/// A HEAD's full-object checksum (checksum mode on): CRC64NVME always is one; CRC32 and CRC32C
/// when of type `FULL_OBJECT`.
fn full_object_checksum(head: &HeadObjectOutput) -> Option<(&'static str, String)> {
    let full = head.checksum_type() == Some(&ChecksumType::FullObject);
    [
        ("CRC64NVME", head.checksum_crc64_nvme(), true),
        ("CRC32C", head.checksum_crc32_c(), full),
        ("CRC32", head.checksum_crc32(), full),
    ]
    .into_iter()
    .find_map(|(name, value, whole)| match value {
        Some(v) if whole && !v.is_empty() && !v.contains('-') => Some((name, v.to_string())),
        _ => None,
    })
}

/// Whether a replica's full-object checksum is its source's: a mismatch is a failure; a side
/// without one, or another algorithm, proves nothing either way and passes (the bytes were
/// read and checked).
pub fn compare_checksums(
    key: &str,
    source: Option<(&'static str, String)>,
    replica: Option<(&'static str, String)>,
) -> Result<(), String> {
    match (source, replica) {
        (Some((a, s)), Some((b, r))) if a == b && s != r => Err(format!(
            "{key}: {a} checksum {r} at the replica, {s} at the source"
        )),
        _ => Ok(()),
    }
}

/// Reads a canary back from one replica and checks its bytes.
async fn read_body(reader: &Reader, written: u64) -> Result<(), String> {
    let key = canary_key(written);
    let served = reader.get(&key, None).await.map_err(|e| e.to_string())?;
    let body = served
        .output
        .body
        .collect()
        .await
        .map_err(|e| format!("reading {key}: {e}"))?
        .into_bytes();
    if body.as_ref() == canary_body(written).as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "{key}: {} bytes that are not what was written",
            body.len()
        ))
    }
}

fn log(replica: &Replica, round: &TargetRound) {
    let read_back = match &round.read_back {
        None => "none",
        Some(Ok(())) => "ok",
        Some(Err(_)) => "failed",
    };
    if round.stale {
        tracing::warn!(replica = %replica, lag_ms = round.lag_ms, measured = round.measured,
            read_back, "replica is stale");
    } else {
        tracing::info!(replica = %replica, lag_ms = round.lag_ms, measured = round.measured,
            read_back, "canary");
    }
    if let Some(Err(error)) = &round.read_back {
        tracing::warn!(replica = %replica, %error, "reading the previous canary back failed");
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_and_parse_back() {
        let keys: Vec<String> = [999_999_999_999, 1_767_225_600_000, 1_767_225_660_000]
            .map(canary_key)
            .to_vec();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(keys[0], "_s3fanout-canary/0999999999999");
        assert_eq!(written_ms(&keys[1]), Some(1_767_225_600_000));
        for other in [
            "_s3fanout-canary/",
            "_s3fanout-canary/12a",
            "photos/1",
            "_s3fanout-canary/1/2",
        ] {
            assert_eq!(written_ms(other), None, "{other}");
        }
    }

    /// CRC-64/NVME of "123456789" is 0xAE8B14860A799888 (CRC catalogue, "CRC-64/NVME"); the
    /// canary's is of its body, base64 as S3 reports it.
    #[test]
    fn the_canarys_checksum_is_the_crc64nvme_of_its_body() {
        let mut crc = aws_smithy_checksums::ChecksumAlgorithm::Crc64Nvme.into_impl();
        crc.update(b"123456789");
        assert_eq!(crc.header_value().to_str().unwrap(), "rosUhgp5mIg=");
        assert_ne!(canary_checksum(1), canary_checksum(2));
    }

    #[test]
    fn a_replica_checksum_other_than_the_sources_fails_the_read_back() {
        let crc = |v: &str| Some(("CRC64NVME", v.to_string()));
        assert_eq!(compare_checksums("k", crc("a"), crc("a")), Ok(()));
        let failed = compare_checksums("k", crc("a"), crc("b")).unwrap_err();
        assert!(failed.contains("CRC64NVME checksum b at the replica, a at the source"));
        assert_eq!(compare_checksums("k", None, crc("b")), Ok(()));
        assert_eq!(
            compare_checksums("k", crc("a"), Some(("CRC32", "b".into()))),
            Ok(()),
            "other algorithms do not compare"
        );
    }

    #[test]
    fn the_body_is_the_write_time() {
        assert_eq!(
            canary_body(1_767_225_600_250),
            "s3fanout canary written at 2026-01-01T00:00:00.25Z (1767225600250 ms)\n"
        );
    }
}
