//! `s3fanout get KEY` and `s3fanout head KEY`: read from the replicas, failing over between
//! them, as applications do with the read library.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use s3fanout_read::{
    parse_replicas, ByteRange, ReadConfig, ReadError, Reader, Replica, ResumeError,
};
use tokio::io::AsyncWriteExt;

use crate::{Fatal, Verdict};

const READ_CONFIGURATION: &str = "\
Replicas: READ_REPLICAS, comma-separated BUCKET@REGION[?prefix=..&endpoint=..] (values
percent-encoded); default: the SOURCE_BUCKETS entries (a bucket without @REGION is in AWS_REGION)
followed by the REPLICA_TARGETS entries.
  READ_MISSING           failover (default: a 404 asks the next replica) or fail
  READ_ORDER             which replica each read asks first:
                           latency (default) replicas take turns, near ones more often
                           round-robin       replicas take equal turns
                           listed            always in the order listed: the first while it
                                             answers, the others as backups in turn
                         Turns begin at a replica drawn at random in each process, so that
                         one `get` per request still spreads over every replica.
  READ_TIMEOUT_MS        time allowed for each replica's response head (default 5000)
  READ_HEDGE_PERCENTILE  ask the next replica too when the first is slower than this
                         percentile of recent reads (default: no hedging)
  READ_RETRIES           retries at the same replica before moving on (default 0)

A replica that holds the object archived (403 InvalidObjectState or ObjectNotInActiveTierError:
Glacier Flexible Retrieval, Deep Archive, an Intelligent-Tiering archive tier) is passed over
for the next one, like a replica that is down.

Exit status: 0 read, 1 every replica failed, none has the key, or every copy is archived (the
message names each replica and its answer), 2 bad configuration or arguments.";

/// Arguments of `get`.
#[derive(Debug, Args)]
#[command(after_help = READ_CONFIGURATION)]
pub struct GetArgs {
    /// Object key, exactly as stored (not URL-encoded).
    pub key: String,
    /// Write the object to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only these bytes: FIRST-LAST, FIRST- or -SUFFIX_LENGTH (as in an HTTP Range header).
    #[arg(long, value_name = "RANGE", value_parser = parse_range)]
    pub range: Option<ByteRange>,
    /// Write the failure gauges as CloudWatch EMF lines to FILE ("-": standard error).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// Arguments of `head`.
#[derive(Debug, Args)]
#[command(after_help = READ_CONFIGURATION)]
pub struct HeadArgs {
    /// Object key, exactly as stored (not URL-encoded).
    pub key: String,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the failure gauges as CloudWatch EMF lines to FILE ("-": standard error).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// Streams the object to standard output or a file.
pub async fn run_get(args: &GetArgs) -> Result<Verdict, Fatal> {
    let reader = reader().await?;
    let result = reader.get(&args.key, args.range).await;
    let verdict = match result {
        Ok(served) => {
            let replica = served.replica.clone();
            let body = served.output.body.into_async_read();
            match write_body(body, args.output.as_deref()).await {
                Ok(bytes) => {
                    if let Some(path) = &args.output {
                        eprintln!(
                            "s3fanout: {bytes} bytes from {replica} to {}",
                            path.display()
                        );
                    }
                    Verdict::Clean
                }
                Err(err) => {
                    eprintln!(
                        "s3fanout: reading {:?} from {replica} failed: {}",
                        args.key,
                        describe(&err)
                    );
                    Verdict::Problems
                }
            }
        }
        Err(err) => failed(&err),
    };
    write_metrics(&reader, args.metrics_file.as_deref()).await?;
    Ok(verdict)
}

/// Prints the object's size, ETag and headers.
pub async fn run_head(args: &HeadArgs) -> Result<Verdict, Fatal> {
    let reader = reader().await?;
    let verdict = match reader.head(&args.key).await {
        Ok(served) => {
            let out = &served.output;
            let fields = [
                ("replica", Some(served.replica.clone())),
                ("size", out.content_length().map(|n| n.to_string())),
                ("etag", out.e_tag().map(str::to_string)),
                ("last_modified", out.last_modified().map(|t| t.to_string())),
                ("content_type", out.content_type().map(str::to_string)),
                (
                    "storage_class",
                    out.storage_class().map(|s| s.as_str().to_string()),
                ),
            ];
            if args.json {
                let mut object: serde_json::Map<String, serde_json::Value> = fields
                    .iter()
                    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v.into())))
                    .collect();
                object.insert("metadata".into(), serde_json::json!(out.metadata()));
                crate::print_json(&object)?;
            } else {
                for (name, value) in fields {
                    if let Some(value) = value {
                        println!("{name:<15} {value}");
                    }
                }
                for (name, value) in out.metadata().into_iter().flatten() {
                    println!("{:<15} {value}", format!("x-amz-meta-{name}"));
                }
            }
            Verdict::Clean
        }
        Err(err) => failed(&err),
    };
    write_metrics(&reader, args.metrics_file.as_deref()).await?;
    Ok(verdict)
}

fn failed(err: &ReadError) -> Verdict {
    eprintln!("s3fanout: {err}");
    Verdict::Problems
}

async fn reader() -> Result<Reader, Fatal> {
    let lookup = |name: &str| std::env::var(name).ok();
    let replicas = replicas(lookup).map_err(Fatal)?;
    let config = ReadConfig::from_lookup(lookup).map_err(|e| Fatal(e.to_string()))?;
    Reader::new(replicas, config)
        .await
        .map_err(|e| Fatal(e.to_string()))
}

/// READ_REPLICAS, or the source buckets followed by the replica targets.
fn replicas(lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<Replica>, String> {
    if let Some(list) = lookup("READ_REPLICAS").filter(|v| !v.trim().is_empty()) {
        return parse_replicas(&list).map_err(|e| format!("READ_REPLICAS: {e}"));
    }
    let region = lookup("AWS_REGION").or_else(|| lookup("AWS_DEFAULT_REGION"));
    let mut entries = Vec::new();
    for source in lookup("SOURCE_BUCKETS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if source.contains('@') {
            entries.push(source.to_string());
        } else if let Some(region) = &region {
            entries.push(format!("{source}@{region}"));
        } else {
            return Err(format!(
                "SOURCE_BUCKETS: {source:?} has no @REGION and AWS_REGION is not set"
            ));
        }
    }
    entries.extend(
        lookup("REPLICA_TARGETS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    if entries.is_empty() {
        return Err(
            "no replica to read from: set READ_REPLICAS (or SOURCE_BUCKETS and REPLICA_TARGETS)"
                .to_string(),
        );
    }
    parse_replicas(&entries.join(",")).map_err(|e| format!("SOURCE_BUCKETS/REPLICA_TARGETS: {e}"))
}

fn parse_range(text: &str) -> Result<ByteRange, String> {
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| format!("{text:?} is not FIRST-LAST, FIRST- or -SUFFIX_LENGTH"))
    };
    match text.split_once('-') {
        Some(("", suffix)) => Ok(ByteRange::Suffix(number(suffix)?)),
        Some((first, "")) => Ok(ByteRange::From(number(first)?)),
        Some((first, last)) => {
            let (first, last) = (number(first)?, number(last)?);
            if last < first {
                return Err(format!("{text:?}: the last byte comes before the first"));
            }
            Ok(ByteRange::Inclusive { first, last })
        }
        None => Err(format!(
            "{text:?} is not FIRST-LAST, FIRST- or -SUFFIX_LENGTH"
        )),
    }
}

/// What went wrong while the body streamed: the reader's own account when the body could not
/// be resumed (it names each replica's answer), otherwise the error and its deepest cause.
fn describe(err: &std::io::Error) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut deepest = err.to_string();
    while let Some(e) = current {
        if let Some(resume) = e.downcast_ref::<ResumeError>() {
            return resume.to_string();
        }
        deepest = e.to_string();
        current = e.source();
    }
    if deepest == err.to_string() {
        deepest
    } else {
        format!("{err}: {deepest}")
    }
}

/// Copies the body in chunks (memory stays flat whatever the size); a partial file is removed.
async fn write_body(
    mut body: impl tokio::io::AsyncRead + Unpin,
    output: Option<&Path>,
) -> std::io::Result<u64> {
    match output {
        None => {
            let mut stdout = tokio::io::stdout();
            let bytes = tokio::io::copy(&mut body, &mut stdout).await?;
            stdout.flush().await?;
            Ok(bytes)
        }
        Some(path) => {
            let mut file = tokio::fs::File::create(path).await?;
            let result = async {
                let bytes = tokio::io::copy(&mut body, &mut file).await?;
                file.sync_all().await?;
                Ok(bytes)
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(path).await;
            }
            result
        }
    }
}

async fn write_metrics(reader: &Reader, target: Option<&Path>) -> Result<(), Fatal> {
    let Some(target) = target else {
        return Ok(());
    };
    let mut text = String::new();
    for line in reader.take_metrics_lines(Duration::from_secs(60)) {
        text.push_str(&line);
        text.push('\n');
    }
    if target == Path::new("-") {
        eprint!("{text}");
        return Ok(());
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .await
        .map_err(|e| Fatal(format!("--metrics-file {}: {e}", target.display())))?;
    file.write_all(text.as_bytes())
        .await
        .map_err(|e| Fatal(format!("--metrics-file {}: {e}", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn replicas_default_to_sources_then_targets() {
        let list = replicas(env(&[
            ("AWS_REGION", "us-east-1"),
            ("SOURCE_BUCKETS", "photos,logs@eu-west-1"),
            (
                "REPLICA_TARGETS",
                "photos-usw2@us-west-2?storage_class=STANDARD_IA",
            ),
        ]))
        .unwrap();
        let names: Vec<String> = list.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            names,
            [
                "photos@us-east-1",
                "logs@eu-west-1",
                "photos-usw2@us-west-2"
            ]
        );
        let explicit = replicas(env(&[
            ("READ_REPLICAS", "a-1@us-east-2"),
            ("SOURCE_BUCKETS", "photos"),
        ]))
        .unwrap();
        assert_eq!(explicit.len(), 1);
        assert!(replicas(env(&[("SOURCE_BUCKETS", "photos")]))
            .unwrap_err()
            .contains("AWS_REGION"));
        assert!(replicas(env(&[])).unwrap_err().contains("READ_REPLICAS"));
        assert!(replicas(env(&[("READ_REPLICAS", "bad")]))
            .unwrap_err()
            .contains("\"bad\""));
    }

    #[test]
    fn ranges() {
        assert_eq!(
            parse_range("0-99"),
            Ok(ByteRange::Inclusive { first: 0, last: 99 })
        );
        assert_eq!(parse_range("100-"), Ok(ByteRange::From(100)));
        assert_eq!(parse_range("-5"), Ok(ByteRange::Suffix(5)));
        for bad in ["", "x-1", "5-1", "12"] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }
}
