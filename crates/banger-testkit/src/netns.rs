//! A private network namespace for tests that create bridges, TAPs and VMs,
//! so they never touch the host's own network. Dropping it kills every
//! process still inside (daemon, VMMs, helpers) and deletes it.

use std::process::Command;

/// A network namespace created with `ip netns add`.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `bgt-<tag>-<pid>` with loopback up. Needs root.
    pub fn new(tag: &str) -> Self {
        let name = format!("bgt-{tag}-{}", std::process::id());
        // A namespace of an earlier run with this pid, if any; its absence
        // (the usual case) is no news, so ip's complaint is not shown.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip runs");
        assert!(
            status.success(),
            "cannot create network namespace {name} (this test needs root and iproute2)"
        );
        let namespace = Self { name };
        let status = namespace
            .wrap(Command::new("ip").args(["link", "set", "lo", "up"]))
            .status()
            .expect("ip runs");
        assert!(
            status.success(),
            "cannot bring up loopback in {}",
            namespace.name
        );
        namespace
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns `command` into `ip netns exec <ns> <command>`, keeping its
    /// environment.
    pub fn wrap(&self, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &self.name])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        wrapped
    }

    /// Pids of processes inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        let output = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output();
        output
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
