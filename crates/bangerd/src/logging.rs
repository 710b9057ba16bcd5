//! Structured JSON logs in a size-capped, rotated file.
//!
//! `bangerd.log` grows to [`MAX_LOG_BYTES`], then becomes `bangerd.log.1`
//! (older ones shift up to `.KEEP_ROTATED`, the oldest is dropped). The
//! formatter writes each event with one `write` call, so rotation never
//! splits a JSON line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;

/// Size at which the log rotates.
pub const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP_ROTATED: usize = 3;

/// Failure to set up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The log file could not be opened.
    #[error("cannot open log file {path}")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The level filter did not parse.
    #[error("invalid log level {level:?}")]
    Filter {
        /// The level text.
        level: String,
        /// The cause.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// An append-only file that rotates itself when it grows past a cap.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    current: Mutex<(fs_err::File, u64)>,
}

impl RotatingFile {
    /// Opens (appending to) `path`, rotating at `max_bytes` and keeping `keep` old files.
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> Result<Self, LoggingError> {
        let file = Self::open_append(path).map_err(|source| LoggingError::Open {
            path: path.to_owned(),
            source,
        })?;
        let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
        Ok(Self {
            path: path.to_owned(),
            max_bytes,
            keep,
            current: Mutex::new((file, size)),
        })
    }

    fn open_append(path: &Path) -> std::io::Result<fs_err::File> {
        fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    }

    fn rotated(&self, index: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{index}"));
        PathBuf::from(name)
    }

    fn rotate(&self, current: &mut (fs_err::File, u64)) -> std::io::Result<()> {
        for index in (1..self.keep).rev() {
            let from = self.rotated(index);
            if from.exists() {
                fs_err::rename(&from, self.rotated(index + 1))?;
            }
        }
        if self.keep > 0 {
            fs_err::rename(&self.path, self.rotated(1))?;
        } else {
            fs_err::remove_file(&self.path)?;
        }
        *current = (Self::open_append(&self.path)?, 0);
        Ok(())
    }
}

impl Write for &RotatingFile {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.1 > 0 && current.1 + buffer.len() as u64 > self.max_bytes {
            self.rotate(&mut current)?;
        }
        let written = current.0.write(buffer)?;
        current.1 += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.0.flush()
    }
}

/// Installs the global JSON subscriber writing to `path` at `level` (see
/// [`filter`]).
pub fn init(path: &Path, level: &str) -> Result<(), LoggingError> {
    let filter = filter(level)?;
    let writer = Arc::new(RotatingFile::open(path, MAX_LOG_BYTES, KEEP_ROTATED)?);
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_current_span(false)
        .with_target(true)
        .init();
    Ok(())
}

/// The filter for `level`, a level name or a full `EnvFilter` directive.
///
/// `debug` and `trace` apply to banger's own crates (every target starting
/// `banger`) while the dependencies stay at `info`: what someone asks for
/// with `log_level = "debug"` is banger's step timings and decisions, not
/// every HTTP frame and SSH packet its libraries can describe.
pub fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    let directive = match level {
        "debug" | "trace" => format!("info,banger={level}"),
        other => other.to_owned(),
    };
    EnvFilter::builder()
        .parse(&directive)
        .map_err(|source| LoggingError::Filter {
            level: level.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a subscriber filtered by `filter(level)` writes of a few debug
    /// and info events from banger's crates and from hyper.
    fn logged_at(level: &str) -> String {
        let temp = tempfile::tempdir().expect("tempdir");
        let path = temp.path().join("bangerd.log");
        let writer = Arc::new(RotatingFile::open(&path, MAX_LOG_BYTES, 0).expect("open"));
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(level).expect("the filter parses"))
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "bangerd::vms", "daemon-debug");
            tracing::debug!(target: "banger_host::ssh", "host-debug");
            tracing::debug!(target: "hyper::proto", "dependency-debug");
            tracing::info!(target: "hyper::proto", "dependency-info");
            tracing::info!(target: "bangerd::vms", "daemon-info");
        });
        fs_err::read_to_string(&path).expect("read the log")
    }

    #[test]
    fn debug_is_bangers_own_and_dependencies_stay_at_info() {
        let log = logged_at("debug");
        for line in [
            "daemon-debug",
            "host-debug",
            "dependency-info",
            "daemon-info",
        ] {
            assert!(log.contains(line), "{line} missing from {log}");
        }
        assert!(!log.contains("dependency-debug"), "{log}");

        let log = logged_at("info");
        assert!(!log.contains("-debug"), "{log}");
        assert!(log.contains("dependency-info") && log.contains("daemon-info"));

        // A full directive is taken as it is.
        let log = logged_at("warn,hyper=debug");
        assert!(log.contains("dependency-debug") && !log.contains("daemon-info"));

        assert!(matches!(filter("loud=["), Err(LoggingError::Filter { .. })));
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_a_bounded_number_of_files() {
        let temp = tempfile::tempdir().expect("tempdir");
        let path = temp.path().join("bangerd.log");
        let file = RotatingFile::open(&path, 100, 2).expect("open");
        let line = format!("{}\n", "x".repeat(39));
        for _ in 0..20 {
            let mut writer = &file;
            writer.write_all(line.as_bytes()).expect("write");
        }
        let sizes: Vec<u64> = ["bangerd.log", "bangerd.log.1", "bangerd.log.2"]
            .iter()
            .map(|name| {
                fs_err::metadata(temp.path().join(name))
                    .expect("exists")
                    .len()
            })
            .collect();
        assert!(sizes.iter().all(|size| *size <= 100), "{sizes:?}");
        assert!(!temp.path().join("bangerd.log.3").exists());
        let rotated = fs_err::read_to_string(temp.path().join("bangerd.log.1")).expect("read");
        assert!(rotated.ends_with('\n'), "whole lines only: {rotated:?}");
    }
}
