//! Test harnesses shared by banger's integration tests.
//!
//! [`TestEnv`] gives each test its own config/state/cache/runtime dirs in a
//! temp dir and builds commands that see only those, so tests can start real
//! daemons in parallel without touching the developer's own banger. Dropping
//! it kills every daemon that was started for it.
//!
//! [`skip_or_fail`] is how a test reports a missing prerequisite: a failure
//! under CI, a visible `SKIPPED:` line elsewhere.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use banger_config::Paths;

pub mod cli;
pub mod fake_firecracker;
pub mod fake_network;
pub mod netns;
pub mod skip;
pub mod tmpfs;

pub use skip::{in_ci, skip_or_fail};

/// An isolated banger environment in a temp dir.
#[derive(Debug)]
pub struct TestEnv {
    temp: tempfile::TempDir,
    paths: Paths,
}

/// Panics with a clear message when a binary built by this workspace is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let current = std::env::current_exe().expect("current_exe");
    let profile_dir = current
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        binary.display()
    );
    binary
}

/// Makes `path` an empty ext4 filesystem image of `size` (as `truncate -s`
/// takes it, e.g. `64M`): a stand-in root filesystem or work seed.
pub fn mkfs_ext4(path: &Path, size: &str) {
    assert!(
        Command::new("truncate")
            .args(["-s", size])
            .arg(path)
            .status()
            .expect("truncate runs")
            .success(),
        "truncate {}",
        path.display()
    );
    assert!(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(path)
            .status()
            .expect("mkfs.ext4 runs (e2fsprogs)")
            .success(),
        "mkfs.ext4 {}",
        path.display()
    );
}

/// Writes an executable script (mode 0755) that a test is about to run.
///
/// The file is written by a child `sh`, not by this process. A test binary
/// runs tests on many threads; a child forked by another thread while this
/// process held the file open for writing keeps that descriptor until it
/// execs, and running the script in that window fails with `ETXTBSY` ("Text
/// file busy"). A descriptor held by another process is never inherited.
pub fn write_executable(path: &Path, contents: &str) {
    use std::io::Write as _;
    let mut child = Command::new("sh")
        .args(["-c", "cat > \"$0\" && chmod 755 \"$0\""])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh runs");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(contents.as_bytes())
        .expect("script written to sh");
    let status = child.wait().expect("sh exits");
    assert!(
        status.success(),
        "writing {} failed: {status}",
        path.display()
    );
}

/// Copies the executable `source` to `dest` with mode 0755, by a child
/// `install`, for the reason given at [`write_executable`].
pub fn install_executable(source: &Path, dest: &Path) {
    let status = Command::new("install")
        .args(["-m", "755"])
        .arg(source)
        .arg(dest)
        .status()
        .expect("install runs");
    assert!(
        status.success(),
        "installing {} as {} failed: {status}",
        source.display(),
        dest.display()
    );
}

impl TestEnv {
    /// Creates fresh, empty directories.
    pub fn new() -> Self {
        // A short base path keeps the socket path well under the 107-byte limit.
        let temp = tempfile::Builder::new()
            .prefix("bgt")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = temp.path();
        let paths = Paths {
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            cache_dir: root.join("cache"),
            runtime_dir: root.join("run"),
            home_dir: Some(root.join("home")),
        };
        Self { temp, paths }
    }

    /// Uses the developer's real banger cache dir (`$XDG_CACHE_HOME/banger`
    /// or `~/.cache/banger`) instead of an empty one, so tests that download
    /// kernels or build images are fast on reruns but still work on a fresh
    /// machine.
    pub fn with_shared_cache(mut self) -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|value| !value.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
            .unwrap_or_else(|| self.temp.path().join("cache-base"));
        self.paths.cache_dir = base.join("banger");
        self
    }

    /// The environment's paths.
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The temp dir root.
    pub fn root(&self) -> &Path {
        self.temp.path()
    }

    /// Environment variables that point banger at this environment.
    pub fn vars(&self) -> Vec<(&'static str, OsString)> {
        let mut vars = vec![
            ("HOME", self.root().join("home").into_os_string()),
            (
                "BANGER_CONFIG_DIR",
                self.paths.config_dir.clone().into_os_string(),
            ),
            (
                "BANGER_STATE_DIR",
                self.paths.state_dir.clone().into_os_string(),
            ),
            (
                "BANGER_CACHE_DIR",
                self.paths.cache_dir.clone().into_os_string(),
            ),
            (
                "BANGER_RUNTIME_DIR",
                self.paths.runtime_dir.clone().into_os_string(),
            ),
            (
                "BANGER_DAEMON_BIN",
                workspace_binary("bangerd").into_os_string(),
            ),
        ];
        // The guest agent is built separately (scripts/build-agent.sh); pass it on.
        if let Some(agent) = std::env::var_os("BANGER_AGENT_BIN") {
            vars.push(("BANGER_AGENT_BIN", agent));
        }
        vars
    }

    /// A command for `program` with every `BANGER_*`/XDG variable replaced
    /// by this environment's.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut command = Command::new(program.as_ref());
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("BANGER_") || name.starts_with("XDG_") {
                command.env_remove(name.as_ref());
            }
        }
        command.envs(self.vars());
        command
    }

    /// A `banger` CLI command in this environment.
    pub fn banger(&self) -> Command {
        self.command(workspace_binary("banger"))
    }

    /// A `bangerd` command in this environment.
    pub fn bangerd(&self) -> Command {
        self.command(workspace_binary("bangerd"))
    }

    /// Writes `config.toml`.
    pub fn write_config(&self, text: &str) {
        fs_err::create_dir_all(&self.paths.config_dir).expect("config dir");
        fs_err::write(self.paths.config_file(), text).expect("config.toml");
    }

    /// Pids of live `bangerd` processes serving this environment, found by
    /// their environment in /proc.
    pub fn daemon_pids(&self) -> BTreeSet<i32> {
        let marker = format!("BANGER_RUNTIME_DIR={}", self.paths.runtime_dir.display());
        let mut pids = BTreeSet::new();
        let Ok(entries) = fs_err::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(comm) = fs_err::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            if comm.trim() != "bangerd" {
                continue;
            }
            // `bangerd console-copier` processes belong to VMs, not daemons.
            let Ok(cmdline) = fs_err::read(entry.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|byte| *byte == 0)
                .any(|arg| arg == b"console-copier")
            {
                continue;
            }
            let Ok(stat) = fs_err::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // Zombies have exited already; they are not running daemons.
            if stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
            {
                continue;
            }
            let Ok(environ) = fs_err::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|byte| *byte == 0)
                .any(|pair| pair == marker.as_bytes())
            {
                pids.insert(pid);
            }
        }
        pids
    }

    /// Waits until no daemon serves this environment, up to `timeout`.
    pub fn wait_for_no_daemon(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.daemon_pids().is_empty() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon_pids().is_empty()
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for pid in self.daemon_pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
