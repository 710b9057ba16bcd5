//! Connecting to the daemon, starting it first when nothing is running.
//!
//! Clients that find no daemon take an exclusive `flock` on `spawn.lock`,
//! check again (another client may have started one meanwhile), and only
//! then spawn `bangerd` and wait for it to answer. Ten clients racing thus
//! start exactly one daemon: the lock decides, not timing. The daemon's own
//! instance lock is the second guarantee.
//!
//! The wait for that lock is bounded ([`SPAWN_LOCK_TIMEOUT`]): a client
//! stuck while holding it (stopped with Ctrl-Z, hung on a slow disk) makes
//! the others give up with [`StartError::SpawnLockTimeout`], naming the
//! file and the pid its holder wrote into it, instead of waiting forever.

use fs_err::os::unix::fs::OpenOptionsExt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_config::{Paths, PathsError};
use rustix::fs::FlockOperation;

use crate::{ClientError, DaemonClient};

/// How long a freshly spawned daemon has to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How often readiness is polled while waiting.
const READY_POLL: Duration = Duration::from_millis(10);
/// How long a client waits for another client's `spawn.lock`: the holder
/// waits at most [`READY_TIMEOUT`] for its daemon, so a longer wait means
/// the holder is stuck.
pub const SPAWN_LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the spawn lock is tried while another client holds it.
const SPAWN_LOCK_POLL: Duration = Duration::from_millis(50);

/// Why the daemon could not be reached or started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime or state dir could not be prepared.
    #[error(transparent)]
    Paths(#[from] PathsError),
    /// The spawn lock could not be taken.
    #[error("cannot lock {path}")]
    SpawnLock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process held the spawn lock for longer than we wait.
    #[error(
        "{path} is locked by pid {pid}, which has held it for over {waited:?} while starting the daemon; if that process is stuck, stop it (kill {pid}) and retry"
    )]
    SpawnLockTimeout {
        /// The lock file.
        path: PathBuf,
        /// The pid recorded in it by the holder, or "unknown".
        pid: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The daemon's stderr file could not be created.
    #[error("cannot create daemon output file {path}")]
    OutputFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon binary could not be executed.
    #[error(
        "cannot start the daemon {binary}; install bangerd next to banger, put it on PATH, or set BANGER_DAEMON_BIN"
    )]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited during start-up.
    #[error("the daemon exited during start-up ({status}): {message}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The last lines it printed, or where to look.
        message: String,
    },
    /// The daemon started but never answered.
    #[error("the daemon did not answer on {socket} within {waited:?}; see {log}")]
    NotReady {
        /// The socket.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
    },
    /// banger is installed as a system service for this user, and the
    /// service is not running: a development daemon started here would
    /// hold the state and keep the service from starting.
    #[error(
        "bangerd is installed as a service (bangerd.service, see {metadata}) and is not running; start it with `sudo banger system restart` (or `sudo systemctl start bangerd`)"
    )]
    ServiceNotRunning {
        /// The install metadata that says so.
        metadata: PathBuf,
    },
    /// A daemon exists but talking to it failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Returns a client for a daemon that answered a status call, starting
/// `daemon_binary` first if no daemon is running.
pub async fn connect_or_start(
    paths: &Paths,
    daemon_binary: &Path,
) -> Result<DaemonClient, StartError> {
    let client = DaemonClient::new(paths.socket());
    match client.status().await {
        Ok(_) => return Ok(client),
        Err(error) if error.is_not_running() => {}
        Err(error) => return Err(error.into()),
    }
    refuse_if_service_installed()?;
    paths.check_socket_path()?;
    paths.prepare_runtime_dir()?;
    paths.prepare_state_dir()?;
    let lock_path = paths.spawn_lock();
    let lock = {
        let lock_path = lock_path.clone();
        tokio::task::spawn_blocking(move || take_spawn_lock(&lock_path, SPAWN_LOCK_TIMEOUT))
    }
    .await
    .map_err(|join| StartError::SpawnLock {
        path: lock_path,
        source: std::io::Error::other(join),
    })??;
    // Another client may have started the daemon while we waited for the lock.
    match client.status().await {
        Ok(_) => return Ok(client),
        Err(error) if error.is_not_running() => {}
        Err(error) => return Err(error.into()),
    }
    let (mut child, output_start) = spawn_daemon(paths, daemon_binary)?;
    tracing::debug!(pid = child.id(), "spawned bangerd");
    let started = Instant::now();
    loop {
        match client.status().await {
            Ok(_) => break,
            Err(error) if error.is_not_running() => {}
            Err(error) => return Err(error.into()),
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have lost a race against a daemon started by hand; that
            // one answers on the socket and is just as good.
            if client.status().await.is_ok() {
                break;
            }
            return Err(StartError::Exited {
                status,
                message: stderr_tail(&paths.daemon_stderr_file(), output_start),
            });
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(StartError::NotReady {
                socket: paths.socket(),
                waited: READY_TIMEOUT,
                log: paths.log_file(),
            });
        }
        tokio::time::sleep(READY_POLL).await;
    }
    drop(lock);
    Ok(client)
}

/// A system install with systemd units for this user runs bangerd as a
/// service; starting another one here would take its state lock.
fn refuse_if_service_installed() -> Result<(), StartError> {
    let path = banger_config::install::metadata_path();
    if service_installed_for(&path, 0, rustix::process::getuid().as_raw()) {
        return Err(StartError::ServiceNotRunning { metadata: path });
    }
    Ok(())
}

/// Whether the metadata at `path` (trusted if `trusted_uid` owns it)
/// installs bangerd as a systemd service for `uid`. No install, someone
/// else's, one without units, or metadata the helper would refuse too:
/// not a service, so clients start a daemon as before.
fn service_installed_for(path: &Path, trusted_uid: u32, uid: u32) -> bool {
    banger_config::InstallMetadata::load(path, trusted_uid)
        .is_ok_and(|metadata| metadata.systemd && metadata.owner_uid == uid)
}

/// Takes the exclusive lock on `path`, trying until `timeout` has passed,
/// and records our pid in it for whoever waits next. On timeout the error
/// names the file and the pid recorded by its holder.
pub fn take_spawn_lock(path: &Path, timeout: Duration) -> Result<fs_err::File, StartError> {
    let lock_error = |source| StartError::SpawnLock {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(lock_error)?;
    let started = Instant::now();
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(lock_error(errno.into())),
        }
        if started.elapsed() >= timeout {
            return Err(StartError::SpawnLockTimeout {
                path: path.to_owned(),
                pid: recorded_pid(&file),
                waited: timeout,
            });
        }
        std::thread::sleep(SPAWN_LOCK_POLL.min(timeout));
    }
    record_pid(&file).map_err(lock_error)?;
    Ok(file)
}

/// Replaces the lock file's content with our pid.
fn record_pid(mut file: &fs_err::File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    file.flush()
}

/// The pid a lock holder wrote into the file, or "unknown".
fn recorded_pid(mut file: &fs_err::File) -> String {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.take(64).read_to_string(&mut text).is_err() {
        return "unknown".to_owned();
    }
    match text.trim().parse::<u32>() {
        Ok(pid) => pid.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Starts the daemon detached from our terminal's process group (so Ctrl-C
/// in the client does not kill it), with output appended to a file in the
/// state dir; returns it with the offset where its output starts. Appended,
/// not truncated: a daemon already running on this state dir (with another
/// runtime dir) writes to the same file, and the new one may only be about
/// to refuse because of it.
fn spawn_daemon(paths: &Paths, binary: &Path) -> Result<(std::process::Child, u64), StartError> {
    let output_path = paths.daemon_stderr_file();
    let output = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&output_path)
        .map_err(|source| StartError::OutputFile {
            path: output_path.clone(),
            source,
        })?;
    let output_error = |source| StartError::OutputFile {
        path: output_path.clone(),
        source,
    };
    let start = output.metadata().map_err(output_error)?.len();
    let stdout = output.try_clone().map_err(output_error)?;
    let child = Command::new(binary)
        .stdin(Stdio::null())
        .stdout(stdout.into_file())
        .stderr(output.into_file())
        .process_group(0)
        .spawn()
        .map_err(|source| StartError::Spawn {
            binary: binary.to_owned(),
            source,
        })?;
    Ok((child, start))
}

/// The last few lines the daemon printed from offset `start` of its output
/// file, for start-up failure messages.
fn stderr_tail(path: &Path, start: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut file) = fs_err::File::open(path) {
        if file.seek(SeekFrom::Start(start)).is_ok() {
            let _ = file.read_to_end(&mut bytes);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return format!("it printed nothing; see {}", path.display());
    }
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_installed_service_is_not_shadowed_by_a_development_daemon() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let me = rustix::process::geteuid().as_raw();
        let write = |systemd: bool, owner_uid: u32| {
            let metadata = banger_config::InstallMetadata {
                version: "0.1.0".into(),
                owner_uid,
                owner_gid: owner_uid,
                owner_name: "dev".into(),
                owner_home: "/home/dev".into(),
                bin_dir: "/usr/local/bin".into(),
                lib_dir: "/usr/local/lib/banger".into(),
                root_socket: "/run/banger/root.sock".into(),
                bridge_name: "banger0".into(),
                allowed_cidrs: vec!["172.29.0.0/24".parse().expect("cidr")],
                systemd,
                shell_files: Vec::new(),
            };
            let path = dir.path().join("install.toml");
            fs_err::write(&path, metadata.to_toml().expect("toml")).expect("write");
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            path
        };
        let path = write(true, 1000);
        assert!(
            service_installed_for(&path, me, 1000),
            "the owner's service"
        );
        assert!(!service_installed_for(&path, me, 1001), "someone else's");
        assert!(
            !service_installed_for(&path, me + 1, 1000),
            "an untrusted file"
        );
        let path = write(false, 1000);
        assert!(
            !service_installed_for(&path, me, 1000),
            "an install without units"
        );
        assert!(!service_installed_for(&dir.path().join("none"), me, 1000));
    }

    #[test]
    fn a_stuck_spawn_lock_holder_is_named_within_the_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spawn.lock");
        // Another holder: a separate open file description holds the flock
        // and has recorded its pid, as take_spawn_lock does.
        let holder = take_spawn_lock(&path, Duration::from_secs(1)).expect("first lock");
        fs_err::write(&path, "4242\n").expect("record a pid");
        let deadline = Duration::from_millis(300);
        let started = Instant::now();
        let error = take_spawn_lock(&path, deadline).expect_err("lock is held");
        let waited = started.elapsed();
        assert!(waited >= deadline, "gave up early: {waited:?}");
        assert!(
            waited < deadline + Duration::from_secs(2),
            "took {waited:?}"
        );
        let StartError::SpawnLockTimeout {
            path: named, pid, ..
        } = &error
        else {
            panic!("wrong error: {error}");
        };
        assert_eq!((named, pid.as_str()), (&path, "4242"));
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("pid 4242"), "{message}");
        // Once the holder lets go, the lock is ours and records our pid.
        drop(holder);
        let _lock = take_spawn_lock(&path, deadline).expect("free lock");
        assert_eq!(
            fs_err::read_to_string(&path).expect("read").trim(),
            std::process::id().to_string()
        );
    }
}
