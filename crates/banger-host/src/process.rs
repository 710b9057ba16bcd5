//! Whether a process runs, read from `/proc/<pid>/stat` in one place.
//!
//! The VMM's identity checks (`banger_vmm::process`), the OCI cache's sweep
//! of temp files left by dead writers (`banger_oci`) and `banger system
//! status` all ask it; each used to parse the file itself, and they
//! disagreed on which states count as gone. The command name (field 2) may
//! hold spaces and parentheses, so fields are counted after its *last* `)`.

use std::path::PathBuf;

/// Reading `/proc/<pid>/stat` failed.
#[derive(Debug, thiserror::Error)]
pub enum StatError {
    /// The file could not be read (no such process, or not ours to read).
    #[error("cannot read {path}")]
    Read {
        /// `/proc/<pid>/stat`.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not have the shape proc(5) gives it.
    #[error("{path} is malformed")]
    Malformed {
        /// `/proc/<pid>/stat`.
        path: PathBuf,
    },
}

/// What banger reads from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The state letter (field 3): `R`, `S`, `D`, `T`, `t`, `Z`, `X`, ...
    pub state: char,
    /// Start time in clock ticks after boot (field 22): with the pid, it
    /// tells a process from a later one that got the same pid.
    pub start_time_ticks: u64,
}

impl Stat {
    /// Whether the process runs or can run again: neither a zombie (`Z`,
    /// exited and waiting to be reaped) nor dead (`X`, `x`).
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Whether the process is stopped by a signal (SIGSTOP, SIGTSTP: `T`)
    /// or by a debugger (`t`).
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/<pid>/stat` text, for
/// fields after the command name (`n >= 3`).
pub fn stat_field(text: &str, n: usize) -> Option<&str> {
    if n < 3 {
        return None;
    }
    let (_, rest) = text.rsplit_once(')')?;
    rest.split_whitespace().nth(n - 3)
}

/// Parses a `/proc/<pid>/stat` text.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let state = stat_field(text, 3)?.chars().next()?;
    let start_time_ticks = stat_field(text, 22)?.parse().ok()?;
    Some(Stat {
        state,
        start_time_ticks,
    })
}

/// Reads and parses `/proc/<pid>/stat`.
pub fn read_stat(pid: u32) -> Result<Stat, StatError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    match fs_err::read_to_string(&path) {
        Ok(text) => parse_stat(&text).ok_or(StatError::Malformed { path }),
        Err(source) => Err(StatError::Read { path, source }),
    }
}

/// Whether process `pid` exists and is live ([`Stat::is_live`]). Says
/// nothing about *which* process has the pid: where that matters (a VMM),
/// compare the start time too.
pub fn alive(pid: u32) -> bool {
    read_stat(pid).is_ok_and(|stat| stat.is_live())
}

/// Every process id in `/proc` now (empty when `/proc` cannot be read).
/// A process may end before its entry is read: callers treat missing
/// files as "gone".
pub fn all_pids() -> Vec<u32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_pids_has_this_process_and_only_numbers() {
        let pids = all_pids();
        assert!(pids.contains(&std::process::id()), "{pids:?}");
        assert!(!pids.contains(&0));
    }

    #[test]
    fn fields_are_counted_after_the_last_parenthesis() {
        let text = "42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0";
        assert_eq!(stat_field(text, 3), Some("S"));
        assert_eq!(stat_field(text, 4), Some("1"));
        assert_eq!(stat_field(text, 22), Some("12345"));
        assert_eq!(stat_field(text, 2), None);
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                state: 'S',
                start_time_ticks: 12345
            })
        );
        let odd =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(odd),
            Some(Stat {
                state: 'S',
                start_time_ticks: 987_654
            })
        );
        assert_eq!(parse_stat("42 (x) S 1"), None, "too short");
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn states_that_count_as_gone_or_stopped() {
        for (state, live, stopped) in [
            ('R', true, false),
            ('S', true, false),
            ('D', true, false),
            ('T', true, true),
            ('t', true, true),
            ('Z', false, false),
            ('X', false, false),
            ('x', false, false),
        ] {
            let stat = Stat {
                state,
                start_time_ticks: 1,
            };
            assert_eq!(stat.is_live(), live, "{state}");
            assert_eq!(stat.is_stopped(), stopped, "{state}");
        }
    }

    #[test]
    fn this_process_is_alive_and_a_pid_nobody_has_is_not() {
        assert!(alive(std::process::id()));
        assert!(!alive(999_999_999));
        let own = read_stat(std::process::id()).expect("own stat");
        assert!(own.is_live() && !own.is_stopped());
        assert!(matches!(
            read_stat(999_999_999),
            Err(StatError::Read { .. })
        ));
    }

    #[test]
    fn a_zombie_does_not_run() {
        assert!(alive(std::process::id()));
        assert!(!alive(999_999_999));
        // A child that exited and is not reaped yet is a zombie.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "{pid} still runs");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        child.wait().unwrap();
    }
}
