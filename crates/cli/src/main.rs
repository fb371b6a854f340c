//! `s3fanout`: replicate, backfill and verify S3 replicas from a shell, with the engine and the
//! environment configuration of the replication functions.

mod args;
mod backfill;
mod progress;
mod read;
mod replicate;
mod table;

use std::process::ExitCode;

use args::Command;

/// How a command ended, when it could run at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Everything succeeded (and, for verify, nothing drifted).
    Clean,
    /// Something failed or drifted: exit status 1.
    Problems,
}

/// A command that could not run: bad configuration or arguments, an unreachable bucket.
#[derive(Debug)]
pub struct Fatal(pub String);

fn main() -> ExitCode {
    let (cli, matches) = args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fatal(Fatal(format!("cannot start the async runtime: {err}"))),
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Replicate(a) => replicate::run(a).await,
            Command::Backfill(a) => backfill::run_backfill(a, &matches).await,
            Command::Verify(a) => backfill::run_verify(a, &matches).await,
            Command::Get(a) => read::run_get(a).await,
            Command::Head(a) => read::run_head(a).await,
        }
    });
    match result {
        Ok(Verdict::Clean) => ExitCode::SUCCESS,
        Ok(Verdict::Problems) => ExitCode::from(1),
        Err(err) => fatal(err),
    }
}

fn fatal(Fatal(message): Fatal) -> ExitCode {
    eprintln!("s3fanout: {message}");
    ExitCode::from(2)
}

/// The replicator configured from the environment, as the functions configure theirs.
pub async fn replicator() -> Result<s3fanout::Replicator, Fatal> {
    s3fanout::Replicator::from_env()
        .await
        .map_err(|err| Fatal(err.to_string()))
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Fatal> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| Fatal(format!("cannot serialise the report: {err}")))?;
    println!("{text}");
    Ok(())
}
