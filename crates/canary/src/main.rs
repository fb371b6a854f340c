//! The replication canary as a Lambda function (one round per scheduled invocation, metrics as
//! EMF lines) or, with `--local`, as a command that prints the lag per replica.
//!
//! ```text
//! canary                                    the Lambda function (under the Lambda runtime)
//! canary --local [--rounds N] [--interval-ms MS]
//! canary --help
//! ```

use std::time::Duration;

use canary::{emf, now_ms, Canary, Round};
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

/// Time kept free before the invocation's deadline for the read-back, the deletes and the
/// answer.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: canary                                  run as the Lambda function (one round per invocation)
       canary --local [--rounds N] [--interval-ms MS]
                                               run rounds here and print each replica's lag
       canary --help

Configuration (environment): SOURCE_BUCKETS and REPLICA_TARGETS as for the replicate function;
CANARY_SOURCE, CANARY_WAIT_MS, CANARY_POLL_MS, CANARY_STALE_AFTER_MS, CANARY_KEEP.";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--local") => return local(&args[1..]).await,
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return Ok(());
        }
        // Anything else would otherwise start the Lambda runtime, which waits for a runtime
        // API that is not there.
        Some(other) => {
            eprintln!("canary: unknown argument {other:?}\n{USAGE}");
            std::process::exit(2);
        }
    }
    lambda_runtime::tracing::init_default_subscriber();
    let canary = &Canary::from_env().await?;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms()));
        let wait = canary
            .config()
            .wait
            .min(left.saturating_sub(DEADLINE_MARGIN));
        let round = canary.round(wait).await.map_err(|e| Diagnostic {
            error_type: "CanaryFailed".into(),
            error_message: e.to_string(),
        })?;
        for line in emf::lines(&round, now_ms()) {
            println!("{line}");
        }
        Ok::<_, Diagnostic>(round.summary())
    }))
    .await
}

/// Runs rounds here and prints what each replica showed.
async fn local(args: &[String]) -> Result<(), Error> {
    let mut rounds = 1u32;
    let mut interval = Duration::from_secs(60);
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = |name: &str| {
            rest.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--rounds" => rounds = value("--rounds")? as u32,
            "--interval-ms" => interval = Duration::from_millis(value("--interval-ms")?),
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: canary --local [--rounds N] [--interval-ms MS])"
                )
                .into())
            }
        }
    }
    let canary = Canary::from_env().await?;
    for n in 0..rounds {
        if n > 0 {
            tokio::time::sleep(interval).await;
        }
        let round = canary.round(canary.config().wait).await?;
        print_round(&canary, &round);
    }
    Ok(())
}

fn print_round(canary: &Canary, round: &Round) {
    println!(
        "canary {} written to s3://{}",
        round.key,
        canary.config().source_bucket
    );
    let names: Vec<String> = round
        .targets
        .iter()
        .map(|t| format!("s3://{} ({})", t.bucket, t.region))
        .collect();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    for (target, name) in round.targets.iter().zip(&names) {
        let lag = if target.measured {
            format!("lag {} ms", target.lag_ms)
        } else {
            format!("not there after {} ms", target.lag_ms)
        };
        let read_back = match &target.read_back {
            None => "no earlier canary to read back".to_string(),
            Some(Ok(())) => "previous canary read back intact".to_string(),
            Some(Err(e)) => format!("previous canary read back FAILED: {e}"),
        };
        let stale = if target.stale { "STALE; " } else { "" };
        println!("  {name:<width$}  {lag:<14}  {stale}{read_back}");
    }
}
