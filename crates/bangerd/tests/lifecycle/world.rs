//! One case's world: a temp dir with its own state, cache and runtime dirs,
//! a fake host network shared by every daemon instance of the case, and
//! daemons (`AppState`s) built on one database with a fake VMM and a fake
//! SSH wait. Plus the checks the cases share: what a running, a stopped and
//! a vanished VM look like in the database, the files, the fake network and
//! the process table.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_api::vms::{VmInfo, VmState};
use banger_api::{ErrorCode, KernelName, VmName};
use banger_config::{Config, LoadedConfig, Paths};
use banger_host::kvm::KvmVerdict;
use banger_host::ssh::wait::SshWaitError;
use banger_testkit::fake_firecracker::read_records;
use banger_testkit::fake_network::FakeNetwork;
use banger_vmm::console::CopierCommand;
use banger_vmm::{Accel, FirecrackerVmm, Vmm};
use bangerd::host::{Host, HostParts, NetworkSource, SshWaitFuture, SshWaiter};
use bangerd::progress::ProgressSink;
use bangerd::state::AppState;
use bangerd::store::{KernelRow, Store};
use bangerd::vms::{self, VmError};

use crate::harness::{
    EXITING_VMM, inside, is_live, kill_processes_mentioning, processes_mentioning,
};

/// The image every case registers.
pub const IMAGE: &str = "lc-image";
/// The bridge of the fake network (never a real device).
pub const BRIDGE: &str = "bglifecycle0";

/// Answers SSH at once, or never.
struct FakeSsh {
    answers: bool,
}

impl SshWaiter for FakeSsh {
    fn wait(&self, ip: Ipv4Addr, timeout: Duration) -> SshWaitFuture<'_> {
        let answers = self.answers;
        Box::pin(async move {
            if answers {
                Ok(Duration::ZERO)
            } else {
                // As the real probe does: give up only when the time is up.
                tokio::time::sleep(timeout).await;
                Err(SshWaitError {
                    addr: SocketAddrV4::new(ip, 22),
                    waited: timeout,
                    attempts: 1,
                    last_failure: "the lifecycle test's SSH never answers".into(),
                })
            }
        })
    }
}

/// How a daemon's VMM and SSH behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fakes {
    /// The fake Firecracker; SSH answers at once.
    Working,
    /// The fake Firecracker; SSH never answers.
    SshNeverAnswers,
    /// A `firecracker` that exits at once.
    VmmExits,
}

/// A case's temp dir, configuration, fake network and async runtime.
/// Dropping it kills every process that still mentions the temp dir.
pub struct World {
    /// The temp dir's path.
    pub root: PathBuf,
    /// The daemon's directories, all inside `root`.
    pub paths: Paths,
    /// The daemon's configuration (tests may change it before `daemon`).
    pub config: Config,
    /// How long daemons made by [`World::daemon`] wait for SSH.
    pub ssh_timeout: Duration,
    /// The host's network as the fake keeps it.
    pub net: Arc<FakeNetwork>,
    runtime: tokio::runtime::Runtime,
    _temp: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        let leaked = kill_processes_mentioning(&inside(&self.root));
        if !leaked.is_empty() && !std::thread::panicking() {
            panic!("processes were left running: {leaked:?}");
        }
    }
}

impl World {
    /// A fresh world under `/tmp` (short paths: sockets live in it).
    pub fn new() -> Self {
        let temp = tempfile::Builder::new()
            .prefix("blc")
            .tempdir_in("/tmp")
            .expect("create the temp dir");
        let root = temp.path().to_owned();
        let paths = Paths {
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            cache_dir: root.join("cache"),
            runtime_dir: root.join("run"),
            home_dir: Some(root.join("home")),
        };
        let home = root.join("home").display().to_string();
        let env = move |name: &str| (name == "HOME").then(|| home.clone());
        let mut config = LoadedConfig::from_parts(&paths, None, &env)
            .expect("default configuration")
            .config;
        config.bridge_name = BRIDGE.into();
        config.bridge_ip = Ipv4Addr::new(10, 213, 7, 1);
        config.cidr.network = Ipv4Addr::new(10, 213, 7, 0);
        config.cidr.prefix = 24;
        config.tap_pool_size = 0;
        config.default_image_name = banger_api::ImageName::parse(IMAGE).expect("valid image name");
        // Restarted daemons serve `.vm` DNS as bangerd does; any free port.
        config.dns_listen_addr = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        fs_err::create_dir_all(root.join("home")).expect("home dir");
        paths.prepare_state_dir().expect("state dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Self {
            root,
            paths,
            config,
            ssh_timeout: Duration::from_secs(1),
            net: Arc::new(FakeNetwork::new()),
            runtime,
            _temp: temp,
        }
    }

    /// Runs `work` on the world's runtime.
    pub fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// A daemon on the world's database and fake network, as after a
    /// (re)start of bangerd.
    pub fn daemon(&self, fakes: Fakes) -> AppState {
        let exe = std::env::current_exe().expect("this test binary");
        let firecracker_bin = match fakes {
            Fakes::VmmExits => {
                let link = self.root.join(EXITING_VMM);
                if !link.exists() {
                    fs_err::os::unix::fs::symlink(&exe, &link).expect("link the exiting VMM");
                }
                link
            }
            Fakes::Working | Fakes::SshNeverAnswers => exe.clone(),
        };
        let vmm = Vmm::Firecracker(FirecrackerVmm {
            firecracker_bin,
            copier: CopierCommand {
                program: exe,
                args: vec!["console-copier".into()],
            },
        });
        let host = Host::with_parts(
            &self.config,
            HostParts {
                network: NetworkSource::Ops(self.net.clone()),
                vmm: Some((vmm, Accel::Kvm)),
                ssh: Arc::new(FakeSsh {
                    answers: fakes != Fakes::SshNeverAnswers,
                }),
                ssh_timeout: self.ssh_timeout,
                kvm: KvmVerdict {
                    accessible: true,
                    probe_ran: true,
                    can_run_guests: true,
                    detail: "faked by the lifecycle test".into(),
                },
                agent: None,
            },
        );
        let store =
            Store::open(&self.paths.database(), &self.paths.state_dir).expect("open the database");
        let (shutdown, _) = tokio::sync::watch::channel(false);
        AppState::new(
            self.paths.clone(),
            self.config.clone(),
            store,
            host,
            shutdown,
        )
    }

    /// A daemon started as `bangerd` starts: DNS records loaded from the
    /// database, then recovery of the VMs the previous daemon left.
    pub async fn restart(&self) -> AppState {
        let state = self.daemon(Fakes::Working);
        bangerd::dns::start(&state).await;
        vms::recover(&state).await;
        state
    }

    /// Installs a kernel (small placeholder files: the fake VMM never boots
    /// it) through the store and registers [`IMAGE`] on it through the
    /// domain API, with a small real ext4 root filesystem.
    pub fn install_image(&self, state: &AppState) {
        let dir = self.root.join("artifacts");
        fs_err::create_dir_all(&dir).expect("artifacts dir");
        let vmlinux = dir.join("vmlinux");
        let initramfs = dir.join("initramfs.img");
        // ELF magic only: every start checks it is a kernel; the fake VMM
        // never boots it.
        fs_err::write(&vmlinux, b"\x7fELF: the fake VMM never boots it\n").expect("vmlinux");
        fs_err::write(&initramfs, b"not an initramfs either\n").expect("initramfs");
        let rootfs = dir.join("rootfs.ext4");
        let options = banger_image::modules_disk::Ext4Options {
            populate_from: None,
            label: Some("lc-rootfs"),
            journal: false,
        };
        banger_image::modules_disk::mkfs_ext4(&rootfs, 8 << 20, &options).expect("mkfs rootfs");
        state
            .store()
            .upsert_kernel(&KernelRow {
                id: 0,
                name: KernelName::parse("lc-kernel").expect("kernel name"),
                version: "6.1.0-lifecycle".into(),
                source: "import".into(),
                dir: dir.clone(),
                bzimage: None,
                vmlinux: Some(vmlinux),
                initramfs,
                modules_disk: None,
                size_bytes: 100,
                created_at: 0,
            })
            .expect("insert the kernel");
        let request = serde_json::from_value(serde_json::json!({
            "name": IMAGE,
            "rootfs": rootfs.display().to_string(),
            "kernel_ref": "lc-kernel",
        }))
        .expect("image register request");
        bangerd::images::register(state, &request, &ProgressSink::discard())
            .expect("register the image");
    }

    /// `<state>/vms/<name>`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        vms::vm_dir(&self.paths.state_dir, &vm_name(name))
    }

    /// `<runtime>/vms/<name>`.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        vms::run_dir(&self.paths.runtime_dir, &vm_name(name))
    }

    /// The host keys pinned for the VM in banger's known_hosts.
    pub fn known_host_keys(&self, name: &str) -> Vec<String> {
        banger_host::ssh::known_hosts::host_keys(
            &vms::known_hosts(&self.paths.state_dir),
            &vms::host_alias(&vm_name(name)),
        )
        .expect("read known_hosts")
    }

    /// The fake network agrees with the database: exactly the TAPs VMs
    /// hold exist (the pool keeps no spares here), each owned by us on the
    /// bridge, and the firewall lets exactly the running VMs through.
    pub fn assert_network_matches(&self, state: &AppState) {
        let vms = vms::list(state).expect("list VMs");
        let held: BTreeSet<String> = vms.iter().filter_map(|vm| vm.tap.clone()).collect();
        let taps = self.net.taps();
        let existing: BTreeSet<String> = taps.keys().map(ToString::to_string).collect();
        assert_eq!(existing, held, "TAPs in the fake network vs TAPs VMs hold");
        let uid = rustix::process::getuid().as_raw();
        for (name, tap) in &taps {
            assert_eq!(tap.owner_uid, uid, "owner of {name}");
            assert_eq!(tap.bridge.as_str(), BRIDGE, "bridge of {name}");
        }
        let rules: BTreeSet<(String, String, bool)> = self
            .net
            .firewall()
            .map(|firewall| firewall.guests)
            .unwrap_or_default()
            .into_iter()
            .map(|guest| (guest.tap.to_string(), guest.ip.to_string(), guest.nat))
            .collect();
        let running: BTreeSet<(String, String, bool)> = vms
            .iter()
            .filter(|vm| vm.state == VmState::Running)
            .filter_map(|vm| Some((vm.tap.clone()?, vm.ip.to_string(), vm.nat)))
            .collect();
        assert_eq!(rules, running, "firewall rules vs running VMs");
    }

    /// The VM runs: state, VMM process, TAP, firewall rule, DNS record,
    /// host key, runtime files, and a fake Firecracker configured exactly as
    /// the VM's record says. Returns its record.
    pub fn assert_running(&self, state: &AppState, name: &str) -> VmInfo {
        let vm = show(state, name);
        assert_eq!(vm.state, VmState::Running, "{vm:?}");
        let pid = vm.pid.expect("a running VM has a VMM pid");
        assert!(is_live(pid), "VMM {pid} of {name} is not running");
        let run_dir = self.run_dir(name);
        let processes: Vec<u32> = processes_mentioning(&inside(&run_dir))
            .iter()
            .map(|process| process.pid)
            .collect();
        assert!(processes.contains(&pid), "{processes:?} lacks VMM {pid}");
        let tap = vm.tap.clone().expect("a running VM has a TAP");
        assert!(
            self.net.taps().keys().any(|t| t.as_str() == tap),
            "TAP {tap} is missing from the fake network"
        );
        assert_eq!(
            state.dns().records.get(name).map(|ip| ip.to_string()),
            Some(vm.ip.to_string()),
            "DNS record of {name}"
        );
        assert_eq!(
            self.known_host_keys(name).len(),
            1,
            "known_hosts entry of {name}"
        );
        assert!(run_dir.join("initrd.img").is_file(), "per-VM initrd");
        self.assert_network_matches(state);
        self.assert_firecracker_configured(&vm);
        vm
    }

    /// Every request the VM's fake Firecracker got was valid per the spec,
    /// in the order banger sends them, with the VM's files and devices.
    fn assert_firecracker_configured(&self, vm: &VmInfo) {
        let name = vm.name.to_string();
        let run_dir = self.run_dir(&name);
        let vm_dir = self.vm_dir(&name);
        let records = read_records(&run_dir.join("firecracker.sock"));
        for record in &records {
            assert!(record.accepted(), "refused by the fake: {record:?}");
        }
        let sequence: Vec<String> = records
            .iter()
            .map(|record| format!("{} {}", record.method, record.path))
            .collect();
        assert_eq!(
            sequence,
            [
                "PUT /logger",
                "PUT /metrics",
                "PUT /machine-config",
                "PUT /boot-source",
                "PUT /drives/vda",
                "PUT /drives/vdb",
                "PUT /drives/vdc",
                "PUT /network-interfaces/eth0",
                "PUT /vsock",
                "PUT /entropy",
                "PUT /actions",
            ]
        );
        let body = |path: &str| {
            records
                .iter()
                .find(|record| record.path == path)
                .and_then(|record| record.body.clone())
                .unwrap_or_default()
        };
        let text = |path: &Path| serde_json::Value::from(path.display().to_string());
        let machine = body("/machine-config");
        assert_eq!(machine["vcpu_count"], u64::from(vm.vcpus));
        assert_eq!(machine["mem_size_mib"], u64::from(vm.memory_mib));
        let boot = body("/boot-source");
        assert_eq!(
            boot["kernel_image_path"],
            text(&self.root.join("artifacts/vmlinux"))
        );
        assert_eq!(boot["initrd_path"], text(&run_dir.join("initrd.img")));
        let drives = [
            ("/drives/vda", self.root.join("artifacts/rootfs.ext4"), true),
            ("/drives/vdb", vm_dir.join("overlay.ext4"), false),
            ("/drives/vdc", vm_dir.join("work.ext4"), false),
        ];
        for (path, file, read_only) in drives {
            let drive = body(path);
            assert_eq!(drive["path_on_host"], text(&file), "{path}");
            assert_eq!(drive["is_read_only"], read_only, "{path}");
            assert!(file.is_file(), "{} is missing", file.display());
        }
        let nic = body("/network-interfaces/eth0");
        assert_eq!(
            nic["host_dev_name"],
            vm.tap.clone().unwrap_or_default().as_str()
        );
        assert_eq!(nic["guest_mac"], vm.mac.as_str());
        assert_eq!(body("/vsock")["guest_cid"], u64::from(vm.vsock_cid));
        assert_eq!(body("/actions")["action_type"], "InstanceStart");
    }

    /// The VM is stopped: no VMM, no console copier, no TAP, no firewall
    /// rule, no runtime dir; its disks and host key stay. Returns its record.
    pub fn assert_stopped(&self, state: &AppState, name: &str) -> VmInfo {
        let vm = show(state, name);
        assert_eq!(vm.state, VmState::Stopped, "{vm:?}");
        assert_eq!(vm.pid, None);
        assert_eq!(vm.tap, None);
        assert!(
            !self.run_dir(name).exists(),
            "runtime dir of {name} is left"
        );
        self.assert_no_processes(name);
        let vm_dir = self.vm_dir(name);
        for disk in ["overlay.ext4", "work.ext4", "ssh_host_ed25519_key"] {
            assert!(vm_dir.join(disk).is_file(), "{disk} of {name} is gone");
        }
        assert_eq!(
            self.known_host_keys(name).len(),
            1,
            "known_hosts entry of {name}"
        );
        self.assert_network_matches(state);
        vm
    }

    /// Nothing of VM `name` is left: no row, no VM dir, no runtime dir, no
    /// TAP, no firewall rule, no DNS record, no known_hosts line, no process.
    pub fn assert_gone(&self, state: &AppState, name: &str) {
        match vms::show(state, &vm_name(name)) {
            Err(error) => assert_eq!(error.code(), ErrorCode::NotFound, "{error}"),
            Ok(vm) => panic!("VM {name} still exists: {vm:?}"),
        }
        assert!(!self.vm_dir(name).exists(), "VM dir of {name} is left");
        assert!(
            !self.run_dir(name).exists(),
            "runtime dir of {name} is left"
        );
        assert_eq!(state.dns().records.get(name), None, "DNS record of {name}");
        assert!(
            self.known_host_keys(name).is_empty(),
            "known_hosts of {name}"
        );
        self.assert_no_processes(name);
        self.assert_network_matches(state);
    }

    /// No process mentions the VM's dir or runtime dir.
    pub fn assert_no_processes(&self, name: &str) {
        for dir in [self.vm_dir(name), self.run_dir(name)] {
            let left = processes_mentioning(&inside(&dir));
            assert!(left.is_empty(), "processes of {name} left: {left:?}");
        }
    }
}

/// A valid VM name.
pub fn vm_name(name: &str) -> VmName {
    VmName::parse(name).expect("valid VM name")
}

/// The VM's record (it must exist).
pub fn show(state: &AppState, name: &str) -> VmInfo {
    vms::show(state, &vm_name(name)).unwrap_or_else(|error| panic!("show {name}: {error}"))
}

/// A create request: 1 vCPU, 256 MiB, a 64 MiB work disk, image [`IMAGE`].
/// Built from JSON so it does not depend on the request's Rust field types.
pub fn request(name: &str, no_start: bool, nat: bool) -> banger_api::vms::VmCreateRequest {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "image": IMAGE,
        "vcpus": 1,
        "memory_mib": 256,
        "disk_bytes": 64u64 << 20,
        "no_start": no_start,
        "nat": nat,
    }))
    .expect("create request")
}

/// Creates a VM.
pub async fn create(
    state: &AppState,
    name: &str,
    no_start: bool,
    nat: bool,
) -> Result<VmInfo, VmError> {
    vms::create(
        state,
        &request(name, no_start, nat),
        &ProgressSink::discard(),
    )
    .await
}

/// The full error text, causes included.
pub fn chain(error: &VmError) -> String {
    bangerd::error::error_chain(error)
}
