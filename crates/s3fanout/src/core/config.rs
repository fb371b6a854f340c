//! Replication configuration, read once at cold start from environment variables.

use std::collections::BTreeSet;
use std::time::Duration;

use percent_encoding::percent_decode_str;

/// Default number of copy operations in flight at once.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Default size above which objects are copied by multipart upload.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 64 * MIB;
/// Default part size of multipart copies (grown when an object needs more than 10,000 parts).
pub const DEFAULT_PART_SIZE: u64 = 64 * MIB;
/// Default time before the invocation deadline at which no new request starts.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Storage classes a replica may be written in (S3's `x-amz-storage-class` values).
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
];

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// One replica bucket and how objects are written to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Replica bucket name.
    pub bucket: String,
    /// Region of the replica bucket.
    pub region: String,
    /// Prepended to every key written to this bucket.
    pub prefix: String,
    /// Storage class applied to replicas; `None` keeps the bucket's default.
    pub storage_class: Option<String>,
    /// SSE-KMS key applied to replicas; `None` keeps the bucket's default encryption.
    pub kms_key_id: Option<String>,
}

impl Target {
    /// The key an object of the source is stored under in this target.
    pub fn replica_key(&self, source_key: &str) -> String {
        format!("{}{}", self.prefix, source_key)
    }
}

/// Everything the engine needs to know besides the AWS credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Buckets whose events are accepted; events from any other bucket are rejected.
    pub source_buckets: BTreeSet<String>,
    /// Regions of source buckets given as `BUCKET@REGION`; others are in the process's region.
    pub source_regions: std::collections::BTreeMap<String, String>,
    /// Key prefix of each source's replicas inside every target (`BUCKET?prefix=P/`): required
    /// when several sources share the targets, so that equal keys never overwrite each other.
    pub source_prefixes: std::collections::BTreeMap<String, String>,
    /// Account that must own every bucket (`x-amz-expected-bucket-owner`): a bucket deleted and
    /// re-created by someone else then never receives data.
    pub expected_owner: Option<String>,
    /// Accounts that must own particular buckets (`?expected_owner=ACCOUNT` on a source or a
    /// target), in place of `expected_owner`: a replica bucket in another account.
    pub expected_owners: std::collections::BTreeMap<String, String>,
    /// Requester Pays buckets of another account (`?request_payer=requester` on a source or a
    /// target): every request to them says that this account pays.
    pub requester_pays: BTreeSet<String>,
    /// Replica buckets, each receiving a full copy.
    pub targets: Vec<Target>,
    /// Whether `ObjectRemoved` events delete the object from every replica.
    pub replicate_deletes: bool,
    /// Upper bound on S3 requests in flight at once, across all objects, targets and parts.
    pub concurrency: usize,
    /// Objects larger than this are copied by multipart upload (at most 5 GiB, the CopyObject limit).
    pub multipart_threshold: u64,
    /// Part size of multipart copies.
    pub part_size: u64,
    /// No new request starts when less than this remains before the invocation deadline.
    pub deadline_margin: Duration,
}

/// A configuration value that cannot be used; the message names the variable and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: {variable}={value:?}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Its value (or the offending part of it).
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Environment variable names, documented in the README.
pub mod vars {
    /// Comma-separated allowed source buckets, each optionally `BUCKET@REGION`, with options
    /// `?prefix=..&request_payer=requester&expected_owner=ACCOUNT`.
    pub const SOURCE_BUCKETS: &str = "SOURCE_BUCKETS";
    /// Comma-separated targets: `BUCKET@REGION[?prefix=..&storage_class=..&kms_key_id=..]`,
    /// and `request_payer=requester`, `expected_owner=ACCOUNT` as on sources.
    pub const REPLICA_TARGETS: &str = "REPLICA_TARGETS";
    /// `true` or `false`.
    pub const REPLICATE_DELETES: &str = "REPLICATE_DELETES";
    /// Positive integer.
    pub const COPY_CONCURRENCY: &str = "COPY_CONCURRENCY";
    /// Bytes, or a number with KiB, MiB or GiB.
    pub const MULTIPART_THRESHOLD: &str = "MULTIPART_THRESHOLD";
    /// Bytes, or a number with KiB, MiB or GiB.
    pub const MULTIPART_PART_SIZE: &str = "MULTIPART_PART_SIZE";
    /// Milliseconds.
    pub const DEADLINE_MARGIN_MS: &str = "DEADLINE_MARGIN_MS";
    /// A 12-digit account id.
    pub const EXPECTED_BUCKET_OWNER: &str = "EXPECTED_BUCKET_OWNER";
}

impl Config {
    /// A configuration with default settings.
    pub fn new(source_buckets: impl IntoIterator<Item = String>, targets: Vec<Target>) -> Self {
        Config {
            source_buckets: source_buckets.into_iter().collect(),
            source_regions: Default::default(),
            source_prefixes: Default::default(),
            expected_owner: None,
            expected_owners: Default::default(),
            requester_pays: Default::default(),
            targets,
            replicate_deletes: false,
            concurrency: DEFAULT_CONCURRENCY,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            deadline_margin: DEFAULT_DEADLINE_MARGIN,
        }
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value if set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.trim().is_empty());

        let sources_raw = get(vars::SOURCE_BUCKETS).ok_or_else(|| ConfigError {
            variable: vars::SOURCE_BUCKETS,
            value: String::new(),
            reason: "required: the bucket(s) whose events may be replicated".into(),
        })?;
        let mut source_buckets = BTreeSet::new();
        let mut source_regions = std::collections::BTreeMap::new();
        let mut source_prefixes = std::collections::BTreeMap::new();
        let mut buckets = BucketOptions::default();
        for entry in split_list(&sources_raw) {
            let (location, options) = entry.split_once('?').unwrap_or((entry, ""));
            let (name, region) = match location.split_once('@') {
                Some((name, region)) => (name, Some(region)),
                None => (location, None),
            };
            check_bucket_name(vars::SOURCE_BUCKETS, name)?;
            if let Some(region) = region {
                check_region(vars::SOURCE_BUCKETS, entry, region)?;
                source_regions.insert(name.to_string(), region.to_string());
            }
            for (option, value) in parse_options(vars::SOURCE_BUCKETS, entry, options)? {
                match option.as_str() {
                    "prefix" => {
                        check_prefix(vars::SOURCE_BUCKETS, entry, &value)?;
                        source_prefixes.insert(name.to_string(), value);
                    }
                    other => {
                        if !buckets.apply(vars::SOURCE_BUCKETS, entry, name, other, &value)? {
                            return Err(ConfigError {
                                variable: vars::SOURCE_BUCKETS,
                                value: entry.to_string(),
                                reason: format!(
                                    "unknown option {other:?} (known: prefix, {BUCKET_OPTIONS})"
                                ),
                            });
                        }
                    }
                }
            }
            if !source_buckets.insert(name.to_string()) {
                return Err(ConfigError {
                    variable: vars::SOURCE_BUCKETS,
                    value: entry.to_string(),
                    reason: "bucket listed twice".into(),
                });
            }
        }
        check_source_prefixes(&source_buckets, &source_prefixes, &sources_raw)?;

        let targets_raw = get(vars::REPLICA_TARGETS).ok_or_else(|| ConfigError {
            variable: vars::REPLICA_TARGETS,
            value: String::new(),
            reason: "required: at least one BUCKET@REGION".into(),
        })?;
        let mut targets: Vec<Target> = Vec::new();
        for entry in split_list(&targets_raw) {
            let target = parse_target(entry, &mut buckets)?;
            if source_buckets.contains(&target.bucket) {
                return Err(ConfigError {
                    variable: vars::REPLICA_TARGETS,
                    value: entry.to_string(),
                    reason: "target is also a source bucket: replication would loop".into(),
                });
            }
            if targets.iter().any(|t| t.bucket == target.bucket) {
                return Err(ConfigError {
                    variable: vars::REPLICA_TARGETS,
                    value: entry.to_string(),
                    reason: "bucket listed twice".into(),
                });
            }
            targets.push(target);
        }
        if targets.is_empty() {
            return Err(ConfigError {
                variable: vars::REPLICA_TARGETS,
                value: targets_raw.clone(),
                reason: "names no target: at least one BUCKET@REGION is required".into(),
            });
        }

        let replicate_deletes = match get(vars::REPLICATE_DELETES) {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| ConfigError {
                variable: vars::REPLICATE_DELETES,
                value: v.clone(),
                reason: "expected true or false".into(),
            })?,
        };

        let concurrency = match get(vars::COPY_CONCURRENCY) {
            None => DEFAULT_CONCURRENCY,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    return Err(ConfigError {
                        variable: vars::COPY_CONCURRENCY,
                        value: v,
                        reason: "expected an integer from 1 to 1024".into(),
                    })
                }
            },
        };

        let size = |variable: &'static str, default: u64| {
            match get(variable) {
            None => Ok(default),
            Some(v) => parse_size(&v)
                .filter(|n| (5 * MIB..=5 * GIB).contains(n))
                .ok_or_else(|| ConfigError {
                    variable,
                    value: v,
                    reason: "expected a size from 5MiB to 5GiB (bytes, or a number with KiB, MiB or GiB)".into(),
                }),
        }
        };
        let multipart_threshold = size(vars::MULTIPART_THRESHOLD, DEFAULT_MULTIPART_THRESHOLD)?;
        let part_size = size(vars::MULTIPART_PART_SIZE, DEFAULT_PART_SIZE)?;
        let deadline_margin = match get(vars::DEADLINE_MARGIN_MS) {
            None => DEFAULT_DEADLINE_MARGIN,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms <= 600_000 => Duration::from_millis(ms),
                _ => {
                    return Err(ConfigError {
                        variable: vars::DEADLINE_MARGIN_MS,
                        value: v,
                        reason: "expected milliseconds from 0 to 600000".into(),
                    })
                }
            },
        };

        let expected_owner = match get(vars::EXPECTED_BUCKET_OWNER) {
            None => None,
            Some(v) if is_account_id(&v) => Some(v),
            Some(v) => {
                return Err(ConfigError {
                    variable: vars::EXPECTED_BUCKET_OWNER,
                    value: v,
                    reason: "expected a 12-digit AWS account id".into(),
                })
            }
        };

        Ok(Config {
            source_buckets,
            source_regions,
            source_prefixes,
            expected_owner,
            expected_owners: buckets.expected_owners,
            requester_pays: buckets.requester_pays,
            targets,
            replicate_deletes,
            concurrency,
            multipart_threshold,
            part_size,
            deadline_margin,
        })
    }

    /// The prefix of `source`'s replicas inside `target`.
    pub fn replica_prefix(&self, target: &Target, source: &str) -> String {
        let own = self.source_prefixes.get(source).map(String::as_str);
        format!("{}{}", target.prefix, own.unwrap_or_default())
    }

    /// The key of `source`'s object `key` inside `target`.
    pub fn replica_key(&self, target: &Target, source: &str, key: &str) -> String {
        format!("{}{key}", self.replica_prefix(target, source))
    }

    /// Whether a bucket is a configured source or target.
    pub fn is_configured(&self, bucket: &str) -> bool {
        self.source_buckets.contains(bucket) || self.target(bucket).is_some()
    }

    /// The configured target with this bucket name.
    pub fn target(&self, bucket: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.bucket == bucket)
    }
}

fn split_list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_size(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1024,
        "mib" | "m" => MIB,
        "gib" | "g" => GIB,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// The options any bucket, source or target, may have.
const BUCKET_OPTIONS: &str = "request_payer, expected_owner";

/// What the per-bucket options of the entries read so far say.
#[derive(Default)]
struct BucketOptions {
    requester_pays: BTreeSet<String>,
    expected_owners: std::collections::BTreeMap<String, String>,
}

impl BucketOptions {
    /// Applies option `name=value` of `bucket`; `false` when it is not a per-bucket option.
    fn apply(
        &mut self,
        variable: &'static str,
        entry: &str,
        bucket: &str,
        name: &str,
        value: &str,
    ) -> Result<bool, ConfigError> {
        let err = |reason: String| ConfigError {
            variable,
            value: entry.to_string(),
            reason,
        };
        match name {
            // S3 knows one value, as `x-amz-request-payer: requester`.
            "request_payer" if value == "requester" => {
                self.requester_pays.insert(bucket.to_string());
            }
            "request_payer" => {
                return Err(err(format!(
                    "request_payer {value:?} is not a payer: the only value is \"requester\" (this account pays for requests to a Requester Pays bucket)"
                )))
            }
            "expected_owner" if is_account_id(value) => {
                self.expected_owners
                    .insert(bucket.to_string(), value.to_string());
            }
            "expected_owner" => {
                return Err(err(format!(
                    "expected_owner {value:?} is not a 12-digit AWS account id"
                )))
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn is_account_id(v: &str) -> bool {
    v.len() == 12 && v.chars().all(|c| c.is_ascii_digit())
}

fn parse_target(entry: &str, buckets: &mut BucketOptions) -> Result<Target, ConfigError> {
    let err = |reason: String| ConfigError {
        variable: vars::REPLICA_TARGETS,
        value: entry.to_string(),
        reason,
    };
    let (location, options) = entry.split_once('?').unwrap_or((entry, ""));
    let (bucket, region) = location
        .split_once('@')
        .ok_or_else(|| err("expected BUCKET@REGION".into()))?;
    check_bucket_name(vars::REPLICA_TARGETS, bucket)?;
    check_region(vars::REPLICA_TARGETS, entry, region)?;
    let mut target = Target {
        bucket: bucket.to_string(),
        region: region.to_string(),
        prefix: String::new(),
        storage_class: None,
        kms_key_id: None,
    };
    for (name, value) in parse_options(vars::REPLICA_TARGETS, entry, options)? {
        match name.as_str() {
            "prefix" => {
                check_prefix(vars::REPLICA_TARGETS, entry, &value)?;
                target.prefix = value
            }
            "storage_class" => {
                if !STORAGE_CLASSES.contains(&value.as_str()) {
                    return Err(err(format!(
                        "unknown storage class {value:?} (known: {})",
                        STORAGE_CLASSES.join(", ")
                    )));
                }
                target.storage_class = Some(value);
            }
            "kms_key_id" if !value.is_empty() => target.kms_key_id = Some(value),
            "kms_key_id" => {}
            other => {
                if !buckets.apply(vars::REPLICA_TARGETS, entry, bucket, other, &value)? {
                    return Err(err(format!(
                        "unknown option {other:?} (known: prefix, storage_class, kms_key_id, {BUCKET_OPTIONS})"
                    )));
                }
            }
        }
    }
    Ok(target)
}

/// `name=value` pairs after `?`, values percent-decoded.
fn parse_options(
    variable: &'static str,
    entry: &str,
    options: &str,
) -> Result<Vec<(String, String)>, ConfigError> {
    let err = |reason: String| ConfigError {
        variable,
        value: entry.to_string(),
        reason,
    };
    options
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, raw_value) = pair
                .split_once('=')
                .ok_or_else(|| err(format!("option {pair:?} has no value")))?;
            let value = percent_decode_str(raw_value)
                .decode_utf8()
                .map_err(|_| err(format!("option {name} is not valid UTF-8 once decoded")))?
                .into_owned();
            Ok((name.to_string(), value))
        })
        .collect()
}

/// A key prefix must end with `/`: `mirror` would also cover `mirror-old/...`, keys that were
/// never replicas, which a backfill with `delete` would then remove.
fn check_prefix(variable: &'static str, entry: &str, prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || prefix.ends_with('/') {
        return Ok(());
    }
    Err(ConfigError {
        variable,
        value: entry.to_string(),
        reason: format!("prefix {prefix:?} must end with \"/\" (as {prefix:?}/)"),
    })
}

/// Several sources writing to the same targets need their own, non-overlapping prefixes.
fn check_source_prefixes(
    sources: &BTreeSet<String>,
    prefixes: &std::collections::BTreeMap<String, String>,
    raw: &str,
) -> Result<(), ConfigError> {
    if sources.len() < 2 {
        return Ok(());
    }
    let err = |reason: String| ConfigError {
        variable: vars::SOURCE_BUCKETS,
        value: raw.to_string(),
        reason,
    };
    for source in sources {
        if prefixes.get(source).is_none_or(String::is_empty) {
            return Err(err(format!(
                "several sources share the targets, so each needs its own prefix there ({source}?prefix={source}%2F): otherwise equal keys overwrite each other's replicas"
            )));
        }
    }
    for (a, pa) in prefixes {
        for (b, pb) in prefixes {
            if a != b && pb.starts_with(pa.as_str()) {
                return Err(err(format!(
                    "the prefixes of {a} ({pa:?}) and {b} ({pb:?}) overlap: a backfill of one with delete would reach the other's replicas"
                )));
            }
        }
    }
    Ok(())
}

fn check_region(variable: &'static str, entry: &str, region: &str) -> Result<(), ConfigError> {
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ConfigError {
            variable,
            value: entry.to_string(),
            reason: format!("{region:?} is not a region name"),
        })
    }
}

/// Checks the rules S3 enforces on bucket names, so that a typo fails at cold start.
fn check_bucket_name(variable: &'static str, name: &str) -> Result<(), ConfigError> {
    let valid = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ConfigError {
            variable,
            value: name.to_string(),
            reason: "not a valid S3 bucket name".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn parses_targets_with_options() {
        let c = parse(&[
            ("SOURCE_BUCKETS", "src-a?prefix=a%2F, src-b?prefix=b%2F"),
            (
                "REPLICA_TARGETS",
                "rep-1@us-west-2, rep-2@eu-west-1?prefix=mirror%2F&storage_class=STANDARD_IA&kms_key_id=arn%3Aaws%3Akms%3Aeu-west-1%3A1%3Akey%2Fk",
            ),
            ("REPLICATE_DELETES", "true"),
            ("COPY_CONCURRENCY", "8"),
        ])
        .unwrap();
        assert_eq!(c.source_buckets.len(), 2);
        assert!(c.replicate_deletes);
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.targets[0].bucket, "rep-1");
        assert_eq!(c.targets[0].region, "us-west-2");
        assert_eq!(c.targets[0].prefix, "");
        let t = &c.targets[1];
        assert_eq!(t.prefix, "mirror/");
        assert_eq!(t.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(
            t.kms_key_id.as_deref(),
            Some("arn:aws:kms:eu-west-1:1:key/k")
        );
        assert_eq!(t.replica_key("a b"), "mirror/a b");
    }

    #[test]
    fn source_buckets_may_name_their_region() {
        let c = parse(&[
            (
                "SOURCE_BUCKETS",
                "src-a@eu-west-1?prefix=a/,src-b?prefix=b/",
            ),
            ("REPLICA_TARGETS", "rep@us-east-1"),
        ])
        .unwrap();
        assert!(c.source_buckets.contains("src-a") && c.source_buckets.contains("src-b"));
        assert_eq!(
            c.source_regions.get("src-a").map(String::as_str),
            Some("eu-west-1")
        );
        assert_eq!(c.source_regions.get("src-b"), None);
        let target = &c.targets[0];
        assert_eq!(c.replica_key(target, "src-a", "k"), "a/k");
        assert_eq!(c.replica_key(target, "src-b", "k"), "b/k");
        let err = parse(&[
            ("SOURCE_BUCKETS", "src@Mars 1"),
            ("REPLICA_TARGETS", "rep@us-east-1"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "SOURCE_BUCKETS");
        assert!(err.reason.contains("not a region name"), "{err}");
    }

    #[test]
    fn buckets_may_be_requester_pays_or_owned_by_another_account() {
        let c = parse(&[
            (
                "SOURCE_BUCKETS",
                "src@eu-west-1?request_payer=requester&expected_owner=111122223333",
            ),
            (
                "REPLICA_TARGETS",
                "rep-1@us-west-2?expected_owner=444455556666,rep-2@us-east-1?request_payer=requester&prefix=m%2F,rep-3@us-east-1",
            ),
            ("EXPECTED_BUCKET_OWNER", "999988887777"),
        ])
        .unwrap();
        assert_eq!(
            c.requester_pays,
            BTreeSet::from(["src".to_string(), "rep-2".to_string()])
        );
        assert_eq!(
            c.expected_owners,
            std::collections::BTreeMap::from([
                ("rep-1".to_string(), "444455556666".to_string()),
                ("src".to_string(), "111122223333".to_string()),
            ])
        );
        assert_eq!(c.expected_owner.as_deref(), Some("999988887777"));
        assert_eq!(c.targets[1].prefix, "m/");
        assert_eq!(
            c.source_regions.get("src").map(String::as_str),
            Some("eu-west-1")
        );
    }

    #[test]
    fn bad_bucket_options_name_the_value() {
        let cases = [
            (
                "SOURCE_BUCKETS",
                "src?request_payer=me",
                "rep@us-east-1",
                "\"me\"",
            ),
            (
                "REPLICA_TARGETS",
                "src",
                "rep@us-east-1?request_payer=me",
                "\"me\"",
            ),
            (
                "SOURCE_BUCKETS",
                "src?expected_owner=1111-2222-3333",
                "rep@us-east-1",
                "\"1111-2222-3333\" is not a 12-digit AWS account id",
            ),
            (
                "REPLICA_TARGETS",
                "src",
                "rep@us-east-1?expected_owner=12345678901",
                "\"12345678901\" is not a 12-digit AWS account id",
            ),
            (
                "REPLICA_TARGETS",
                "src",
                "rep@us-east-1?expected_owner=",
                "\"\" is not a 12-digit AWS account id",
            ),
        ];
        for (variable, sources, targets, needle) in cases {
            let err =
                parse(&[("SOURCE_BUCKETS", sources), ("REPLICA_TARGETS", targets)]).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
            let message = err.to_string();
            assert!(
                message.contains(needle),
                "{message:?} should name {needle:?}"
            );
        }
        let err = parse(&[
            ("SOURCE_BUCKETS", "src"),
            ("REPLICA_TARGETS", "rep@us-east-1?request_payer=me"),
        ])
        .unwrap_err();
        assert!(err.reason.contains("\"requester\""), "{err}");
        let err = parse(&[
            ("SOURCE_BUCKETS", "src?colour=red"),
            ("REPLICA_TARGETS", "rep@us-east-1"),
        ])
        .unwrap_err();
        assert!(
            err.reason.contains("prefix, request_payer, expected_owner"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply() {
        let c = parse(&[
            ("SOURCE_BUCKETS", "src"),
            ("REPLICA_TARGETS", "rep@us-east-1"),
        ])
        .unwrap();
        assert!(!c.replicate_deletes);
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c, Config::new(["src".to_string()], c.targets.clone()));
    }

    #[test]
    fn sizes_and_margin() {
        let c = parse(&[
            ("SOURCE_BUCKETS", "src"),
            ("REPLICA_TARGETS", "rep@us-east-1"),
            ("MULTIPART_THRESHOLD", "100MiB"),
            ("MULTIPART_PART_SIZE", "8388608"),
            ("DEADLINE_MARGIN_MS", "2500"),
        ])
        .unwrap();
        assert_eq!(c.multipart_threshold, 100 * MIB);
        assert_eq!(c.part_size, 8 * MIB);
        assert_eq!(c.deadline_margin, Duration::from_millis(2500));
        for (var, bad) in [
            ("MULTIPART_THRESHOLD", "6GiB"),
            ("MULTIPART_PART_SIZE", "1MiB"),
            ("MULTIPART_THRESHOLD", "lots"),
        ] {
            let err = parse(&[
                ("SOURCE_BUCKETS", "src"),
                ("REPLICA_TARGETS", "rep@us-east-1"),
                (var, bad),
            ])
            .unwrap_err();
            assert_eq!((err.variable, err.value.as_str()), (var, bad));
        }
    }

    /// Environment, the text the error must name, and the reason it must give.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn errors_name_the_bad_value() {
        let cases: &[Case] = &[
            (
                &[("REPLICA_TARGETS", "rep@us-east-1")],
                "SOURCE_BUCKETS",
                "required",
            ),
            (&[("SOURCE_BUCKETS", "src")], "REPLICA_TARGETS", "required"),
            (
                &[("SOURCE_BUCKETS", "src"), ("REPLICA_TARGETS", "rep")],
                "\"rep\"",
                "BUCKET@REGION",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "src@us-east-1"),
                ],
                "src@us-east-1",
                "loop",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "Bad_Bucket@us-east-1"),
                ],
                "Bad_Bucket",
                "bucket name",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@US East"),
                ],
                "US East",
                "region",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1?storage_class=COLD"),
                ],
                "COLD",
                "storage class",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1?colour=red"),
                ],
                "colour",
                "unknown option",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1,rep@eu-west-1"),
                ],
                "rep@eu-west-1",
                "twice",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1"),
                    ("REPLICATE_DELETES", "maybe"),
                ],
                "maybe",
                "true or false",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1"),
                    ("COPY_CONCURRENCY", "0"),
                ],
                "COPY_CONCURRENCY",
                "1 to 1024",
            ),
        ];
        let more: &[Case] = &[
            (
                &[("SOURCE_BUCKETS", "src"), ("REPLICA_TARGETS", ",")],
                "REPLICA_TARGETS",
                "names no target",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1?prefix=mirror"),
                ],
                "mirror",
                "must end with \"/\"",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src-a,src-b"),
                    ("REPLICA_TARGETS", "rep@us-east-1"),
                ],
                "src-a",
                "needs its own prefix",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src-a?prefix=a/,src-b?prefix=a/b/"),
                    ("REPLICA_TARGETS", "rep@us-east-1"),
                ],
                "src-b",
                "overlap",
            ),
            (
                &[
                    ("SOURCE_BUCKETS", "src"),
                    ("REPLICA_TARGETS", "rep@us-east-1"),
                    ("EXPECTED_BUCKET_OWNER", "12345"),
                ],
                "EXPECTED_BUCKET_OWNER",
                "12-digit",
            ),
        ];
        for (pairs, needle, reason) in cases.iter().chain(more) {
            let message = parse(pairs).unwrap_err().to_string();
            assert!(
                message.contains(needle),
                "{message:?} should name {needle:?}"
            );
            assert!(
                message.contains(reason),
                "{message:?} should say {reason:?}"
            );
        }
    }
}
