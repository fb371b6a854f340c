//! Replicas as the project names targets: `bucket@region`, options after `?`.

use std::fmt;

use crate::error::ConfigError;

/// One full copy of the objects, readable through S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// Bucket name.
    pub bucket: String,
    /// Region the bucket lives in; requests are signed for it.
    pub region: String,
    /// Prepended to every key read from this bucket (the replica's `prefix` option).
    pub prefix: String,
    /// Endpoint URL for this replica only (an access point, a custom domain, a VPC endpoint,
    /// a local server); without it the standard AWS environment decides.
    pub endpoint: Option<String>,
}

impl Replica {
    /// A replica without options.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        Replica {
            bucket: bucket.into(),
            region: region.into(),
            prefix: String::new(),
            endpoint: None,
        }
    }

    /// The key this replica stores `key` under.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Parses one `bucket@region[?prefix=..&endpoint=..]` entry.
    pub fn parse(entry: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::Replica {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = entry.trim();
        let (name, options) = match trimmed.split_once('?') {
            Some((name, options)) => (name, Some(options)),
            None => (trimmed, None),
        };
        let (bucket, region) = name
            .split_once('@')
            .ok_or_else(|| invalid("expected BUCKET@REGION"))?;
        if !valid_bucket(bucket) {
            return Err(invalid("the bucket name is not a valid S3 bucket name"));
        }
        if !valid_region(region) {
            return Err(invalid("the region is not a region name such as eu-west-1"));
        }
        let mut replica = Replica::new(bucket, region);
        for (option, value) in options.map(parse_options).unwrap_or_default() {
            match option.as_str() {
                "prefix" => replica.prefix = value,
                "endpoint" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(invalid("endpoint must be an http:// or https:// URL"));
                    }
                    replica.endpoint = Some(value);
                }
                // Replication options are accepted so that REPLICA_TARGETS can be reused as is;
                // they do not change how an object is read.
                "storage_class" | "kms_key_id" => {}
                other => {
                    return Err(invalid(&format!(
                    "unknown option {other:?} (known: prefix, endpoint, storage_class, kms_key_id)"
                )))
                }
            }
        }
        Ok(replica)
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.bucket, self.region)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// Parses a comma-separated list of replicas; bucket and prefix may appear only once.
pub fn parse_replicas(list: &str) -> Result<Vec<Replica>, ConfigError> {
    let replicas = list
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(Replica::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if replicas.is_empty() {
        return Err(ConfigError::NoReplicas);
    }
    for (i, replica) in replicas.iter().enumerate() {
        if replicas[..i]
            .iter()
            .any(|r| r.bucket == replica.bucket && r.prefix == replica.prefix)
        {
            return Err(ConfigError::Replica {
                entry: replica.to_string(),
                reason: "listed twice".to_string(),
            });
        }
    }
    Ok(replicas)
}

fn parse_options(options: &str) -> Vec<(String, String)> {
    // form_urlencoded decodes `+` as a space, which a key prefix may legitimately contain
    // only as %20; percent-decoding alone keeps `+` literal, as S3 keys do.
    options
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
}

fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.contains('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_percent_encoded() {
        let list = "photos-usw2@us-west-2,photos-euw1@eu-west-1?prefix=mirror%2Fa+b&endpoint=http%3A%2F%2F127.0.0.1%3A9000&storage_class=STANDARD_IA";
        let replicas = parse_replicas(list).unwrap();
        assert_eq!(replicas[0], Replica::new("photos-usw2", "us-west-2"));
        assert_eq!(replicas[1].prefix, "mirror/a+b");
        assert_eq!(
            replicas[1].endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(replicas[1].key("x.jpg"), "mirror/a+bx.jpg");
        assert_eq!(replicas[1].to_string(), "photos-euw1@eu-west-1/mirror/a+b");
    }

    #[test]
    fn errors_name_the_entry() {
        for (list, needle) in [
            ("photos", "photos"),
            ("Photos@us-east-1", "Photos@us-east-1"),
            ("photos@", "photos@"),
            ("photos@us-east-1?colour=red", "colour"),
            ("photos@us-east-1?endpoint=ftp%3A%2F%2Fx", "endpoint"),
            ("a1b@us-east-1,a1b@eu-west-1", "a1b@eu-west-1"),
        ] {
            let err = parse_replicas(list).unwrap_err().to_string();
            assert!(err.contains(needle), "{list}: {err}");
        }
        assert!(matches!(
            parse_replicas(" , "),
            Err(ConfigError::NoReplicas)
        ));
    }
}
