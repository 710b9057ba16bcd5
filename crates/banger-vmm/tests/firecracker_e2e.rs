//! Contract test of the Firecracker backend: the real `FirecrackerVmm` spawns
//! this binary as a fake `firecracker --api-sock PATH` that validates every
//! API request against the official spec (`$BANGER_FC_SPEC`, else
//! `shared/firecracker/firecracker.yaml` above the checkout, see
//! `default_spec_path`), then configures, starts, talks vsock and stops it.
//! Without the spec file the tests fail under CI and report themselves
//! SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use banger_testkit::fake_firecracker::{
    ApiSpec, FakeFirecracker, SpecLoadError, default_spec_path, read_records,
};
use banger_vmm::firecracker::api::{self, ApiError, ApiOperation, vsock::VsockConfig};
use banger_vmm::{
    Accel, Adoption, DiskSpec, FirecrackerVmm, NetSpec, RunningVm, StopOutcome, VmSpec,
    connect_vsock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> ExitCode {
    common::run(&[
        (
            "configure_start_stop_against_spec",
            configure_start_stop_against_spec,
        ),
        ("wrong_requests_are_rejected", wrong_requests_are_rejected),
        (
            "frozen_vmm_is_killed_after_timeout",
            frozen_vmm_is_killed_after_timeout,
        ),
    ])
}

/// True when the spec is there; otherwise fails under CI, or reports the
/// test SKIPPED (the Firecracker contract is then NOT verified).
fn spec_present() -> bool {
    match default_spec_path() {
        Ok(_) => true,
        Err(reason) => {
            banger_testkit::skip_or_fail(reason);
            false
        }
    }
}

fn vm_spec(dir: &Path) -> VmSpec {
    for file in ["vmlinux", "initrd", "base.ext4", "upper.ext4"] {
        fs_err::write(dir.join(file), b"placeholder").unwrap();
    }
    VmSpec {
        name: "fc-test".into(),
        vcpus: 2,
        memory_mib: 256,
        kernel: dir.join("vmlinux"),
        initrd: dir.join("initrd"),
        cmdline: "console=ttyS0 reboot=k panic=-1".into(),
        disks: vec![
            DiskSpec {
                path: dir.join("base.ext4"),
                read_only: true,
            },
            DiskSpec {
                path: dir.join("upper.ext4"),
                read_only: false,
            },
        ],
        network: Some(NetSpec {
            tap_name: "tap-fc0".into(),
            mac: "02:fc:00:00:00:09".into(),
        }),
        vsock_cid: 7,
        run_dir: dir.join("run"),
        console_log: dir.join("console.log"),
        console_log_max_bytes: 64 * 1024,
        accel: Accel::Kvm,
    }
}

fn configure_start_stop_against_spec() {
    if !spec_present() {
        return;
    }
    let dir = common::short_tempdir();
    let spec = vm_spec(dir.path());
    let vmm = FirecrackerVmm {
        firecracker_bin: std::env::current_exe().unwrap(),
        copier: common::copier(),
    };
    let runtime = common::runtime();
    let vm = runtime.block_on(vmm.start(&spec)).unwrap();
    // Whatever happens below, leave no process behind.
    let guard = KillOnDrop(vm.clone());

    let records = read_records(&vm.control_socket);
    for record in &records {
        assert!(
            record.accepted(),
            "rejected: {} {} {:?}: {:?}",
            record.method,
            record.path,
            record.body,
            record.fault_message
        );
    }
    let sequence: Vec<String> = records
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
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
            "PUT /network-interfaces/eth0",
            "PUT /vsock",
            "PUT /entropy",
            "PUT /actions",
        ]
    );
    assert_eq!(
        records[9].body.as_ref().unwrap()["action_type"],
        "InstanceStart"
    );
    assert_eq!(records[4].body.as_ref().unwrap()["is_read_only"], true);
    assert_eq!(records[5].body.as_ref().unwrap()["is_root_device"], false);

    // The handle survives a round trip through JSON (the daemon's store) and
    // adopts the running process.
    let json = serde_json::to_string(&vm).unwrap();
    let adopted: RunningVm = serde_json::from_str(&json).unwrap();
    assert_eq!(
        runtime.block_on(adopted.adopt()).unwrap(),
        Adoption::Running
    );
    assert_eq!(adopted.status(), None);

    // Hybrid vsock through the (fake) VMM's socket.
    runtime.block_on(async {
        let mut stream = connect_vsock(&adopted.vsock_uds, 1024, Duration::from_secs(5))
            .await
            .unwrap();
        stream.write_all(b"hello guest").await.unwrap();
        let mut buf = [0u8; 11];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello guest");
    });

    // Graceful stop: SendCtrlAltDel, the fake exits.
    let outcome = runtime
        .block_on(adopted.stop(Duration::from_secs(10)))
        .unwrap();
    assert!(matches!(outcome, StopOutcome::Graceful(_)), "{outcome:?}");
    let last = read_records(&vm.control_socket);
    let last = last.last().unwrap();
    assert_eq!(last.body.as_ref().unwrap()["action_type"], "SendCtrlAltDel");
    assert!(last.accepted());
    for process in vm.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
    assert!(!vm.control_socket.exists(), "API socket left behind");
    let console = fs_err::read_to_string(&vm.console_log).unwrap();
    assert!(
        console.contains("fake-firecracker: guest started"),
        "{console}"
    );
    assert_eq!(runtime.block_on(vm.adopt()).unwrap(), Adoption::Gone);
    drop(guard);
}

fn wrong_requests_are_rejected() {
    let spec = match ApiSpec::load_default() {
        Ok(spec) => spec,
        Err(SpecLoadError::NotFound(reason)) => {
            banger_testkit::skip_or_fail(reason);
            return;
        }
        Err(error) => panic!("spec does not load: {error}"),
    };
    let dir = common::short_tempdir();
    let socket = dir.path().join("fc.sock");
    let runtime = common::runtime();
    runtime.block_on(async {
        let fake = FakeFirecracker::start(&socket, spec).unwrap();
        // Through the typed client: a value the spec forbids (cid below 3).
        let error = api::call(
            &socket,
            &ApiOperation::SetVsockDevice(VsockConfig {
                guest_cid: 2,
                uds_path: dir.path().join("v.sock"),
            }),
        )
        .await
        .unwrap_err();
        match &error {
            ApiError::Rejected {
                status,
                fault_message,
                ..
            } => {
                assert_eq!(status.as_u16(), 400);
                assert!(fault_message.contains("minimum"), "{fault_message}");
            }
            other => panic!("expected a rejection, got {other}"),
        }
        // Raw HTTP with an unknown field, as a buggy client would send it.
        let raw_socket = socket.clone();
        let response = tokio::task::spawn_blocking(move || {
            let body = r#"{"vcpu_count": 1, "mem_size_mib": 128, "cpu_count": 4}"#;
            let mut stream = std::os::unix::net::UnixStream::connect(&raw_socket).unwrap();
            write!(
                stream,
                "PUT /machine-config HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("unknown field `cpu_count`"), "{response}");
        let records = fake.requests();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| !r.accepted()));
    });
}

fn frozen_vmm_is_killed_after_timeout() {
    if !spec_present() {
        return;
    }
    let runtime = common::runtime();

    // A VMM that never shuts down (the fake started as a wedged one) is
    // killed once the stop timeout has passed.
    let dir = common::short_tempdir();
    let spec = vm_spec(dir.path());
    let wedged = dir
        .path()
        .join(banger_testkit::fake_firecracker::WEDGED_NAME);
    fs_err::os::unix::fs::symlink(std::env::current_exe().unwrap(), &wedged).unwrap();
    let vmm = FirecrackerVmm {
        firecracker_bin: wedged,
        copier: common::copier(),
    };
    let vm = runtime.block_on(vmm.start(&spec)).unwrap();
    let guard = KillOnDrop(vm.clone());
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(vm.stop(Duration::from_secs(1))).unwrap();
    let elapsed = started.elapsed();
    assert!(
        matches!(
            outcome,
            StopOutcome::Killed(Some(banger_vmm::ExitInfo::Signal { signal: 9 }))
        ),
        "{outcome:?}"
    );
    // The stop timeout bounds the whole stop, API request included.
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    for process in vm.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
    drop(guard);

    // A VMM frozen by SIGSTOP is continued first and shuts down cleanly,
    // well before the timeout.
    let dir = common::short_tempdir();
    let spec = vm_spec(dir.path());
    let vmm = FirecrackerVmm {
        firecracker_bin: std::env::current_exe().unwrap(),
        copier: common::copier(),
    };
    let vm = runtime.block_on(vmm.start(&spec)).unwrap();
    let guard = KillOnDrop(vm.clone());
    assert!(vm.kill(banger_vmm::Signal::STOP).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !vm.vmm.is_stopped() {
        assert!(std::time::Instant::now() < deadline, "SIGSTOP never took");
        std::thread::sleep(Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(vm.stop(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(outcome, StopOutcome::Graceful(_)),
        "a frozen VMM is continued and stops cleanly: {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for process in vm.processes() {
        assert!(!process.is_alive_and_same(), "{process:?} still runs");
    }
    drop(guard);
}

/// Kills every process of a VM when a test fails half-way.
struct KillOnDrop(RunningVm);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for process in self.0.processes() {
            let _ = process.signal(banger_vmm::Signal::KILL);
        }
    }
}
