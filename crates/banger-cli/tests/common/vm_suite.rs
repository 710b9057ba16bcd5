//! The VM end-to-end harness shared by the VM suites: a temp banger
//! environment (with the shared download/build cache) and a network
//! namespace every command runs in.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;
use banger_testkit::netns::NetNs;

/// One VM suite.
pub struct Suite {
    pub env: TestEnv,
    pub netns: NetNs,
}

impl Suite {
    pub fn new(tag: &str) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "the VM suite needs root (bridges, TAPs, namespaces)"
        );
        Self {
            env: TestEnv::new().with_shared_cache(),
            netns: NetNs::new(tag),
        }
    }

    pub fn banger(&self, args: &[&str]) -> Command {
        let mut command = self.env.banger();
        command.args(args);
        let mut wrapped = self.netns.wrap(&command);
        wrapped.stdin(Stdio::null());
        wrapped
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.banger(args).output().expect("banger runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "banger {args:?} failed ({}): {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout),
            self.consoles()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The last lines of every VM's serial console, for failure messages
    /// (a guest that never answers SSH says why there).
    pub fn consoles(&self) -> String {
        let listed = self.run(&["vm", "list", "--json"]);
        let vms: serde_json::Value =
            serde_json::from_slice(&listed.stdout).unwrap_or(serde_json::Value::Null);
        let mut text = String::new();
        for vm in vms.as_array().into_iter().flatten() {
            let Some(name) = vm["name"].as_str() else {
                continue;
            };
            let console = self.run(&["vm", "logs", name]);
            let console = String::from_utf8_lossy(&console.stdout);
            let lines: Vec<&str> = console.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            text.push_str(&format!(
                "\n--- console of {name} ({}), last {} lines ---\n{}",
                vm["state"],
                tail.len(),
                tail.join("\n")
            ));
        }
        text
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args);
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
    }

    pub fn ssh(&self, vm: &str, command: &str) -> String {
        self.ok(&["vm", "ssh", vm, "--", command])
    }

    pub fn wait_for_state(&self, vm: &str, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let shown = self.json(&["vm", "show", vm, "--json"]);
            if shown["state"] == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "VM {vm} did not become {state}: {shown}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn in_netns(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .netns
            .wrap(Command::new(program).args(args))
            .output()
            .expect("command runs");
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The suite's first VM, created in the host namespace with
    /// `--no-start`: no image exists yet, so the default Debian image is
    /// built and the default kernel pulled, which needs the Debian mirror
    /// (a daemon that starts no VM never touches the host network). The
    /// daemon is stopped afterwards so the next command starts one inside
    /// the namespace. Returns the VM's JSON and the command's stderr.
    pub fn create_in_host_namespace(&self, name: &str) -> (serde_json::Value, String) {
        let mut first = self.env.banger();
        first
            .args(["vm", "create", "--name", name, "--no-start", "--json"])
            .stdin(Stdio::null());
        let create = first.output().expect("banger runs");
        let stderr = String::from_utf8_lossy(&create.stderr).into_owned();
        assert!(create.status.success(), "create failed: {stderr}");
        let vm: serde_json::Value = serde_json::from_slice(&create.stdout).expect("VM JSON");
        let mut stop = self.env.banger();
        assert!(
            stop.args(["daemon", "stop"])
                .status()
                .expect("banger runs")
                .success()
        );
        (vm, stderr)
    }
}
