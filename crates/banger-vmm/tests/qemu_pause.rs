//! Pause and resume through `QemuVmm` with a real guest (TCG here): the
//! busybox guest of `qemu_boot.rs` with the static agent boots, answers
//! `Health` over vsock, is paused into a directory (the vsock device is
//! unplugged through ACPI hotplug, the state migrated into
//! `qemu.mapped`, or `qemu.state` before QEMU 9; QEMU and vhost-device-vsock end), then resumed by a new
//! QEMU with `-incoming` and a new vsock helper and device: the agent
//! answers again with an uptime that went on from before the pause (the same
//! guest, not a reboot) and the guest's marker process is still there.
//!
//! Same tools as `qemu_boot.rs`; SKIPPED (or failed under CI) without them.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banger_agent_proto::{AGENT_PORT, Envelope, PROTOCOL_VERSION, Request, Response};
use banger_image::guest_config::{GuestConfig, write_vm_initrd};
use banger_image::initramfs::DEFAULT_BUSYBOX;
use banger_vmm::{Accel, DiskSpec, QemuVmm, RunningVm, VmSpec, Vmm, connect_vsock};
use common::guest::{KillOnDrop, build_agent, busybox_rootfs, ext4};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Hard limit for the guest to answer over vsock.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/usr/local/bin
echo "MARK-VMM-INIT: $(uname -r)"
if ! pidof banger-vsock-agent >/dev/null; then
    /usr/local/bin/banger-vsock-agent &
fi
while :; do sleep 1; done
"#;

fn main() -> ExitCode {
    common::run(&[(
        "pause_and_resume_keep_the_guest",
        pause_and_resume_keep_the_guest,
    )])
}

/// Asks the agent for `Health` (connecting until `deadline`) and returns
/// the guest's uptime.
async fn health(vm: &RunningVm, deadline: Instant) -> u64 {
    let console = || fs_err::read_to_string(&vm.console_log).unwrap_or_default();
    let mut stream = loop {
        assert!(vm.status().is_none(), "QEMU exited:\n{}", console());
        assert!(
            Instant::now() < deadline,
            "agent not reachable:\n{}",
            console()
        );
        match connect_vsock(&vm.vsock_uds, AGENT_PORT, Duration::from_secs(2)).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let frame = banger_agent_proto::encode(&Envelope {
        version: PROTOCOL_VERSION,
        request: Request::Health,
    })
    .unwrap();
    stream.write_all(&frame).await.unwrap();
    let mut line = Vec::new();
    let limit = banger_agent_proto::MAX_FRAME_BYTES as u64;
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(&mut stream)
            .take(limit)
            .read_until(b'\n', &mut line),
    )
    .await
    .expect("agent reply in time")
    .unwrap();
    match banger_agent_proto::decode::<Response>(&line).unwrap() {
        Response::Health { uptime_secs, .. } => uptime_secs,
        other => panic!("unexpected reply {other:?}"),
    }
}

fn pause_and_resume_keep_the_guest() {
    for tool in ["qemu-system-x86_64", "vhost-device-vsock", "mkfs.ext4"] {
        if !common::have(tool) {
            banger_testkit::skip_or_fail(format!("{tool} not installed"));
            return;
        }
    }
    if !Path::new(DEFAULT_BUSYBOX).exists() {
        banger_testkit::skip_or_fail("busybox-static not installed");
        return;
    }
    let cache = banger_image::default_cache_dir().unwrap();
    let kernel = match banger_image::kernel::fetch_debian_kernel(
        &cache,
        banger_image::kernel::DEBIAN_CLOUD_METAPACKAGE,
    ) {
        Ok(kernel) => kernel,
        Err(error) => {
            banger_testkit::skip_or_fail(format!("Debian kernel unavailable: {error}"));
            return;
        }
    };
    let artifacts = banger_image::artifacts::prepare_boot_artifacts(
        &cache,
        &kernel,
        Path::new(DEFAULT_BUSYBOX),
        false,
    )
    .unwrap();
    let Some(agent) = build_agent() else {
        return;
    };

    let dir = common::short_tempdir();
    let d = dir.path();
    let tree = d.join("tree");
    busybox_rootfs(&tree, GUEST_INIT);
    let (base, upper, work) = (
        d.join("base.ext4"),
        d.join("upper.ext4"),
        d.join("work.ext4"),
    );
    ext4(&base, 64 << 20, Some(&tree), false);
    ext4(&upper, 256 << 20, None, true);
    ext4(&work, 64 << 20, None, true);
    let config = GuestConfig {
        hostname: "vmm-test".into(),
        agent: Some(fs_err::read(&agent).unwrap()),
        ..GuestConfig::default()
    };
    let initrd = d.join("vm.initrd");
    write_vm_initrd(&artifacts.initramfs, &config, &initrd).unwrap();

    let accel = if banger_host::kvm::probe().can_run_guests {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let spec = VmSpec {
        name: "vmm-pause".into(),
        vcpus: 1,
        memory_mib: 512,
        kernel: artifacts.vmlinuz.clone(),
        initrd,
        cmdline: format!("{} loglevel=4", banger_image::artifacts::DEFAULT_CMDLINE),
        disks: vec![
            DiskSpec {
                path: base,
                read_only: true,
            },
            DiskSpec {
                path: upper,
                read_only: false,
            },
            DiskSpec {
                path: work,
                read_only: false,
            },
            DiskSpec {
                path: artifacts.modules_disk.clone(),
                read_only: true,
            },
        ],
        network: None,
        vsock_cid: 3,
        run_dir: d.join("run"),
        console_log: d.join("console.log"),
        console_log_max_bytes: 256 * 1024,
        accel,
    };
    let qemu = QemuVmm {
        qemu_bin: common::which("qemu-system-x86_64").unwrap(),
        vhost_vsock_bin: common::which("vhost-device-vsock").unwrap(),
        copier: common::copier(),
    };
    let runtime = common::runtime();
    let started = Instant::now();
    let vmm = Vmm::Qemu(qemu);
    let vm = runtime.block_on(vmm.start(&spec)).unwrap();
    let guard = KillOnDrop(vm.clone());
    let before = runtime.block_on(health(&vm, Instant::now() + BOOT_TIMEOUT));
    println!(
        "  agent answers after {:?} (uptime {before} s)",
        started.elapsed()
    );
    // Let the guest's uptime move on a little.
    std::thread::sleep(Duration::from_secs(2));

    let memory = d.join("memory");
    fs_err::create_dir(&memory).unwrap();
    let pausing = Instant::now();
    runtime.block_on(vm.pause(&memory)).unwrap();
    println!("  paused in {:?}", pausing.elapsed());
    for process in vm.processes() {
        assert!(
            !process.is_alive_and_same(),
            "{process:?} still runs after the pause"
        );
    }
    // QEMU 9 and later save a sparse mapped-ram file, older QEMU a stream;
    // either holds the guest's memory in use (its allocated blocks).
    let state = match banger_vmm::qemu::migrate::saved_state(&memory) {
        Some(
            banger_vmm::qemu::migrate::SavedState::Mapped(path)
            | banger_vmm::qemu::migrate::SavedState::Stream(path),
        ) => path,
        None => panic!("no saved state in {}", memory.display()),
    };
    let size = {
        use std::os::unix::fs::MetadataExt;
        fs_err::metadata(&state).unwrap().blocks() * 512
    };
    println!(
        "  state file {} with {size} bytes allocated",
        state.display()
    );
    assert!(size > 1 << 20, "{size}");
    drop(guard);

    std::thread::sleep(Duration::from_secs(2));
    let resuming = Instant::now();
    let resumed = runtime
        .block_on(vmm.resume(&spec, &memory, banger_vmm::NetworkAtResume::Connected))
        .unwrap();
    let guard = KillOnDrop(resumed.clone());
    println!("  QEMU resumed after {:?}", resuming.elapsed());
    let after = runtime.block_on(health(&resumed, Instant::now() + Duration::from_secs(60)));
    println!(
        "  agent answers {:?} after the resume (uptime {after} s)",
        resuming.elapsed()
    );
    // The same guest: its uptime went on (a reboot would start near 0, and
    // the guest did not count the paused seconds).
    assert!(after >= before, "uptime {before} -> {after}");
    let console = fs_err::read_to_string(&resumed.console_log).unwrap_or_default();
    assert_eq!(
        console.matches("MARK-VMM-INIT: ").count(),
        1,
        "booted once only:\n{console}"
    );
    // And paused a second time and resumed again (the device re-plugged by
    // the resume can be unplugged again).
    let memory2 = d.join("memory2");
    fs_err::create_dir(&memory2).unwrap();
    runtime.block_on(resumed.pause(&memory2)).unwrap();
    drop(guard);
    let again = runtime
        .block_on(vmm.resume(&spec, &memory2, banger_vmm::NetworkAtResume::Connected))
        .unwrap();
    let guard = KillOnDrop(again.clone());
    let uptime = runtime.block_on(health(&again, Instant::now() + Duration::from_secs(60)));
    assert!(uptime >= after, "uptime {after} -> {uptime}");
    runtime
        .block_on(again.stop(Duration::from_secs(3)))
        .unwrap();
    for process in again.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
    println!("  whole test {:?}", started.elapsed());
    drop(guard);
}
