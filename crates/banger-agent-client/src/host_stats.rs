//! Host-side statistics of a VM: CPU time and RSS of its VMM process, and
//! the space its disk images really take.
//!
//! Pids and paths here come from the daemon's own records of the VM, never
//! from the guest.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why a host statistic could not be read.
#[derive(Debug, Error)]
pub enum HostStatsError {
    /// Reading a `/proc` file or a disk image's metadata failed.
    #[error("{}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A `/proc` file did not have the expected format.
    #[error("{}: unexpected format", path.display())]
    Parse {
        /// What was read.
        path: PathBuf,
    },
}

/// One sample of a process's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// The process.
    pub pid: u32,
    /// User plus system CPU time so far.
    pub cpu_time: Duration,
    /// Resident set size.
    pub rss_bytes: u64,
    /// When the sample was taken.
    pub taken_at: Instant,
}

/// Samples CPU time (`/proc/<pid>/stat`) and RSS (`/proc/<pid>/status`).
pub fn sample_process(pid: u32) -> Result<ProcessSample, HostStatsError> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let read = |name: &str| {
        let path = dir.join(name);
        fs_err::read_to_string(&path).map_err(|source| HostStatsError::Read { path, source })
    };
    let stat = read("stat")?;
    let status = read("status")?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| HostStatsError::Parse {
        path: dir.join("stat"),
    })?;
    let rss_bytes = parse_rss_bytes(&status).ok_or_else(|| HostStatsError::Parse {
        path: dir.join("status"),
    })?;
    // USER_HZ; guard against 0 rather than divide by it.
    let hz = Some(rustix::param::clock_ticks_per_second())
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Ok(ProcessSample {
        pid,
        cpu_time: Duration::from_secs(ticks / hz)
            + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz),
        rss_bytes,
        taken_at: Instant::now(),
    })
}

/// CPU use between two samples of the same process, in percent of one core
/// (can exceed 100 for a multi-threaded VMM). 0 when no time passed.
pub fn cpu_percent(earlier: &ProcessSample, later: &ProcessSample) -> f64 {
    let wall = later.taken_at.saturating_duration_since(earlier.taken_at);
    if wall.is_zero() {
        return 0.0;
    }
    let cpu = later.cpu_time.saturating_sub(earlier.cpu_time);
    cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
}

/// `utime + stime` in clock ticks from `/proc/<pid>/stat`. The command name
/// may contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    utime.checked_add(stime)
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes.
pub fn parse_rss_bytes(status: &str) -> Option<u64> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim();
    value.parse::<u64>().ok()?.checked_mul(1024)
}

/// Apparent and allocated size of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileUsage {
    /// Length as `ls -l` shows it.
    pub apparent_bytes: u64,
    /// Space actually allocated (`st_blocks * 512`): what a sparse or
    /// copy-on-write disk image really costs.
    pub allocated_bytes: u64,
}

/// Apparent and allocated size of `path` (not following a final symlink's
/// target is deliberate: a disk image is a regular file).
pub fn file_usage(path: &Path) -> Result<FileUsage, HostStatsError> {
    let metadata = fs_err::symlink_metadata(path).map_err(|source| HostStatsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(FileUsage {
        apparent_bytes: metadata.len(),
        allocated_bytes: metadata.blocks().saturating_mul(512),
    })
}

/// Allocated bytes of `path` (`st_blocks * 512`).
pub fn allocated_bytes(path: &Path) -> Result<u64, HostStatsError> {
    file_usage(path).map(|usage| usage.allocated_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn stat_and_status_are_parsed() {
        let stat =
            "4242 (qemu (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 5 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        let status = "Name:\tqemu\nVmPeak:\t  100 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(parse_rss_bytes(status), Some(20480 * 1024));
        assert_eq!(parse_rss_bytes("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_is_sampled() {
        let first = sample_process(std::process::id()).expect("sample");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let second = sample_process(std::process::id()).expect("sample");
        assert!(second.rss_bytes > 0);
        assert!(second.cpu_time >= first.cpu_time);
        assert!(cpu_percent(&first, &second) >= 0.0);
        assert!(sample_process(u32::MAX).is_err());
    }

    #[test]
    fn sparse_files_report_allocated_bytes() {
        let mut file = tempfile::NamedTempFile::new().expect("tempfile");
        file.as_file_mut()
            .seek(SeekFrom::Start(64 << 20))
            .expect("seek");
        file.write_all(b"x").expect("write");
        file.flush().expect("flush");
        let usage = file_usage(file.path()).expect("usage");
        assert_eq!(usage.apparent_bytes, (64 << 20) + 1);
        assert!(usage.allocated_bytes < 1 << 20, "{usage:?}");
        assert!(usage.allocated_bytes > 0);
        assert!(allocated_bytes(Path::new("/nonexistent/x")).is_err());
    }

    #[test]
    fn cpu_percent_of_identical_samples_is_zero() {
        let sample = ProcessSample {
            pid: 1,
            cpu_time: Duration::from_secs(1),
            rss_bytes: 0,
            taken_at: Instant::now(),
        };
        assert_eq!(cpu_percent(&sample, &sample), 0.0);
    }
}
