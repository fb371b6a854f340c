//! A spinner on stderr while a backfill or verify runs, when stderr is a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use s3fanout::backfill::{Mode, Summary};

use crate::table::bytes;

/// Shows how far a run got; does nothing when stderr is not a terminal, so that logs and
/// pipes receive only the final report.
pub struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// Starts the spinner if stderr is a terminal.
    pub fn start() -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                started: Instant::now(),
            };
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
            bar.set_style(style);
        }
        bar.set_message("listing...");
        // The engine reports once per listing page; ticking on its own keeps the spinner alive
        // between pages.
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress {
            bar: Some(bar),
            started: Instant::now(),
        }
    }

    /// Shows the counters so far.
    pub fn update(&self, summary: &Summary) {
        if let Some(bar) = &self.bar {
            bar.set_message(message(summary, self.started.elapsed()));
        }
    }

    /// Removes the spinner, so that the report that follows starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The counters summed over the targets, and the rates since the start, as one line.
fn message(summary: &Summary, elapsed: Duration) -> String {
    let sum = |f: fn(&s3fanout::backfill::TargetCounts) -> u64| -> u64 {
        summary.targets.values().map(f).sum()
    };
    let listed = summary.source_objects;
    // Rates over the whole run so far: steadier than per page, and what an estimate of the
    // remaining time needs.
    let seconds = elapsed.as_secs_f64().max(0.001);
    let rate = format!("{:.0} objects/s", listed as f64 / seconds);
    match summary.mode {
        Mode::Sync => {
            let verb = if summary.dry_run { "to copy" } else { "copied" };
            let copied_bytes = sum(|c| c.bytes);
            format!(
                "{listed} source objects listed, {} {verb} ({}), {} up to date, {} failed; {rate}, {}/s",
                sum(|c| c.copied),
                bytes(copied_bytes),
                sum(|c| c.up_to_date),
                sum(|c| c.failed),
                bytes((copied_bytes as f64 / seconds) as u64)
            )
        }
        Mode::Verify => format!(
            "{listed} source objects listed, {} missing, {} different, {} extraneous, {} unverifiable, {} failed; {rate}",
            sum(|c| c.missing),
            sum(|c| c.different),
            sum(|c| c.extraneous),
            sum(|c| c.unverifiable),
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
                bytes: copied * 1024 * 1024,
                ..TargetCounts::default()
            };
            summary.targets.insert(name.into(), counts);
        }
        assert_eq!(
            message(&summary, Duration::from_secs(4)),
            "1000 source objects listed, 7 copied (7.0 MiB), 0 up to date, 2 failed; 250 objects/s, 1.8 MiB/s"
        );
    }

    #[test]
    fn verify_message_shows_drift_and_rate() {
        let mut summary = Summary {
            mode: Mode::Verify,
            source_objects: 300,
            ..Summary::default()
        };
        let counts = TargetCounts {
            missing: 2,
            extraneous: 1,
            unverifiable: 4,
            ..TargetCounts::default()
        };
        summary.targets.insert("a".into(), counts);
        assert_eq!(
            message(&summary, Duration::from_millis(1500)),
            "300 source objects listed, 2 missing, 0 different, 1 extraneous, 4 unverifiable, 0 failed; 200 objects/s"
        );
    }
}
