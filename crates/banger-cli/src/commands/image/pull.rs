//! `banger image pull`: the request and its per-layer progress display.
//!
//! The daemon reports each layer's download as its own stage (`layer 2/5`)
//! with a fraction. On a terminal every layer gets a live bar of its own
//! under a spinner for the other stages; otherwise a plain line is printed
//! when a layer starts and when it is complete, so logs stay short.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use banger_api::images::ImagePullRequest;
use banger_api::operation::Progress;
use banger_client::DaemonClient;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::args::ImagePullArgs;
use crate::output::{self, sanitize};

/// `docker-archive:` and `oci:` paths are made absolute here: the daemon
/// has another working directory.
fn absolute_reference(reference: &str) -> anyhow::Result<String> {
    for prefix in ["docker-archive:", "oci:"] {
        if let Some(path) = reference.strip_prefix(prefix) {
            let absolute = super::super::absolute(std::path::Path::new(path))?;
            return Ok(format!("{prefix}{}", absolute.display()));
        }
    }
    Ok(reference.to_owned())
}

/// Live display of a pull.
struct PullReporter {
    multi: Option<MultiProgress>,
    spinner: Option<ProgressBar>,
    layers: BTreeMap<String, ProgressBar>,
    printed: BTreeMap<String, bool>,
    last_line: String,
}

impl PullReporter {
    fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        let spinner = multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Self {
            multi,
            spinner,
            layers: BTreeMap::new(),
            printed: BTreeMap::new(),
            last_line: String::new(),
        }
    }

    fn show(&mut self, progress: &Progress) {
        let message = sanitize(&progress.message);
        let stage = sanitize(&progress.stage);
        let is_layer = stage.starts_with("layer ");
        match &self.multi {
            Some(multi) if is_layer => {
                let bar = self.layers.entry(stage.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(1000));
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:>11} [{bar:30}] {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(stage.clone());
                    bar
                });
                let fraction = progress.fraction.unwrap_or(0.0).clamp(0.0, 1.0);
                bar.set_position((fraction * 1000.0) as u64);
                bar.set_message(message);
            }
            Some(_) => {
                if let Some(spinner) = &self.spinner {
                    spinner.set_message(format!("{stage}: {message}"));
                }
            }
            None if is_layer => {
                let complete = progress.fraction.is_some_and(|fraction| fraction >= 1.0);
                let seen = self.printed.get(&stage).copied();
                if seen.is_none() || (complete && seen == Some(false)) {
                    eprintln!("{stage}: {message}");
                    self.printed.insert(stage, complete);
                }
            }
            None => {
                let line = format!("{stage}: {message}");
                if line != self.last_line {
                    eprintln!("{line}");
                    self.last_line = line;
                }
            }
        }
    }

    fn finish(self) {
        for bar in self.layers.values() {
            bar.finish();
        }
        if let Some(spinner) = self.spinner {
            spinner.finish_and_clear();
        }
    }
}

/// Runs `banger image pull`.
pub async fn run(client: &DaemonClient, args: ImagePullArgs) -> anyhow::Result<()> {
    let request = ImagePullRequest {
        name: args.name,
        reference: args.reference,
        kernel_ref: args.kernel_ref,
        max_layer_bytes: args.max_layer_size,
        max_image_bytes: args.max_image_size,
    };
    pull(client, request, args.json).await
}

/// Pulls `request` with live progress, printing the image as JSON when
/// `json`, else a line on stderr.
pub async fn pull(
    client: &DaemonClient,
    mut request: ImagePullRequest,
    json: bool,
) -> anyhow::Result<()> {
    request.reference = absolute_reference(&request.reference)?;
    let mut reporter = PullReporter::new();
    let result = client
        .pull_image(&request, &mut |progress| reporter.show(progress))
        .await;
    reporter.finish();
    let image = result?;
    if json {
        output::json(&image)?;
    } else {
        eprintln!(
            "image {} is ready ({})",
            image.name,
            super::super::kernel::human_bytes(image.size_bytes)
        );
    }
    Ok(())
}
