//! Both backends' VMM processes are watched by pidfd: each is started through
//! its real backend (`QemuVmm` with a real `qemu-system-x86_64` and
//! `vhost-device-vsock`; `FirecrackerVmm` with the spec-validating fake
//! `firecracker`), SIGKILLed from outside, and its `ExitWatch` must report
//! the kill within 2 seconds with the real status and leave no zombie.
//!
//! QEMU boots a 40-byte multiboot "kernel" that halts the CPU, so it keeps
//! running at no cost and no guest needs building (QEMU loads multiboot
//! images itself, and takes the initrd as a module).
//!
//! Needs qemu-system-x86_64 and vhost-device-vsock for the first case, the
//! Firecracker API spec for the second; otherwise each fails under CI and
//! reports itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banger_vmm::process::{ExitInfo, Signal};
use banger_vmm::{Accel, FirecrackerVmm, QemuVmm, RunningVm, VmSpec, Vmm};

/// The promise: an exit is noticed within this.
const NOTICED_WITHIN: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    common::run(&[
        (
            "qemu_killed_is_noticed_at_once",
            qemu_killed_is_noticed_at_once,
        ),
        (
            "firecracker_killed_is_noticed_at_once",
            firecracker_killed_is_noticed_at_once,
        ),
    ])
}

/// Kills every process of the VM when dropped, pass or fail.
struct KillOnDrop(RunningVm);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for process in self.0.processes() {
            let _ = process.signal(Signal::KILL);
        }
    }
}

/// A multiboot image (the `\x7fELF` prefix satisfies banger's kernel check;
/// QEMU finds the multiboot header by its magic and uses its load
/// addresses) whose entry point is `cli; hlt; jmp .-1`.
fn halting_kernel(path: &Path) {
    const MAGIC: u32 = 0x1BAD_B002;
    /// Bit 16: the load addresses below are valid (no ELF parsing).
    const FLAGS: u32 = 0x0001_0000;
    const LOAD: u32 = 0x0010_0000;
    const HEADER_OFFSET: u32 = 4;
    let header = [
        MAGIC,
        FLAGS,
        MAGIC.wrapping_add(FLAGS).wrapping_neg(),
        LOAD + HEADER_OFFSET,      // header_addr
        LOAD,                      // load_addr: the file's first byte
        0,                         // load_end_addr: the whole file
        0,                         // bss_end_addr: no bss
        LOAD + HEADER_OFFSET + 32, // entry_addr: right after the header
    ];
    let mut image = b"\x7fELF".to_vec();
    for word in header {
        image.extend(word.to_le_bytes());
    }
    image.extend([0xfa, 0xf4, 0xeb, 0xfd]);
    fs_err::write(path, image).unwrap();
}

fn spec(dir: &Path, name: &str, accel: Accel) -> VmSpec {
    halting_kernel(&dir.join("kernel"));
    fs_err::write(dir.join("initrd"), b"not looked at\n").unwrap();
    VmSpec {
        name: name.into(),
        vcpus: 1,
        memory_mib: 128,
        kernel: dir.join("kernel"),
        initrd: dir.join("initrd"),
        cmdline: "console=ttyS0".into(),
        disks: Vec::new(),
        network: None,
        vsock_cid: 9,
        run_dir: dir.join("run"),
        console_log: dir.join("console.log"),
        console_log_max_bytes: 64 * 1024,
        accel,
    }
}

/// Starts the VM, checks its VMM keeps running and is not reported exited,
/// SIGKILLs it and checks the watch reports that within [`NOTICED_WITHIN`],
/// reaped; then cleans up the rest of the VM.
fn start_kill_and_watch(vmm: &Vmm, spec: &VmSpec) {
    let runtime = common::runtime();
    let vm = runtime.block_on(vmm.start(spec)).unwrap();
    let _guard = KillOnDrop(vm.clone());
    runtime.block_on(async {
        let mut watch = vm.watch_exit();
        let early = tokio::time::timeout(Duration::from_millis(500), watch.exited()).await;
        assert!(
            early.is_err(),
            "{:?} reported exited while it runs: {early:?}\n{}",
            vm.backend,
            fs_err::read_to_string(&vm.console_log).unwrap_or_default()
        );
        assert!(vm.vmm.is_alive_and_same());
        let killed = Instant::now();
        assert!(vm.kill(Signal::KILL).unwrap());
        let exit = tokio::time::timeout(NOTICED_WITHIN, watch.exited()).await;
        let took = killed.elapsed();
        assert_eq!(exit, Ok(ExitInfo::Signal { signal: 9 }), "{:?}", vm.backend);
        println!("  {:?} VMM kill noticed after {took:?}", vm.backend);
        assert!(
            !Path::new(&format!("/proc/{}", vm.vmm.pid)).exists(),
            "the VMM was not reaped"
        );
        // A second waiter (the daemon's stop, say) learns the same status.
        assert_eq!(vm.status(), Some(ExitInfo::Signal { signal: 9 }));
        vm.cleanup().await.unwrap();
    });
    for process in vm.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
}

fn qemu_killed_is_noticed_at_once() {
    for tool in ["qemu-system-x86_64", "vhost-device-vsock"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    let dir = common::short_tempdir();
    let vmm = Vmm::Qemu(QemuVmm {
        qemu_bin: common::which("qemu-system-x86_64").unwrap(),
        vhost_vsock_bin: common::which("vhost-device-vsock").unwrap(),
        copier: common::copier(),
    });
    start_kill_and_watch(&vmm, &spec(dir.path(), "watch-qemu", Accel::Tcg));
}

fn firecracker_killed_is_noticed_at_once() {
    if let Err(reason) = banger_testkit::fake_firecracker::default_spec_path() {
        banger_testkit::skip_or_fail(reason);
        return;
    }
    let dir = common::short_tempdir();
    let vmm = Vmm::Firecracker(FirecrackerVmm {
        firecracker_bin: std::env::current_exe().unwrap(),
        copier: common::copier(),
    });
    start_kill_and_watch(&vmm, &spec(dir.path(), "watch-fc", Accel::Kvm));
}
