//! `s3fanout replicate BUCKET KEY`: one object to every target, as an event would.

use s3fanout::{Change, ChangeReport, Outcome};

use crate::args::ReplicateArgs;
use crate::table::{Align, Table};
use crate::{Fatal, Verdict};

/// Replicates the object and prints what happened at each target.
pub async fn run(args: &ReplicateArgs) -> Result<Verdict, Fatal> {
    let replicator = crate::replicator().await?;
    // The engine would report this as a failure at every target; it is a mistake in the
    // arguments, which deserves the usage exit status and one clear line instead.
    let sources = &replicator.config().source_buckets;
    if !sources.contains(&args.bucket) {
        let configured: Vec<&str> = sources.iter().map(String::as_str).collect();
        return Err(Fatal(format!(
            "bucket {:?} is not a configured source (SOURCE_BUCKETS={})",
            args.bucket,
            configured.join(",")
        )));
    }
    let change = Change::created(&args.bucket, &args.key);
    let reports = replicator.apply(std::slice::from_ref(&change)).await;
    let Some(report) = reports.into_iter().next() else {
        return Err(Fatal("the engine returned no report".into()));
    };
    if args.json {
        crate::print_json(&report)?;
    } else {
        print!("{}", table(&report));
    }
    Ok(if report.failed() {
        Verdict::Problems
    } else {
        Verdict::Clean
    })
}

/// One row per target.
fn table(report: &ChangeReport) -> Table {
    let mut table = Table::new(&[
        ("target", Align::Left),
        ("replica key", Align::Left),
        ("outcome", Align::Left),
        ("ms", Align::Right),
        ("error", Align::Left),
    ]);
    for target in &report.targets {
        let detail = match &target.outcome {
            Outcome::Failed(failure) => failure.message.clone(),
            Outcome::Ignored { reason } => reason.describe().to_string(),
            _ => String::new(),
        };
        table.row(vec![
            target.bucket.clone(),
            target.key.clone(),
            target.outcome.name().to_string(),
            target.duration.as_millis().to_string(),
            detail,
        ]);
    }
    table
}
