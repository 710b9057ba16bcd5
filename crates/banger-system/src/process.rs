//! Looking at running processes through `/proc`: who runs a binary, which
//! file it was started from, and when.
//!
//! "Is the installed binary the running one?" is answered by file identity
//! (device and inode of `/proc/<pid>/exe` against the installed file) when
//! we may read that link (root, or the process's own user). Otherwise (the
//! owner asking about the root helper) by time: a binary replaced after the
//! process started is not the one it runs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much later than a process's computed start a file must have changed
/// to count as replaced after the start.
const START_SLACK: Duration = Duration::from_secs(2);

/// Whether a running process runs the installed binary, and how we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryMatch {
    /// Same file (device and inode).
    Same,
    /// Another file: the installed one was replaced (restart to use it).
    Different,
    /// The installed file has not changed since the process started (its
    /// `/proc/<pid>/exe` is not readable to us).
    NotChangedSinceStart,
    /// Replaced after the process started (restart to use it).
    ChangedSinceStart,
    /// Cannot tell.
    Unknown,
}

impl BinaryMatch {
    /// Whether the running process is (as far as we can tell) the installed binary.
    pub fn is_current(self) -> bool {
        matches!(self, Self::Same | Self::NotChangedSinceStart)
    }
}

/// Whether process `pid` is alive (exists, neither a zombie nor dead): the
/// one check all of banger uses.
pub use banger_host::process::alive;

/// The file `pid` runs, when we may read its `exe` link (a replaced file
/// reads as `<path> (deleted)`).
pub fn exe(pid: u32) -> Option<PathBuf> {
    fs_err::read_link(format!("/proc/{pid}/exe")).ok()
}

/// Whether `pid` runs `installed`, and how we know.
pub fn binary_match(pid: u32, installed: &Path) -> BinaryMatch {
    let Ok(installed_meta) = fs_err::metadata(installed) else {
        return BinaryMatch::Unknown;
    };
    if let Ok(running) = fs_err::metadata(format!("/proc/{pid}/exe")) {
        return if (running.dev(), running.ino()) == (installed_meta.dev(), installed_meta.ino()) {
            BinaryMatch::Same
        } else {
            BinaryMatch::Different
        };
    }
    let Some(started) = start_time(pid) else {
        return BinaryMatch::Unknown;
    };
    // The install renames a new file into place: its change time is when.
    let changed = SystemTime::UNIX_EPOCH
        + Duration::new(
            installed_meta.ctime().max(0).unsigned_abs(),
            u32::try_from(installed_meta.ctime_nsec()).unwrap_or(0),
        );
    // Start times are coarse (boot time has whole seconds, ticks are 10 ms):
    // a binary installed just before its process started must not look newer.
    if changed > started + START_SLACK {
        BinaryMatch::ChangedSinceStart
    } else {
        BinaryMatch::NotChangedSinceStart
    }
}

/// When `pid` started (`/proc/<pid>/stat` field 22, in clock ticks after boot).
pub fn start_time(pid: u32) -> Option<SystemTime> {
    let ticks = banger_host::process::read_stat(pid).ok()?.start_time_ticks;
    let boot = boot_time()?;
    let per_second = rustix::param::clock_ticks_per_second();
    if per_second == 0 {
        return None;
    }
    Some(boot + Duration::from_millis(ticks.saturating_mul(1000) / per_second))
}

/// The uid a process runs as (`/proc/<pid>/status`, real uid).
pub fn uid(pid: u32) -> Option<u32> {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Processes whose command name is `comm` and whose uid is `uid`.
pub fn find(comm: &str, uid_wanted: u32) -> Vec<u32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|pid| {
            fs_err::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim_end() == comm)
                && uid(*pid) == Some(uid_wanted)
                && alive(*pid)
        })
        .collect();
    pids.sort_unstable();
    pids
}

fn boot_time() -> Option<SystemTime> {
    let stat = fs_err::read_to_string("/proc/stat").ok()?;
    let seconds: u64 = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_its_own_binary() {
        let me = std::process::id();
        assert!(alive(me));
        let exe = exe(me).unwrap();
        assert_eq!(binary_match(me, &exe), BinaryMatch::Same);
        assert!(start_time(me).unwrap() <= SystemTime::now());
        let other = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(binary_match(me, other.path()), BinaryMatch::Different);
        assert_eq!(uid(me), Some(rustix::process::getuid().as_raw()));
    }
}
