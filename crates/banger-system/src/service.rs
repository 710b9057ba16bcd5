//! Running the two services: through systemd when it is PID 1, else the
//! root helper detached by hand and `bangerd` left to the CLI's auto-start.
//!
//! Without systemd (containers, CI machines) `bangerd-root` is started in
//! its own session (`setsid`), with an empty environment, `/` as working
//! directory, stdin from `/dev/null` and stdout/stderr appended to
//! `/var/log/banger/bangerd-root.log`; its pid goes to `/run/banger/root.pid`.
//! It is stopped with SIGTERM (SIGKILL after 10 s) after checking that the
//! pid is still a root `bangerd-root`, never by name alone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fs_err::os::unix::fs::OpenOptionsExt;

use crate::files::{self, FileError};
use crate::layout::{Binary, Layout};
use crate::process;

/// How long the detached helper has to create its socket.
const HELPER_READY: Duration = Duration::from_secs(10);
/// How long a stopped process has before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Starting, stopping or asking about a service failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `systemctl` could not run or failed.
    #[error("`systemctl {args}` failed: {detail}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// Status and output.
        detail: String,
    },
    /// Preparing the helper's directories, log or pid file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Opening the helper's log failed.
    #[error("cannot open {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The helper could not be started.
    #[error("cannot start {binary}")]
    Spawn {
        /// The helper binary.
        binary: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The helper exited or never made its socket.
    #[error("bangerd-root did not come up ({problem}); its log {log} ends with: {tail}")]
    NotReady {
        /// What happened.
        problem: String,
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// A process would not stop.
    #[error("{what} (pid {pid}) did not exit after SIGKILL")]
    Unkillable {
        /// Which service.
        what: &'static str,
        /// Its pid.
        pid: u32,
    },
}

/// Runs `systemctl ARGS`, returning its stdout.
pub fn systemctl(args: &[&str]) -> Result<String, ServiceError> {
    let joined = args.join(" ");
    let output = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| ServiceError::Systemctl {
            args: joined.clone(),
            detail: error.to_string(),
        })?;
    if !output.status.success() {
        return Err(ServiceError::Systemctl {
            args: joined,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `systemctl is-active UNIT` (`active`, `inactive`, `failed`, ...; the
/// command exits non-zero for everything but active, which is not an error here).
pub fn unit_state(unit: &str) -> String {
    Command::new("systemctl")
        .args(["is-active", unit])
        .stdin(Stdio::null())
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|state| !state.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The unit's main pid, when it runs.
pub fn unit_pid(unit: &str) -> Option<u32> {
    systemctl(&["show", "--property=MainPID", "--value", unit])
        .ok()?
        .parse()
        .ok()
        .filter(|pid| *pid != 0)
}

/// The detached helper's pid: from the pid file when that pid is still a
/// root `bangerd-root`, else any root `bangerd-root` (a lost pid file).
pub fn helper_pid(layout: &Layout) -> Option<u32> {
    let recorded = fs_err::read_to_string(layout.pid_file())
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|pid| is_helper(*pid));
    recorded.or_else(|| process::find("bangerd-root", 0).into_iter().next())
}

fn is_helper(pid: u32) -> bool {
    process::alive(pid)
        && process::uid(pid) == Some(0)
        && fs_err::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "bangerd-root")
}

/// Starts the helper detached (no systemd) and waits for its socket.
/// Returns its pid.
pub fn start_helper(layout: &Layout) -> Result<u32, ServiceError> {
    files::create_dir(&layout.run_dir(), 0o755)?;
    files::create_dir(&layout.log_dir, 0o750)?;
    let log_path = layout.log_file();
    let log_error = |source: std::io::Error| ServiceError::Log {
        path: log_path.clone(),
        source,
    };
    let log = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(&log_path)
        .map_err(log_error)?;
    let log_err = log.try_clone().map_err(log_error)?;
    let binary = layout.binary(Binary::BangerdRoot);
    let mut command = Command::new(&binary);
    command
        .arg("--metadata")
        .arg(&layout.metadata)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.into_parts().0))
        .stderr(Stdio::from(log_err.into_parts().0));
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe and touches no shared state.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| ServiceError::Spawn {
        binary: binary.clone(),
        source,
    })?;
    let pid = child.id();
    files::write_file(&layout.pid_file(), format!("{pid}\n").as_bytes(), 0o644)?;
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = files::remove_file(&layout.pid_file());
            return Err(not_ready(layout, format!("it exited: {status}")));
        }
        if is_socket(&layout.root_socket) {
            return Ok(pid);
        }
        if started.elapsed() > HELPER_READY {
            return Err(not_ready(
                layout,
                format!(
                    "no socket at {} after {HELPER_READY:?}; pid {pid} left running",
                    layout.root_socket.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops the detached helper if it runs; returns the pid it stopped.
pub fn stop_helper(layout: &Layout) -> Result<Option<u32>, ServiceError> {
    let stopped = match helper_pid(layout) {
        Some(pid) => {
            stop_process("bangerd-root", pid)?;
            Some(pid)
        }
        None => None,
    };
    files::remove_file(&layout.pid_file())?;
    Ok(stopped)
}

/// Stops every `bangerd` the owner runs (the CLI starts a new one on next
/// use); returns their pids.
pub fn stop_owner_daemons(owner_uid: u32) -> Result<Vec<u32>, ServiceError> {
    let pids = process::find("bangerd", owner_uid);
    for pid in &pids {
        stop_process("bangerd", *pid)?;
    }
    Ok(pids)
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
fn stop_process(what: &'static str, pid: u32) -> Result<(), ServiceError> {
    let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Ok(());
    };
    let _ = rustix::process::kill_process(target, rustix::process::Signal::TERM);
    let started = Instant::now();
    while process::alive(pid) {
        if started.elapsed() > STOP_GRACE {
            let _ = rustix::process::kill_process(target, rustix::process::Signal::KILL);
            std::thread::sleep(Duration::from_millis(500));
            if process::alive(pid) {
                return Err(ServiceError::Unkillable { what, pid });
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether `path` is a Unix socket (not following a link).
pub fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs_err::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket())
}

fn not_ready(layout: &Layout, problem: String) -> ServiceError {
    let log = layout.log_file();
    let text = fs_err::read_to_string(&log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    ServiceError::NotReady { problem, log, tail }
}
