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

/// `qemu-system-x86_64` arguments (the program itself excluded). The serial
/// console goes to stdout, which the caller connects to the console copier.
pub fn qemu_args(spec: &VmSpec, paths: &QemuPaths) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let mem = format!(
        "memory-backend-memfd,id=mem0,size={}M,share=on",
        spec.memory_mib
    );
    push(&["-name", &format!("banger-{}", spec.name)]);
    push(&["-M", "q35,memory-backend=mem0"]);
    push(&["-accel", spec.accel.as_qemu_arg()]);
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
        let readonly = if disk.read_only { ",readonly=on" } else { "" };
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
    args.push(joined("socket,id=vsk,path=", &paths.vhost_user, ""));
    args.push("-device".into());
    args.push("vhost-user-vsock-pci,chardev=vsk".into());
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
        insta::assert_snapshot!(render(&qemu_args(&spec, &paths)));
        insta::assert_snapshot!("vhost_vsock", render(&vhost_vsock_args(&spec, &paths)));
    }

    #[test]
    fn kvm_without_network() {
        let mut spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        spec.accel = Accel::Kvm;
        spec.network = None;
        let args = render(&qemu_args(&spec, &QemuPaths::in_run_dir(&spec.run_dir)));
        assert!(args.contains("-accel\nkvm\n-cpu\nhost"));
        assert!(!args.contains("netdev"));
        // Disk order is device order; read-only where asked.
        let first = args.find("file=/vm/base.ext4,format=raw,if=none,id=disk0,readonly=on");
        let second = args.find("file=/vm/upper.ext4,format=raw,if=none,id=disk1\n");
        assert!(
            first.is_some() && second.is_some() && first < second,
            "{args}"
        );
    }
}
