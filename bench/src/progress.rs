//! Progress on stderr while a system runs: which system, events done of how many, the rate so
//! far, and the time left.
//!
//! stderr only, so `--json` stdout stays one object per line; indicatif draws nothing when stderr
//! is not a terminal (a pipe, a file, CI), so logs hold no control characters. Producers add to
//! the bar once per stream (1,000 events in the seed workload), not per event: the bar's atomic
//! add and rate-limited redraw (at most 10 per second) stay far below the noise of the figures.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Redraws per second: enough to look alive, few enough to cost nothing measurable.
const REDRAWS_PER_SECOND: u8 = 10;

/// One system's progress bar; cheap to share between producer threads (`&Progress`).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` units of work done by `system`; `unit` names them ("events", "writes").
    pub fn start(system: &str, total: u64, unit: &'static str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND));
        let template = format!(
            "{{prefix:>8}} [{{bar:30}}] {{pos:>10}}/{{len}} {unit}  {{rate}}  {{elapsed}} elapsed, ~{{eta}} left"
        );
        let style = ProgressStyle::with_template(&template).expect("a valid template").progress_chars("=> ").with_key(
            "rate",
            move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{} {unit}/s", human(state.per_sec()));
            },
        );
        bar.set_style(style);
        bar.set_prefix(system.to_string());
        // Keeps the elapsed time ticking while a producer is between two streams.
        bar.enable_steady_tick(Duration::from_millis(1000 / u64::from(REDRAWS_PER_SECOND)));
        Progress { bar }
    }

    /// A bar that never draws (warm-ups, unit tests).
    pub fn hidden() -> Progress {
        Progress { bar: ProgressBar::hidden() }
    }

    /// `units` more done.
    pub fn add(&self, units: u64) {
        self.bar.inc(units);
    }

    /// Leaves the finished bar on screen, as a record of which systems ran and at what rate.
    pub fn finish(&self) {
        self.bar.finish();
        // indicatif leaves the cursor at the end of the bar; without a newline the next line
        // printed (stdout's table, a note) would start there.
        if !self.bar.is_hidden() {
            eprintln!();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A run that failed halfway stops its bar where it was, rather than leaving it ticking.
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

/// 2.5M, 310.2k, 45: a rate as a reader takes it in at a glance.
fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_at_a_glance() {
        assert_eq!(human(2_512_000.0), "2.51M");
        assert_eq!(human(310_240.0), "310.2k");
        assert_eq!(human(45.2), "45");
    }

    #[test]
    fn a_hidden_bar_counts_and_finishes_without_a_terminal() {
        let progress = Progress::hidden();
        progress.add(1_000);
        progress.finish();
    }
}
