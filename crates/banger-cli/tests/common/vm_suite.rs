//! The VM end-to-end harness shared by the VM suites: a temp banger
//! environment (with the shared download/build cache) and a network
//! namespace every command runs in.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;
use banger_testkit::netns::NetNs;

use super::user::TestUser;

/// The image the suites boot unless they test the agent tools: the
/// catalog's bare Debian, which builds in a fraction of the provisioned
/// default's time (the daemon builds the catalog recipe of its
/// `default_image_name` on first use).
pub const BARE_IMAGE: &str = "debian-bookworm-minimal";

/// The environment entry that makes a suite's daemon default to [`BARE_IMAGE`].
pub fn bare_image_var() -> (String, std::ffi::OsString) {
    ("BANGER_DEFAULT_IMAGE_NAME".to_owned(), BARE_IMAGE.into())
}

/// Set (to anything) in a suite's vars or the test's environment to make
/// its daemon build [`BARE_IMAGE`] itself instead of reusing an earlier
/// suite's build.
pub const REBUILD_VAR: &str = "BANGER_TEST_REBUILD_BARE_IMAGE";

/// Where the first bare suite to build [`BARE_IMAGE`] keeps a copy for the
/// others (each builds the same recipe, about a minute under TCG): in
/// `test-images/` of the (shared) cache dir `cache_dir`, keyed by the recipe (suite, package list
/// and customisation script, `image_build::image_key`), so a changed recipe
/// is built again.
pub fn bare_image_copy(cache_dir: &std::path::Path) -> std::path::PathBuf {
    use banger_image::image_build;
    let packages = image_build::parse_package_list(image_build::DEFAULT_PACKAGES, "built-in")
        .expect("the built-in package list parses");
    let key = image_build::image_key(image_build::DEFAULT_SUITE, &packages);
    cache_dir
        .join("test-images")
        .join(format!("daemon-bare-{key}"))
}

/// One VM suite.
pub struct Suite {
    pub env: TestEnv,
    pub netns: NetNs,
    /// Further environment for every banger command.
    pub vars: Vec<(String, std::ffi::OsString)>,
    /// Who runs banger: root, or this user. Dropped last, after the
    /// environment's daemons and the namespace's processes are gone.
    pub user: Option<TestUser>,
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
            vars: Vec::new(),
            user: None,
        }
    }

    /// A suite whose daemon defaults to the bare image ([`BARE_IMAGE`]).
    pub fn bare(tag: &str) -> Self {
        let mut suite = Self::new(tag);
        suite.vars.push(bare_image_var());
        suite
    }

    /// A suite whose banger commands (and so its daemon) run as `user`,
    /// with `vars` set; the environment's dirs (and its own cache) belong
    /// to the user.
    pub fn as_user(tag: &str, user: TestUser, vars: Vec<(String, std::ffi::OsString)>) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "the VM suite needs root (users, namespaces)"
        );
        let env = TestEnv::new();
        for dir in [
            &env.paths().config_dir,
            &env.paths().state_dir,
            &env.paths().cache_dir,
            &env.paths().runtime_dir,
        ] {
            fs_err::create_dir_all(dir).expect("create a banger dir");
            // As a fresh user's would be: private.
            fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .expect("make a banger dir private");
        }
        fs_err::create_dir_all(env.root().join("home")).expect("create HOME");
        user.chown_tree(env.root());
        Self {
            env,
            netns: NetNs::new(tag),
            vars,
            user: Some(user),
        }
    }

    pub fn banger(&self, args: &[&str]) -> Command {
        let mut command = self.env.banger();
        command.args(args);
        for (key, value) in &self.vars {
            command.env(key, value);
        }
        let command = match &self.user {
            Some(user) => user.wrap(&command),
            None => command,
        };
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

    /// Whether this suite's first create may use the bare image an earlier
    /// suite built (see [`bare_image_copy`]): a suite whose daemon defaults
    /// to [`BARE_IMAGE`], unless it set [`REBUILD_VAR`] to test the build.
    fn reuses_bare_image(&self) -> bool {
        let var = |name: &str| {
            self.vars
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        var("BANGER_DEFAULT_IMAGE_NAME").is_some_and(|value| value == BARE_IMAGE)
            && var(REBUILD_VAR).is_none()
            && std::env::var_os(REBUILD_VAR).is_none()
    }

    /// Makes the saved copy in `dir` this daemon's managed [`BARE_IMAGE`]:
    /// registered (with the default kernel, pulled first), then
    /// promoted, which copies the files into the state dir and checks them.
    fn install_bare_image(&self, dir: &std::path::Path) {
        let rootfs = dir.join("rootfs.ext4");
        let seed = dir.join("work-seed.ext4");
        for args in [
            vec!["kernel", "pull", "debian-cloud-amd64"],
            vec![
                "image",
                "register",
                "--name",
                BARE_IMAGE,
                "--rootfs",
                rootfs.to_str().expect("UTF-8 cache path"),
                "--work-seed",
                seed.to_str().expect("UTF-8 cache path"),
                "--kernel-ref",
                "debian-cloud-amd64",
            ],
            vec!["image", "promote", BARE_IMAGE],
        ] {
            let mut command = self.env.banger();
            command
                .args(&args)
                .envs(self.vars.iter().map(|(key, value)| (key, value)))
                .stdin(Stdio::null());
            let output = command.output().expect("banger runs");
            assert!(
                output.status.success(),
                "banger {args:?} (reusing the saved bare image {}) failed: {}",
                dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        eprintln!(
            "reused the bare image an earlier suite built ({}; {REBUILD_VAR}=1 builds it instead)",
            dir.display()
        );
    }

    /// Keeps a copy of the [`BARE_IMAGE`] this suite's daemon just built for
    /// the suites after it (written to a temp dir, then renamed).
    fn save_bare_image(&self) {
        let shown = self.json_in_host(&["image", "show", BARE_IMAGE, "--json"]);
        let target = bare_image_copy(&self.env.paths().cache_dir);
        let parent = target.parent().expect("a cache subdir");
        fs_err::create_dir_all(parent).expect("create the test image cache");
        let temp = tempfile::tempdir_in(parent).expect("temp dir in the test image cache");
        for (field, file) in [("rootfs", "rootfs.ext4"), ("work_seed", "work-seed.ext4")] {
            let source = shown[field].as_str().expect("image file path");
            let status = Command::new("cp")
                .args(["--sparse=always", "--reflink=auto", source])
                .arg(temp.path().join(file))
                .status()
                .expect("cp runs");
            assert!(status.success(), "copy {source} into the test image cache");
        }
        let kept = temp.keep();
        if fs_err::rename(&kept, &target).is_err() {
            // Another run saved it first.
            let _ = fs_err::remove_dir_all(&kept);
        }
    }

    /// `banger ARGS` in the host namespace, parsed as JSON.
    fn json_in_host(&self, args: &[&str]) -> serde_json::Value {
        let mut command = self.env.banger();
        command
            .args(args)
            .envs(self.vars.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null());
        let output = command.output().expect("banger runs");
        assert!(
            output.status.success(),
            "banger {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON output")
    }

    /// The suite's first VM, created in the host namespace with
    /// `--no-start`: no image exists yet, so the default Debian image is
    /// built and the default kernel pulled, which needs the Debian mirror
    /// (a daemon that starts no VM never touches the host network). The
    /// daemon is stopped afterwards so the next command starts one inside
    /// the namespace. Returns the VM's JSON and the command's stderr.
    pub fn create_in_host_namespace(&self, name: &str) -> (serde_json::Value, String) {
        let reuse = self.reuses_bare_image();
        let saved = reuse
            .then(|| bare_image_copy(&self.env.paths().cache_dir))
            .filter(|dir| dir.is_dir());
        if let Some(dir) = &saved {
            self.install_bare_image(dir);
        }
        let mut first = self.env.banger();
        first
            .args(["vm", "create", "--name", name, "--no-start", "--json"])
            .envs(self.vars.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null());
        let create = first.output().expect("banger runs");
        let stderr = String::from_utf8_lossy(&create.stderr).into_owned();
        assert!(create.status.success(), "create failed: {stderr}");
        let vm: serde_json::Value = serde_json::from_slice(&create.stdout).expect("VM JSON");
        if reuse && saved.is_none() {
            self.save_bare_image();
        }
        let mut stop = self.env.banger();
        assert!(
            stop.args(["daemon", "stop"])
                .envs(self.vars.iter().map(|(key, value)| (key, value)))
                .status()
                .expect("banger runs")
                .success()
        );
        (vm, stderr)
    }

    /// Walks the environment's config, state and runtime dirs (never
    /// following links) and fails on anything not owned by `owner` or
    /// readable, writable or searchable by group or others, except the two
    /// documented exceptions (docs/daemon.md, "File permissions"): public
    /// keys (`*.pub`) and `known_hosts`, which may be 0644.
    pub fn assert_owner_only(&self, owner: u32) {
        use std::os::unix::fs::MetadataExt;
        let paths = self.env.paths();
        let mut problems = Vec::new();
        let mut pending = vec![
            paths.config_dir.clone(),
            paths.state_dir.clone(),
            paths.runtime_dir.clone(),
        ];
        let mut seen = 0usize;
        while let Some(path) = pending.pop() {
            let Ok(metadata) = fs_err::symlink_metadata(&path) else {
                continue;
            };
            seen += 1;
            let mode = metadata.mode() & 0o7777;
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let exception = metadata.is_file() && (name.ends_with(".pub") || name == "known_hosts");
            let allowed_extra = if exception { 0o044 } else { 0 };
            if mode & 0o077 & !allowed_extra != 0 {
                problems.push(format!("{} has mode {mode:o}", path.display()));
            }
            if metadata.uid() != owner {
                problems.push(format!(
                    "{} is owned by uid {}, not {owner}",
                    path.display(),
                    metadata.uid()
                ));
            }
            if metadata.is_dir() {
                for entry in fs_err::read_dir(&path)
                    .expect("read a banger dir")
                    .flatten()
                {
                    pending.push(entry.path());
                }
            }
        }
        assert!(seen > 10, "the walk found banger's files ({seen} entries)");
        assert!(
            problems.is_empty(),
            "files that are not owner-only:\n{}",
            problems.join("\n")
        );
    }

    /// The TAP devices in the namespace (`bgtap*`).
    pub fn taps(&self) -> Vec<String> {
        self.in_netns("ip", &["-br", "link"])
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(|name| name.split('@').next().unwrap_or(name).to_owned())
            .filter(|name| name.starts_with("bgtap"))
            .collect()
    }

    /// A second namespace standing in for the internet: 198.51.100.2 with an
    /// HTTP server on port 8000, linked to the test namespace by a veth
    /// (198.51.100.1 on our side).
    pub fn fake_internet(&self) -> FakeInternet {
        let namespace = NetNs::new("inet");
        let ours = self.netns.name().to_owned();
        let theirs = namespace.name().to_owned();
        let run = |args: &[&str]| {
            let status = Command::new("ip").args(args).status().expect("ip runs");
            assert!(status.success(), "ip {args:?}");
        };
        run(&[
            "-n", &ours, "link", "add", "bgt-up", "type", "veth", "peer", "name", "bgt-net",
            "netns", &theirs,
        ]);
        run(&[
            "-n",
            &ours,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "bgt-up",
        ]);
        run(&["-n", &ours, "link", "set", "bgt-up", "up"]);
        run(&[
            "-n",
            &theirs,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "bgt-net",
        ]);
        run(&["-n", &theirs, "link", "set", "bgt-net", "up"]);
        let server = namespace
            .wrap(Command::new("python3").args([
                "-m",
                "http.server",
                "8000",
                "--bind",
                "198.51.100.2",
            ]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        // Wait until the server listens: a loaded machine starts Python slowly.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = namespace
                .wrap(Command::new("python3").args([
                    "-c",
                    "import socket; socket.create_connection(('198.51.100.2', 8000), 1)",
                ]))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("python3 runs");
            if probe.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the fake internet server did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        FakeInternet {
            _namespace: namespace,
            server,
        }
    }
}

/// The fake internet host; dropping it stops the server and removes the namespace.
pub struct FakeInternet {
    _namespace: NetNs,
    server: std::process::Child,
}

impl Drop for FakeInternet {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
