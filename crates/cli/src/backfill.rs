//! `s3fanout backfill` and `s3fanout verify`: the backfill engine run to the end from a shell.

use clap::ArgMatches;
use s3fanout::backfill::{self, BackfillRequest, Compare, Mode, Summary};
use s3fanout::Deadline;

use crate::args::{ordered_filters, BackfillArgs, Selection, VerifyArgs};
use crate::progress::Progress;
use crate::table::{bytes, Align, Table};
use crate::{Fatal, Verdict};

/// Copies what the targets lack; problems are failed copies.
pub async fn run_backfill(args: &BackfillArgs, matches: &ArgMatches) -> Result<Verdict, Fatal> {
    let request = BackfillRequest {
        dry_run: args.dry_run,
        delete: args.delete,
        ..request(Mode::Sync, &args.selection, matches)
    };
    let summary = execute(&request).await?;
    if args.selection.json {
        crate::print_json(&summary)?;
    } else {
        print!("{}", report(&summary));
    }
    let failed = summary.targets.values().any(|c| c.failed > 0);
    Ok(if failed || !summary.done {
        Verdict::Problems
    } else {
        Verdict::Clean
    })
}

/// Compares only; problems are drift and failed checks.
pub async fn run_verify(args: &VerifyArgs, matches: &ArgMatches) -> Result<Verdict, Fatal> {
    let request = BackfillRequest {
        compare: if args.full {
            Compare::Full
        } else {
            Compare::Listing
        },
        ..request(Mode::Verify, &args.selection, matches)
    };
    let summary = execute(&request).await?;
    if args.selection.json {
        crate::print_json(&summary)?;
    } else {
        print!("{}", report(&summary));
    }
    Ok(if summary.has_problems() || !summary.done {
        Verdict::Problems
    } else {
        Verdict::Clean
    })
}

fn request(mode: Mode, selection: &Selection, matches: &ArgMatches) -> BackfillRequest {
    BackfillRequest {
        mode,
        source_bucket: selection.source_bucket.clone(),
        prefix: selection.prefix.clone(),
        targets: (!selection.targets.is_empty()).then(|| selection.targets.clone()),
        // Passed as one ordered list rather than as `include` and `exclude`, which the engine
        // would apply excludes first whatever the order on the command line.
        filters: ordered_filters(matches),
        concurrency: selection.concurrency.map(usize::from),
        ..BackfillRequest::default()
    }
}

/// Runs without a deadline: a shell has no invocation timeout, so one run covers everything.
async fn execute(request: &BackfillRequest) -> Result<Summary, Fatal> {
    let replicator = crate::replicator().await?;
    let progress = Progress::start();
    let result = backfill::run(&replicator, request, &Deadline::none(), &|summary| {
        progress.update(summary)
    })
    .await;
    progress.finish();
    result.map_err(|err| Fatal(err.to_string()))
}

/// The heading line, a table per target and the examples.
fn report(summary: &Summary) -> String {
    let verb = match summary.mode {
        Mode::Sync => "backfill",
        Mode::Verify => "verify",
    };
    let mut out = format!(
        "{verb} s3://{}/{}: {} source objects, {} list requests, {:.1} s\n",
        summary.source_bucket,
        summary.prefix,
        summary.source_objects,
        summary.list_requests,
        summary.duration_ms as f64 / 1000.0
    );
    if summary.dry_run {
        out.push_str("dry run: nothing was written; copied and deleted count what would be\n");
    }
    if !summary.done {
        out.push_str("stopped before the end of the listing\n");
    }
    if let Some(stop) = &summary.stopped {
        out.push_str(&format!("not continued: {}\n", stop.detail));
    }
    out.push('\n');
    out.push_str(&counts(summary).to_string());
    if !summary.examples.is_empty() {
        let mut examples = Table::new(&[
            ("target", Align::Left),
            ("key", Align::Left),
            ("what", Align::Left),
        ]);
        for e in &summary.examples {
            examples.row(vec![e.target.clone(), e.key.clone(), e.what.clone()]);
        }
        // The engine keeps only the first few, so that a run over a broken bucket stays small.
        out.push_str(&format!(
            "\nexamples (first {}):\n{examples}",
            summary.examples.len()
        ));
    }
    out
}

fn counts(summary: &Summary) -> Table {
    let n = |v: u64| v.to_string();
    match summary.mode {
        Mode::Sync => {
            let mut table = Table::new(&[
                ("target", Align::Left),
                ("listed", Align::Right),
                ("copied", Align::Right),
                ("up to date", Align::Right),
                ("deleted", Align::Right),
                ("skipped", Align::Right),
                ("failed", Align::Right),
                ("bytes", Align::Right),
            ]);
            for (target, c) in &summary.targets {
                table.row(vec![
                    target.clone(),
                    n(c.listed),
                    n(c.copied),
                    n(c.up_to_date),
                    n(c.deleted),
                    n(c.skipped),
                    n(c.failed),
                    bytes(c.bytes),
                ]);
            }
            table
        }
        Mode::Verify => {
            let mut table = Table::new(&[
                ("target", Align::Left),
                ("listed", Align::Right),
                ("up to date", Align::Right),
                ("missing", Align::Right),
                ("different", Align::Right),
                ("extraneous", Align::Right),
                ("unverifiable", Align::Right),
                ("failed", Align::Right),
            ]);
            for (target, c) in &summary.targets {
                table.row(vec![
                    target.clone(),
                    n(c.listed),
                    n(c.up_to_date),
                    n(c.missing),
                    n(c.different),
                    n(c.extraneous),
                    n(c.unverifiable),
                    n(c.failed),
                ]);
            }
            table
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3fanout::backfill::{Example, TargetCounts};

    #[test]
    fn verify_report_lists_drift() {
        let mut summary = Summary {
            mode: Mode::Verify,
            source_bucket: "src".into(),
            done: true,
            source_objects: 2,
            ..Summary::default()
        };
        let counts = TargetCounts {
            listed: 2,
            up_to_date: 1,
            missing: 1,
            ..TargetCounts::default()
        };
        summary.targets.insert("rep".into(), counts);
        summary.examples.push(Example {
            target: "rep".into(),
            key: "a b".into(),
            what: "missing".into(),
        });
        let text = report(&summary);
        assert!(
            text.starts_with("verify s3://src/: 2 source objects"),
            "{text}"
        );
        assert!(
            text.contains(
                "rep          2           1        1          0           0             0       0"
            ),
            "{text}"
        );
        assert!(text.contains("rep     a b  missing"), "{text}");
    }
}
