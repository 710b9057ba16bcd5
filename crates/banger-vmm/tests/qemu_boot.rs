//! Real boot through `QemuVmm` (TCG here, KVM where `banger_host::kvm::probe`
//! says guests run): Debian's cloud kernel, the banger initramfs with a config
//! archive that delivers the static guest agent, a busybox base image, upper,
//! work and modules disks. The test waits for the agent over hybrid vsock
//! (`vhost-device-vsock`), asks it for `Health`, checks the bounded console
//! log, stops the VM (the busybox guest ignores ACPI, so this exercises the
//! kill-after-timeout path) and checks that QEMU and the vsock helper are gone.
//!
//! Needs qemu-system-x86_64, vhost-device-vsock, e2fsprogs, busybox-static,
//! apt (kernel, cached) and cargo (the agent, `scripts/build-agent.sh debug`);
//! otherwise fails under CI and reports itself SKIPPED elsewhere
//! (`banger_testkit::skip_or_fail`). One boot, ~10-40 s under TCG.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use banger_agent_proto::{AGENT_PORT, Envelope, PROTOCOL_VERSION, Request, Response};
use banger_image::guest_config::{GuestConfig, write_vm_initrd};
use banger_image::initramfs::DEFAULT_BUSYBOX;
use banger_vmm::{Accel, DiskSpec, QemuVmm, StopOutcome, VmSpec, connect_vsock};
use common::guest::{KillOnDrop, build_agent, busybox_rootfs, ext4};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Hard limit for the guest to answer over vsock.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

const GUEST_INIT: &str = r#"#!/bin/sh
export PATH=/bin:/usr/local/bin
echo "MARK-VMM-INIT: $(uname -r)"
# /init normally starts the agent before switch_root; start it here if not.
if pidof banger-vsock-agent >/dev/null; then
    echo "MARK-AGENT: started by /init"
else
    /usr/local/bin/banger-vsock-agent &
    echo "MARK-AGENT: started by the image's init"
fi
# No acpid: an ACPI power button press is ignored, like a wedged guest.
while :; do sleep 1; done
"#;

fn main() -> ExitCode {
    common::run(&[("boots_and_answers_over_vsock", boots_and_answers_over_vsock)])
}

fn boots_and_answers_over_vsock() {
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
        name: "vmm-boot".into(),
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
    let vm = runtime.block_on(qemu.start(&spec)).unwrap();
    let guard = KillOnDrop(vm.clone());
    println!("  QEMU ({accel:?}) running after {:?}", started.elapsed());
    let console = || fs_err::read_to_string(&vm.console_log).unwrap_or_default();

    let reply = runtime.block_on(async {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut stream = loop {
            assert!(vm.status().is_none(), "QEMU exited:\n{}", console());
            assert!(
                Instant::now() < deadline,
                "agent not reachable:\n{}",
                console()
            );
            match connect_vsock(&vm.vsock_uds, AGENT_PORT, Duration::from_secs(2)).await {
                Ok(stream) => break stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        println!("  agent reachable over vsock after {:?}", started.elapsed());
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
        banger_agent_proto::decode::<Response>(&line).unwrap()
    });
    match &reply {
        Response::Health {
            protocol_version, ..
        } => assert_eq!(*protocol_version, PROTOCOL_VERSION),
        other => panic!("unexpected reply {other:?}"),
    }
    println!("  agent says {reply:?}");
    // The agent starts before switch_root, so it can answer before the
    // image's init has printed its marker: wait for the marker too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !console().contains("MARK-VMM-INIT: ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = console();
    assert!(text.contains("MARK-VMM-INIT: "), "{text}");
    for line in text.lines().filter(|l| l.contains("MARK-")) {
        println!("  | {line}");
    }

    let stopping = Instant::now();
    let outcome = runtime.block_on(vm.stop(Duration::from_secs(3))).unwrap();
    println!("  stop: {outcome:?} after {:?}", stopping.elapsed());
    assert!(
        matches!(outcome, StopOutcome::Killed(_) | StopOutcome::Graceful(_)),
        "{outcome:?}"
    );
    assert_eq!(vm.helpers.len(), 1);
    for process in vm.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
    assert!(fs_err::metadata(&vm.console_log).unwrap().len() <= spec.console_log_max_bytes);
    assert!(!vm.vsock_uds.exists() && !vm.control_socket.exists());
    println!("  whole VM lifetime {:?}", started.elapsed());
    drop(guard);
}
