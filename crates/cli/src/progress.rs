//! A spinner on stderr while a backfill or verify runs, when stderr is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use s3fanout::backfill::{Mode, Summary};

/// Shows how far a run got; does nothing when stderr is not a terminal, so that logs and
/// pipes receive only the final report.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the spinner if stderr is a terminal.
    pub fn start() -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        bar.set_message("listing...");
        // The engine reports once per listing page; ticking on its own keeps the spinner alive
        // between pages.
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    /// Shows the counters so far.
    pub fn update(&self, summary: &Summary) {
        if let Some(bar) = &self.bar {
            bar.set_message(message(summary));
        }
    }

    /// Removes the spinner, so that the report that follows starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The counters summed over the targets, as one line.
fn message(summary: &Summary) -> String {
    let sum = |f: fn(&s3fanout::backfill::TargetCounts) -> u64| -> u64 {
        summary.targets.values().map(f).sum()
    };
    let listed = summary.source_objects;
    match summary.mode {
        Mode::Sync => {
            let verb = if summary.dry_run { "to copy" } else { "copied" };
            format!(
                "{listed} source objects listed, {} {verb}, {} up to date, {} failed",
                sum(|c| c.copied),
                sum(|c| c.up_to_date),
                sum(|c| c.failed)
            )
        }
        Mode::Verify => format!(
            "{listed} source objects listed, {} missing, {} different, {} extraneous, {} failed",
            sum(|c| c.missing),
            sum(|c| c.different),
            sum(|c| c.extraneous),
            sum(|c| c.failed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3fanout::backfill::TargetCounts;

    #[test]
    fn message_sums_targets() {
        let mut summary = Summary {
            source_objects: 1000,
            ..Summary::default()
        };
        for (name, copied) in [("a", 3), ("b", 4)] {
            let counts = TargetCounts {
                copied,
                failed: 1,
                ..TargetCounts::default()
            };
            summary.targets.insert(name.into(), counts);
        }
        assert_eq!(
            message(&summary),
            "1000 source objects listed, 7 copied, 0 up to date, 2 failed"
        );
    }
}
