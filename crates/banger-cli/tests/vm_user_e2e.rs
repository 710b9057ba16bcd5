//! The VM end-to-end flow as an unprivileged user, the way banger is meant
//! to run: `bangerd` as the owner, network plumbing through `bangerd-root`.
//!
//! The test creates a system user, a network namespace and install
//! metadata naming that user as the owner, starts `bangerd-root` (root)
//! inside the namespace, and runs every `banger` command as the user: image
//! register, create with NAT, ssh, stop/start, delete, `vm run --rm`. It
//! checks that the VMM processes run as the user, that the TAP belongs to
//! the user, that everything the daemon wrote is the user's and owner-only,
//! and that nothing is left behind (TAPs, rules, files, processes).
//!
//! The image and kernel come from a root suite that builds them with the
//! shared cache (as the other VM suites do) and are handed to the user as
//! plain files: the user's own daemon registers them.
//! With `BANGER_VMM=firecracker` on a KVM host the same flow drives
//! Firecracker (the user then needs access to /dev/kvm).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;

use banger_config::InstallMetadata;
use common::user::TestUser;
use common::vm_suite::Suite;

/// `bangerd-root` running inside the test's namespace; killed when dropped.
struct RootHelper {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl RootHelper {
    fn start(suite: &Suite, metadata: &Path, socket: &Path, log: &Path) -> Self {
        let binary = banger_testkit::workspace_binary("bangerd-root");
        let log_file = fs_err::File::create(log).expect("helper log");
        let child = suite
            .netns
            .wrap(Command::new(binary).arg("--metadata").arg(metadata))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file.into_parts().0)
            .spawn()
            .expect("start bangerd-root");
        let helper = Self {
            child,
            socket: socket.to_owned(),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "bangerd-root did not create {}: {}",
                socket.display(),
                helper.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        helper
    }

    fn log_text(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the socket must be gone.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        // `ip netns exec` execs the helper, so the child is the helper.
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let status = self.child.wait().expect("wait for bangerd-root");
        assert!(
            status.success(),
            "bangerd-root exited {status}: {}",
            self.log_text()
        );
        assert!(!self.socket.exists(), "bangerd-root left its socket behind");
    }
}

impl Drop for RootHelper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a file or tree as root (sparse), for the user.
fn copy(from: &str, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", "--sparse=always", from])
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(status.success(), "cp {from} {}", to.display());
}

/// The uid a process runs as.
fn uid_of(pid: i32) -> u32 {
    let status = fs_err::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("a Uid line")
}

#[test]
fn vm_flow_as_an_unprivileged_user_through_the_root_helper() {
    // The image and kernel, built (or found in the shared cache) as root.
    let builder = Suite::bare("ubuild");
    let (seed, _) = builder.create_in_host_namespace("seed");
    let image_name = seed["image"].as_str().expect("image name").to_owned();
    let image = builder.json(&["image", "show", &image_name, "--json"]);
    let kernel_name = image["kernel"].as_str().expect("kernel name").to_owned();
    let kernel = builder.json(&["kernel", "show", &kernel_name, "--json"]);
    let version = kernel["version"]
        .as_str()
        .expect("kernel version")
        .to_owned();
    let kernel_dir = PathBuf::from(kernel["dir"].as_str().expect("kernel dir"));

    // What `banger system install` does to this host's devices: a container
    // without udev has /dev/net/tun 0600, and the owner's QEMU opens it.
    let tun = Path::new("/dev/net/tun");
    if fs_err::metadata(tun)
        .expect("/dev/net/tun")
        .permissions()
        .mode()
        & 0o006
        != 0o006
    {
        fs_err::set_permissions(tun, std::fs::Permissions::from_mode(0o666))
            .expect("make /dev/net/tun 0666 as the install does");
    }

    // The owner, and the install metadata root keeps for them.
    let user = TestUser::create("bgt-e2e");
    let (uid, gid, name) = (user.uid, user.gid, user.name.clone());
    let root_dir = tempfile::Builder::new()
        .prefix("bgt-root")
        .tempdir()
        .expect("root-owned dir");
    fs_err::set_permissions(root_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the root dir");
    let metadata_path = root_dir.path().join("install.toml");
    let socket = root_dir.path().join("run/root.sock");
    let suite = Suite::as_user(
        "user",
        user,
        vec![
            (
                "BANGER_INSTALL_METADATA".to_owned(),
                metadata_path.clone().into_os_string(),
            ),
            // No spare TAPs: every TAP is made for a VM through the helper,
            // and none may be left once the VMs are gone.
            ("BANGER_TAP_POOL_SIZE".to_owned(), "0".into()),
            common::vm_suite::bare_image_var(),
        ],
    );
    let bin_dir = banger_testkit::workspace_binary("bangerd-root")
        .parent()
        .expect("target dir")
        .to_owned();
    // What `banger system install` puts in its lib dir: a vhost-device-vsock
    // the owner can run (root's ~/.cargo/bin copy is out of the owner's
    // reach).
    let lib_dir = root_dir.path().join("lib");
    fs_err::create_dir_all(&lib_dir).expect("lib dir");
    fs_err::set_permissions(&lib_dir, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the lib dir");
    let vhost_vsock = banger_system::install::find_vhost_vsock(&[PathBuf::from(
        std::env::var_os("HOME").expect("HOME"),
    )])
    .expect("vhost-device-vsock is installed (scripts/install-deps.sh)");
    banger_testkit::install_executable(&vhost_vsock, &lib_dir.join("vhost-device-vsock"));
    let metadata = InstallMetadata {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        owner_uid: uid,
        owner_gid: gid,
        owner_name: name,
        owner_home: suite.env.root().join("home"),
        bin_dir,
        lib_dir,
        root_socket: socket.clone(),
        bridge_name: "banger0".to_owned(),
        allowed_cidrs: vec!["172.29.0.0/24".parse().expect("cidr")],
        systemd: false,
        shell_files: Vec::new(),
    };
    fs_err::write(&metadata_path, metadata.to_toml().expect("metadata TOML"))
        .expect("write the metadata");
    fs_err::set_permissions(&metadata_path, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the metadata");
    let helper = RootHelper::start(
        &suite,
        &metadata_path,
        &socket,
        &root_dir.path().join("bangerd-root.log"),
    );

    // The user's copies of the image and kernel files.
    let files = suite.env.root().join("import");
    fs_err::create_dir_all(&files).expect("import dir");
    copy(
        image["rootfs"].as_str().expect("rootfs"),
        &files.join("rootfs.ext4"),
    );
    copy(
        image["work_seed"].as_str().expect("work seed"),
        &files.join("work-seed.ext4"),
    );
    copy(
        kernel["bzimage"].as_str().expect("bzImage"),
        &files.join("vmlinuz"),
    );
    copy(
        &kernel_dir
            .join("modules")
            .join(&version)
            .display()
            .to_string(),
        &files.join(&version),
    );
    drop(builder);
    suite.user.as_ref().expect("user").chown_tree(&files);

    let path = |name: &str| files.join(name).display().to_string();
    suite.ok(&[
        "image",
        "register",
        "--name",
        &image_name,
        "--rootfs",
        &path("rootfs.ext4"),
        "--work-seed",
        &path("work-seed.ext4"),
        "--kernel",
        &path("vmlinuz"),
        "--modules",
        &path(&version),
    ]);

    // Create with NAT: the VMM and its helpers run as the user, the TAP is
    // the user's.
    let vm = suite.json(&["vm", "create", "--name", "own", "--nat", "--json"]);
    let pid = i32::try_from(vm["pid"].as_u64().expect("pid")).expect("pid fits");
    assert_eq!(uid_of(pid), uid, "the VMM runs as the owner");
    let helper_pid = helper.child.id() as i32;
    for other in suite.netns.pids() {
        if other != helper_pid {
            assert_eq!(
                uid_of(other),
                uid,
                "process {other} in the namespace runs as the owner"
            );
        }
    }
    let tap = vm["tap"].as_str().expect("tap").to_owned();
    assert_eq!(
        suite
            .in_netns("cat", &[&format!("/sys/class/net/{tap}/owner")])
            .trim(),
        uid.to_string(),
        "the TAP belongs to the owner"
    );
    assert_eq!(suite.ssh("own", "echo hello"), "hello\n");
    // The guest's resolver (the bridge address, port 53) reaches the
    // daemon, which cannot listen on 53: the helper's redirect carries it.
    assert_eq!(
        suite
            .ssh("own", "getent hosts own.vm | cut -d' ' -f1")
            .trim(),
        vm["ip"].as_str().expect("ip")
    );
    let internet = suite.fake_internet();
    let fetch = "curl -s -m 5 -o /dev/null -w '%{http_code}' http://198.51.100.2:8000/ || true";
    assert_eq!(suite.ssh("own", fetch), "200", "NAT through the helper");

    // Stop and start again.
    suite.ok(&["vm", "stop", "own"]);
    suite.wait_for_state("own", "stopped", Duration::from_secs(30));
    suite.ok(&["vm", "start", "own"]);
    assert_eq!(suite.ssh("own", "echo again"), "again\n");
    drop(internet);

    // Everything the daemon wrote is the owner's and owner-only.
    suite.assert_owner_only(uid);

    // Delete, then a throwaway run: nothing left.
    suite.ok(&["vm", "delete", "--force", "own"]);
    suite.ok(&["vm", "run", "--rm", "--", "true"]);
    assert_eq!(suite.json(&["vm", "list", "--json"]), serde_json::json!([]));
    assert_eq!(suite.taps(), Vec::<String>::new(), "no TAP left");
    assert!(
        !suite.env.paths().state_dir.join("vms/own").exists(),
        "no files left"
    );
    let rules = suite.in_netns("nft", &["list", "ruleset"]);
    assert!(
        !rules.contains(vm["ip"].as_str().expect("ip")),
        "no rule of the deleted VM: {rules}"
    );
    let daemons = suite.env.daemon_pids();
    let left: Vec<i32> = suite
        .netns
        .pids()
        .into_iter()
        .filter(|pid| *pid != helper_pid && !daemons.contains(pid))
        .collect();
    assert!(left.is_empty(), "processes left in the namespace: {left:?}");
    let log = helper.log_text();
    assert!(
        log.contains("create_tap") || log.contains("CreateTap"),
        "the helper did the TAP work: {log}"
    );
    helper.stop();
}
