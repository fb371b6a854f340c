//! Command-line arguments.

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use s3fanout::backfill::filter::Filter;

const CONFIGURATION: &str = "\
Configuration (the same environment variables as the replication functions):
  SOURCE_BUCKETS       comma-separated source buckets, each BUCKET or BUCKET@REGION
  REPLICA_TARGETS      comma-separated BUCKET@REGION[?prefix=..&storage_class=..&kms_key_id=..]
  REPLICATE_DELETES    true or false
  COPY_CONCURRENCY     S3 requests in flight at once (default 32)
  MULTIPART_THRESHOLD  objects above this are copied in parts (default 64MiB)
  MULTIPART_PART_SIZE  part size of multipart copies (default 64MiB)
AWS credentials, region and endpoint (AWS_ENDPOINT_URL) come from the standard AWS environment;
a source bucket without @REGION is read in AWS_REGION.

Exit status: 0 done, 1 a copy failed or (verify) a replica drifted, 2 the command could not run
(configuration, arguments, a bucket that cannot be listed).";

/// Replicate, backfill and verify S3 replicas with the engine of the replication functions.
#[derive(Debug, Parser)]
#[command(name = "s3fanout", version, after_help = CONFIGURATION)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate one source object to every target now.
    Replicate(ReplicateArgs),
    /// Copy to the targets what they lack or hold differently, like `aws s3 sync`.
    Backfill(BackfillArgs),
    /// Compare the targets with the source and report drift; change nothing.
    Verify(VerifyArgs),
    /// Read an object from the replicas (READ_REPLICAS), failing over between them.
    Get(crate::read::GetArgs),
    /// Show an object's size, ETag and headers, from the first replica that answers.
    Head(crate::read::HeadArgs),
}

/// Arguments of `replicate`.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// Source bucket (one of SOURCE_BUCKETS).
    pub bucket: String,
    /// Object key, exactly as stored (not URL-encoded).
    pub key: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which objects and targets a backfill or verify covers.
#[derive(Debug, Args)]
pub struct Selection {
    /// Source bucket; may be left out when SOURCE_BUCKETS names exactly one.
    #[arg(long, value_name = "BUCKET")]
    pub source_bucket: Option<String>,
    /// Only keys under this prefix.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        hide_default_value = true
    )]
    pub prefix: String,
    /// Only this target bucket (repeatable; default: every target in REPLICA_TARGETS).
    #[arg(long = "target", value_name = "BUCKET")]
    pub targets: Vec<String>,
    /// Include keys matching GLOB (relative to the prefix; repeatable; later filters win).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Exclude keys matching GLOB (relative to the prefix; repeatable; later filters win).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Objects worked on at once (default: COPY_CONCURRENCY).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `backfill`.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Objects and targets covered.
    #[command(flatten)]
    pub selection: Selection,
    /// Report what would be copied (and deleted) without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete replica objects that the source does not have.
    #[arg(long)]
    pub delete: bool,
}

/// Arguments of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Objects and targets covered.
    #[command(flatten)]
    pub selection: Selection,
    /// Also compare headers, user metadata and tags (reads both sides of every object).
    #[arg(long)]
    pub full: bool,
}

/// Parses the command line, exiting with status 2 (0 for `--help`) when it is not valid. The
/// raw matches are kept because the derived structure loses the order of `--include` and
/// `--exclude`, which decides what they select.
pub fn parse() -> (Cli, ArgMatches) {
    let matches = Cli::command().get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => (cli, matches),
        Err(err) => err.exit(),
    }
}

/// `--include` and `--exclude` in the order given: as with `aws s3 sync`, a later filter
/// overrides an earlier one for the keys both match.
pub fn ordered_filters(matches: &ArgMatches) -> Vec<Filter> {
    let Some((_, sub)) = matches.subcommand() else {
        return Vec::new();
    };
    let mut indexed: Vec<(usize, Filter)> = Vec::new();
    for (id, make) in [
        ("include", Filter::Include as fn(String) -> Filter),
        ("exclude", Filter::Exclude),
    ] {
        if let (Some(indices), Some(values)) = (sub.indices_of(id), sub.get_many::<String>(id)) {
            indexed.extend(indices.zip(values).map(|(i, v)| (i, make(v.clone()))));
        }
    }
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(argv: &[&str]) -> ArgMatches {
        Cli::command().try_get_matches_from(argv).unwrap()
    }

    #[test]
    fn filters_keep_command_line_order() {
        let m = matches(&[
            "s3fanout",
            "backfill",
            "--include",
            "a*",
            "--exclude",
            "*",
            "--include",
            "*.log",
        ]);
        assert_eq!(
            ordered_filters(&m),
            vec![
                Filter::Include("a*".into()),
                Filter::Exclude("*".into()),
                Filter::Include("*.log".into()),
            ]
        );
    }

    #[test]
    fn verify_rejects_write_flags_and_bad_concurrency() {
        for argv in [
            &["s3fanout", "verify", "--dry-run"][..],
            &["s3fanout", "verify", "--delete"],
            &["s3fanout", "backfill", "--concurrency", "0"],
            &["s3fanout", "replicate", "only-bucket"],
        ] {
            let err = Cli::command().try_get_matches_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
