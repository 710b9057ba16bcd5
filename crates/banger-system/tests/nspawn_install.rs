//! `banger system install → status → restart → uninstall` against a real
//! systemd as PID 1: a Debian bookworm tree (mmdebstrap, cached under
//! `<cache>/test-images/`) booted with `systemd-nspawn -b` on a volatile
//! overlay (nothing the test does reaches the cached tree). The workspace's
//! binaries are bound in read-only; commands run inside through
//! `nsenter -t <container init> -a`. An unprivileged user `dev` owns the
//! install. Needs root, systemd-nspawn (systemd-container), mmdebstrap and
//! the built workspace (`banger`, `bangerd`, `bangerd-root`). The install's
//! shell completions and man pages are checked in place, recorded, and gone
//! after uninstall.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Bump when the tree's recipe changes, so the cache is rebuilt.
const TREE_NAME: &str = "nspawn-bookworm-systemd-v1";
const MIRROR: &str = "http://deb.debian.org/debian";
const PACKAGES: &str = "systemd,systemd-sysv,dbus,passwd,nftables,iproute2";
/// Some of the shell completions and man pages the install writes.
const SHELL_FILES: &[&str] = &[
    "/usr/share/bash-completion/completions/banger",
    "/usr/share/zsh/vendor-completions/_banger",
    "/usr/share/fish/vendor_completions.d/banger.fish",
    "/usr/share/man/man1/banger.1",
    "/usr/share/man/man1/banger-vm-create.1",
];
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("banger")
        .join("test-images")
}

/// The cached tree, built on first use.
fn tree() -> Option<PathBuf> {
    let base = cache_dir();
    let tree = base.join(TREE_NAME);
    if tree.join("usr/lib/systemd/systemd").exists() {
        return Some(tree);
    }
    fs_err::create_dir_all(&base).unwrap();
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let building = scratch.path().join("tree");
    let started = Instant::now();
    let output = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--quiet"])
        .arg(format!("--include={PACKAGES}"))
        .arg("bookworm")
        .arg(&building)
        .arg(MIRROR)
        .output()
        .unwrap();
    if !output.status.success() {
        banger_testkit::skip_or_fail(format!(
            "mmdebstrap failed ({}); no Debian mirror? {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
        return None;
    }
    fs_err::rename(&building, &tree).unwrap();
    eprintln!("nspawn tree built in {:?}", started.elapsed());
    Some(tree)
}

/// A booted container; powered off (or killed) on drop.
struct Container {
    nspawn: Child,
    leader: u32,
    log: PathBuf,
}

impl Container {
    fn boot(tree: &Path, build_dir: &Path, log: PathBuf) -> Self {
        let name = format!("banger-systest-{}", std::process::id());
        let nspawn = Command::new("systemd-nspawn")
            .args([
                "-q",
                "-b",
                "--volatile=overlay",
                "--register=no",
                "--keep-unit",
            ])
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(tree)
            .arg(format!("--bind-ro={}:/opt/build", build_dir.display()))
            .stdin(Stdio::null())
            .stdout(fs_err::File::create(&log).unwrap().into_parts().0)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut container = Self {
            leader: 0,
            nspawn,
            log,
        };
        let started = Instant::now();
        // The container's init is nspawn's child once it has exec'd systemd
        // (before that the child is still nspawn, in other namespaces).
        while container.leader == 0 {
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                panic!("systemd-nspawn exited: {status}; {}", container.log_tail());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no container init after 30 s; {}",
                container.log_tail()
            );
            container.leader = children(container.nspawn.id())
                .into_iter()
                .find(|pid| {
                    fs_err::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim_end() == "systemd")
                })
                .unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            let state = container.run(&["systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
            if state == "running" || state == "degraded" {
                return container;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "container did not boot: {state}; {}",
                container.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a command inside, as root, with a clean environment.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .arg("-a")
            .args(["env", "-i", PATH_ENV])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a command and asserts it succeeded; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn log_tail(&self) -> String {
        let text = fs_err::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.leader != 0 {
            let _ = self.run(&["systemctl", "poweroff"]);
        }
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

fn children(pid: u32) -> Vec<u32> {
    fs_err::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

fn main_pid(container: &Container, unit: &str) -> u32 {
    container
        .ok(&["systemctl", "show", "--property=MainPID", "--value", unit])
        .trim()
        .parse()
        .unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn install_status_restart_uninstall_under_systemd() {
    if !is_root() || !have("systemd-nspawn") || !have("mmdebstrap") || !have("nsenter") {
        banger_testkit::skip_or_fail(
            "needs root, systemd-nspawn (systemd-container), mmdebstrap and nsenter (scripts/install-deps.sh)",
        );
        return;
    }
    let build_dir = banger_testkit::workspace_binary("banger")
        .parent()
        .unwrap()
        .to_owned();
    for binary in ["bangerd", "bangerd-root"] {
        if !build_dir.join(binary).is_file() {
            banger_testkit::skip_or_fail(format!(
                "{} is missing: build the workspace first (cargo build --workspace)",
                build_dir.join(binary).display()
            ));
            return;
        }
    }
    let Some(tree) = tree() else { return };
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let container = Container::boot(&tree, &build_dir, scratch.path().join("nspawn.log"));
    eprintln!("booted in {:?}", started.elapsed());

    container.ok(&["useradd", "--create-home", "--shell", "/bin/sh", "dev"]);
    let install = container.ok(&["/opt/build/banger", "system", "install", "--owner", "dev"]);
    assert!(install.contains("installed for dev"), "{install}");
    // Completions and man pages, where each shell and man look, and
    // recorded for uninstall.
    for file in SHELL_FILES {
        container.ok(&["test", "-s", file]);
    }
    let bash = container.ok(&["cat", SHELL_FILES[0]]);
    assert!(
        bash.contains("banger") && bash.contains("snapshot"),
        "{bash}"
    );
    let metadata = container.ok(&["cat", "/etc/banger/install.toml"]);
    for file in SHELL_FILES {
        assert!(metadata.contains(file), "{file} not recorded: {metadata}");
    }
    container.ok(&[
        "systemctl",
        "is-active",
        "bangerd-root.service",
        "bangerd.service",
    ]);

    // Status as the owner, without root.
    let status = container.ok(&[
        "runuser",
        "-u",
        "dev",
        "--",
        "/usr/local/bin/banger",
        "system",
        "status",
        "--json",
    ]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["installed"], true, "{status}");
    assert_eq!(status["mode"], "systemd", "{status}");
    assert_eq!(status["owner"]["name"], "dev", "{status}");
    for service in status["services"].as_array().unwrap() {
        assert_eq!(service["running"], true, "{status}");
        assert_eq!(
            service["binary_version"],
            banger_system::VERSION,
            "{status}"
        );
        let matches = service["matches_installed"].as_str().unwrap();
        assert!(
            matches == "same" || matches == "not_changed_since_start",
            "{status}"
        );
    }
    for socket in status["sockets"].as_array().unwrap() {
        assert_eq!(socket["present"], true, "{status}");
    }
    // The daemon runs as the owner; the helper as root.
    let daemon_pid = main_pid(&container, "bangerd.service");
    let root_pid = main_pid(&container, "bangerd-root.service");
    let owner_uid = container.ok(&["id", "-u", "dev"]).trim().to_owned();
    let uid_of = |pid: u32| {
        container
            .ok(&["stat", "-c", "%u", &format!("/proc/{pid}")])
            .trim()
            .to_owned()
    };
    assert_eq!(uid_of(daemon_pid), owner_uid);
    assert_eq!(uid_of(root_pid), "0");

    container.ok(&["/usr/local/bin/banger", "system", "restart"]);
    container.ok(&[
        "systemctl",
        "is-active",
        "bangerd-root.service",
        "bangerd.service",
    ]);
    assert_ne!(main_pid(&container, "bangerd.service"), daemon_pid);
    assert_ne!(main_pid(&container, "bangerd-root.service"), root_pid);

    let uninstall = container.ok(&["/usr/local/bin/banger", "system", "uninstall"]);
    assert!(uninstall.contains("kept"), "{uninstall}");
    for gone in [
        "/etc/systemd/system/bangerd.service",
        "/etc/systemd/system/bangerd-root.service",
        "/usr/local/bin/banger",
        "/usr/local/bin/bangerd",
        "/usr/local/bin/bangerd-root",
        "/etc/banger/install.toml",
    ]
    .iter()
    .chain(SHELL_FILES)
    {
        assert!(
            !container.run(&["test", "-e", gone]).status.success(),
            "{gone} is still there"
        );
    }
    for kept in [
        "/home/dev/.local/state/banger",
        "/home/dev/.config/banger",
        "/home/dev/.cache/banger",
    ] {
        container.ok(&["test", "-d", kept]);
    }
    let state = container.run(&["systemctl", "is-active", "bangerd.service"]);
    assert!(!state.status.success());
    drop(container);
    eprintln!(
        "install → status → restart → uninstall in {:?}",
        started.elapsed()
    );
}
