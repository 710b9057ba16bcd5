//! The QEMU and vhost-device-vsock command lines for a [`VmSpec`], as pure
//! functions so they can be snapshot-tested without starting anything.
//!
//! The layout follows the command line measured in FACTS.md, with every
//! default device switched off (`-nodefaults`) so the guest sees exactly the
//! devices banger attaches, in the order the boot chain expects.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::spec::VmSpec;

/// Sockets QEMU and its vsock helper use inside the VM's run dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuPaths {
    /// QMP control socket.
    pub qmp: PathBuf,
    /// vhost-user socket between QEMU and vhost-device-vsock.
    pub vhost_user: PathBuf,
    /// Hybrid-vsock socket for host connections.
    pub vsock_uds: PathBuf,
    /// vhost-device-vsock's own output (small; errors only).
    pub vhost_log: PathBuf,
}

impl QemuPaths {
    /// The standard names inside `run_dir`.
    pub fn in_run_dir(run_dir: &Path) -> Self {
        Self {
            qmp: run_dir.join("qmp.sock"),
            vhost_user: run_dir.join("vhost-vsock.sock"),
            vsock_uds: run_dir.join("vsock.sock"),
            vhost_log: run_dir.join("vhost-device-vsock.log"),
        }
    }
}

/// `vhost-device-vsock` arguments (the program itself excluded).
pub fn vhost_vsock_args(spec: &VmSpec, paths: &QemuPaths) -> Vec<OsString> {
    vec![
        "--guest-cid".into(),
        spec.vsock_cid.to_string().into(),
        "--socket".into(),
        paths.vhost_user.clone().into(),
        "--uds-path".into(),
        paths.vsock_uds.clone().into(),
    ]
}

fn joined(prefix: &str, path: &Path, suffix: &str) -> OsString {
    let mut value = OsString::from(prefix);
    value.push(path.as_os_str());
    value.push(suffix);
    value
}

/// QMP id of the vsock device, unplugged before a pause and plugged back
/// after a resume (see [`crate::qemu::migrate`]).
pub const VSOCK_DEVICE_ID: &str = "vsock0";
/// The PCIe root port the vsock device sits on: q35's root bus takes no
/// hotplug, a root port does.
pub const VSOCK_PORT_ID: &str = "vsockport";
/// The vhost-user chardev of the vsock device.
pub const VSOCK_CHARDEV_ID: &str = "vsk";

/// `qemu-system-x86_64` arguments (the program itself excluded). The serial
/// console goes to stdout, which the caller connects to the console copier.
pub fn qemu_args(spec: &VmSpec, paths: &QemuPaths) -> Vec<OsString> {
    build(spec, paths, None, host_cpus())
}

/// Where a resuming QEMU reads its saved state from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A migration stream in this file, read through `exec:cat` (any QEMU).
    Stream(&'a Path),
    /// `-incoming defer`: the caller sets the migration's capabilities and
    /// starts it over QMP (a `mapped-ram` file, QEMU 9 and later).
    Deferred,
}

/// The arguments of a QEMU that loads a saved state (a resume): the same
/// devices but the vsock device, which is plugged in once the state is
/// loaded, started paused (`-S`) with `-incoming` as `incoming` says.
pub fn qemu_args_incoming(
    spec: &VmSpec,
    paths: &QemuPaths,
    incoming: Incoming<'_>,
) -> Vec<OsString> {
    build(spec, paths, Some(incoming), host_cpus())
}

/// CPUs this process may run on (1 when unknown).
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The `-accel` value. Under TCG, multi-threaded TCG (one host thread per
/// vCPU) only when the host has a CPU to spare beyond the guest's vCPUs;
/// otherwise one thread runs every vCPU in turn (`thread=single`). On an
/// overcommitted host (2 CPUs, a 2-vCPU guest, builds beside it) QEMU 10's
/// multi-threaded TCG crashed in PCI setup (`iotlb_to_section: Assertion
/// section_index < d->map.sections_nb`, QEMU issue 3040) and stalled
/// guests whose idle vCPU's timer never fired (RCU stall reports, no SSH),
/// 2 boots in 3; single-threaded TCG booted 8 in 8 on the same host, as
/// fast (docs/benchmarks.md).
fn accel_arg(accel: crate::spec::Accel, vcpus: u8, host_cpus: usize) -> String {
    match accel {
        crate::spec::Accel::Kvm => "kvm".to_owned(),
        crate::spec::Accel::Tcg => {
            let threads = if host_cpus > usize::from(vcpus) {
                "multi"
            } else {
                "single"
            };
            format!("tcg,thread={threads}")
        }
    }
}

/// The `exec:` migration URI that writes (`>`) or reads the state file.
/// QEMU 7.2 (Debian 12) has no `file:` URI; the path is single-quoted for
/// `/bin/sh` (callers refuse paths holding a quote).
pub fn exec_uri(write: bool, state_file: &Path) -> String {
    let redirect = if write { "> " } else { "" };
    format!("exec:cat {redirect}'{}'", state_file.display())
}

fn build(
    spec: &VmSpec,
    paths: &QemuPaths,
    incoming: Option<Incoming<'_>>,
    host_cpus: usize,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let mem = format!(
        "memory-backend-memfd,id=mem0,size={}M,share=on",
        spec.memory_mib
    );
    push(&["-name", &format!("banger-{}", spec.name)]);
    push(&["-M", "q35,memory-backend=mem0"]);
    push(&["-accel", &accel_arg(spec.accel, spec.vcpus, host_cpus)]);
    if spec.accel == crate::spec::Accel::Kvm {
        push(&["-cpu", "host"]);
    } else {
        // TCG's default model (qemu64) lacks SSE4.2/POPCNT, which the
        // provisioned image's opencode and Claude Code binaries need even in
        // their baseline builds; `max` is everything TCG emulates.
        push(&["-cpu", "max"]);
    }
    // vhost-user needs guest memory QEMU can share with the helper: memfd
    // with share=on.
    push(&["-object", &mem]);
    push(&["-m", &format!("{}M", spec.memory_mib)]);
    push(&["-smp", &spec.vcpus.to_string()]);
    // No default NIC, VGA, monitor or drives: exactly what follows.
    push(&["-nodefaults", "-no-user-config", "-display", "none"]);
    push(&["-serial", "stdio"]);
    // A guest reboot ends the VM; the daemon decides whether to start it again.
    push(&["-no-reboot"]);
    args.push("-kernel".into());
    args.push(spec.kernel.clone().into());
    args.push("-initrd".into());
    args.push(spec.initrd.clone().into());
    args.push("-append".into());
    args.push(spec.cmdline.clone().into());
    for (index, disk) in spec.disks.iter().enumerate() {
        // Writable disks pass the guest's discards (fstrim) on as holes in
        // the sparse host file, so deleted guest data gives host space back;
        // read-only disks are never written, so never trimmed.
        let readonly = if disk.read_only {
            ",readonly=on"
        } else {
            ",discard=unmap"
        };
        args.push("-drive".into());
        args.push(joined(
            "file=",
            &disk.path,
            &format!(",format=raw,if=none,id=disk{index}{readonly}"),
        ));
        args.push("-device".into());
        args.push(format!("virtio-blk-pci,drive=disk{index}").into());
    }
    if let Some(net) = &spec.network {
        args.push("-netdev".into());
        args.push(
            format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                net.tap_name
            )
            .into(),
        );
        args.push("-device".into());
        args.push(format!("virtio-net-pci,netdev=net0,mac={}", net.mac).into());
    }
    // Seeds the guest's random pool from the host at boot. Without it a
    // guest with no RDRAND (TCG's default CPU) waits on interrupt jitter,
    // which under emulation on a busy host stalls sshd and udev for minutes.
    args.push("-device".into());
    args.push("virtio-rng-pci".into());
    args.push("-chardev".into());
    args.push(joined(
        &format!("socket,id={VSOCK_CHARDEV_ID},path="),
        &paths.vhost_user,
        "",
    ));
    // QEMU refuses to migrate vhost-user-vsock (its state lives in the
    // helper): the device sits on a root port of its own so it can be
    // unplugged before a pause and plugged back after the resume.
    args.push("-device".into());
    args.push(format!("pcie-root-port,id={VSOCK_PORT_ID},chassis=1").into());
    match incoming {
        None => {
            args.push("-device".into());
            args.push(
                format!(
                    "vhost-user-vsock-pci,chardev={VSOCK_CHARDEV_ID},id={VSOCK_DEVICE_ID},bus={VSOCK_PORT_ID}"
                )
                .into(),
            );
        }
        Some(incoming) => {
            args.push("-S".into());
            args.push("-incoming".into());
            args.push(match incoming {
                Incoming::Stream(state_file) => exec_uri(false, state_file).into(),
                Incoming::Deferred => "defer".into(),
            });
        }
    }
    args.push("-qmp".into());
    args.push(joined("unix:", &paths.qmp, ",server=on,wait=off"));
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Accel;

    fn render(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn qemu_command_line_for_a_full_spec() {
        let spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        let paths = QemuPaths::in_run_dir(&spec.run_dir);
        insta::assert_snapshot!(render(&build(&spec, &paths, None, 2)));
        insta::assert_snapshot!("vhost_vsock", render(&vhost_vsock_args(&spec, &paths)));
    }

    #[test]
    fn a_resume_loads_the_state_file_without_the_vsock_device() {
        let spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        let paths = QemuPaths::in_run_dir(&spec.run_dir);
        let boot = render(&qemu_args(&spec, &paths));
        let resume = render(&qemu_args_incoming(
            &spec,
            &paths,
            Incoming::Stream(Path::new("/state/memory/qemu.state")),
        ));
        assert!(boot.contains("vhost-user-vsock-pci,chardev=vsk,id=vsock0,bus=vsockport"));
        assert!(!boot.contains("-incoming"));
        assert!(!resume.contains("vhost-user-vsock-pci"), "{resume}");
        assert!(
            resume.ends_with(
                "-S\n-incoming\nexec:cat '/state/memory/qemu.state'\n-qmp\nunix:/vm/run/qmp.sock,server=on,wait=off"
            ),
            "{resume}"
        );
        // Everything else is the same, in the same order.
        let devices = |text: &str| {
            text.lines()
                .filter(|line| !line.starts_with("vhost-user-vsock-pci"))
                .filter(|line| line.contains('=') && !line.starts_with("exec:"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(devices(&boot), devices(&resume));
        assert_eq!(exec_uri(true, Path::new("/a/b")), "exec:cat > '/a/b'");
        // A mapped-ram state is loaded over QMP once QEMU is up.
        let deferred = render(&qemu_args_incoming(&spec, &paths, Incoming::Deferred));
        assert!(
            deferred
                .ends_with("-S\n-incoming\ndefer\n-qmp\nunix:/vm/run/qmp.sock,server=on,wait=off"),
            "{deferred}"
        );
        assert_eq!(devices(&boot), devices(&deferred));
    }

    #[test]
    fn tcg_is_multi_threaded_only_with_a_cpu_to_spare() {
        use crate::spec::Accel;
        assert_eq!(accel_arg(Accel::Tcg, 2, 2), "tcg,thread=single");
        assert_eq!(accel_arg(Accel::Tcg, 2, 1), "tcg,thread=single");
        assert_eq!(accel_arg(Accel::Tcg, 2, 3), "tcg,thread=multi");
        assert_eq!(accel_arg(Accel::Tcg, 1, 2), "tcg,thread=multi");
        assert_eq!(accel_arg(Accel::Kvm, 8, 1), "kvm");
    }

    #[test]
    fn kvm_without_network() {
        let mut spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        spec.accel = Accel::Kvm;
        spec.network = None;
        let args = render(&qemu_args(&spec, &QemuPaths::in_run_dir(&spec.run_dir)));
        assert!(args.contains("-accel\nkvm\n-cpu\nhost"));
        assert!(!args.contains("netdev"));
        // Disk order is device order; read-only where asked, discard on the
        // writable ones.
        let first = args.find("file=/vm/base.ext4,format=raw,if=none,id=disk0,readonly=on");
        let second = args.find("file=/vm/upper.ext4,format=raw,if=none,id=disk1,discard=unmap\n");
        assert!(
            first.is_some() && second.is_some() && first < second,
            "{args}"
        );
    }
}
