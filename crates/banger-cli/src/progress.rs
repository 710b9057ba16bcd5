//! Showing a long operation's progress on stderr: a live spinner (with a
//! bar when the daemon knows the fraction) on a terminal, plain lines
//! otherwise so logs and CI output stay readable.

use std::io::IsTerminal;
use std::time::Duration;

use banger_api::operation::Progress;
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::sanitize;

/// Renders progress events; call [`Reporter::finish`] when done.
pub struct Reporter {
    bar: Option<ProgressBar>,
    last_line: String,
}

impl Reporter {
    /// A reporter for stderr.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            bar,
            last_line: String::new(),
        }
    }

    /// Shows one event.
    pub fn show(&mut self, progress: &Progress) {
        let message = sanitize(&progress.message);
        match &self.bar {
            Some(bar) => {
                match progress.fraction {
                    Some(fraction) => {
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {percent}%")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_length(1000);
                        bar.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                    }
                    None => bar.set_style(ProgressStyle::default_spinner()),
                }
                bar.set_message(message);
            }
            None => {
                // Fractions change often; print a line only when the text changes.
                let line = format!("{}: {message}", progress.stage);
                if line != self.last_line {
                    eprintln!("{line}");
                    self.last_line = line;
                }
            }
        }
    }

    /// Clears the live line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
